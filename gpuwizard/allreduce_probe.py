"""The all-reduce gpuwizard runs on every node of a cluster at once, with ``python -c``.

Standard library + torch, no gpuwizard imports: :mod:`gpuwizard.allreduce` reads
this file's text with :mod:`importlib.resources` and sends it verbatim, so the arithmetic
the tests exercise is the arithmetic that runs on the nodes (as with ``probe_gpu.py``).

Each node is one rank (``GPUWIZARD_NODE_RANK`` of ``GPUWIZARD_NUM_NODES``); they meet at
``GPUWIZARD_MASTER_ADDR:GPUWIZARD_MASTER_PORT`` through ``torch.distributed``'s TCP
rendezvous, NCCL when CUDA works, gloo when it does not. One process per node measures the
network between the nodes (inside a node, NVLink would hide it). For each size it reports,
as nccl-tests define them (github.com/NVIDIA/nccl-tests, doc/PERFORMANCE.md):

* ``algbw = S / t`` (S bytes reduced, t the slowest rank's time per all-reduce), and
* ``busbw = algbw * 2 (n - 1) / n``: what each rank's link actually carried in a ring
  all-reduce, comparable with the network's per-VM bandwidth whatever n is.

The largest size's bus bandwidth is set beside what the machine type's network should give
(``expected_gbps`` in the JSON argument, from docs/facts/gcp-network-bandwidth.md); far
below it means no gVNIC, no compact placement or a busy network, and the probe says so in
plain words. A wrong sum fails the probe (exit 1); slowness only warns.
"""

import json
import os
import sys
import time
from datetime import timedelta

#: Measured below this share of the expected bandwidth is "far below" (a warning).
SLOW_SHARE = 0.25
MARK = "gpuwizard-allreduce:"


def bus_bandwidth(nbytes, seconds, n):
    """(algbw, busbw) in bytes/s for one all-reduce of ``nbytes`` over ``n`` ranks."""
    if seconds <= 0:
        raise ValueError("the time of an all-reduce must be positive")
    algbw = nbytes / seconds
    return algbw, algbw * 2.0 * (n - 1) / n


def gbps(bytes_per_s):
    """Bytes per second -> gigabits per second (the unit cloud networks are sold in)."""
    return bytes_per_s * 8 / 1e9


def human(nbytes):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= div:
            return "%g %s" % (nbytes / div, unit)
    return "%d B" % nbytes


def verdict(busbw_gbps, expected_gbps, machine):
    """The closing sentence: measured against expected, with a warning when far below."""
    if not expected_gbps:
        return ("all-reduce bus bandwidth %.2f Gbit/s (no network figure for %s to compare with)"
                % (busbw_gbps, machine or "these hosts"), False)
    share = busbw_gbps / expected_gbps
    line = ("all-reduce bus bandwidth %.2f Gbit/s; the network of %s should give about %.0f Gbit/s (%.0f%%)"
            % (busbw_gbps, machine, expected_gbps, share * 100))
    if share < SLOW_SHARE:
        return ("warning: " + line + ": far below it. No gVNIC / no compact placement? Check the VMs' NIC type "
                "(gVNIC) and placement policy, or a busy network, before training on this cluster"), True
    return line, False


def node_env(environ):
    """(rank, world size, init method, device index) from the GPUWIZARD_* variables (one
    process per node, GPU 0); under ``torchrun`` (bench/device_nccl.sh: one process per GPU
    of one machine) from its RANK / WORLD_SIZE / LOCAL_RANK and its rendezvous (env://)."""
    if "GPUWIZARD_NODE_RANK" not in environ and "TORCHELASTIC_RUN_ID" in environ:
        return int(environ["RANK"]), int(environ["WORLD_SIZE"]), "env://", int(environ.get("LOCAL_RANK", "0"))
    try:
        rank = int(environ["GPUWIZARD_NODE_RANK"])
        world = int(environ["GPUWIZARD_NUM_NODES"])
        addr = environ["GPUWIZARD_MASTER_ADDR"]
        port = int(environ["GPUWIZARD_MASTER_PORT"])
    except (KeyError, ValueError) as exc:
        raise SystemExit("gpuwizard: the all-reduce needs GPUWIZARD_NODE_RANK, _NUM_NODES, _MASTER_ADDR and "
                         "_MASTER_PORT (a cluster step sets them): %s" % exc)
    if not 0 <= rank < world:
        raise SystemExit("gpuwizard: GPUWIZARD_NODE_RANK=%d is outside 0..%d" % (rank, world - 1))
    host = "[%s]" % addr if ":" in addr else addr
    return rank, world, "tcp://%s:%d" % (host, port), 0


def measure(cfg, environ):  # pragma: no cover - needs torch; run by the opt-in torch test
    import torch
    import torch.distributed as dist

    rank, world, init, local = node_env(environ)
    cuda = torch.cuda.is_available() and cfg.get("backend", "auto") != "gloo"
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(local)
    where = init[len("tcp://"):] if init.startswith("tcp://") else "torchrun's rendezvous"
    print("gpuwizard: node %d of %d meets the others at %s (%s)" % (rank, world, where, backend), flush=True)
    wait = float(cfg.get("timeout", 300))
    try:
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                                timeout=timedelta(seconds=wait))
    except Exception as exc:  # noqa: BLE001 - torch's rendezvous errors vary by version; say what to check
        print("gpuwizard: node %d could not meet the other %d node(s) at %s within %.0f s (%s: %s). Check that "
              "every node runs this step and that the nodes may reach each other on that port (firewall)"
              % (rank, world - 1, where, wait, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""),
              file=sys.stderr)
        return 1
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    try:
        # correctness first: rank r contributes r + 1, so every element must be n (n + 1) / 2
        probe = torch.full((1024,), float(rank + 1), device=device)
        dist.all_reduce(probe)
        want = world * (world + 1) / 2
        if not bool(torch.all(probe == want)):
            print("gpuwizard: the all-reduce returned %s, expected %s on every element" % (probe[0].item(), want),
                  file=sys.stderr)
            return 1
        print("gpuwizard: all-reduce result correct on %d nodes" % world, flush=True)
        print("%12s %12s %14s %14s %12s" % ("size", "time (ms)", "algbw (GB/s)", "busbw (GB/s)", "busbw Gbit/s"))
        for size in cfg.get("sizes", [1 << 20]):
            t = torch.ones(max(1, size // 4), dtype=torch.float32, device=device)
            for _ in range(int(cfg.get("warmup", 2))):
                dist.all_reduce(t)
            sync()
            dist.barrier()
            iters = int(cfg.get("iters", 5))
            t0 = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(t)
            sync()
            mine = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64, device=device)
            dist.all_reduce(mine, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
            secs = float(mine.item())
            nbytes = t.numel() * 4
            alg, bus = bus_bandwidth(nbytes, secs, world)
            rows.append({"bytes": nbytes, "seconds": secs, "algbw": alg, "busbw": bus})
            print("%12s %12.2f %14.3f %14.3f %12.2f" % (human(nbytes), secs * 1e3, alg / 1e9, bus / 1e9, gbps(bus)),
                  flush=True)
    finally:
        dist.destroy_process_group()
    line, slow = verdict(gbps(rows[-1]["busbw"]), cfg.get("expected_gbps"), cfg.get("machine", ""))
    print("gpuwizard: " + line, flush=True)
    print(MARK + " " + json.dumps({"rank": rank, "nodes": world, "backend": backend, "rows": rows, "slow": slow}),
          flush=True)
    return 0


def main(argv):  # pragma: no cover - needs torch
    cfg = json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        import torch  # noqa: F401
    except ImportError:
        print("gpuwizard: torch is not installed in %s; the all-reduce check needs it (env.torch in the recipe)"
              % sys.executable, file=sys.stderr)
        return 1
    return measure(cfg, os.environ)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv))
