"""TUI benchmarks: first paint, key-press latency while 4 hosts stream, peak memory.

    python bench/tui.py                 # all three, synthetic stream (4 x 50,000 lines)
    python bench/tui.py --paint-only    # first paint only
    python bench/tui.py --sshd          # stream from 4 real sshd hosts through the executor
    python bench/tui.py --json          # one JSON object on stdout

First paint: ``gpuwizard`` is started in a real pseudo-terminal (120x40) and the clock
runs from just before the process starts until the wizard's step bar reaches the
terminal; the app also writes a mark when its first screen has painted, with whether
``google.cloud`` was imported by then (it must not be).

Key latency: the run screen streams 4 hosts x 50,000 lines (colour escapes and ``\\r``
redraws included) in its grid layout (every pane on screen) while a key is pressed every
20 ms; latency is from posting the key to the screen refresh after its handler ran. When
the stream ends, the screen as the compositor paints it (what a terminal would show)
must hold each pane's last line: panes capped at 5,000 lines once froze at the first
write past the cap while the widgets' data was right. Targets: first paint <= 0.5 s,
key p95 <= 100 ms, >= 50,000 lines/s, the last line painted in every pane, peak RSS <
300 MB.

Full log: a 1,000,000-line host log with step byte ranges, opened in the full-log view:
seconds until its last line is painted, and for ``home`` then ``G`` (the jump to the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import resource
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# ---------------------------------------------------------------------- first paint


def first_paint(runs: int = 5, timeout: float = 10.0) -> dict[str, Any]:
    """Median/max seconds from launch to the first screen on a real pty; google.cloud flag."""
    import fcntl
    import termios

    times, marks, gc_imported = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            mark = os.path.join(tmp, "paint")
            env = dict(os.environ, GPUWIZARD_PAINT_MARK=mark, TERM="xterm-256color", COLUMNS="120", LINES="40",
                       PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       XDG_CONFIG_HOME=os.path.join(tmp, "cfg"), CLOUDSDK_CONFIG=os.path.join(tmp, "gcloud"),
                       NO_GCE_CHECK="true")
            env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            t0 = time.time()
            proc = subprocess.Popen([sys.executable, "-m", "gpuwizard.cli"], stdin=slave, stdout=slave, stderr=slave,
                                    env=env, cwd=tmp, start_new_session=True)
            os.close(slave)
            buf = b""
            seen = None
            deadline = time.time() + timeout
            while time.time() < deadline:
                r, _, _ = select.select([master], [], [], 0.05)
                if r:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        break
                    buf += chunk
                    if seen is None and b"Project" in buf and b"quota" in buf:
                        seen = time.time() - t0
                if seen is not None and os.path.exists(mark):
                    break
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            os.close(master)
            if seen is not None:
                times.append(seen)
            if os.path.exists(mark):
                ts, gc = open(mark).read().split()
                marks.append(float(ts) - t0)
                gc_imported.append(gc == "1")
    return {
        "first_paint_s_median": round(statistics.median(times), 3) if times else None,
        "first_paint_s_max": round(max(times), 3) if times else None,
        "paint_mark_s_median": round(statistics.median(marks), 3) if marks else None,
        "google_cloud_imported_before_paint": any(gc_imported),
        "runs": len(times),
    }


# ---------------------------------------------------------------------- streaming + keys


def painted(app: Any) -> str:
    """The app's screen as its compositor paints it now (the widgets' render caches,
    what the terminal gets), not the widgets' data."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


def _sshd_source(lines: int, hosts_n: int) -> tuple[Any, Any, Any]:
    """4 real sshd hosts (the tests' fixture class) and an ExecutorSource printing ``lines``."""
    import pathlib
    import shutil

    from gpuwizard import recipe as rc
    from gpuwizard.plan import user_step
    from screens.runsource import ExecutorSource
    from tests.fixtures.sshd import SshdFactory

    base = pathlib.Path(tempfile.mkdtemp(prefix="gw-bench-"))
    base.chmod(0o755)
    factory = SshdFactory(base)
    hosts = factory.start(hosts_n)
    text = ("version: 1\nname: bench\n"
            f"target: {{ssh: {{hosts: [{', '.join(h.host_string for h in hosts)}]}}}}\n"
            f"ssh: {{identity: {factory.client_key}, known_hosts: {factory.known_hosts}}}\n"
            f"steps:\n  - {{name: stream, run: \"seq -f 'line %.0f of the stream' 1 {lines}\"}}\n")
    path = base / "bench.yaml"
    path.write_text(text)
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    recipe = rc.load(str(path))
    src = ExecutorSource(recipe, str(path), steps=[user_step(s) for s in recipe.steps], run_dir=str(base / "run"))

    def cleanup() -> None:
        factory.close()
        shutil.rmtree(base, ignore_errors=True)
    return src, cleanup, [h.host_string for h in hosts]


def key_latency(lines: int = 50_000, hosts_n: int = 4, sshd: bool = False, max_lines: int = 5000,
                rate: int = 25_000) -> dict[str, Any]:
    """Key-press latency percentiles while the run screen streams; lines/s; peak RSS."""
    from textual.app import App
    from textual.binding import Binding

    from screens.run import RunScreen
    from screens.runmodel import RunModel, synthetic_source

    cleanup = None
    if sshd:
        src_obj, cleanup, _ = _sshd_source(lines, hosts_n)
        source, model = src_obj.run, RunModel(src_obj.hosts, [], max_lines=max_lines)
    else:
        # ``rate`` lines/s per host, in 64 KiB-ish chunks like the executor reads them.
        chunk = max(1, rate // 50)
        source = synthetic_source([f"host-{i}" for i in range(hosts_n)], ["stream"], lines_per_step=lines,
                                  chunk_lines=chunk, pause=chunk / rate)
        model = RunModel(max_lines=max_lines)
    latencies: list[float] = []

    class BenchApp(App[None]):
        CSS_PATH = os.path.join(ROOT, "screens", "app.tcss")
        BINDINGS = [Binding("f12", "probe", show=False, priority=True)]

        def __init__(self) -> None:
            super().__init__()
            self.sent: list[float] = []
            self.screen_ = RunScreen(source, model=model, max_lines=max_lines)

        def on_mount(self) -> None:
            self.push_screen(self.screen_)
            self.call_after_refresh(self.screen_.action_layout)  # the grid: every pane on screen

        def action_probe(self) -> None:
            t0 = self.sent.pop(0) if self.sent else None
            if t0 is not None:
                self.call_after_refresh(lambda: latencies.append(time.perf_counter() - t0))

    async def main() -> dict[str, Any]:
        app = BenchApp()
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = time.perf_counter()
            while app.screen_.model.finished is None and time.perf_counter() - t0 < 300:
                app.sent.append(time.perf_counter())
                app.simulate_key("f12")
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            await app.workers.wait_for_complete()
            await pilot.pause()
            app.screen_._flush()
            await pilot.pause()
            await pilot.pause()
            ok = app.screen_.model.finished is not None and app.screen_.model.finished.ok
            panes = [p.query_one("Log").line_count for p in app.screen_.query("HostPaneWidget")]
            screen = painted(app)
            last = {}
            for pane in app.screen_.query("HostPaneWidget"):
                lines = [ln for ln in pane.query_one("Log").lines if ln]
                last[pane.host] = bool(lines) and lines[-1] in screen
        return {"elapsed_s": round(elapsed, 2), "ok": ok, "pane_lines": panes, "last_line_painted": last,
                "grid": app.screen_.grid}

    try:
        res = asyncio.run(main())
    finally:
        if cleanup:
            cleanup()
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 1) if lat else None

    total = lines * hosts_n
    return {
        "source": "sshd" if sshd else "synthetic",
        "hosts": hosts_n, "lines_per_host": lines,
        "lines_per_s": round(total / res["elapsed_s"]) if res["elapsed_s"] else None,
        "key_p50_ms": pct(0.50), "key_p95_ms": pct(0.95), "key_max_ms": pct(1.0), "keys": len(lat),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **res,
    }


# ---------------------------------------------------------------------- the full log


def full_log(lines: int = 1_000_000) -> dict[str, Any]:
    """Open a ``lines``-line host log (three steps, the middle one failed) in the full-log
    view: seconds to the last line painted, and for the jump back to the end."""
    import pathlib

    from gpuwizard import events as ev
    from gpuwizard.runlog import RunDir
    from screens.fulllog import FullLogScreen
    from screens.run import RunScreen
    from screens.runapp import RunApp

    host = "gw@10.0.0.1:22"
    with tempfile.TemporaryDirectory() as tmp:
        rd = RunDir.create(None, "version: 1\n", "bench", path=pathlib.Path(tmp) / "run")
        third = lines // 3
        for k, (step, status) in enumerate((("setup", "ok"), ("train", "failed"), ("eval", "ok"))):
            rd(ev.StepStarted(host=host, step=step))
            n = third if k < 2 else lines - 2 * third
            for start in range(0, n, 20_000):
                rd(ev.Output(host=host, step=step, stream="stdout",
                             data="".join(f"{step} line {i} of the full log bench\n"
                                          for i in range(start, min(n, start + 20_000)))))
            rd(ev.StepFinished(host=host, step=step, status=status, exit_code=0 if status == "ok" else 3))
        rd.close()
        path = str(rd.host_log_path(host))
        size_mb = os.path.getsize(path) / 2**20
        last = f"eval line {lines - 2 * third - 1} of the full log bench"

        async def main() -> dict[str, float]:
            app = RunApp(RunScreen(lambda sink, cancel: sink(ev.RunFinished(ok=True))))
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause()

                async def until_painted(text: str) -> float:
                    t0 = time.perf_counter()
                    while text not in painted(app):
                        if time.perf_counter() - t0 > 120:
                            raise RuntimeError(f"{text!r} never painted")
                        await asyncio.sleep(0.005)
                    return time.perf_counter() - t0

                t0 = time.perf_counter()
                app.push_screen(FullLogScreen(path, host=host))
                await until_painted(last)
                opened = time.perf_counter() - t0
                await pilot.press("home")
                await until_painted("── setup · attempt 1 · ok, exit 0 ──")
                t1 = time.perf_counter()
                await pilot.press("G")
                await until_painted(last)
                jumped = time.perf_counter() - t1
                await pilot.press("home")
                await until_painted("── setup · attempt 1 · ok, exit 0 ──")
                t2 = time.perf_counter()
                await pilot.press("slash", *"train line 333000 ", "enter")
                await until_painted("train line 333000 of")
                found = time.perf_counter() - t2
            return {"open_s": round(opened, 3), "jump_end_s": round(jumped, 3), "search_s": round(found, 3)}

        res = asyncio.run(main())
    return {"lines": lines, "size_mb": round(size_mb, 1), **res}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paint-only", action="store_true")
    ap.add_argument("--sshd", action="store_true", help="stream from real sshd hosts through the executor")
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--rate", type=int, default=25_000, help="synthetic lines/s per host")
    ap.add_argument("--runs", type=int, default=5, help="first-paint launches")
    ap.add_argument("--full-log-lines", type=int, default=1_000_000, help="lines in the full-log bench (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"first_paint": first_paint(args.runs)}
    if not args.paint_only:
        out["streaming"] = key_latency(args.lines, args.hosts, sshd=args.sshd, rate=args.rate)
        if args.full_log_lines:
            out["full_log"] = full_log(args.full_log_lines)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        fp = out["first_paint"]
        print(f"first paint: median {fp['first_paint_s_median']} s, max {fp['first_paint_s_max']} s "
              f"(app mark {fp['paint_mark_s_median']} s); google.cloud imported before paint: "
              f"{fp['google_cloud_imported_before_paint']}")
        if "streaming" in out:
            s = out["streaming"]
            print(f"streaming ({s['source']}, {s['hosts']} x {s['lines_per_host']:,} lines): {s['lines_per_s']} lines/s, "
                  f"key p50 {s['key_p50_ms']} ms, p95 {s['key_p95_ms']} ms, max {s['key_max_ms']} ms "
                  f"({s['keys']} keys); peak RSS {s['peak_rss_mb']} MB; panes {s['pane_lines']}; ok={s['ok']}")
            print(f"last line painted in every pane: {all(s['last_line_painted'].values())} "
                  f"{s['last_line_painted']}")
        if "full_log" in out:
            f = out["full_log"]
            print(f"full log ({f['lines']:,} lines, {f['size_mb']} MB): open to last line painted {f['open_s']} s, "
                  f"jump to the end {f['jump_end_s']} s, search from the top to a line a third in {f['search_s']} s (typing included)")
    fp = out["first_paint"]
    good = fp["first_paint_s_max"] is not None and fp["first_paint_s_max"] <= 0.5 and \
        not fp["google_cloud_imported_before_paint"]
    if "streaming" in out:
        s = out["streaming"]
        good = good and s["ok"] and (s["key_p95_ms"] or 1e9) <= 100 and s["peak_rss_mb"] < 300 and \
            (s["lines_per_s"] or 0) >= 50_000 and bool(s["last_line_painted"]) and all(s["last_line_painted"].values())
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
