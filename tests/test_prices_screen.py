"""The Zone screen prices each zone in its own region (issue 15), read from the rendered
table as a person sees it: live prices from the fake Billing Catalog (through the screen's
own worker), and the snapshot, dated, when there are none."""

from __future__ import annotations

import pytest

from gpuwizard import catalog
from gpuwizard import recipe as rc
from screens.app import WizardApp
from screens.live import ProjectInfo
from tests.builders.wizard import EDITED

pytestmark = pytest.mark.asyncio
SIZE = (140, 40)


async def _settle(app: WizardApp, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _rendered(app: WizardApp) -> dict[str, tuple[str, str]]:
    """zone -> (region, $/h) as the table renders them."""
    table = app.screen.query_one("#zones")
    rows = [table.get_row_at(i) for i in range(table.row_count)]
    return {str(r[1]): (str(r[2]), str(r[4])) for r in rows}


def _want(region: str) -> catalog.Price:
    return catalog.vm_price("n1-standard-8", "nvidia-tesla-t4", 1, True, 150, "pd-balanced", region=region)


async def test_the_zone_screen_loads_live_prices_and_two_regions_differ(fake_billing, fake_compute) -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="zone", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert catalog.live_prices() is None
        # As the wizard's start-up check leaves it when credentials work: online, live data on.
        app.live.project = ProjectInfo(fake_compute.project, True)
        app.live_enabled = True
        app.screen.refresh_live()  # what the screen runs after mounting: live zones and live prices
        await _settle(app, pilot)
        assert app.screen.live_rows
        assert fake_billing.sku_requests() > 0 and catalog.live_prices() is not None
        rows = _rendered(app)
        us, eu = rows["us-central1-a"], rows["europe-west1-b"]
        assert us[1] != eu[1]
        for zone, (region, shown) in rows.items():
            assert shown == f"{_want(region).per_hour:.2f}", zone
        assert _want("europe-west1").source.startswith("live list prices of")
        title = str(app.screen.query_one("#zone-title").render())
        assert "n1-standard-8 + 1 x T4 + 150 GB pd-balanced, in each zone's region, live list prices of" in title


async def test_offline_the_zone_screen_shows_snapshot_prices_and_their_date() -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="zone", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        rows = _rendered(app)
        assert rows["us-central1-a"][1] != rows["europe-west2-a"][1]
        snap = catalog.meta("prices")["snapshot"]
        assert f"catalog prices of {snap}" in str(app.screen.query_one("#zone-title").render())
