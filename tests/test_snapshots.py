"""SVG snapshots of every screen at 120x40 (pytest-textual-snapshot; Textual pinned to 8.2.8).

Deterministic by construction: offline catalog data only (no credentials, no network),
a fixed recipe, fixed event timestamps on the run screen, no cursor blink, no clocks or
host names. Update after an intended change with ``pytest tests/test_snapshots.py
--snapshot-update`` and review the SVGs in tests/__snapshots__/.
"""

from __future__ import annotations

import pytest

from textual.widgets import Input, TextArea

from gpuwizard import recipe as rc
from screens.app import WizardApp
from tests.builders.wizard import EDITED

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")


def _app(start: str, text: str | None = EDITED) -> WizardApp:
    draft = rc.loads(text, "stgcn.yaml") if text else None
    return WizardApp(draft, path="stgcn.yaml", source_path=None, start=start, live=False)


async def _steady(pilot) -> None:
    """No blinking cursors, every worker done, every message handled."""
    app = pilot.app
    await app.workers.wait_for_complete()
    for w in app.screen.query(Input):
        w.cursor_blink = False
    for w in app.screen.query(TextArea):
        w.cursor_blink = False
    await pilot.pause()


class TestWizardScreens:
    """One snapshot per wizard screen, on the ST-GCN recipe."""

    def test_quota(self, snap_compare) -> None:
        assert snap_compare(_app("quota"), terminal_size=SIZE, run_before=_steady)

    def test_quota_new_draft(self, snap_compare) -> None:
        assert snap_compare(_app("quota", None), terminal_size=SIZE, run_before=_steady)

    def test_quota_existing_hosts(self, snap_compare, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
        """target.ssh: the hosts editor instead of project and quota; Zone and Machine struck."""
        import pathlib

        monkeypatch.setenv("HOME", str(tmp_path))  # "not found on this computer" for the key, everywhere
        text = (pathlib.Path(__file__).parent.parent / "recipes" / "existing-host.yaml").read_text(encoding="utf-8")
        assert snap_compare(_app("quota", text), terminal_size=SIZE, run_before=_steady)

    def test_zone(self, snap_compare) -> None:
        assert snap_compare(_app("zone"), terminal_size=SIZE, run_before=_steady)

    def test_machine(self, snap_compare) -> None:
        assert snap_compare(_app("machine"), terminal_size=SIZE, run_before=_steady)

    def test_driver(self, snap_compare) -> None:
        assert snap_compare(_app("driver"), terminal_size=SIZE, run_before=_steady)

    def test_driver_v100_disabled_reasons(self, snap_compare) -> None:
        text = EDITED.replace("nvidia-tesla-t4", "nvidia-tesla-v100")
        assert snap_compare(_app("driver", text), terminal_size=SIZE, run_before=_steady)

    def test_environment(self, snap_compare) -> None:
        assert snap_compare(_app("environment"), terminal_size=SIZE, run_before=_steady)

    def test_dataset(self, snap_compare) -> None:
        assert snap_compare(_app("dataset"), terminal_size=SIZE, run_before=_steady)

    def test_rclone_dialog(self, snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
        from gpuwizard.rclone import DriveSetup

        # The same picture whether or not this machine has rclone: pretend it has.
        monkeypatch.setattr(DriveSetup, "local_rclone", staticmethod(lambda: "/usr/bin/rclone"))

        async def open_dialog(pilot) -> None:
            await pilot.press("ctrl+r")
            await _steady(pilot)

        assert snap_compare(_app("dataset", None), terminal_size=SIZE, run_before=open_dialog)

    def test_steps(self, snap_compare) -> None:
        assert snap_compare(_app("steps"), terminal_size=SIZE, run_before=_steady)

    def test_review(self, snap_compare) -> None:
        assert snap_compare(_app("review"), terminal_size=SIZE, run_before=_steady)

    def test_review_without_steps_of_your_own(self, snap_compare) -> None:
        """Run now is off, and the box that turns it on is shown."""
        text = EDITED.split("steps:")[0]
        assert snap_compare(_app("review", text), terminal_size=SIZE, run_before=_steady)

    def test_help(self, snap_compare) -> None:
        async def open_help(pilot) -> None:
            await _steady(pilot)
            await pilot.press("f1")
            await _steady(pilot)

        assert snap_compare(_app("zone"), terminal_size=SIZE, run_before=open_help)


class TestWizardAt80x24:
    """The smallest terminal the wizard supports: every step stays in the step bar."""

    def test_quota(self, snap_compare) -> None:
        assert snap_compare(_app("quota"), terminal_size=(80, 24), run_before=_steady)

    def test_steps(self, snap_compare) -> None:
        assert snap_compare(_app("steps"), terminal_size=(80, 24), run_before=_steady)


class TestRunScreen:
    """The run screen after a deterministic synthetic run with one failure."""

    def test_run_failed(self, snap_compare) -> None:
        from screens.run import RunScreen
        from screens.runapp import RunApp as _RunApp
        from screens.runmodel import synthetic_source

        src = synthetic_source(["vm-1", "vm-2", "vm-3", "vm-4"], ["drivers", "cuda", "venv", "dataset", "train"],
                               lines_per_step=40, chunk_lines=20, fail=("vm-3", "dataset"), fixed_ts=1_000.0)
        app = _RunApp(RunScreen(src, title="run stgcn.yaml", recipe_path="stgcn.yaml", hourly=2.16, max_lines=500))

        async def done(pilot) -> None:
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            pilot.app.run_screen._flush()
            await pilot.pause()
            pilot.app.clear_notifications()
            await pilot.pause()

        assert snap_compare(app, terminal_size=SIZE, run_before=done)
