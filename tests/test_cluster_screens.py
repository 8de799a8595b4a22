"""Nodes named by rank in the front ends: the run screen (tabs, table columns, pane
heads) and the headless lines ("node 0 (head) HOST"), from RunStarted.ranks."""

from __future__ import annotations

import io

import pytest

from gpuwizard import events as ev
from gpuwizard.headless import LineRenderer
from screens.run import RunScreen
from screens.runapp import RunApp

HOSTS = ["ddp-run-0", "ddp-run-1", "ddp-run-2"]
RANKS = {h: i for i, h in enumerate(HOSTS)}


def cluster_run(sink, cancel=None) -> None:
    """A finished 3-node run whose gang step failed on node 1."""
    sink(ev.RunStarted(run_id="r", recipe="ddp", hosts=list(HOSTS), steps=["user.train"], ranks=dict(RANKS), ts=1.0))
    for h in HOSTS:
        sink(ev.StepStarted(host=h, step="user.train", ts=1.0))
    why = "node 1 (ddp-run-1) failed first (exit code 1); the step was stopped on every node"
    for h in HOSTS:
        sink(ev.StepFinished(host=h, step="user.train", status="failed", exit_code=1 if h == HOSTS[1] else None,
                             message=why, ts=1.0))
        sink(ev.HostFinished(host=h, ok=False, message=f"user.train failed: {why}", ts=1.0))
    sink(ev.RunFinished(ok=False, ts=1.0))


def test_headless_lines_name_nodes_by_rank():
    out = io.StringIO()
    cluster_run(LineRenderer(out))
    text = out.getvalue()
    assert text.startswith("run r: 3 node(s), 1 step(s)\n")
    assert "[node 0 (head) ddp-run-0] user.train: FAILED (0.0s): node 1 (ddp-run-1) failed first" in text
    assert "[node 1 ddp-run-1] user.train: FAILED, exit code 1" in text
    table = text.split("\n\n")[-2]
    assert [row.split("  ")[0] for row in table.splitlines()[1:]] == [
        "node 0 (head) ddp-run-0", "node 1 ddp-run-1", "node 2 ddp-run-2"]


@pytest.mark.asyncio
async def test_run_screen_shows_nodes_with_their_rank():
    scr = RunScreen(cluster_run, recipe_path="ddp.yaml", vms=True)
    app = RunApp(scr)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        scr._flush()
        await pilot.pause()
        tabs = [str(t.label) for t in scr.query("#host-tabs Tab")]
        assert tabs == ["node 0 (head) ddp-run-0", "node 1 ddp-run-1", "node 2 ddp-run-2"]
        columns = [str(c.label) for c in scr.query_one("#grid").columns.values()][1:]
        assert columns == tabs
        head = str(scr.query_one("#pane-0 .pane-head").render())
        assert head.startswith("✗ node 0 (head) ddp-run-0")
