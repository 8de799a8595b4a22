#!/usr/bin/env python3
"""Start-up time of the fast commands: `gpuwizard --help`, `validate`, `plan`.

Runs each command N times in a fresh process (the console script installed beside this
Python, i.e. what a user types) and prints min / median / max wall time as a markdown
table. Target: median <= 0.15 s for `gpuwizard --help` on a 2-core machine.

    python bench/startup.py [-n 30]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def script() -> list[str]:
    exe = pathlib.Path(sys.executable).parent / "gpuwizard"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "gpuwizard.cli"]


def measure(cmd: list[str], n: int) -> list[float]:
    """Wall times of ``n`` runs; a command that fails is an error, not a fast figure."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode
        times.append(time.perf_counter() - t0)
        if rc != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {rc}: fix it before timing it")
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="runs per command")
    args = ap.parse_args()
    recipe = str(ROOT / "recipes" / "stgcn-t4.yaml")
    if not os.path.exists(recipe):
        recipe = str(ROOT / "tests" / "data" / "ssh-recipe.yaml")
    base = script()
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("gpuwizard --help", base + ["--help"]),
        ("gpuwizard --version", base + ["--version"]),
        (f"gpuwizard validate {os.path.basename(recipe)}", base + ["validate", recipe]),
        (f"gpuwizard plan {os.path.basename(recipe)}", base + ["plan", recipe]),
    ]
    for tool in ("pyinfra", "ansible-playbook"):
        path = shutil.which(tool) or (shutil.which(tool, path="/tmp/benchvenv/bin"))
        if path:
            rows.append((f"{tool} --help (peer)", [path, "--help"]))
    print(f"start-up, {args.n} runs each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| command | min s | median s | max s |")
    print("|---|---|---|---|")
    for name, cmd in rows:
        t = measure(cmd, args.n)
        print(f"| `{name}` | {min(t):.3f} | {statistics.median(t):.3f} | {max(t):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
