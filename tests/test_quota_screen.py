"""The Project & quota screen's Cloud Quotas part, driven by Pilot against the fake Compute and
Cloud Quotas servers: the GPU-family quota, "Request more quota" with its preview and
confirmation, and the requests' states. Waits on workers, never on sleeps."""

from __future__ import annotations

import pytest

from gpuwizard import recipe as rc
from screens.app import WizardApp
from screens.quota_request import RequestQuotaScreen

pytestmark = pytest.mark.asyncio
SIZE = (120, 50)
FAMILY = "GPUS-PER-GPU-FAMILY-per-project-region"
H100 = """version: 1
name: h100
target:
  gcp:
    zones: [us-east4-a]
    machine_type: a3-highgpu-8g
    gpu: {type: nvidia-h100-80gb, count: 8}
"""


async def _settle(app: WizardApp, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def _text(app: WizardApp, wid: str) -> str:
    return str(app.screen.query_one(wid).render())


async def test_family_quota_request_more_and_states(fake_compute, fake_cloudquotas, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_H100"}, 0)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        assert app.screen.NAME == "quota"
        fam = _text(app, "#family-note")
        assert f"NVIDIA_H100 family quota ({FAMILY})" in fam and "us-east4 0" in fam

        app.screen.query_one("#request-quota").press()
        await _settle(app, pilot)
        dialog = app.screen
        assert isinstance(dialog, RequestQuotaScreen)
        assert dialog.query_one("#qr-region").value == "us-east4"       # the recipe's zone's region
        preview = _text(app, "#qr-preview")
        assert f"{FAMILY} {{region=us-east4, gpu_family=NVIDIA_H100}}: 0 -> 8" in preview

        dialog.query_one("#qr-file").press()                             # no email yet: refused inline
        await _settle(app, pilot)
        assert "is not an email address" in _text(app, "#qr-error") and fake_cloudquotas.created() == []

        dialog.query_one("#qr-email").value = "student@example.edu"
        dialog.query_one("#qr-justification").value = "Thesis: training a video model"
        await _settle(app, pilot)
        assert "contact email: student@example.edu" in _text(app, "#qr-preview")
        dialog.query_one("#qr-file").press()
        await _settle(app, pilot)
        assert "File these with Google?" in _text(app, "Static")            # the confirmation
        await pilot.press("y")
        await _settle(app, pilot)
        assert app.screen.NAME == "quota"
        [body] = fake_cloudquotas.created()
        assert body["dimensions"] == {"region": "us-east4", "gpu_family": "NVIDIA_H100"}
        assert body["contactEmail"] == "student@example.edu"
        assert "Filed 1 request(s)" in _text(app, "#requests-note")
        assert "-> 8: pending" in _text(app, "#requests-note")

        [name] = list(fake_cloudquotas.preferences)
        fake_cloudquotas.decide(name, 4, "Partially approved based on usage history.")
        app.screen._cloud.clear()
        app.screen.refresh_live()
        await _settle(app, pilot)
        assert "-> 8: partially granted (Partially approved based on usage history.)" in \
            _text(app, "#requests-note")


async def test_cancel_files_nothing(fake_compute, fake_cloudquotas, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_H100"}, 0)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#request-quota").press()
        await _settle(app, pilot)
        await pilot.press("escape")
        await _settle(app, pilot)
        assert app.screen.NAME == "quota" and fake_cloudquotas.created() == []


async def test_api_disabled_is_said_on_the_screen(fake_compute, fake_cloudquotas, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.fail("disabled")
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        note = _text(app, "#family-note")
        assert "Cloud Quotas API is not enabled" in note and "gcloud services enable cloudquotas" in note
        assert app.screen.query_one("#request-quota").display


async def test_no_family_quota_anywhere_is_a_warning(fake_compute, fake_cloudquotas, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.set_quota(FAMILY, {"gpu_family": "NVIDIA_H100"}, 0)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        note = app.screen.query_one("#family-note")
        assert "No region has any" in str(note.render()) and note.has_class("-warning")
        assert not app.screen.query_one("#requests-note").display     # nothing to list: no empty line


async def test_zero_family_quota_is_not_called_fine_and_infos_are_read_once(fake_compute, fake_cloudquotas, tmp_path,
                                                                          monkeypatch) -> None:
    """GPUS_ALL_REGIONS has room but the H100 family quota is 0 everywhere: the quota note must
    not say "Quota looks fine", the table shows the family rows, and the screen lists the
    QuotaInfos once (it used to list them in two workers)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.page_size = 1000                                   # one request per listing
    fake_cloudquotas.set_quota(FAMILY, {"gpu_family": "NVIDIA_H100"}, 0)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        note = app.screen.query_one("#quota-note")
        assert "Quota looks fine" not in str(note.render())
        assert note.has_class("-warning")
        table = app.screen.query_one("#quota-table")
        scopes = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "us-east4" in scopes
    lists = [p for m, p, _b in fake_cloudquotas.requests if m == "GET" and p.endswith("/quotaInfos")]
    assert len(lists) == 1


async def test_request_dialog_fits_80x24_with_its_buttons_on_screen(fake_compute, fake_cloudquotas, tmp_path,
                                                                   monkeypatch) -> None:
    """At 80 columns and 24 rows the dialog is inside the terminal and Cancel / File can be seen
    and clicked (they used to be cut off below a 4-line preview, the right border off screen)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_H100"}, 0)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        app.screen.query_one("#request-quota").press()
        await _settle(app, pilot)
        dialog = app.screen
        assert isinstance(dialog, RequestQuotaScreen)
        box = dialog.query_one("#quota-request").region
        assert box.right <= 80 and box.bottom <= 24
        for wid in ("#qr-file", "#qr-cancel", "#qr-email", "#qr-justification"):
            w = dialog.query_one(wid)
            hit, _ = dialog.get_widget_at(*w.region.center)
            assert hit is w, f"{wid} is not visible at 80x24"
        dialog.query_one("#qr-file").press()                 # no email: the error must be visible too
        await _settle(app, pilot)
        err = dialog.query_one("#qr-error")
        assert "is not an email address" in str(err.render())
        hit, _ = dialog.get_widget_at(*err.region.center)
        assert hit is err


async def test_quota_note_weighs_the_vms_gpu_count(fake_compute, fake_cloudquotas, tmp_path, monkeypatch) -> None:
    """8 x H100 in one VM with a family quota of 4 in every region is not "fine"; with 8 it
    is, and the figures read as counts (16, not 16.0)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cloudquotas.set_quota(FAMILY, {"gpu_family": "NVIDIA_H100"}, 4)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        note = app.screen.query_one("#quota-note")
        text = str(note.render())
        assert "Quota looks fine" not in text and "Not enough quota for 8 GPUs in one VM" in text, text
        assert note.has_class("-warning")
    fake_cloudquotas.set_quota(FAMILY, {"gpu_family": "NVIDIA_H100"}, 8)
    app = WizardApp(rc.loads(H100, "h100.yaml"), path=str(tmp_path / "h100.yaml"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        text = str(app.screen.query_one("#quota-note").render())
        assert text.startswith("Quota looks fine: 16 GPUs free across regions; most in "), text


async def test_the_screen_counts_spot_quota_as_the_provisioner_does():
    """A Spot VM falls back to the standard quota where no preemptible quota is granted
    (docs/facts): the screen's rows showed PREEMPTIBLE_NVIDIA_T4_GPUS = 0 and called the
    quota zero, while the provisioner would create the VM. The screen now asks the core."""
    from gpuwizard.gcp.quota import QuotaReport, QuotaRow as CoreRow
    from screens.live import quota_view_of

    rep = QuotaReport(project="p", global_limit=4, global_usage=0, metric="PREEMPTIBLE_NVIDIA_T4_GPUS",
                      fallback="NVIDIA_T4_GPUS", gpu="nvidia-tesla-t4", spot=True,
                      rows=[CoreRow("PREEMPTIBLE_NVIDIA_T4_GPUS", "us-central1", 0, 0),
                            CoreRow("NVIDIA_T4_GPUS", "us-central1", 4, 1)])
    view = quota_view_of(rep, "p", "nvidia-tesla-t4", True)
    assert view.region_free("us-central1") == rep.free_in("us-central1") == 3
    assert not view.zero
