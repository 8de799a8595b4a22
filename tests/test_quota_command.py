"""`gpuwizard quota` reads the GPU-family quotas through Cloud Quotas (the real client against the
fake server) beside regions.list, and falls back to regions.list in one line when it cannot."""

from __future__ import annotations

from gpuwizard import cli
from gpuwizard.exit_codes import OK

FAMILY = "GPUS-PER-GPU-FAMILY-per-project-region"


def test_family_quotas_are_shown(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_H100"}, 16)
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_B200"}, 8)
    assert cli.main(["quota", "--gpu", "nvidia-h100-80gb"]) == OK
    out = capsys.readouterr().out
    assert "GPU-family quotas (Cloud Quotas; regions.list does not list them):" in out
    rows = [ln.split() for ln in out.splitlines() if FAMILY in ln]
    assert ["us-east4", "NVIDIA_H100", FAMILY, "16"] in rows
    assert not any("NVIDIA_B200" in r for r in rows)          # another family: not asked
    assert any(r[:3] == ["(5", "other", "regions)"] and r[3] == "NVIDIA_H100" and r[-1] == "8"
               for r in rows)   # the entry without a region: every other region
    assert "Note:" not in out


def test_zero_family_quota_everywhere_says_what_to_file(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota(FAMILY, {"gpu_family": "NVIDIA_H100"}, 0)
    assert cli.main(["quota", "--gpu", "nvidia-h100-80gb"]) == OK
    out = capsys.readouterr().out
    assert "The GPU-family quota for NVIDIA_H100 is 0" in out
    assert "gpuwizard quota request --gpu nvidia-h100-80gb --region us-central1 --count 1" in out


def test_api_disabled_is_one_line_and_regions_list_still_shown(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.fail("disabled")
    assert cli.main(["quota", "--gpu", "T4"]) == OK
    out = capsys.readouterr().out
    assert "us-central1" in out and "NVIDIA_T4_GPUS" in out        # today's reading
    notes = [ln for ln in out.splitlines() if ln.startswith("Note:")]
    assert len(notes) == 1
    assert "Cloud Quotas API is not enabled in test-project" in notes[0]
    assert "gcloud services enable cloudquotas.googleapis.com --project test-project" in notes[0]
    assert "cloudquotas.googleapis.com/overview?project=test-project" in notes[0]


def test_permission_denied_reading_is_one_line(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.fail("denied", "infos")
    assert cli.main(["quota", "--gpu", "T4"]) == OK
    out = capsys.readouterr().out
    notes = [ln for ln in out.splitlines() if ln.startswith("Note:")]
    assert len(notes) == 1 and "permission denied reading Cloud Quotas" in notes[0]
    assert "roles/servicemanagement.quotaViewer" in notes[0]


def test_infos_are_read_across_pages(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.page_size = 1
    fake_cloudquotas.set_quota(FAMILY, {"region": "asia-east1", "gpu_family": "NVIDIA_H100"}, 24)
    assert cli.main(["quota", "--gpu", "nvidia-h100-80gb"]) == OK
    assert any(ln.split()[:2] == ["asia-east1", "NVIDIA_H100"] for ln in capsys.readouterr().out.splitlines()
               if ln.strip())
    pages = [p for m, p, _ in fake_cloudquotas.requests if p.endswith("/quotaInfos")]
    assert len(pages) == len(fake_cloudquotas.infos)


def test_without_a_quotas_endpoint_beside_a_fake_compute_nothing_asks_google(fake_compute, capsys):
    assert cli.main(["quota", "--gpu", "T4"]) == OK
    out = capsys.readouterr().out
    assert "GPUWIZARD_QUOTAS_ENDPOINT is not set" in out
