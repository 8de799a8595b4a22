"""Reading QuotaInfo values (pure): dimension precedence, applicable locations, proto3's left-out
zero, the family of each accelerator; and the fake Cloud Quotas server's own contract checks."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp.quota import QuotaReport, QuotaRow

FAMILY = QF.FAMILY_QUOTA_ID


def info(qid: str, *entries: tuple[dict[str, str], str | None, list[str]]) -> dict:
    return {"quotaId": qid, "dimensionsInfos": [
        {"dimensions": d, "details": ({"value": v} if v is not None else {}), "applicableLocations": locs}
        for d, v, locs in entries]}


def h100(region: str) -> QF.QuotaTarget:
    return QF.regional_target("nvidia-h100-80gb", False, region)


def test_most_specific_entry_wins_and_default_covers_the_rest():
    infos = QF.QuotaInfos.of([info(FAMILY,
                                   ({"region": "us-east4", "gpu_family": "NVIDIA_H100"}, "16", ["us-east4"]),
                                   ({"gpu_family": "NVIDIA_H100"}, "8", ["us-central1", "us-east4", "us-west1"]),
                                   ({"gpu_family": "NVIDIA_B200"}, "4", ["us-central1"]))])
    assert infos.value(h100("us-east4")) == 16
    assert infos.value(h100("us-central1")) == 8
    assert infos.value(h100("asia-east1")) is None          # not an applicable location of any entry
    assert infos.value(QF.regional_target("nvidia-b200", False, "us-central1")) == 4
    assert infos.value(QF.regional_target("nvidia-h200-141gb", False, "us-central1")) is None


def test_a_left_out_value_is_zero_and_minus_one_is_unlimited():
    infos = QF.QuotaInfos.of([info(FAMILY, ({"region": "us-east4", "gpu_family": "NVIDIA_H100"}, None,
                                            ["us-east4"])),
                              info(QF.GLOBAL_QUOTA_ID, ({}, "-1", ["global"]))])
    assert infos.value(h100("us-east4")) == 0
    assert infos.value(QF.global_target()) == float("inf")


@pytest.mark.parametrize("gpu, spot, qid, dims", [
    ("nvidia-tesla-t4", False, "NVIDIA-T4-GPUS-per-project-region", {"region": "r1"}),
    ("nvidia-tesla-t4", True, "PREEMPTIBLE-NVIDIA-T4-GPUS-per-project-region", {"region": "r1"}),
    ("nvidia-l4", False, "NVIDIA-L4-GPUS-per-project-region", {"region": "r1"}),
    ("nvidia-a100-80gb", False, "NVIDIA-A100-80GB-GPUS-per-project-region", {"region": "r1"}),
    ("nvidia-h100-80gb", False, FAMILY, {"region": "r1", "gpu_family": "NVIDIA_H100"}),
    ("nvidia-h100-mega-80gb", False, FAMILY, {"region": "r1", "gpu_family": "NVIDIA_H100_MEGA"}),
    ("nvidia-h200-141gb", True, FAMILY, {"region": "r1", "gpu_family": "NVIDIA_H200"}),  # no preemptible twin listed
    ("nvidia-b200", False, FAMILY, {"region": "r1", "gpu_family": "NVIDIA_B200"}),
])
def test_the_quota_each_gpu_draws_on(gpu, spot, qid, dims):
    t = QF.regional_target(gpu, spot, "r1")
    assert (t.quota_id, t.dims) == (qid, dims)


def test_spot_family_uses_the_preemptible_twin_where_listed():
    infos = QF.QuotaInfos.of([info(QF.SPOT_FAMILY_QUOTA_ID, ({"gpu_family": "NVIDIA_H100"}, "2", ["r1"]))])
    assert QF.regional_target("nvidia-h100-80gb", True, "r1", infos).quota_id == QF.SPOT_FAMILY_QUOTA_ID


def test_family_quota_caps_the_free_quota_of_a_region():
    rep = QuotaReport(project="p", global_limit=16, global_usage=0, metric="NVIDIA_H100_GPUS", gpu="nvidia-h100-80gb")
    assert rep.free_in("us-east4") is None
    rep.cloud = QF.QuotaInfos.of([info(FAMILY, ({"region": "us-east4", "gpu_family": "NVIDIA_H100"}, "8",
                                                ["us-east4"]))])
    assert rep.free_in("us-east4") == 8
    rep.rows = [QuotaRow("NVIDIA_H100_GPUS", "us-east4", 16, 6)]
    assert rep.free_in("us-east4") == 2        # family 8 less the 6 in use, under regions.list's 10


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_fake_counts_what_the_protos_reject(fake_compute, fake_cloudquotas):
    base = f"{fake_cloudquotas.url}/v1/projects/{fake_cloudquotas.project}/locations/global/quotaPreferences"
    _post(base + "?quotaPreferenceId=Bad_Id", {"quotaId": QF.GLOBAL_QUOTA_ID, "service": "compute.googleapis.com",
                                               "quotaConfig": {"preferredValue": "2", "grantedValue": "2"},
                                               "reconciling": True, "preferedValue": 3})
    found = "\n".join(fake_cloudquotas.violations)
    assert "not a QuotaPreference" in found            # the misspelt field
    assert "output-only field reconciling" in found and "quotaConfig.grantedValue" in found
    assert "contactEmail is required" in found and "not a valid id" in found
    fake_cloudquotas.violations.clear()               # seen: the fixture checks the rest of the test


def test_quota_request_help_imports_no_google():
    probe = ("import sys, io, contextlib\nfrom gpuwizard.cli import main\n"
             "out = io.StringIO()\ntry:\n    with contextlib.redirect_stdout(out):\n"
             "        main(['quota', 'request', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('google', 'textual'))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
