"""Nodes named by rank in the front ends: the run screen (tabs, table columns, pane
heads) and the headless lines ("node 0 (head) HOST"), from RunStarted.ranks."""

from __future__ import annotations

import io
import threading

import pytest
from textual.widgets import Select

from gpuwizard import events as ev
from gpuwizard import recipe as rc
from gpuwizard.headless import LineRenderer
from screens.app import WizardApp
from screens.run import RunScreen
from screens.runapp import RunApp

HOSTS = ["ddp-run-0", "ddp-run-1", "ddp-run-2"]
RANKS = {h: i for i, h in enumerate(HOSTS)}


def cluster_run(sink, cancel=None) -> None:
    """A finished 3-node run: a head-only step, then a gang step node 1 failed first
    (its result comes first; the others were stopped after)."""
    sink(ev.RunStarted(run_id="r", recipe="ddp", hosts=list(HOSTS), steps=["user.prep", "user.train"],
                       ranks=dict(RANKS), host_steps={HOSTS[0]: ["user.prep", "user.train"],
                                                      HOSTS[1]: ["user.train"], HOSTS[2]: ["user.train"]}, ts=1.0))
    sink(ev.StepStarted(host=HOSTS[0], step="user.prep", ts=1.0))
    sink(ev.StepFinished(host=HOSTS[0], step="user.prep", status="ok", ts=1.0))
    for h in HOSTS:
        sink(ev.StepStarted(host=h, step="user.train", ts=1.0))
        sink(ev.Output(host=h, step="user.train", stream="stdout", data=f"epoch 1 on {h}\npartial", ts=1.0))
    why = "node 1 (ddp-run-1) failed first (exit code 1); the step was stopped on every node"
    for h in (HOSTS[1], HOSTS[0], HOSTS[2]):
        sink(ev.StepFinished(host=h, step="user.train", status="failed", exit_code=1 if h == HOSTS[1] else None,
                             message=why, ts=1.0))
        sink(ev.HostFinished(host=h, ok=False, message=f"user.train failed: {why}", ts=1.0))
    sink(ev.RunFinished(ok=False, ts=1.0))


def test_headless_lines_name_nodes_by_rank():
    out = io.StringIO()
    cluster_run(LineRenderer(out))
    text = out.getvalue()
    assert text.startswith("run r: 3 node(s), 2 step(s)\n")
    assert "[node 0 (head) ddp-run-0] user.train: FAILED (0.0s): node 1 (ddp-run-1) failed first" in text
    assert "[node 1 ddp-run-1] user.train: FAILED, exit code 1" in text
    # every line of a node names it by rank, its output and "started" lines too: three
    # nodes on one address differ only by port otherwise
    for line in text.splitlines():
        if line.startswith("[") and "ddp-run-" in line.split("]")[0]:
            assert line.startswith("[node "), line
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
        table = scr.query_one("#grid")
        assert [str(c.label) for c in table.columns.values()][1:] == ["node 0 (head)", "node 1", "node 2"]
        head = str(scr.query_one("#pane-0 .pane-head").render())
        assert head.startswith("✗ node 0 (head) ddp-run-0")
        # the head-only step is not "pending" on the workers: it is not theirs
        assert table.get_cell("user.prep", HOSTS[1]).strip() == "" and table.get_cell("user.prep", HOSTS[0]) != ""
        summary = str(scr.query_one("#run-summary").render())
        assert summary.startswith("3 nodes x 2 steps") and "pending" not in summary
        status = str(scr.query_one("#run-status").render())
        assert "Run failed (user.train on node 1 ddp-run-1)" in status  # the node that broke it, by rank


def _draft(cluster: bool) -> rc.Recipe:
    text = ("version: 1\nname: ddp\ntarget:\n  ssh:\n    hosts: [u@10.0.0.1, u@10.0.0.2]\n"
            "steps:\n  - {name: prep, run: echo prep}\n") + ("cluster: {}\n" if cluster else "")
    return rc.loads(text, "ddp.yaml")


@pytest.mark.asyncio
async def test_steps_screen_sets_on_for_a_cluster_and_hides_it_otherwise(tmp_path):
    out = tmp_path / "ddp.yaml"
    app = WizardApp(_draft(True), path=str(out), start="steps", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        scr = app.screen
        on = scr.query_one("#step-on", Select)
        assert on.display and on.value == "all"
        on.focus()
        await pilot.press("enter", "down", "enter")  # open, the next choice (head), pick it
        await pilot.pause()
        assert scr.steps[0].on == "head"
        assert "1. prep [head]: echo prep" in str(scr.query_one("#steps-list").get_option_at_index(0).prompt)
        await pilot.press("ctrl+n")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+s")
        await pilot.pause()
        await app.workers.wait_for_complete()
    assert rc.load(str(out)).steps[0].on == "head"

    app = WizardApp(_draft(False), path=str(tmp_path / "plain.yaml"), start="steps", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not app.screen.query_one("#step-on", Select).display


@pytest.mark.asyncio
async def test_a_cluster_warning_shows_on_review_and_blocks_nothing(tmp_path):
    # launcher torchrun without env.torch, retries on a torchrun step: warnings (validate
    # exits 0); the wizard must show them as such and still go on and save
    text = ("version: 1\nname: ddp\ntarget:\n  ssh:\n    hosts: [u@10.0.0.1, u@10.0.0.2]\n"
            "steps:\n  - {name: train, run: gpuwizard torchrun -- train.py, retries: 1}\ncluster: {launcher: torchrun}\n")
    out = tmp_path / "ddp.yaml"
    app = WizardApp(rc.loads(text, "ddp.yaml"), path=str(out), start="steps", live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.screen.valid, app.screen.problems()
        await pilot.press("ctrl+n")
        await pilot.pause()
        await app.workers.wait_for_complete()
        scr = app.screen
        shown = str(scr.query_one("#problems").render())
        assert scr.valid, scr.problems()
        assert "No problems found." in shown and "warning: cluster.launcher: launcher torchrun runs torchrun" in shown
        assert "warning: steps[0].retries: a step that calls `gpuwizard torchrun` is not retried" in shown
        await pilot.press("ctrl+s")
        await pilot.pause()
        await app.workers.wait_for_complete()
    assert rc.load(str(out)).cluster.launcher == "torchrun"


@pytest.mark.asyncio
async def test_a_node_column_widens_to_show_its_whole_cell():
    # "node 1" is six characters: a column as wide as its label cut "▶ running" to "▶ runn"
    shown = threading.Event()

    def source(sink, cancel=None) -> None:
        sink(ev.RunStarted(run_id="r", recipe="ddp", hosts=list(HOSTS), steps=["user.train"], ranks=dict(RANKS),
                           ts=1.0))
        assert shown.wait(30)  # the table is built with the cells pending, as in a real run
        for h in HOSTS:
            sink(ev.StepStarted(host=h, step="user.train", ts=1.0))

    scr = RunScreen(source, recipe_path="ddp.yaml", vms=True)
    app = RunApp(scr)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        scr._flush()
        await pilot.pause()
        assert list(scr.query_one("#grid").columns)[1:] == HOSTS
        shown.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        scr._flush()
        await pilot.pause()
        table = scr.query_one("#grid")
        for h in HOSTS:
            cell = str(table.get_cell("user.train", h))
            assert cell == "▶ running" and table.columns[h].get_render_width(table) >= len(cell) + 2, h


@pytest.mark.asyncio
async def test_the_steps_list_shows_where_a_step_runs_as_written(tmp_path):
    # "[head]" (and "[root]", and a command's own brackets) in a list prompt were read as
    # markup and vanished: the list showed "1. prep : python train.py --layers"
    text = ("version: 1\nname: ddp\ntarget:\n  ssh:\n    hosts: [u@10.0.0.1, u@10.0.0.2]\ncluster: {}\n"
            "steps:\n  - {name: prep, run: 'python train.py --layers [1,2]', on: workers, sudo: true}\n")
    app = WizardApp(rc.loads(text, "ddp.yaml"), path=str(tmp_path / "ddp.yaml"), start="steps", live=False)

    def shown(scr) -> str:
        ol = scr.query_one("#steps-list")
        lines = ("".join(seg.text for seg in strip).strip(" ▊▎") for strip in ol.render_lines(ol.region.reset_offset))
        return " ".join(" ".join(lines).split())  # the list wraps long lines

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        scr = app.screen
        assert "1. prep [root] [workers]: python train.py --layers [1,2]" in shown(scr), shown(scr)
        scr.query_one("#step-on", Select).value = "head"  # the edited prompt too
        await pilot.pause()
        assert scr.steps[0].on == "head"
        assert "1. prep [root] [head]: python train.py --layers [1,2]" in shown(scr), shown(scr)
