"""One long line without a newline through the headless line renderer (issue 13).

A step that prints megabytes without a newline (a progress bar redrawn with ``\\b``, a
minified JSON blob) used to cost O(n^2): every chunk was glued onto everything before it.
Prints seconds per size; linear means 4x the bytes take about 4x the time.

    python bench/long_line.py [--sizes 12.5,50] [--chunk 32768]
"""

from __future__ import annotations

import argparse
import io
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from gpuwizard import events as ev  # noqa: E402
from gpuwizard.headless import LineRenderer  # noqa: E402


def one(megabytes: float, chunk: int) -> float:
    """Seconds to render one line of ``megabytes`` MB arriving in ``chunk``-byte pieces."""
    piece = "x" * chunk
    n = int(megabytes * 1e6) // chunk
    out = io.StringIO()
    r = LineRenderer(out)
    t0 = time.perf_counter()
    for _ in range(n):
        r(ev.Output(host="h", step="s", stream="stdout", data=piece))
    r(ev.Output(host="h", step="s", stream="stdout", data="\n"))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="12.5,50", help="line sizes in MB, comma-separated")
    ap.add_argument("--chunk", type=int, default=32768, help="bytes per Output event (SSH channel reads)")
    a = ap.parse_args()
    for mb in (float(s) for s in a.sizes.split(",")):
        print(f"{mb:>6g} MB line in {a.chunk}-byte chunks: {one(mb, a.chunk):.3f} s")


if __name__ == "__main__":
    main()
