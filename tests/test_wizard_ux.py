"""Where a new user got stuck in the wizard (issue 11), each driven by Pilot as a person
would: keys, not widget assignments, wherever a key exists.

The Steps screen and Review's "Run now" gate; "Save to" that keeps what is typed; Ctrl+Q
that asks; a focused control on every screen; F1 help; the step bar at 80 columns;
checkbox glyphs; one price on Zone and Machine. Tests wait on workers and messages,
never on sleeps.
"""

from __future__ import annotations

import re

import pytest

from gpuwizard import catalog
from gpuwizard import recipe as rc
from screens import WIZARD_STEPS
from screens.app import WizardApp
from screens.dialogs import ChoiceScreen, HelpScreen
from screens.steps import preset_steps
from tests.builders.wizard import EDITED

SIZE = (120, 40)

pytestmark = pytest.mark.asyncio


async def _settle(app: WizardApp, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _hosts_draft() -> rc.Recipe:
    """An existing-host recipe with no steps of its own (the issue's "plan: 0 steps")."""
    return rc.loads("version: 1\nname: hosts\ntarget:\n  ssh:\n    hosts: [gpu-box]\ndriver: {branch: \"580\"}\n",
                    "hosts.yaml")


async def test_steps_screen_adds_edits_reorders_and_removes_with_keys(tmp_path) -> None:
    out = tmp_path / "hosts.yaml"
    app = WizardApp(_hosts_draft(), path=str(out), start="steps", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert scr.NAME == "steps" and scr.steps == [] and scr.valid
        await pilot.press("ctrl+a")  # a new step; the command editor has focus
        await _settle(app, pilot)
        assert app.focused is scr.query_one("#step-run")
        assert not scr.valid and "empty command" in scr.reason
        await pilot.press(*"python train.py \\", "enter", *"  --epochs 80")
        await pilot.pause()
        assert scr.valid, scr.reason
        scr.query_one("#step-timeout").focus()
        await pilot.press(*"2h", "tab", "tab", "space")  # timeout, (command), then the sudo box
        await pilot.pause()
        assert scr.query_one("#step-sudo").value
        await pilot.press("ctrl+a")
        await pilot.press(*"echo second")
        await pilot.pause()
        await pilot.press("alt+up")  # the second step goes first
        await pilot.pause()
        assert [s.name for s in scr.steps] == ["step-2", "train"]
        await pilot.press("ctrl+a")
        await pilot.press(*"echo third")
        await pilot.press("ctrl+d")  # removes the selected (third) step
        await pilot.pause()
        assert [s.name for s in scr.steps] == ["step-2", "train"]
        await pilot.press("ctrl+n")
        await _settle(app, pilot)
        assert app.screen.NAME == "review"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
    saved = rc.load(str(out))
    assert [s.name for s in saved.steps] == ["step-2", "train"]
    train = saved.steps[1]
    assert train.run == "python train.py \\\n  --epochs 80" and train.timeout == 7200 and train.sudo


async def test_steps_preset_offers_the_stgcn_training_step() -> None:
    """The preset's steps come from gpuwizard.presets (the shipped stgcn-t4 recipe equals
    it): the smoke test and the training command."""
    from gpuwizard.presets import STGCN_TRAIN
    from gpuwizard.shipped import resolve

    shipped = rc.load(resolve("stgcn-t4"))
    assert [(s.name, s.run) for s in preset_steps(shipped)] == [(s.name, s.run) for s in shipped.steps]
    app = WizardApp(rc.loads(EDITED.split("steps:")[0], "x.yaml"), start="steps", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert [(s.name, s.run) for s in app.screen.steps][-1] == ("train", STGCN_TRAIN)
        n = len(app.screen.steps)
        await pilot.press("ctrl+t")  # twice adds nothing twice
        await pilot.pause()
        assert len(app.screen.steps) == n


async def test_review_keeps_run_now_off_for_a_plan_with_none_of_your_steps() -> None:
    app = WizardApp(_hosts_draft(), start="review", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert scr.valid, scr.reason  # saving is fine
        assert scr.query_one("#run-now").disabled and scr.check_action("run_now", ()) is None
        assert "none of your own steps" in str(scr.query_one("#problems").render())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen is scr  # no run started
        scr.query_one("#run-anyway").focus()
        await pilot.press("space")  # "run it anyway"
        await pilot.pause()
        assert not scr.query_one("#run-now").disabled and scr.check_action("run_now", ()) is True
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="review", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert not app.screen.query_one("#run-now").disabled
        assert not app.screen.query_one("#run-anyway").display


async def test_save_to_keeps_what_is_typed_for_a_new_recipe() -> None:
    app = WizardApp(_hosts_draft(), start="review", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        path = scr.query_one("#path")
        assert path.value == "hosts.yaml"
        path.focus()
        await pilot.press("ctrl+u", *"runs/mine.yaml")
        await pilot.pause()
        assert path.value == "runs/mine.yaml"
        scr.query_one("#name").focus()
        await pilot.press("end", *"-two")  # a name change no longer rewrites a typed path
        await pilot.pause()
        assert scr.query_one("#name").value == "hosts-two" and path.value == "runs/mine.yaml"


async def test_ctrl_q_asks_before_throwing_changes_away(tmp_path) -> None:
    app = WizardApp(live=False, path=str(tmp_path / "x.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        await pilot.press("ctrl+n")  # the first screen proposed values: the draft changed
        await _settle(app, pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen) and "unsaved changes" in app.screen.question
        await pilot.press("escape")  # cancel: keep editing
        await pilot.pause()
        assert app.is_running and app.screen.NAME == "zone"
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#ans-save")
        await _settle(app, pilot)
        assert app.screen.NAME == "review"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        await pilot.press("ctrl+q")  # saved: nothing to ask
        await pilot.pause()
    assert app.return_code == 0 and (tmp_path / "x.yaml").exists()


async def test_ctrl_q_without_changes_quits_at_once() -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), path="x.yaml", source_path="x.yaml", start="machine", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.parametrize("name", [n for n, _ in WIZARD_STEPS])
async def test_every_screen_opens_with_a_control_focused(name: str) -> None:
    """Typing and arrows work before any Tab: a control, not the scrolling body, has focus."""
    app = WizardApp(rc.loads(EDITED, "x.yaml"), path="x.yaml", start=name, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        focused = app.focused
        assert focused is not None and type(focused).__module__ != "textual.containers", focused
        assert focused.screen is app.screen


async def test_zone_cursor_follows_its_zone_through_a_re_sort() -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="zone", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        table = scr.query_one("#zones")
        assert app.focused is table
        await pilot.press("down", "down", "down", "down", "down")  # past the three chosen zones
        zone = scr._current()
        assert zone not in scr.order
        await pilot.press("space")  # use it: it moves up to 4th place
        await pilot.pause()
        assert scr.order[-1] == zone and scr._current() == zone


async def test_f1_and_question_mark_open_help_for_the_screen() -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="zone", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(w.render()) for w in app.screen.query("Static"))
        assert "Help: Zone" in text and "stockout" in text and "Best first" in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.NAME == "zone"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_key_hints_are_shown_once() -> None:
    """The footer lists the keys; the line above it only says why Next is disabled."""
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="machine", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert app.screen.valid
        assert "ctrl+n" not in str(app.screen.query_one("#why").render())


@pytest.mark.parametrize("name", [n for n, _ in WIZARD_STEPS])
async def test_step_bar_shows_every_step_at_80_columns(name: str) -> None:
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start=name, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        bar = app.screen.query_one("#stepbar")
        line = "".join(s.text for s in bar.render_line(0)).rstrip()
        numbers = re.findall(r"(?<![0-9])([1-8])(?![0-9])", line)
        assert numbers == [str(i) for i in range(1, len(WIZARD_STEPS) + 1)], line
        title = dict(WIZARD_STEPS)[name]
        assert title in line or {"quota": "Quota", "environment": "Env", "dataset": "Data"}[name] in line


async def test_checked_and_unchecked_boxes_differ_without_colour() -> None:
    app = WizardApp(_hosts_draft(), start="review", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        box = app.screen.query_one("#run-anyway")
        off = box.render().plain
        box.value = True
        await pilot.pause()
        on = box.render().plain
        assert off != on and "✔" in on and "✔" not in off


async def test_zone_and_machine_screens_show_one_price_and_name_the_machine() -> None:
    """The Zone screen's $/h is the Machine screen's per-VM price for that zone's region (issue
    15: each region at its own price), and both name the machine type it assumes."""
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="zone", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        table = app.screen.query_one("#zones")
        for i in range(table.row_count):
            row = table.get_row_at(i)
            want = catalog.vm_price("n1-standard-8", "nvidia-tesla-t4", 1, True, 150, "pd-balanced", region=str(row[2]))
            assert str(row[4]) == f"{want.per_hour:.2f}", row
        want = catalog.vm_price("n1-standard-8", "nvidia-tesla-t4", 1, True, 150, "pd-balanced", region="us-central1")
        assert want.assumes.split(";")[0] in str(app.screen.query_one("#zone-title").render())
        app.goto("machine")
        await _settle(app, pilot)
        cost = str(app.screen.query_one("#cost").render())
        assert f"${want.per_hour:.2f}/h per VM ({want.assumes})" in cost


async def test_a_new_recipe_gets_auto_stop_and_the_machine_screen_changes_it() -> None:
    """Issue 14: the wizard proposes auto-stop (30 minutes, stop); turning it off says what a
    forgotten day costs, and the choice reaches the recipe."""
    from screens.app import new_draft

    draft = new_draft()
    assert draft.autostop is not None and (draft.autostop.idle, draft.autostop.action) == ("30m", "stop")
    draft.target.gcp.zones = ["us-central1-a"]
    app = WizardApp(draft, start="machine", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        sel = app.screen.query_one("#autostop")
        assert sel.value == "30m" and "auto-stop 30m" in str(app.screen.query_one("#cost").render())
        sel.focus()
        await pilot.press("enter")
        await pilot.pause()
        for _ in range(3):  # from the highlighted 30m down to "off"
            await pilot.press("down")
        await pilot.press("enter")
        await _settle(app, pilot)
        assert sel.value == "off"
        assert "a VM forgotten for a day costs" in str(app.screen.query_one("#cost").render())
        app.screen.apply()
        assert app.draft.autostop is None
