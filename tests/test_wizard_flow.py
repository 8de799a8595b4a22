"""The wizard end to end, driven by Pilot: from an empty draft to a saved recipe that
``gpuwizard validate`` accepts (Compute data from the fake Compute server over HTTP),
and an edited recipe that saves back byte for byte when nothing changed.

Tests wait on workers and screens, never on sleeps.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil

import pytest

from gpuwizard import recipe as rc
from gpuwizard import validate
from gpuwizard.cli import main
from screens.app import WizardApp
from tests.builders.wizard import EDITED

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZE = (120, 40)

pytestmark = pytest.mark.asyncio


async def _settle(app: WizardApp, pilot) -> None:
    """Wait until every worker has finished and the resulting messages are handled."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _next(app: WizardApp, pilot, expect: str) -> None:
    await pilot.press("ctrl+n")
    await _settle(app, pilot)
    assert app.screen.NAME == expect, f"expected the {expect} screen, got {app.screen.NAME}: {app.screen.reason}"


def _catalog_validate(path: str) -> list[str]:
    """Errors `gpuwizard validate` would print for ``path`` (shape + catalog checks)."""
    recipe = rc.load(path)
    return [p.format(path) for p in validate.validate(recipe) if not getattr(p, "warning", False)]


async def test_walk_every_screen_to_a_valid_saved_recipe(fake_compute, tmp_path, monkeypatch) -> None:
    """Empty draft -> every screen -> saved recipe; quota and zones come from the fake over HTTP."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))  # the Drive token lands here
    # No T4 quota left in us-central1: the live zone list must put other regions first.
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 4, usage=4)
    out = tmp_path / "stgcn.yaml"
    app = WizardApp(path=str(out))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert scr.NAME == "quota"
        # The ADC project (here: the fake's, through GOOGLE_CLOUD_PROJECT) and live quota.
        assert app.live.project is not None and app.live.project.online
        assert app.live.project.project == fake_compute.project
        view = app.live.quota[(fake_compute.project, "nvidia-tesla-t4", False)]
        assert view.online and view.global_free == 16
        assert view.region_free("us-central1") == 0
        assert scr.valid

        await _next(app, pilot, "zone")
        key = (fake_compute.project, "nvidia-tesla-t4", 1, False)
        assert key in app.live.zones and app.live.zones[key] and app.screen.live_rows
        order = list(app.screen.order)
        assert order and not any(z.startswith("us-central1-") for z in order), order
        # Reorder: move the second zone up (failover preference).
        table = app.screen.query_one("#zones")
        table.move_cursor(row=1)
        await pilot.press("u")
        assert app.screen.order[0] == order[1]

        await _next(app, pilot, "machine")
        await _next(app, pilot, "driver")
        await _next(app, pilot, "environment")
        await pilot.press("ctrl+t")  # the ST-GCN preset
        await pilot.pause()
        await _next(app, pilot, "dataset")

        # A Drive dataset needs a remote: Next is disabled until one exists.
        app.screen.query_one("#ds-from").value = "gdrive:st-gcn-processed-data.zip"
        app.screen.query_one("#ds-unzip").value = True
        await pilot.press("ctrl+a")
        await pilot.pause()
        assert not app.screen.valid and "gdrive" in app.screen.reason
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.NAME == "dataset"
        await pilot.press("ctrl+r")
        await _settle(app, pilot)
        assert app.screen.id == "rclone-dialog"
        await pilot.press("ctrl+s")  # no credential yet: Save is disabled
        await pilot.pause()
        assert app.screen.id == "rclone-dialog"
        app.screen.query_one("#auth-paste").value = True
        app.screen.query_one("#rc-token").value = (
            '{"access_token": "ya29.WALKTEST' + "x" * 30 + '", "refresh_token": "1//0WALKTEST' + "y" * 30 + '"}')
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen.NAME == "dataset" and app.screen.valid, app.screen.reason

        await _next(app, pilot, "steps")
        await _next(app, pilot, "review")
        assert app.screen.valid, app.screen.reason
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.saved_path == str(out)
    saved = rc.load(str(out))
    g = saved.target.gcp
    assert g.zones[0] == order[1] and g.gpu.type == "nvidia-tesla-t4"
    assert saved.env.repo.url.endswith("mmskeleton.git")
    assert saved.datasets[0].from_ == "gdrive:st-gcn-processed-data.zip" and saved.datasets[0].unzip
    assert saved.rclone.remotes["gdrive"].type == "drive"
    token_file = saved.rclone.remotes["gdrive"].options["token_file"]
    assert token_file == "~/.config/gpuwizard/secrets/gdrive.token.json"
    assert (tmp_path / ".config/gpuwizard/secrets/gdrive.token.json").stat().st_mode & 0o777 == 0o600
    assert "WALKTEST" not in out.read_text(encoding="utf-8")
    assert _catalog_validate(str(out)) == []
    assert main(["validate", str(out)]) == 0


def _edit_cases() -> list[str]:
    shipped = sorted(glob.glob(str(ROOT / "recipes" / "*.yaml")))
    return ["hand-written"] + shipped


@pytest.mark.parametrize("case", _edit_cases(), ids=lambda c: os.path.basename(c))
async def test_edit_and_save_unchanged_is_byte_for_byte(case: str, tmp_path) -> None:
    """Walking every screen of a saved recipe with Next and saving rewrites nothing."""
    path = tmp_path / "recipe.yaml"
    if case == "hand-written":
        path.write_text(EDITED, encoding="utf-8")
    else:
        shutil.copy(case, path)
    before = path.read_bytes()
    draft = rc.load(str(path))
    app = WizardApp(draft, path=str(path), source_path=str(path), live=False)
    # Existing hosts (target.ssh) have no zone or machine to choose: Next passes over them.
    names = ["zone", "machine", "driver", "environment", "dataset", "steps", "review"]
    if draft.target.gcp is None:
        names = [n for n in names if n not in ("zone", "machine")]
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        for name in names:
            await _next(app, pilot, name)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen.NAME == "review"  # the same file: no overwrite question
    assert app.saved_path == str(path)
    assert path.read_bytes() == before


async def test_edit_a_change_is_saved_and_comments_kept(tmp_path) -> None:
    """A real edit (disk size) is written; the leading comment survives."""
    path = tmp_path / "recipe.yaml"
    path.write_text(EDITED, encoding="utf-8")
    app = WizardApp(rc.load(str(path)), path=str(path), source_path=str(path), start="machine", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        disk = app.screen.query_one("#disk")
        disk.value = "200"
        await pilot.pause()
        for name in ("driver", "environment", "dataset", "steps", "review"):
            await _next(app, pilot, name)
        await pilot.press("ctrl+s")
        await pilot.pause()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# A recipe written by hand")
    assert rc.load(str(path)).target.gcp.disk_gb == 200


async def test_next_is_gated_and_footer_says_why(tmp_path) -> None:
    app = WizardApp(live=False, start="machine")
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert scr.valid
        scr.query_one("#disk").value = "5"
        await pilot.pause()
        assert not scr.valid and "disk" in scr.reason
        assert scr.check_action("next", ()) is None  # dimmed in the footer
        assert "disk" in str(scr.query_one("#why").render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen is scr


async def test_back_keeps_state_and_palette_jumps(tmp_path) -> None:
    app = WizardApp(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#spot").value = True
        await pilot.pause()
        await _next(app, pilot, "zone")
        await pilot.press("ctrl+b")
        await _settle(app, pilot)
        assert app.screen.NAME == "quota" and app.screen.query_one("#spot").value is True
        assert app.draft.target.gcp.spot is True
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to 4 Driver" in titles
        cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Go to 4 Driver")
        cmd.callback()
        await _settle(app, pilot)
        assert app.screen.NAME == "driver"


async def test_driver_screen_disables_impossible_choices_with_reasons() -> None:
    """V100: branches after R580 are disabled, and the reason is on screen."""
    from gpuwizard.recipe import GcpTarget, Gpu, Recipe, Target

    draft = Recipe(target=Target(gcp=GcpTarget(gpu=Gpu("nvidia-tesla-v100", 1), zones=["us-central1-a"])))
    app = WizardApp(draft, live=False, start="driver")
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        branches = scr._choices["branch"]
        r595 = next(c for c in branches if c.value == "595")
        r580 = next(c for c in branches if c.value == "580")
        assert not r595.enabled and "580" in r595.reason
        assert r580.enabled
        assert scr.drv.branch == "580" and scr.drv.flavor == "proprietary"
        assert "R590: V100" in str(scr.query_one("#reasons").render())
        assert scr.valid


async def test_dlvm_image_means_preinstalled() -> None:
    from gpuwizard.recipe import GcpTarget, Recipe, Target

    draft = Recipe(target=Target(gcp=GcpTarget(image="common-cu128-ubuntu-2204-nvidia-570", zones=["us-central1-a"])))
    app = WizardApp(draft, live=False, start="driver")
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert app.screen.query_one("#mode").value == "preinstalled"
        await _next(app, pilot, "environment")
    assert app.draft.driver is not None and app.draft.driver.preinstalled


async def test_offline_says_so_and_continues(monkeypatch) -> None:
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    app = WizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        note = str(app.screen.query_one("#quota-note").render())
        assert "Offline" in note and "console.cloud.google.com" in note
        await _next(app, pilot, "zone")
        assert app.screen.order  # the catalog answers


async def test_new_draft_on_existing_ssh_hosts(tmp_path) -> None:
    """Switch a new draft to SSH hosts: the GCP screens are skipped both ways, and the saved
    recipe passes every check `gpuwizard validate` runs."""
    from gpuwizard.validate import load_checked

    out = tmp_path / "hosts.yaml"
    app = WizardApp(path=str(out), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert not scr.query_one("#ssh-fields").display
        scr.query_one("#target").value = "ssh"
        await pilot.pause()
        assert scr.query_one("#ssh-fields").display and not scr.query_one("#gcp-fields").display
        assert not scr.valid and "at least one host" in scr.reason
        scr.query_one("#ssh-hosts").text = "ubuntu@203.0.113.7\nbad host name\n"
        await pilot.pause()
        assert not scr.valid and "'bad host name' is not a host" in str(scr.query_one("#err-hosts").render())
        scr.query_one("#ssh-hosts").text = "ubuntu@203.0.113.7\nubuntu@203.0.113.7\n"
        await pilot.pause()
        assert "listed twice" in scr.reason
        scr.query_one("#ssh-hosts").text = "ubuntu@203.0.113.7\nroot@gpu-2.example.com:2222\n"
        scr.query_one("#ssh-port").value = "70000"
        await pilot.pause()
        assert not scr.valid and "65535" in str(scr.query_one("#err-port").render())
        scr.query_one("#ssh-port").value = "2200"
        scr.query_one("#ssh-user").value = "ubuntu"
        scr.query_one("#ssh-identity").value = "~/.ssh/id_ed25519"
        scr.query_one("#ssh-known-hosts").value = "~/.ssh/known_hosts"
        await pilot.pause()
        assert scr.valid, scr.reason
        await _next(app, pilot, "driver")  # zone and machine passed over
        await pilot.press("ctrl+b")
        await _settle(app, pilot)
        assert app.screen.NAME == "quota" and app.screen.query_one("#target").value == "ssh"
        assert app.screen.query_one("#ssh-port").value == "2200"
        for name in ("driver", "environment", "dataset", "steps", "review"):
            await _next(app, pilot, name)
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.saved_path == str(out)
    recipe, _warnings = load_checked(str(out))
    assert recipe.target.gcp is None
    assert recipe.target.ssh.hosts == ["ubuntu@203.0.113.7", "root@gpu-2.example.com:2222"]
    assert (recipe.ssh.user, recipe.ssh.port) == ("ubuntu", 2200)
    assert (recipe.ssh.identity, recipe.ssh.known_hosts) == ("~/.ssh/id_ed25519", "~/.ssh/known_hosts")


async def test_switching_target_back_restores_the_vm_answers(tmp_path) -> None:
    """GCP -> SSH -> GCP on the first screen keeps the Compute Engine answers."""
    app = WizardApp(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#spot").value = True
        app.screen.query_one("#target").value = "ssh"
        app.screen.query_one("#ssh-hosts").text = "gpu-box"
        await pilot.pause()
        await _next(app, pilot, "driver")
        assert app.draft.target.gcp is None and app.draft.target.ssh.hosts == ["gpu-box"]
        await pilot.press("ctrl+b")
        await _settle(app, pilot)
        app.screen.query_one("#target").value = "gcp"
        await pilot.pause()
        await _next(app, pilot, "zone")
    assert app.draft.target.ssh is None and app.draft.target.gcp.spot is True


async def test_changing_the_gpu_after_the_driver_screen_re_proposes_the_stack() -> None:
    """T4 -> Driver (R595, open modules) -> back -> V100: the driver branch and kernel
    modules are re-proposed for the V100 and the user is told, instead of a Driver screen
    whose Next is blocked by "V100 cannot use open kernel modules"."""
    app = WizardApp(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        for name in ("zone", "machine", "driver", "environment"):
            await _next(app, pilot, name)
        assert (app.draft.driver.branch, app.draft.driver.flavor) == ("595", "open")
        app.goto("quota")
        await _settle(app, pilot)
        app.screen.query_one("#gpu").value = "nvidia-tesla-v100"
        await pilot.pause()
        await _next(app, pilot, "zone")
        assert (app.draft.driver.branch, app.draft.driver.flavor) == ("580", "proprietary")
        said = " ".join(str(n.message) for n in app._notifications)
        assert "branch 595 -> 580" in said and "flavor open -> proprietary" in said
        app.goto("driver")
        await _settle(app, pilot)
        assert app.screen.valid, app.screen.reason


async def test_edit_a_t4_recipe_switched_to_v100_saves_a_valid_recipe(tmp_path) -> None:
    """`gpuwizard edit` of a T4 recipe on R595 with open modules, switched to a V100."""
    path = tmp_path / "recipe.yaml"
    path.write_text(EDITED.replace('branch: "580"', 'branch: "595", flavor: open').replace(
        'cuda: "12.8"', 'cuda: "13.2"'), encoding="utf-8")
    app = WizardApp(rc.load(str(path)), path=str(path), source_path=str(path), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#gpu").value = "nvidia-tesla-v100"
        await pilot.pause()
        for name in ("zone", "machine", "driver", "environment", "dataset", "steps", "review"):
            await _next(app, pilot, name)
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
    assert app.saved_path == str(path)
    assert main(["validate", str(path)]) == 0


async def test_every_driver_field_that_blocks_next_has_a_control() -> None:
    """A V100 with open kernel modules (from a recipe): the Driver screen's flavor list
    offers proprietary, and choosing it unblocks Next."""
    from gpuwizard.recipe import Driver, GcpTarget, Gpu, Recipe, Target

    draft = Recipe(target=Target(gcp=GcpTarget(gpu=Gpu("nvidia-tesla-v100", 1), zones=["us-central1-a"])),
                   driver=Driver(branch="580", cuda="12.8", flavor="open"))
    app = WizardApp(draft, live=False, start="driver", source_path="recipe.yaml")
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        assert not scr.valid and "driver.flavor" in scr.reason
        flavors = scr.query_one("#opt-flavor")
        labels = [str(flavors.get_option_at_index(i).prompt) for i in range(flavors.option_count)]
        target = next(i for i, text in enumerate(labels) if "proprietary" in text)
        flavors.focus()
        flavors.highlighted = target
        await pilot.pause()
        assert scr.valid, scr.reason
        assert scr.drv.flavor == "proprietary"


async def test_a_late_editor_event_does_not_rewrite_a_block_scalar_step(tmp_path) -> None:
    """A `run: |` step ends with a newline the editor does not show. When the editor's Changed
    event arrived after the screen was filled (a loaded machine), the step was copied back
    without it, and saving an unchanged recipe rewrote the file. Simulated here by delivering
    that late copy by hand."""
    path = tmp_path / "recipe.yaml"
    path.write_text(EDITED.rstrip("\n").split("\nsteps:")[0] + "\nsteps:\n  - name: two\n    run: |\n      echo a\n"
                    "      echo b\n", encoding="utf-8")
    draft = rc.load(str(path))
    assert draft.steps[0].run == "echo a\necho b\n"
    app = WizardApp(draft, path=str(path), source_path=str(path), start="steps", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        scr = app.screen
        scr._filling = False
        scr._edited()   # the late event
        assert scr.snapshot() == scr._initial
