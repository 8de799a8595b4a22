"""Defects found by the adversarial review of the wizard (issues 11 and 13), each a test
that failed before its fix."""

from __future__ import annotations

import time

import pytest

from screens.app import WizardApp

SIZE = (120, 40)


async def _settle(app: WizardApp, pilot) -> None:
    deadline = time.monotonic() + 30
    while not app.screen.is_mounted:
        assert time.monotonic() < deadline
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.mark.asyncio
@pytest.mark.parametrize("host, says", [
    ("gw@gpu-box:99999", "port 99999 is out of range"),
    ("gw@gpu-box:0", "port 0 is out of range"),
    ("gw@" + "a" * 500, "a DNS name is at most 253"),
], ids=["port-99999", "port-0", "500-chars"])
async def test_quota_screen_refuses_hosts_validate_refuses(tmp_path, host: str, says: str) -> None:
    """The Quota screen's SSH hosts passed the shape check only: a port out of range or a
    500-character host name enabled Next, and `gpuwizard validate` refused the saved recipe."""
    app = WizardApp(path=str(tmp_path / "r.yaml"), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        scr.query_one("#target").value = "ssh"
        await pilot.pause()
        scr.query_one("#ssh-hosts").text = f"ubuntu@203.0.113.7\n{host}\n"
        await pilot.pause()
        assert not scr.valid
        assert says in str(scr.query_one("#err-hosts").render())
