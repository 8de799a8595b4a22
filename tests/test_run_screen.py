"""The run screen: the event model (no terminal), the screen with a synthetic source, and
the real thing: 4 real sshd hosts streaming 50,000 lines each through the executor."""

from __future__ import annotations

import asyncio
import resource
import threading

import pytest

from gpuwizard import events as ev
from screens.runmodel import RunModel, clean_line, synthetic_source

SIZE = (120, 40)


def _slow_source(gate: threading.Event, host: str = "vm-1", **finished: str):
    """A run of one step on ``host`` that waits for Stop: sets ``gate`` once the step runs,
    then reports it cancelled (``finished``: extra StepFinished fields)."""
    def slow(sink, cancel):
        sink(ev.RunStarted(run_id="r", recipe="x", hosts=[host], steps=["train"]))
        sink(ev.StepStarted(host=host, step="train"))
        gate.set()
        cancel.wait(30)
        sink(ev.StepFinished(host=host, step="train", status="cancelled", **finished))
        if host != "vm-1":
            sink(ev.HostFinished(host=host, ok=False, message="user.train cancelled"))
        sink(ev.RunFinished(ok=False, interrupted=True))
    return slow


# ---------------------------------------------------------------------- the model


def test_clean_line_strips_ansi_and_keeps_last_redraw() -> None:
    assert clean_line("\x1b[1;32mok\x1b[0m done") == "ok done"
    assert clean_line("  5%\r 50%\r100% fetched") == "100% fetched"
    assert clean_line("\x1b]0;title\x07text") == "text"
    assert clean_line("a\tb") == "a   b"


def test_model_batches_lines_and_splits_partial_chunks() -> None:
    m = RunModel(["h1"], ["s1"], max_lines=100)
    m.feed(ev.StepStarted(host="h1", step="s1", title="first"))
    m.feed(ev.Output(host="h1", step="s1", stream="stdout", data="one\ntw"))
    m.feed(ev.Output(host="h1", step="s1", stream="stdout", data="o\nthree\x1b[0m\n"))
    d = m.drain()
    assert d.lines["h1"] == ["── s1: first", "one", "two", "three"]
    assert ("h1", "s1") in d.cells
    assert m.drain().lines == {}
    m.feed(ev.Progress(host="h1", step="s1", fraction=0.5, text="50%"))
    assert m.cells[("h1", "s1")].render() == "▶  50%"
    m.feed(ev.StepFinished(host="h1", step="s1", status="failed", exit_code=3, seconds=2.0))
    assert m.cells[("h1", "s1")].render() == "✗ 2.0s"
    assert m.first_failure() == ("h1", "s1")
    assert "exit 3" in m.drain().lines["h1"][-1]


def test_model_caps_pending_lines_when_the_ui_falls_behind() -> None:
    m = RunModel(["h"], ["s"], max_lines=1000)
    data = "".join(f"line {i}\n" for i in range(50_000))
    m.feed(ev.Output(host="h", step="s", stream="stdout", data=data))
    d = m.drain()
    assert len(d.lines["h"]) == 1000 and d.lines["h"][-1] == "line 49999"
    assert m.panes["h"].dropped == 49_000


def test_model_is_thread_safe() -> None:
    m = RunModel(max_lines=10_000)
    src = synthetic_source(["a", "b"], ["x", "y"], lines_per_step=500, chunk_lines=50)
    t = threading.Thread(target=src, args=(m.feed, threading.Event()))
    t.start()
    got = 0
    while t.is_alive():
        got += sum(len(v) for v in m.drain().lines.values())
    t.join()
    got += sum(len(v) for v in m.drain().lines.values())
    assert got == 2 * 2 * (500 + 1)  # every output line plus one header per step
    assert m.finished is not None and m.finished.ok


# ---------------------------------------------------------------------- the screen

import re
import time

from textual.app import App

from screens.run import RunScreen
from screens.runapp import RunApp as _RunApp  # the app `gpuwizard run` uses on a terminal


def painted(app: App) -> str:
    """The text on the app's screen as the compositor paints it now (from the widgets'
    render caches, like a terminal sees it; what export_screenshot draws), not the
    widgets' data."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


async def _finish(app: App, scr: RunScreen, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    scr._flush()
    await pilot.pause()


def _reset_peak_rss() -> None:
    """Start the peak-RSS count here: ru_maxrss is the whole pytest session's peak, which
    earlier tests set. Linux resets VmHWM when 5 is written to /proc/self/clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _rss_mb() -> float:
    """The process's resident set now (VmRSS), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    """Peak RSS since :func:`_reset_peak_rss` (VmHWM), or the process's whole peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.asyncio
async def test_run_screen_shows_status_and_jumps_to_failure() -> None:
    hosts = ["alpha", "beta", "gamma"]
    src = synthetic_source(hosts, ["setup", "train", "eval"], lines_per_step=300, chunk_lines=100,
                           fail=("beta", "train"), fixed_ts=1_000.0)
    scr = RunScreen(src, title="run test.yaml", recipe_path="test.yaml", max_lines=500)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        m = scr.model
        assert m.finished is not None and not m.finished.ok
        table = scr.query_one("#grid")
        assert table.get_cell("train", "beta").startswith("✗")
        assert table.get_cell("eval", "alpha").startswith("✓")
        assert table.get_cell("eval", "beta") == "-"
        from textual.widgets import Log

        for pane in scr.query("HostPaneWidget"):
            assert pane.query_one(Log).line_count <= 500
        assert "Run failed (train on beta)" in str(scr.query_one("#run-status").render())
        await pilot.press("e")
        await pilot.pause()
        assert scr.query_one("#host-tabs").active == "tab-1"
        assert not scr.following
        await pilot.press("g")
        await pilot.pause()
        assert scr.grid and scr.query_one("#panes").has_class("-grid")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1


@pytest.mark.asyncio
async def test_quitting_while_running_asks_and_prints_resume_and_down() -> None:
    gate = threading.Event()
    scr = RunScreen(_slow_source(gate), recipe_path="stgcn.yaml", hourly=0.54)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert gate.wait(10)
        await pilot.press("q")
        await pilot.pause()
        assert type(app.screen).__name__ == "ChoiceScreen"
        await pilot.click("#ans-leave")
        await pilot.pause()
    assert scr.cancel.is_set()
    assert "gpuwizard run stgcn.yaml --resume" in app.exit_message
    assert "gpuwizard down stgcn.yaml" in app.exit_message


@pytest.mark.asyncio
async def test_a_capped_pane_keeps_painting_the_newest_lines() -> None:
    """Issue 11 item 2: past the pane's cap (6,000 lines into a 5,000-line pane), lines that
    come later, each in its own flush like `echo tick $i; sleep 1`, are painted; before the
    fix the pane froze at the first of them until a resize."""
    from textual.widgets import Log

    go = [threading.Event() for _ in range(4)]

    def src(sink, cancel):
        sink(ev.RunStarted(run_id="r", recipe="x", hosts=["h"], steps=["s"]))
        sink(ev.StepStarted(host="h", step="s"))
        sink(ev.Output(host="h", step="s", stream="stdout", data="".join(f"{i}\n" for i in range(1, 6001))))
        for i in range(1, 5):
            go[i - 1].wait(30)
            sink(ev.Output(host="h", step="s", stream="stdout", data=f"tick {i}\n"))
        sink(ev.StepFinished(host="h", step="s", status="ok"))
        sink(ev.HostFinished(host="h", ok=True))
        sink(ev.RunFinished(ok=True))

    async def until(cond, what: str) -> None:
        deadline = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < deadline, what
            await pilot.pause(0.02)

    scr = RunScreen(src, max_lines=5000)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "6000" in painted(app), "the first 5,000 lines are painted")
        log = scr.query_one(Log)
        for i in range(1, 5):  # one flush per tick (the data reaches the widget each time)
            go[i - 1].set()
            await until(lambda: log.lines and log.lines[-1] == f"tick {i}", f"tick {i} reaches the pane")
            await pilot.pause()
        await _finish(app, scr, pilot)
        screen = painted(app)
        assert "tick 4" in screen, screen
        assert "tick 1" in screen and "5999" in screen
        assert log.line_count == 5000


KEY_ERROR = ("gw@10.9.8.7:2202: its host key is not in /home/me/.ssh/known_hosts. Add it (ssh-keyscan -p 2202 "
             "10.9.8.7 >> /home/me/.ssh/known_hosts, after checking it), or run with --accept-new-host-key.")


def _one_host_never_connects(sink, cancel) -> None:
    """Like the executor when one host's key is unknown: its steps end not_run, then the
    host ends with the reason; the other host runs both steps."""
    hosts, steps = ["good", "gw@10.9.8.7:2202"], ["user.setup", "user.train"]
    sink(ev.RunStarted(run_id="r", recipe="x", hosts=hosts, steps=steps, ts=1.0))
    for s in steps:
        sink(ev.StepFinished(host=hosts[1], step=s, status="not_run", ts=1.0))
    sink(ev.HostFinished(host=hosts[1], ok=False, message=KEY_ERROR, ts=1.0))
    for s in steps:
        sink(ev.StepStarted(host="good", step=s, ts=1.0))
        sink(ev.Output(host="good", step=s, stream="stdout", data=f"{s} output\n", ts=1.0))
        sink(ev.StepFinished(host="good", step=s, status="ok", exit_code=0, seconds=1.0, ts=1.0))
    sink(ev.HostFinished(host="good", ok=True, ts=1.0))
    sink(ev.RunFinished(ok=False, ts=1.0))


@pytest.mark.asyncio
async def test_a_host_that_never_connects_says_why_in_its_pane_the_table_and_the_summary() -> None:
    """Issue 11 item 3: before, its cells showed "-", the summary named no host and the pane
    header was cut at "...its host key is not"."""
    scr = RunScreen(_one_host_never_connects, recipe_path="r.yaml", vms=False)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        table = scr.query_one("#grid")
        assert table.get_cell("user.setup", "gw@10.9.8.7:2202") == "✗ no connection"
        assert table.get_cell("user.train", "gw@10.9.8.7:2202") == "-"
        status = str(scr.query_one("#run-status").render())
        assert "Run failed (gw@10.9.8.7:2202 did not connect)" in status
        summary = " ".join(str(scr.query_one("#run-summary").render()).split())
        assert "gw@10.9.8.7:2202 did not connect: " + KEY_ERROR in summary
        await pilot.press("]")  # the second host's pane: the reason in full, wrapped
        await pilot.pause()
        assert scr.query_one("#host-tabs").active == "tab-1"
        screen = painted(app)
        words = " ".join(re.sub("[█▕▎│]", " ", screen).split())
        assert "ran no steps. " + " ".join(KEY_ERROR.split()[:8]) in words, screen
        for token in ("ssh-keyscan", "--accept-new-host-key.", "/home/me/.ssh/known_hosts,"):
            assert token in screen
        await pilot.press("e")  # the failure to jump to is the host that did not connect
        await pilot.pause()
        assert scr.query_one("#host-tabs").active == "tab-1"


@pytest.mark.asyncio
async def test_host_keys_are_shown_and_work_whatever_has_focus() -> None:
    """Issue 11: host switching was hidden (show=False) and left/right went to the table."""
    from textual.widgets import DataTable

    src = synthetic_source(["alpha", "beta", "gamma"], ["setup"], lines_per_step=5, fixed_ts=1.0)
    scr = RunScreen(src, title="run t.yaml")
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        footer = painted(app).splitlines()[-1]
        assert "] Next host" in footer and "[ Prev host" in footer
        scr.query_one(DataTable).focus()
        await pilot.press("]", "]")
        assert scr.query_one("#host-tabs").active == "tab-2"
        await pilot.press("right")  # the arrows stay with the table's cursor
        assert scr.query_one("#host-tabs").active == "tab-2"
        scr.query_one("#pane-2 Log").focus()
        await pilot.press("[")
        assert scr.query_one("#host-tabs").active == "tab-1"


@pytest.mark.asyncio
async def test_at_80_columns_the_log_pane_gets_most_of_the_width() -> None:
    src = synthetic_source(["alpha", "beta"], ["setup", "train"], lines_per_step=5, fixed_ts=1.0)
    scr = RunScreen(src)
    app = _RunApp(scr)
    async with app.run_test(size=(80, 24)) as pilot:
        await _finish(app, scr, pilot)
        left = scr.query_one("#run-left").outer_size.width
        right = scr.query_one("#run-right").outer_size.width
        assert left <= 36 and right >= 44, (left, right)  # was 58 of 80 (57 of them the table)


@pytest.mark.asyncio
async def test_stop_says_run_stopped_and_ssh_hosts_are_not_called_vms() -> None:
    gate = threading.Event()
    scr = RunScreen(_slow_source(gate, "gw@h1", message="interrupted"), recipe_path="r.yaml", vms=False)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        assert gate.wait(10)
        await pilot.press("q")
        while type(app.screen).__name__ != "ChoiceScreen":
            await pilot.pause(0.02)
        await pilot.pause()
        from textual.widgets import Button, Static

        dialog = " ".join([str(w.render()) for w in app.screen.query(Static)] +
                          [str(b.label) for b in app.screen.query(Button)])
        assert "the remote steps will be stopped" in " ".join(dialog.split())
        assert "VM" not in dialog
        await pilot.click("#ans-stop")
        await _finish(app, scr, pilot)
        status = str(scr.query_one("#run-status").render())
        assert "Run stopped" in status and "Run failed" not in status
        assert scr.query_one("#grid").get_cell("train", "gw@h1").startswith("⊘")
    assert "VM" not in scr.leave_message()


@pytest.mark.asyncio
async def test_the_ssh_key_runs_gpuwizard_ssh_for_the_selected_host() -> None:
    """Headless Pilot cannot suspend, so the key says the command to run instead; a real
    terminal suspends the app and runs it (the argv is the documented command line)."""
    src = synthetic_source(["alpha", "beta"], ["setup"], lines_per_step=5, fixed_ts=1.0)
    scr = RunScreen(src, recipe_path="stgcn.yaml")
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        await pilot.press("]", "s")
        await pilot.pause()
        notes = [n.message for n in app._notifications]
        assert any("`gpuwizard ssh stgcn.yaml beta`" in n for n in notes), notes
    assert scr.ssh_argv("beta")[1:] == ["-m", "gpuwizard.cli", "ssh", "stgcn.yaml", "beta"]


# ---------------------------------------------------------------------- real sshd hosts

LINES = 50_000


@pytest.mark.slow
@pytest.mark.asyncio
async def test_four_real_hosts_stream_50k_lines_each(sshd_factory, tmp_path, monkeypatch) -> None:
    """4 sshd hosts x 50,000 lines: every line in the run directory, panes capped, RSS bounded.
    The bound is on what this run adds to the process (peak minus the RSS it started from):
    under pytest-xdist a worker carries what earlier tests left, which is not the run screen's."""
    _reset_peak_rss()
    start_mb = _rss_mb()
    from gpuwizard import recipe as rc
    from gpuwizard.plan import user_step
    from screens.runsource import ExecutorSource

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    hosts = sshd_factory.start(4)
    text = (
        "version: 1\nname: stream-test\n"
        f"target: {{ssh: {{hosts: [{', '.join(h.host_string for h in hosts)}]}}}}\n"
        f"ssh: {{identity: {sshd_factory.client_key}, known_hosts: {sshd_factory.known_hosts}}}\n"
        "steps:\n"
        f"  - {{name: stream, run: \"seq -f 'line %.0f of the stream' 1 {LINES}\"}}\n"
    )
    path = tmp_path / "stream.yaml"
    path.write_text(text)
    recipe = rc.load(str(path))
    src = ExecutorSource(recipe, str(path), steps=[user_step(s) for s in recipe.steps], run_dir=str(tmp_path / "run"))
    scr = RunScreen(src.run, model=RunModel(src.hosts, [], max_lines=2000), max_lines=2000,
                    log_path=src.log_path, recipe_path=str(path))
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        assert scr.model.finished is not None and scr.model.finished.ok, scr.query_one("#run-status").render()
        from textual.widgets import Log

        for pane in scr.query("HostPaneWidget"):
            log = pane.query_one(Log)
            assert 0 < log.line_count <= 2000
            assert log.lines[-1].endswith(f"line {LINES} of the stream") or "stream" in log.lines[-1]
    for h in scr.model.hosts:
        data = open(src.log_path(h), encoding="utf-8").read()
        nums = [ln for ln in data.splitlines() if ln.endswith(" of the stream")]
        assert len(nums) == LINES, (h, len(nums))
        assert nums[0] == "line 1 of the stream" and nums[-1] == f"line {LINES} of the stream"
    peak_mb = _peak_rss_mb()
    assert peak_mb - start_mb < 200, f"peak RSS {peak_mb:.0f} MB, {peak_mb - start_mb:.0f} MB over the start"


@pytest.mark.asyncio
async def test_a_gcp_run_shows_its_cost_and_auto_stop_while_it_runs() -> None:
    """Issue 14: the run screen says what the VMs cost (the one price rule, disk included) and
    what auto-stop will do, beside the progress."""
    from gpuwizard import plan
    from gpuwizard import recipe as rc

    gate = threading.Event()
    slow = _slow_source(gate)
    r = rc.loads("version: 1\nname: t4\ntarget:\n  gcp:\n    zones: [us-central1-a]\n"
                 "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n"
                 "autostop: {idle: 45m}\n", "t4.yaml")

    class Src:
        run = staticmethod(slow)

    scr = RunScreen.for_recipe(r, "t4.yaml", factory=lambda recipe, path: Src())
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        assert gate.wait(10)
        await pilot.pause()
        scr._flush()
        await pilot.pause()
        want = plan.describe_provision(r).hourly
        text = painted(app)
        assert f"${want:.2f}/h while the VMs run" in text
        assert "auto-stop: stops the VM after 45m without use" in text
        scr.cancel.set()


@pytest.mark.asyncio
async def test_a_vm_waited_for_rings_the_bell_and_raises_a_notification(monkeypatch) -> None:
    """`run --wait` on the run screen: when the VM is finally up (maybe hours later) the person
    who walked away hears the bell and sees a toast; the source calls on_ready from its thread."""
    bells: list[int] = []
    desktop: list[tuple[str, str]] = []
    monkeypatch.setattr("screens.run.notify.notify", lambda title, body, **kw: desktop.append((title, body)))

    class Source:
        on_ready = None

        def run(self, sink, cancel):
            sink(ev.RunStarted(run_id="r", recipe="x", hosts=["vm-1"], steps=["s"]))
            self.on_ready("vm-1 is up in us-central1-b after 42 min")
            sink(ev.RunFinished(ok=True))

    src = Source()
    scr = RunScreen(src.run, recipe_path="r.yaml")
    app = _RunApp(scr)
    monkeypatch.setattr(app, "bell", lambda: bells.append(1))
    async with app.run_test(size=SIZE) as pilot:
        await _finish(app, scr, pilot)
        await pilot.pause()
        toasts = [n.message for n in app._notifications]
        assert any("vm-1 is up in us-central1-b after 42 min" in t for t in toasts), toasts
    assert bells == [1]
    assert desktop == [("gpuwizard: your VM is up", "vm-1 is up in us-central1-b after 42 min")]


@pytest.mark.asyncio
async def test_while_no_vm_exists_the_status_line_shows_what_provisioning_does() -> None:
    """`run --wait` on the run screen: the narrow gcp pane cut the waiting line; the status line
    under the panes shows it whole while there is no VM yet (and 'running' once there is)."""
    gate, go = threading.Event(), threading.Event()
    wait = "waiting for T4 in 3 zones: next try in 45 s (attempt 7, 14 min so far)"

    def src(sink, cancel):
        sink(ev.Output(host="gcp", step="provision", stream="stdout", data="us-west1-b: no capacity\n" + wait + "\n"))
        gate.set()
        go.wait(30)
        sink(ev.RunStarted(run_id="r", recipe="x", hosts=["vm-1"], steps=["s"]))
        sink(ev.StepStarted(host="vm-1", step="s"))
        gate.clear()
        gate.set()
        cancel.wait(30)
        sink(ev.RunFinished(ok=False, interrupted=True))

    scr = RunScreen(src, recipe_path="r.yaml", hourly=0.55)
    app = _RunApp(scr)
    async with app.run_test(size=SIZE) as pilot:
        assert await asyncio.to_thread(gate.wait, 10)
        gate.clear()
        await pilot.pause(0.2)
        scr._flush()
        await pilot.pause()
        assert str(scr.query_one("#run-status").render()) == "provisioning: " + wait
        go.set()
        assert await asyncio.to_thread(gate.wait, 10)
        await pilot.pause(0.2)
        scr._flush()
        await pilot.pause()
        assert str(scr.query_one("#run-status").render()).startswith("running · $0.55/h")
        scr.cancel.set()
        await app.workers.wait_for_complete()


def test_the_executor_source_hands_the_screens_ready_callback_to_the_wait(tmp_path, monkeypatch) -> None:
    """The other half of the bell on the run screen: RunScreen sets ExecutorSource.on_ready,
    and the source must pass it to the --wait policy the runner gets (dropping it there would
    leave the screen silent while the test above, with its own source, still passed)."""
    from gpuwizard import recipe as rc
    from gpuwizard import runner
    from gpuwizard.runrequest import RunRequest
    from screens.runsource import ExecutorSource

    path = tmp_path / "w.yaml"
    path.write_text("version: 1\nname: w\ntarget:\n  gcp:\n    zones: [us-central1-a]\n    wait: 1h\n")
    seen = {}

    async def fake_execute(recipe, steps, rd, sink, **kw):  # the runner's seam, not a provider
        seen["wait"] = kw.get("wait")
        return runner.Outcome(ok=True)

    monkeypatch.setattr(runner, "execute", fake_execute)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    src = ExecutorSource(rc.load(str(path)), str(path), steps=[], request=RunRequest(recipe=str(path)))
    src.on_ready = lambda message: None
    src.run(lambda e: None, threading.Event())
    assert seen["wait"] is not None and seen["wait"].on_ready is src.on_ready
