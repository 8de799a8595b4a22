"""The ``GPUWIZARD_*`` variables every step on every node of a cluster gets.

They are the contract with the user's steps (README, DESIGN): the same names SkyPilot
(``SKYPILOT_NODE_RANK``, ``SKYPILOT_NODE_IPS``) and dstack (``DSTACK_NODE_RANK``,
``DSTACK_MASTER_NODE_IP``) give, so a torchrun line ports over by renaming.

``GPUWIZARD_GPUS_PER_NODE`` is ``target.gcp.gpu.count`` (0 for a CPU-only VM) where
the recipe says it. On an SSH target nothing says it offline, so the value is
:data:`DETECT` and the step counts the GPUs itself when it starts
(:data:`DETECT_SH`: the lines of ``nvidia-smi -L``, 0 when there is no nvidia-smi or
no GPU). The ``gpuwizard torchrun`` helper starts one process per GPU, and one on a
node with none (gloo).

The values travel like every step's ``env`` (on the step's stdin, never in an argv),
but in ``Step.node_env``, which the resume fingerprint leaves out: a replaced node
gets a new IP, and that must not make every finished step on every node run again.
"""

from __future__ import annotations

from typing import Sequence

from gpuwizard.cluster.nodes import Node

NODE_RANK = "GPUWIZARD_NODE_RANK"
NUM_NODES = "GPUWIZARD_NUM_NODES"
NODE_IPS = "GPUWIZARD_NODE_IPS"
MASTER_ADDR = "GPUWIZARD_MASTER_ADDR"
MASTER_PORT = "GPUWIZARD_MASTER_PORT"
GPUS_PER_NODE = "GPUWIZARD_GPUS_PER_NODE"
NAMES = (NODE_RANK, NUM_NODES, NODE_IPS, MASTER_ADDR, MASTER_PORT, GPUS_PER_NODE)

DETECT = "detect"
#: Prefixed (on the step's first line) to every step of a node whose GPU count is
#: :data:`DETECT`: replaces the placeholder with the count before the step runs.
DETECT_SH = (f'if [ "${{{GPUS_PER_NODE}:-}}" = {DETECT} ]; then '
             f"{GPUS_PER_NODE}=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); "
             f"export {GPUS_PER_NODE}; fi; ")


def node_env(nodes: Sequence[Node], node: Node, master_port: int,
             gpus_per_node: int | None) -> tuple[tuple[str, str], ...]:
    """The variables for ``node``'s steps; ``gpus_per_node`` None: detect on the node."""
    return ((NODE_RANK, str(node.rank)),
            (NUM_NODES, str(len(nodes))),
            (NODE_IPS, ",".join(n.address for n in nodes)),
            (MASTER_ADDR, nodes[0].address),
            (MASTER_PORT, str(master_port)),
            (GPUS_PER_NODE, DETECT if gpus_per_node is None else str(gpus_per_node)))
