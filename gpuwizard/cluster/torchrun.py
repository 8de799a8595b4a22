"""``gpuwizard torchrun -- train.py ARGS``: the step helper of ``launcher: torchrun``.

On a node, inside a user step, it runs::

    torchrun --nnodes=$N --node_rank=$R --nproc_per_node=$G \\
             --master_addr=$M --master_port=$P train.py ARGS

from the ``GPUWIZARD_*`` variables (:mod:`.env`), so the one line in the recipe is the
right line on every node. It is a small POSIX sh script the plan writes to
:data:`HELPER_PATH` on every node (a step with an "already there" check), found first
on PATH in user steps: gpuwizard itself is not installed on the nodes, and the helper
knows only ``torchrun``. A user step that calls it is a *gang* step
(:mod:`gpuwizard.executor.gang`): torchrun runs on every node at once, and one rank
dying stops the step on every node within seconds, naming the rank, instead of the
others hanging in a collective until NCCL's timeout.

``G`` is ``GPUWIZARD_GPUS_PER_NODE``, or 1 on a node without GPUs (one gloo process).
``torchrun`` itself comes from the recipe's environment (``env.torch``), which user
steps have active.
"""

from __future__ import annotations

import hashlib
import re

from gpuwizard.shell import q

#: Where the helper lives on a node, as the shell writes it (inside double quotes).
HELPER_DIR = "$HOME/.gpuwizard/bin"
HELPER_PATH = f"{HELPER_DIR}/gpuwizard"
STEP_ID = "cluster.helper"

# `gpuwizard torchrun` as a command: at the start of the text or after a separator.
_CALL = re.compile(r"(?:^|[;&|({`\s])gpuwizard\s+torchrun(?:\s|$)", re.M)

HELPER = r"""#!/bin/sh
# gpuwizard's step helper on a cluster node, written by gpuwizard (launcher: torchrun).
# It knows one command: gpuwizard torchrun [--] SCRIPT [ARGS...]
set -eu
if [ "${1:-}" != torchrun ]; then
  echo "gpuwizard on this node knows only: gpuwizard torchrun -- SCRIPT ARGS" >&2
  exit 2
fi
shift
[ "${1:-}" = "--" ] && shift
for v in GPUWIZARD_NUM_NODES GPUWIZARD_NODE_RANK GPUWIZARD_MASTER_ADDR GPUWIZARD_MASTER_PORT; do
  eval "x=\${$v:-}"
  if [ -z "$x" ]; then
    echo "gpuwizard torchrun: $v is not set; it runs in a step of a recipe with cluster: {launcher: torchrun}" >&2
    exit 2
  fi
done
g=${GPUWIZARD_GPUS_PER_NODE:-0}
if [ "$g" = detect ]; then g=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); fi
case "$g" in ''|*[!0-9]*|0) g=1 ;; esac
if ! command -v torchrun >/dev/null 2>&1; then
  echo "gpuwizard torchrun: torchrun is not on PATH; set env.torch in the recipe (or install PyTorch in a step)" >&2
  exit 127
fi
exec torchrun --nnodes="$GPUWIZARD_NUM_NODES" --node_rank="$GPUWIZARD_NODE_RANK" --nproc_per_node="$g" \
  --master_addr="$GPUWIZARD_MASTER_ADDR" --master_port="$GPUWIZARD_MASTER_PORT" "$@"
"""

#: Prefixed to user steps of a torchrun cluster: the helper first on PATH.
PATH_SH = f'export PATH="{HELPER_DIR}:$PATH"; '


def uses_torchrun(run: str) -> bool:
    """Whether a step's shell calls ``gpuwizard torchrun``."""
    return bool(_CALL.search(run))


def install_script() -> str:
    """Shell that writes the helper (mode 0755)."""
    return (f'mkdir -p "{HELPER_DIR}"\n'
            f'printf %s {q(HELPER)} > "{HELPER_PATH}.new"\n'
            f'chmod 755 "{HELPER_PATH}.new"\n'
            f'mv -f "{HELPER_PATH}.new" "{HELPER_PATH}"\n')


def check_script() -> str:
    """Exit 0 when the helper on the node is this one (and executable)."""
    return (f'[ -x "{HELPER_PATH}" ] && '
            f'[ "$(sha256sum < "{HELPER_PATH}" | cut -d" " -f1)" = {digest()} ]')


def digest() -> str:
    return hashlib.sha256(HELPER.encode()).hexdigest()
