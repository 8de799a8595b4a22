"""The full-log view: a virtual view over a real run directory (written by
:class:`gpuwizard.runlog.RunDir` from executor events), with step headers, search, and
opening at the end or at the failure (issue 11)."""

from __future__ import annotations

import pathlib
import re
import time

import pytest

from gpuwizard import events as ev
from gpuwizard.runlog import RunDir
from screens.fulllog import FullLogScreen, LogView
from screens.logindex import LogIndex
from screens.run import RunScreen
from screens.runapp import RunApp

HOST = "gw@127.0.0.1:2222"


def write_run(tmp_path: pathlib.Path, steps: list[tuple[str, int, str, int | None]]) -> pathlib.Path:
    """A run directory whose host ran ``steps`` = (name, lines, status, exit code); each
    line says its step and number. Returns the host log's path."""
    rd = RunDir.create(None, "version: 1\n", "t", path=tmp_path / "run")
    rd(ev.RunStarted(run_id=rd.run_id, recipe="t", hosts=[HOST], steps=[s[0] for s in steps]))
    for name, n, status, code in steps:
        rd(ev.StepStarted(host=HOST, step=name))
        data = "".join(f"{name} line {i}\n" for i in range(1, n + 1))
        for k in range(0, len(data), 1 << 16):
            rd(ev.Output(host=HOST, step=name, stream="stdout", data=data[k:k + (1 << 16)]))
        rd(ev.StepFinished(host=HOST, step=name, status=status, exit_code=code))
    rd.close()
    return rd.host_log_path(HOST)


# ---------------------------------------------------------------------- the index, no terminal


def test_index_rows_are_lines_with_a_header_before_each_step(tmp_path) -> None:
    log = write_run(tmp_path, [("setup", 3, "ok", 0), ("train", 4, "failed", 2)])
    idx = LogIndex(log, HOST)
    idx.scan()
    assert idx.lines == 7 and idx.rows == 9
    rows = [idx.text(r) for r in range(idx.rows)]
    assert rows[0] == "── setup · attempt 1 · ok, exit 0 ──"
    assert rows[1:4] == ["setup line 1", "setup line 2", "setup line 3"]
    assert rows[4] == "── train · attempt 1 · failed, exit 2 ──"
    assert rows[8] == "train line 4"
    assert idx.failure_row() == 8  # the failed step's last line
    assert idx.find("TRAIN LINE 2", -1) == 6
    assert idx.find("line 1", 6, forward=False) == 5
    assert idx.find("line 1", 5, forward=False) == 1
    assert idx.find("nowhere", -1) is None
    idx.close()


def test_index_follows_a_growing_log_and_an_unfinished_line(tmp_path) -> None:
    log = tmp_path / "h.log"
    log.write_bytes(b"one\ntw")
    idx = LogIndex(log)
    idx.scan()
    assert idx.lines == 2 and idx.text(1) == "tw"
    with open(log, "ab") as fh:
        fh.write(b"o\nthree\n")
    assert idx.scan()
    assert [idx.text(r) for r in range(idx.rows)] == ["one", "two", "three"]
    assert not idx.scan()
    idx.close()


def test_search_crosses_chunk_boundaries(tmp_path, monkeypatch) -> None:
    import screens.logindex as li

    monkeypatch.setattr(li, "CHUNK", 16)  # a needle split over two reads, both ways
    log = tmp_path / "h.log"
    log.write_bytes(b"aaaaaaaaaaaa\nbbbbbNEEDLEbbbb\ncccccccccccc\n")
    idx = LogIndex(log)
    idx.scan()
    assert idx.find("needle", -1) == 1
    assert idx.find("needle", idx.rows, forward=False) == 1
    idx.close()


# ---------------------------------------------------------------------- the screen


def _screen_text(app) -> str:
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


async def _indexed(app, pilot) -> FullLogScreen:
    deadline = time.monotonic() + 30
    while not (isinstance(app.screen, FullLogScreen) and app.screen.index is not None):
        assert time.monotonic() < deadline, "the full log was not indexed"
        await pilot.pause(0.02)
    await pilot.pause()
    await pilot.pause()
    return app.screen


def _noop(sink, cancel) -> None:
    sink(ev.RunFinished(ok=True))


async def _open(app, pilot, screen: FullLogScreen) -> FullLogScreen:
    await pilot.pause()
    app.push_screen(screen)
    return await _indexed(app, pilot)


@pytest.mark.asyncio
async def test_full_log_opens_at_the_failure_with_step_headers_and_searches(tmp_path) -> None:
    log = write_run(tmp_path, [("setup", 2000, "ok", 0), ("train", 20, "failed", 7), ("eval", 2000, "not_run", None)])
    app = RunApp(RunScreen(_noop))
    async with app.run_test(size=(100, 30)) as pilot:
        scr = await _open(app, pilot, FullLogScreen(str(log), host=HOST, at_failure=True))
        view = scr.query_one(LogView)
        screen = _screen_text(app)
        assert "train line 20" in screen and "setup line 1\n" not in screen + "\n"  # at the failure, not line 1
        assert view.cursor == scr.index.failure_row()
        assert "── train · attempt 1 · failed, exit 7 ──" in screen  # the failed step's header, in view
        await pilot.press("slash", *"train line 5", "enter")
        await pilot.pause()
        assert any("not found below" in n.message for n in app._notifications)  # nothing after the failure
        await pilot.press("N")
        assert scr.index.text(view.cursor) == "train line 5"
        assert "train line 5 " in _screen_text(app)
        await pilot.press("home")
        await pilot.pause()
        assert "── setup · attempt 1 · ok, exit 0 ──" in _screen_text(app)
        await pilot.press("n")  # the cursor is off screen: forward from the window finds train line 5 again
        assert scr.index.text(view.cursor) == "train line 5"
        app.clear_notifications()
        await pilot.press("G", "n")  # G goes to the end and drops the cursor: nothing below
        assert view.cursor is None and view.is_vertical_scroll_end
        assert any("not found below" in n.message for n in app._notifications)


@pytest.mark.asyncio
async def test_search_after_home_starts_from_the_window_not_the_unseen_failure_row(tmp_path) -> None:
    """Review: opened at the failure (the cursor there), Home, then `/` for a line of the
    first step said "not found below this line" while line 1 was on screen."""
    log = write_run(tmp_path, [("setup", 2000, "ok", 0), ("train", 20, "failed", 7)])
    app = RunApp(RunScreen(_noop))
    async with app.run_test(size=(100, 30)) as pilot:
        scr = await _open(app, pilot, FullLogScreen(str(log), host=HOST, at_failure=True))
        view = scr.query_one(LogView)
        await pilot.press("home")
        await pilot.pause()
        assert re.search(r"^setup line 1 *$", _screen_text(app), re.M)  # line 1 on screen
        await pilot.press("slash", *"setup line 1500", "enter")
        await pilot.pause()
        assert not any("not found" in n.message for n in app._notifications)
        assert view.cursor is not None and scr.index.text(view.cursor) == "setup line 1500"
        assert "setup line 1500" in _screen_text(app)


@pytest.mark.asyncio
async def test_full_log_opens_at_the_end_of_a_long_log_without_loading_it(tmp_path) -> None:
    log = write_run(tmp_path, [("big", 200_000, "ok", 0)])
    app = RunApp(RunScreen(_noop))
    async with app.run_test(size=(100, 30)) as pilot:
        scr = await _open(app, pilot, FullLogScreen(str(log), host=HOST))
        screen = _screen_text(app)
        assert "big line 200000" in screen and "── big" not in screen
        assert scr.index._line.cache_info().currsize < 200  # only what was drawn was read
        await pilot.press("slash", *"big line 17", "enter")
        await pilot.pause()
        # from the window (at the end) forward there is no match; the search says so
        assert any("not found" in n.message for n in app._notifications)
        await pilot.press("N")
        await pilot.pause()
        assert scr.index.text(scr.query_one(LogView).cursor) == "big line 179999"
        await pilot.press("N")
        assert scr.index.text(scr.query_one(LogView).cursor) == "big line 179998"


@pytest.mark.asyncio
async def test_o_on_the_run_screen_opens_the_hosts_log_at_its_failure(tmp_path) -> None:
    rd = RunDir.create(None, "version: 1\n", "t", path=tmp_path / "run")
    other = "gw@127.0.0.1:2223"

    def source(sink, cancel) -> None:
        def both(e: ev.Event) -> None:
            rd(e)
            sink(e)
        both(ev.RunStarted(run_id=rd.run_id, recipe="t", hosts=[other, HOST], steps=["train"]))
        for h, status in ((other, "ok"), (HOST, "failed")):
            both(ev.StepStarted(host=h, step="train"))
            both(ev.Output(host=h, step="train", stream="stdout",
                           data="".join(f"{h} line {i}\n" for i in range(1, 500))))
            both(ev.StepFinished(host=h, step="train", status=status, exit_code=0 if status == "ok" else 9))
        both(ev.RunFinished(ok=False))
        rd.close()

    scr = RunScreen(source, log_path=lambda h: str(rd.host_log_path(h)))
    app = RunApp(scr)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        scr._flush()
        await pilot.press("e", "o")
        log = await _indexed(app, pilot)
        assert log.host == HOST and log.at_failure
        assert f"{HOST} line 499" in _screen_text(app)
        assert "failed, exit 9" in _screen_text(app).splitlines()[0]  # the head names the failed step
        await pilot.press("escape")
        assert app.screen is scr


@pytest.mark.asyncio
async def test_full_log_follows_lines_a_running_step_appends(tmp_path) -> None:
    log = tmp_path / "h.log"
    log.write_text("".join(f"early line {i}\n" for i in range(1, 200)))
    app = RunApp(RunScreen(_noop))
    async with app.run_test(size=(100, 30)) as pilot:
        await _open(app, pilot, FullLogScreen(str(log), host=HOST))
        assert "early line 199" in _screen_text(app)
        with open(log, "a") as fh:
            fh.write("".join(f"later line {i}\n" for i in range(1, 100)))
        deadline = time.monotonic() + 30
        while "later line 99" not in _screen_text(app):  # the view was at the end: it stays there
            assert time.monotonic() < deadline, _screen_text(app)
            await pilot.pause(0.1)
