"""Defects found by the adversarial review of the wizard (issues 11 and 13), each a test
that failed before its fix."""

from __future__ import annotations

import time

import pytest

from gpuwizard import recipe as rc
from gpuwizard import plan, presets, validate
from screens.app import WizardApp
from screens.dialogs import ConfirmScreen
from tests.builders.wizard import EDITED

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


@pytest.mark.parametrize("trt, cuda, says, never", [
    ("10.4", "13.2", "use TensorRT 10.13 or newer, or pair 10.4 with CUDA 12.x", "13.x"),
    ("8.6", "13.0", "pair it with CUDA 11.x/12.x (CUDA 13 builds start at 10.13)", "13.x"),
])
def test_tensorrt_message_does_not_offer_the_cuda_major_it_refuses(trt: str, cuda: str, says: str, never: str) -> None:
    """'TensorRT 10.4 has no builds for CUDA 13.2; pair it with CUDA 12.x/13.x' offered
    the very CUDA major it refused (the Driver screen shows this text as a greyed option)."""
    text = ("version: 1\nname: t\ntarget:\n  gcp:\n    zones: [us-central1-a]\n    machine_type: n1-standard-4\n"
            "    gpu: {type: nvidia-tesla-t4, count: 1}\n    image: ubuntu-2404-lts-amd64\n"
            f"driver: {{branch: '595', cuda: '{cuda}', tensorrt: '{trt}'}}\n")
    msgs = [p.message for p in validate.validate(rc.loads(text)) if p.path == "driver.tensorrt"]
    assert msgs and says in msgs[0] and never not in msgs[0], msgs


def test_tensorrt_bare_major_on_volta_installs_the_last_release_with_volta_kernels() -> None:
    """`tensorrt: "10"` on a V100 passed validate and planned the newest 10.x (Volta was
    removed in 10.5, docs/facts/drivers-cuda-matrix.md), while `cudnn: "9"` was capped to 9.10."""
    text = ("version: 1\nname: t\ntarget:\n  gcp:\n    zones: [us-central1-a]\n    machine_type: n1-standard-8\n"
            "    gpu: {type: nvidia-tesla-v100, count: 1}\n    image: ubuntu-2204-lts\n"
            "driver: {branch: '580', flavor: proprietary, cuda: '12.9', cudnn: '9', tensorrt: '10'}\n")
    recipe = rc.loads(text)
    assert not [p for p in validate.validate(recipe) if not p.warning]
    trt = [s for s in plan.build(recipe) if s.id == "tensorrt.install"][0]
    assert "TensorRT 10.4 " in trt.title
    assert "'^10\\.4\\..*\\+cuda12\\.'" in trt.run or "^10\\.4\\." in trt.run


def test_stgcn_preset_on_v100_suggests_cuda_versions_that_have_volta_wheels() -> None:
    """V100 + CUDA 12.9 (what the Driver screen proposes for a V100): the preset said
    "pick CUDA 12.6, 12.8 or 13.0", and CUDA 13 has no Volta support at all."""
    with pytest.raises(presets.PresetError) as err:
        presets.stgcn("nvidia-tesla-v100", "ubuntu-2204-lts", "12.9")
    msg = str(err.value)
    assert "13." not in msg and "12.8" in msg
    picked = msg.rsplit("pick CUDA ", 1)[1].replace(" or ", ", ").split(", ")
    for cuda in picked:  # every suggestion really builds the preset on a V100
        assert presets.stgcn("nvidia-tesla-v100", "ubuntu-2204-lts", cuda).env["torch_index"] == "cu" + cuda.replace(".", "")


@pytest.mark.parametrize("value, says", [
    ("2h", "this value is in seconds: write 7200 for 2h"),
    ("90s", "write 90 for 90s"),
    ("99999h", "this value is in seconds; it must be 1 to 604800"),
])
def test_step_timeout_written_as_a_duration_says_the_seconds_to_write(value: str, says: str) -> None:
    """`plan` prints "timeout 1h" and the Steps screen takes "2h", but `timeout: 2h` in a
    recipe only said "expected a number, got '2h'"."""
    text = f"version: 1\nname: t\ntarget:\n  ssh:\n    hosts: [u@h]\nsteps:\n  - name: s\n    run: x\n    timeout: {value}\n"
    with pytest.raises(rc.RecipeError) as err:
        rc.loads(text)
    assert says in str(err.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("where, says", [
    ("missing/dir/r.yaml", "does not exist; create it or type another path"),
    ("", "is not a file name"),
    (".", "is not a file name"),
], ids=["missing-folder", "empty", "a-directory"])
async def test_review_save_to_a_path_that_cannot_be_a_file_says_how_to_fix_it(tmp_path, monkeypatch, where, says) -> None:
    """Save to /tmp/x/new.yaml with no /tmp/x said only "No such file or directory"; a
    directory first asked to overwrite it, then failed."""
    monkeypatch.chdir(tmp_path)
    app = WizardApp(rc.loads(EDITED, "x.yaml"), start="review", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#path").value = where
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)  # nothing to overwrite
        assert any(says in n.message for n in app._notifications), [n.message for n in app._notifications]
    assert list(tmp_path.iterdir()) == []
