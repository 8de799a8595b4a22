"""`gpuwizard quota request` and `quota --requests` against the fake Cloud Quotas server, through
the real google-cloud-quotas client (and the fake Compute server for regions.list)."""

from __future__ import annotations

import json

import pytest

from gpuwizard import cli
from gpuwizard.exit_codes import FAILED, OK, USAGE
from gpuwizard.gcp import quota_request as QR

EMAIL = "student@example.edu"


def gw(*argv: str) -> int:
    return cli.main(list(argv))


def request(*extra: str, gpu: str = "nvidia-tesla-t4", region: str = "us-central1", count: str = "1") -> int:
    return gw("quota", "request", "--gpu", gpu, "--region", region, "--count", count, "--email", EMAIL,
              "--justification", "Course project: fine-tuning a small model", *extra)


def test_t4_request_files_global_and_regional_with_exact_preview(fake_compute, fake_cloudquotas, capsys):
    fake_compute.set_global_quota("GPUS_ALL_REGIONS", 0)
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 0)
    fake_cloudquotas.set_quota("GPUS-ALL-REGIONS-per-project", {}, 0)
    fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 0)

    assert request("-y") == OK
    out = capsys.readouterr().out
    assert "2 quota increase request(s) will be filed" in out
    assert "1. GPUS-ALL-REGIONS-per-project (global): 0 -> 1" in out
    assert "2. NVIDIA-T4-GPUS-per-project-region {region=us-central1}: 0 -> 1" in out
    assert f"contact email: {EMAIL}" in out and "justification: Course project" in out
    bodies = fake_cloudquotas.created()
    assert [(b["quotaId"], b.get("dimensions"), int(b["quotaConfig"]["preferredValue"])) for b in bodies] == [
        ("GPUS-ALL-REGIONS-per-project", None, 1),
        ("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 1)]
    assert all(b["contactEmail"] == EMAIL for b in bodies)
    ids = [p.rsplit("=", 1)[-1] for m, p, _ in fake_cloudquotas.requests if m == "POST"]
    names = sorted(fake_cloudquotas.preferences)
    assert all(n.rsplit("/", 1)[-1].startswith("gpuwizard-") for n in names), names
    assert "(pending)" in out and "gpuwizard quota --requests" in out
    assert ids  # the posts were made


def test_spot_asks_for_the_preemptible_quota(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("PREEMPTIBLE-NVIDIA-T4-GPUS-per-project-region", {"region": "us-east1"}, 0)
    assert request("-y", "--spot", region="us-east1", count="2") == OK
    bodies = fake_cloudquotas.created()
    assert [(b["quotaId"], b.get("dimensions")) for b in bodies] == [
        ("PREEMPTIBLE-NVIDIA-T4-GPUS-per-project-region", {"region": "us-east1"})]


def test_h100_request_uses_the_family_quota(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("GPUS-PER-GPU-FAMILY-per-project-region",
                               {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    assert request("-y", gpu="nvidia-h100-80gb", count="8") == OK
    out = capsys.readouterr().out
    assert ("GPUS-PER-GPU-FAMILY-per-project-region {region=us-central1, gpu_family=NVIDIA_H100}: 0 -> 8"
            in out)
    [body] = fake_cloudquotas.created()
    assert body["dimensions"] == {"region": "us-central1", "gpu_family": "NVIDIA_H100"}


def test_nothing_to_request_when_quota_suffices(fake_compute, fake_cloudquotas, capsys):
    assert request("-y") == OK
    assert "Nothing to request" in capsys.readouterr().out
    assert fake_cloudquotas.created() == []


def test_declined_confirmation_files_nothing(fake_compute, fake_cloudquotas, capsys, monkeypatch):
    fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 0)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert request() == FAILED
    assert "Nothing filed." in capsys.readouterr().out
    assert fake_cloudquotas.created() == []


def test_no_terminal_and_no_yes_refuses(fake_compute, fake_cloudquotas, capsys, monkeypatch):
    fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 0)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert request() == USAGE
    assert "run again with -y" in capsys.readouterr().err
    assert fake_cloudquotas.created() == []


def test_permission_denied_names_the_roles(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 0)
    fake_cloudquotas.fail("denied", "create")
    assert request("-y") == FAILED
    err = capsys.readouterr().err
    assert "Permission denied filing NVIDIA-T4-GPUS-per-project-region" in err
    assert "cloudquotas.quotas.update" in err
    for role in ("roles/owner", "roles/editor", "roles/servicemanagement.quotaAdmin",
                 "roles/serviceusage.serviceUsageAdmin"):
        assert role in err
    assert "gcloud projects add-iam-policy-binding test-project" in err


def test_api_disabled_says_how_to_enable(fake_compute, fake_cloudquotas, capsys):
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 0)
    fake_cloudquotas.fail("disabled")
    assert request("-y") == FAILED
    cap = capsys.readouterr()
    assert "Note: the Cloud Quotas API is not enabled in test-project" in cap.out
    assert "`gcloud services enable cloudquotas.googleapis.com --project test-project`" in cap.err
    assert "https://console.developers.google.com/apis/api/cloudquotas.googleapis.com/overview?project=test-project" \
        in cap.err


def test_an_earlier_request_is_updated_not_duplicated(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": "us-central1"}, 0)
    assert request("-y") == OK
    [first] = list(fake_cloudquotas.preferences)
    capsys.readouterr()
    assert request("-y", count="4") == OK
    out = capsys.readouterr().out
    assert f"updates your earlier request {first.rsplit('/', 1)[-1]}" in out
    assert list(fake_cloudquotas.preferences) == [first]
    assert fake_cloudquotas.preferences[first]["quotaConfig"]["preferredValue"] == "4"
    assert [m for m, p, _ in fake_cloudquotas.requests if m in ("POST", "PATCH")] == ["POST", "PATCH"]


@pytest.mark.parametrize("argv, words", [
    (["--region", "us-central1-a"], "is not a region"),
    (["--email", "nobody"], "is not an email address"),
    (["--count", "0"], "at least 1"),
    (["--justification", " "], "--justification is empty"),
    (["--gpu", "quantum-9000"], "Unknown GPU"),
])
def test_bad_input_is_one_sentence(argv, words, capsys):
    args = {"--gpu": "T4", "--region": "us-central1", "--count": "1", "--email": EMAIL, "--justification": "x"}
    args.update(dict(zip(argv[::2], argv[1::2])))
    assert gw("quota", "request", *[x for kv in args.items() for x in kv], "-y") == USAGE
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_requests_lists_states_from_the_real_fields(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("GPUS-ALL-REGIONS-per-project", {}, 0)
    for region in ("us-central1", "us-east1", "us-west1"):
        fake_cloudquotas.set_quota("NVIDIA-T4-GPUS-per-project-region", {"region": region}, 0)
    assert request("-y", count="4") == OK
    assert request("-y", region="us-east1", count="4") == OK
    assert request("-y", region="us-west1", count="4") == OK
    names = {n: p for n, p in fake_cloudquotas.preferences.items()}
    by_region = {(p.get("dimensions") or {}).get("region", "global"): n for n, p in names.items()}
    fake_cloudquotas.decide(by_region["global"], 4)
    fake_cloudquotas.decide(by_region["us-east1"], 2, "Partially approved: 2 of 4 GPUs based on usage history.")
    fake_cloudquotas.decide(by_region["us-west1"], None, "Denied: this project has insufficient billing history.")
    capsys.readouterr()
    assert gw("quota", "--requests") == OK
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("gpuwizard-")}
    rid = {k: v.rsplit("/", 1)[-1] for k, v in by_region.items()}
    assert lines[rid["global"]].rstrip().endswith("granted")
    assert lines[rid["us-central1"]].rstrip().endswith("pending")
    assert lines[rid["us-east1"]].rstrip().endswith("partially granted")
    assert lines[rid["us-west1"]].rstrip().endswith("denied")
    assert f"{rid['us-west1']}: denied: Denied: this project has insufficient billing history." in out
    assert f"{rid['us-east1']}: partially granted: Partially approved: 2 of 4 GPUs" in out


@pytest.mark.parametrize("pref, want", [
    ({"reconciling": True, "quotaConfig": {"preferredValue": "8"}}, QR.PENDING),
    ({"quotaConfig": {"preferredValue": "8", "grantedValue": "8"}}, QR.GRANTED),
    ({"quotaConfig": {"preferredValue": "8", "grantedValue": "2"}}, QR.PARTIAL),
    ({"quotaConfig": {"preferredValue": "8", "grantedValue": "0", "stateDetail": "no"}}, QR.DENIED),
    ({"quotaConfig": {"preferredValue": "8"}}, QR.DENIED),
])
def test_state_of_a_preference(pref, want):
    assert QR.state(pref)[0] == want


def test_requests_when_api_disabled(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.fail("disabled")
    assert gw("quota", "--requests") == FAILED
    assert "gcloud services enable cloudquotas.googleapis.com" in capsys.readouterr().err


def test_preference_ids_are_valid_and_readable():
    import datetime

    from gpuwizard.gcp.quota_family import QuotaTarget

    t = QuotaTarget("GPUS-PER-GPU-FAMILY-per-project-region", (("region", "northamerica-northeast1"),
                                                               ("gpu_family", "NVIDIA_H100_MEGA")))
    pid = QR.preference_id(t, datetime.datetime(2026, 11, 29, 21, 4, 5))
    assert len(pid) <= 63 and pid.startswith("gpuwizard-gpus-per-gpu-family-northamerica") and \
        pid.endswith("-20261129t210405")
    assert json.dumps(pid).isascii()


def test_a_region_without_the_gpu_is_pointed_out(fake_compute, fake_cloudquotas, capsys):
    fake_cloudquotas.set_quota("GPUS-PER-GPU-FAMILY-per-project-region",
                               {"region": "southamerica-east1", "gpu_family": "NVIDIA_H100"}, 0)
    assert request("-y", gpu="nvidia-h100-80gb", region="southamerica-east1", count="8") == OK
    out = capsys.readouterr().out
    assert "Note: the catalog snapshot lists no zone in southamerica-east1 with H100 80GB" in out
    assert "gpuwizard zones --gpu nvidia-h100-80gb" in out
