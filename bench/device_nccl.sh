#!/usr/bin/env bash
# The NCCL all-reduce on a GPU machine: the one prepared check for a session that is lent a
# device (issue 16). Not a test; not run in CI. From the repository root:
#
#     bash bench/device_nccl.sh            # writes into $OUT (the device tool's folder) or a temp dir
#
# What it runs: nvidia-smi (and the GPU topology), then gpuwizard's own all-reduce program
# (gpuwizard/allreduce_probe.py, the one verify.allreduce sends to cluster nodes) under
# `torchrun --standalone --nproc_per_node=<GPUs>`, NCCL, one process per GPU of this machine:
# 1 MiB .. 256 MiB, the bus bandwidth as nccl-tests define it. On one machine the traffic
# rides NVLink/PCIe, not the network: this proves the NCCL path of the probe on real GPUs
# (device selection per LOCAL_RANK, torchrun's rendezvous, the result check); with one GPU
# the all-reduce is trivial (bus bandwidth 0 by definition) but still runs NCCL end to end.
#
# torch: $PYTHON if it imports torch with CUDA and NCCL, else python3, else a venv made here
# with `pip install torch` (needs the package index; a machine that reaches nothing says so
# and exits 3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
echo "results in $OUT"

{ nvidia-smi; echo; nvidia-smi topo -m || true; } 2>&1 | tee "$OUT/nvidia-smi.txt"
NGPU=$(nvidia-smi -L | grep -c '^GPU ' || true)
if [ "${NGPU:-0}" -lt 1 ]; then
  echo "no GPU visible to nvidia-smi" >&2
  exit 2
fi

has_nccl() {
  "$1" -c 'import sys, torch, torch.distributed as d; sys.exit(0 if torch.cuda.is_available() and d.is_nccl_available() else 1)' \
    >/dev/null 2>&1
}
PY=""
for cand in "${PYTHON:-}" python3; do
  if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && has_nccl "$cand"; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
  VENV=${GW_NCCL_VENV:-/tmp/gw-nccl-venv}
  if [ ! -x "$VENV/bin/python" ] || ! has_nccl "$VENV/bin/python"; then
    python3 -m venv "$VENV"
    if ! timeout 420 "$VENV/bin/pip" install -q torch >"$OUT/pip.log" 2>&1; then
      echo "no python with torch+CUDA+NCCL here, and pip install torch failed (see $OUT/pip.log)" >&2
      exit 3
    fi
  fi
  PY=$VENV/bin/python
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "NCCL", torch.cuda.nccl.version(), "GPUs", torch.cuda.device_count())' \
  | tee "$OUT/torch.txt"

CFG='{"sizes": [1048576, 8388608, 67108864, 268435456], "iters": 20, "warmup": 5, "timeout": 300, "machine": "", "expected_gbps": null}'
set +e
timeout 300 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" gpuwizard/allreduce_probe.py "$CFG" \
  2>&1 | tee "$OUT/allreduce.txt"
rc=${PIPESTATUS[0]}
set -e
grep -q '"backend": "nccl"' "$OUT/allreduce.txt" || { echo "the all-reduce did not run on NCCL (exit $rc)" >&2; exit 1; }
echo "all-reduce exit code: $rc"
exit "$rc"
