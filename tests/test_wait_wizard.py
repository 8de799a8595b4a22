"""The wizard's Machine screen: how to get the GPU (on-demand / spot / reservation /
flex-start, one line each) and what a stockout does (target.gcp.wait)."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from gpuwizard import recipe as rc
from screens.app import WizardApp
from tests.builders.wizard import EDITED

SIZE = (120, 40)
pytestmark = pytest.mark.asyncio


async def _settle(app: WizardApp, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _app(text: str = EDITED) -> WizardApp:
    return WizardApp(rc.loads(text, "r.yaml"), path="r.yaml", source_path=None, start="machine", live=False)


async def test_each_way_is_explained_in_one_line_and_the_spot_recipe_starts_on_spot(monkeypatch) -> None:
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        model = app.screen.query_one("#model", Select)
        assert model.value == "spot"   # EDITED has spot: true
        labels = [str(label) for label, _value in model._options if _value is not Select.BLANK]
        # each way named first, with what it costs and risks, on one line
        assert [line.split(":")[0] for line in labels] == ["On-demand", "Spot", "Reservation", "Flex-start (DWS)"]
        assert "preemption" in labels[1] and "deleted" in labels[3] and "max_run" in labels[3]
        assert all("\n" not in line and len(line) < 110 for line in labels)
        assert app.screen.query_one("#model-detail", Input).disabled


async def test_flex_start_on_n1_keeps_next_disabled_with_the_cores_reason(monkeypatch) -> None:
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        scr.query_one("#model", Select).value = "flex-start"
        await _settle(app, pilot)
        assert not scr.query_one("#model-detail", Input).disabled
        assert scr.query_one("#model-detail", Input).value == "4h"
        assert not scr.valid and "n1-standard-8 cannot be flex-start" in scr.reason


async def test_a_reservation_and_a_wait_are_written_to_the_recipe(monkeypatch) -> None:
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        scr.query_one("#model", Select).value = "reservation"
        await _settle(app, pilot)
        assert not scr.valid and "name the reservation" in scr.reason
        scr.query_one("#model-detail", Input).value = "team-t4"
        scr.query_one("#wait", Select).value = "6h"
        await _settle(app, pilot)
        assert scr.valid, scr.reason
        await pilot.press("ctrl+n")
        await _settle(app, pilot)
        assert app.screen.NAME == "driver"
    g = app.draft.target.gcp
    assert (g.spot, g.reservation, g.flex_start, g.wait) == (False, "team-t4", None, "6h")
    text = rc.dumps(app.draft)
    assert "reservation: team-t4" in text and "wait: 6h" in text


async def test_the_machine_screen_makes_a_cluster_and_the_steps_screen_then_offers_runs_on(monkeypatch) -> None:
    """Issue 16 from the wizard: a newcomer can turn the VMs into one cluster without editing
    YAML; the recipe gets cluster.nodes (target.gcp.count stays 1, as validate insists), fewer
    than 2 nodes keeps Next disabled with the reason, and the Steps screen then shows 'Runs on'."""
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        scr.query_one("#model", Select).value = "on-demand"
        scr.query_one("#layout", Select).value = "cluster"
        scr.query_one("#vms", Input).value = "1"
        await _settle(app, pilot)
        assert not scr.valid and "a cluster has 2 to 64 nodes" in scr.reason
        scr.query_one("#vms", Input).value = "3"
        await _settle(app, pilot)
        assert scr.valid, scr.reason
        assert "a cluster of 3 nodes" in str(scr.query_one("#cost").render())
        await pilot.press("ctrl+n")
        await _settle(app, pilot)
        assert app.draft.cluster is not None and app.draft.cluster.nodes == 3
        assert app.draft.target.gcp.count == 1
    text = rc.dumps(app.draft)
    assert "cluster:" in text and "nodes: 3" in text
    r, problems = rc.parse(text, "r.yaml")
    assert r is not None and not [p for p in problems if not p.warning], problems
    steps = WizardApp(r, path="r.yaml", source_path=None, start="steps", live=False)
    async with steps.run_test(size=SIZE) as pilot:
        await _settle(steps, pilot)
        assert steps.screen.query_one("#step-on", Select).display
    # and back: independent VMs remove the cluster
    app = _app(text)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert app.screen.query_one("#layout", Select).value == "cluster"
        assert app.screen.query_one("#vms", Input).value == "3"
        app.screen.query_one("#layout", Select).value = "independent"
        await _settle(app, pilot)
        await pilot.press("ctrl+n")
        await _settle(app, pilot)
    assert app.draft.cluster is None and app.draft.target.gcp.count == 3
