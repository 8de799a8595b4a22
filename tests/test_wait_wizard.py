"""The wizard's Machine screen: how to get the GPU (on-demand / spot / reservation /
flex-start, one line each) and what a stockout does (target.gcp.wait)."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from gpuwizard import recipe as rc
from gpuwizard.gcp import consumption
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
        assert labels == [consumption.EXPLAIN[m] for m in ("on-demand", "spot", "reservation", "flex-start")]
        assert all("\n" not in line for line in labels)
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
