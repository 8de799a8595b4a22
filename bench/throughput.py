"""Output throughput: one host printing 1,000,000 lines through ``gpuwizard run --headless``.

Checks three things against a real sshd on 127.0.0.1:

* wall time of ``gpuwizard run RECIPE --headless`` (stdout to a file) vs the floor, a
  raw asyncssh client reading the same command's output in 64 KiB chunks; both are
  measured as fresh processes so both pay interpreter start-up and imports.
  Target: <= 1.5x the floor.
* the run directory's host log holds every line, byte for byte;
* peak RSS of the run stays under 150 MB (output streams to disk; nothing holds
  the whole log in memory).

    python bench/throughput.py [--lines 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.sshd import SshdFactory  # noqa: E402

ENV: dict[str, str] = {}

FLOOR = r"""
import asyncio, sys, asyncssh
async def main(port, key, kh, user, cmd):
    async with asyncssh.connect("127.0.0.1", port=int(port), username=user, client_keys=[key], known_hosts=kh) as c:
        p = await c.create_process(cmd, encoding=None)
        n = 0
        while True:
            d = await p.stdout.read(65536)
            if not d:
                break
            n += d.count(b"\n")
        await p.wait()
        print(n)
asyncio.run(main(*sys.argv[1:]))
"""


def run_child(argv: list[str], stdout=None) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS (KiB, this child alone, via wait4) and stdout of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout if stdout is not None else subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=ENV)
    out = proc.stdout.read() if stdout is None and proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
    return wall, usage.ru_maxrss, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--user", default="gwtest", help="login user (see bench/executor.py --help)")
    args = ap.parse_args()
    cmd = f"seq -f '%g: the quick brown fox jumps over the lazy dog' 1 {args.lines}"
    # hashes, never the text: a big parent would inflate the child's peak RSS (fork copies its mappings)
    expected = subprocess.run(["bash", "-c", f"{cmd} | sha256sum"], check=True, capture_output=True,
                              text=True).stdout.split()[0]
    mb = 0.0
    base = pathlib.Path(tempfile.mkdtemp(prefix="gw-tput-"))
    base.chmod(0o755)
    factory = SshdFactory(base)
    runs, floors, rss, complete, printed = [], [], [], True, []
    try:
        (h,) = factory.start(1, user=args.user)
        import yaml

        recipe = base / "tput.yaml"
        recipe.write_text(yaml.safe_dump({
            "version": 1, "name": "tput", "target": {"ssh": {"hosts": [h.host_string]}},
            "ssh": {"identity": h.client_key, "known_hosts": h.known_hosts},
            "steps": [{"name": "flood", "run": cmd}]}))
        ENV.update(os.environ, XDG_STATE_HOME=str(base / "state"), PYTHONPATH=str(ROOT))
        for i in range(args.repeat):
            state = base / "state"
            shutil.rmtree(state, ignore_errors=True)
            with open(base / "stdout.txt", "wb") as out:
                wall, peak, _ = run_child([sys.executable, "-m", "gpuwizard.cli", "run", str(recipe), "--headless",
                                           "--fresh"], stdout=out)
            runs.append(wall)
            rss.append(peak)
            wall, _, counted = run_child([sys.executable, "-c", FLOOR, str(h.port), h.client_key, h.known_hosts,
                                          h.user, f"bash --norc --noprofile -euo pipefail -c {cmd!r}"])
            assert int(counted) == args.lines, counted
            floors.append(wall)
            (run_dir,) = (state / "gpuwizard" / "runs").iterdir()
            (log,) = (run_dir / "hosts").glob("*.log")
            mb = log.stat().st_size / 1e6
            digest = hashlib.sha256()
            with open(log, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            complete &= digest.hexdigest() == expected
            printed.append(sum(1 for line in open(base / "stdout.txt", "rb") if b" user.flood | " in line))
    finally:
        factory.close()
        shutil.rmtree(base, ignore_errors=True)
    run_wall, floor_wall, peak = statistics.median(runs), statistics.median(floors), max(rss)
    ratio = run_wall / floor_wall
    print(f"\n{args.lines:,} lines ({mb:.0f} MB) from one host, median of {args.repeat}\n")
    print("| | wall | MB/s | peak RSS |")
    print("|---|---:|---:|---:|")
    print(f"| floor: raw asyncssh, 64 KiB reads | {floor_wall:.2f} s | {mb / floor_wall:.0f} | |")
    print(f"| `gpuwizard run --headless` (stdout to a file, run dir written) | {run_wall:.2f} s | "
          f"{mb / run_wall:.0f} | {peak / 1024:.0f} MB |")
    ok_lines = all(p == args.lines for p in printed)
    print(f"\nratio {ratio:.2f}x (target <= 1.5x: {'ok' if ratio <= 1.5 else 'MISSED'}); "
          f"host log complete: {'yes' if complete else 'NO'}; every line printed: {'yes' if ok_lines else 'NO'}; "
          f"peak RSS < 150 MB: {'ok' if peak < 150 * 1024 else 'MISSED'}")
    return 0 if complete and ok_lines else 1


if __name__ == "__main__":
    sys.exit(main())
