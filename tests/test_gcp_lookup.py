"""Quota and zone look-ups, the quota/zones commands, error classification and import hygiene."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import urllib.parse

import pytest

from gpuwizard.gcp import client
from gpuwizard.gcp.errors import (GLOBAL_QUOTA, PERMISSION, REGION_QUOTA, STOCKOUT, TRANSIENT, GcpError, classify,
                                  console_link)
from gpuwizard.gcp.quota import fetch_quota
from gpuwizard.gcp.zones import zones_for_gpu, zones_offline


def test_fetch_quota_global_and_regions(fake_compute):
    fake_compute.set_quota("us-east1", "NVIDIA_T4_GPUS", 4, usage=3)
    rep = asyncio.run(fetch_quota(None, "T4", False))
    assert (rep.project, rep.global_limit, rep.global_usage) == ("test-project", 16, 0)
    assert rep.metric == "NVIDIA_T4_GPUS" and all(r.metric == "NVIDIA_T4_GPUS" for r in rep.rows)
    assert rep.free_in("us-east1") == 1 and rep.free_in("us-central1") == 8
    assert rep.free_in("nowhere-1") is None
    paths = [p for _, _, p in fake_compute.requests]
    assert sorted(paths) == ["/compute/v1/projects/test-project", "/compute/v1/projects/test-project/regions"]


def test_fetch_quota_spot_and_all_gpus(fake_compute):
    rep = asyncio.run(fetch_quota(None, None, True))
    assert rep.rows and all(r.metric.startswith("PREEMPTIBLE_NVIDIA_") for r in rep.rows)


def test_zones_for_gpu_two_round_trips_sorted(fake_compute):
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 0)
    fake_compute.world["us-west1-b"]["nvidia-tesla-t4"] = 2
    opts = asyncio.run(zones_for_gpu(None, "T4", 4, False))
    assert len(fake_compute.requests) == 2
    zones = [o.zone for o in opts]
    assert "us-west1-b" not in zones                 # max 2 per VM there
    assert set(zones) >= {"us-central1-a", "europe-west4-b"}
    central = [i for i, o in enumerate(opts) if o.region == "us-central1"]
    assert central and min(central) > max(i for i, o in enumerate(opts) if o.free_quota)  # no quota sorts last
    assert all(o.price_hour and o.max_count >= 4 for o in opts)


def test_zones_offline_from_catalog():
    opts = zones_offline("nvidia-l4", 1)
    assert opts and all(o.free_quota is None for o in opts) and opts[0].price_hour


def test_console_link_names_metric_and_region():
    link = console_link("NVIDIA_T4_GPUS", "us-east1", "p1")
    assert link.startswith("https://console.cloud.google.com/iam-admin/quotas?")
    state = urllib.parse.unquote(link)
    assert "compute.googleapis.com/nvidia_t4_gpus" in state and "region:us-east1" in state and "project=p1" in state


@pytest.mark.parametrize("errors,kind", [
    ([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "x"}], STOCKOUT),
    ([{"code": "insufficientCapacity", "message": "x"}], STOCKOUT),
    ([{"code": "QUOTA_EXCEEDED", "message": "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0 in region us-east1."}],
     REGION_QUOTA),
    ([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "x"},
      {"code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally."}],
     GLOBAL_QUOTA),
    ([{"code": "forbidden", "message": "Required 'compute.instances.create' permission"}], PERMISSION),
    ([{"code": "rateLimitExceeded", "message": "slow down"}], TRANSIENT),
])
def test_classify_judges_all_errors(errors, kind):
    assert classify(errors, 403 if kind == PERMISSION else None).kind == kind


def test_classify_reads_zones_available_in_snake_case_too():
    v = classify([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "message": "m", "error_details": [
        {"error_info": {"reason": "resource_availability", "metadatas": {"zonesAvailable": "a-1-b, a-1-c"}}}]}])
    assert v.kind == STOCKOUT and v.zones_available == ["a-1-b", "a-1-c"]
    q = classify([{"code": "QUOTA_EXCEEDED", "message": "m", "errorDetails": [{"quotaInfo": {
        "metricName": "compute.googleapis.com/nvidia_l4_gpus", "dimensions": {"region": "us-east4"}, "limit": 0}}]}])
    assert (q.kind, q.metric, q.region) == (REGION_QUOTA, "NVIDIA_L4_GPUS", "us-east4")


def ns(**kw) -> argparse.Namespace:
    base = dict(gpu=None, spot=False, project=None, count=1, offline=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_cmd_quota_zero_global_prints_link(fake_compute, capsys):
    from gpuwizard.gcp.commands import cmd_quota

    fake_compute.set_global_quota("GPUS_ALL_REGIONS", 0)
    fake_compute.set_quota("us-east1", "NVIDIA_T4_GPUS", 0)
    assert cmd_quota(ns(gpu="T4")) == 0
    out = capsys.readouterr().out
    assert "GPUS_ALL_REGIONS: limit 0, usage 0, free 0" in out
    assert "iam-admin/quotas" in out and "REGION" in out and "us-east1" in out


def test_cmd_zones_live_and_offline(fake_compute, capsys):
    from gpuwizard.gcp.commands import cmd_zones

    assert cmd_zones(ns(gpu="T4", count=2)) == 0
    out = capsys.readouterr().out
    assert "(live)" in out and "us-central1-a" in out
    assert cmd_zones(ns(gpu="T4", offline=True)) == 0
    assert "catalog snapshot" in capsys.readouterr().out
    assert cmd_zones(ns(gpu="Z9")) == 2
    assert "Unknown GPU 'Z9'" in capsys.readouterr().err


def test_no_credentials_is_one_sentence_without_asking_adc(monkeypatch, tmp_path):
    """Off GCE with no ADC file, google.auth.default() (which probes the metadata server for
    seconds) is never asked: the answer is the sentence at once. Checked by what was called,
    not by a stopwatch."""
    import google.auth

    for var in ("GPUWIZARD_COMPUTE_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    asked: list[object] = []
    monkeypatch.setattr(google.auth, "default", lambda *a, **kw: asked.append(kw) or (None, None))
    client.reset_cache()
    with pytest.raises(GcpError) as ei:
        client.credentials_and_project(None)
    assert asked == []
    assert "gcloud auth application-default login" in str(ei.value)
    client.reset_cache()


def test_help_and_cli_never_import_the_client():
    code = ("import sys, contextlib, io\n"
            "from gpuwizard import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: cli.main(['--help'])\n"
            "    except SystemExit: pass\n"
            "import gpuwizard.gcp, gpuwizard.gcp.errors\n"
            "bad = [m for m in sys.modules if m.startswith(('google.cloud', 'google.auth', 'google.api_core'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                   timeout=30)


@pytest.mark.parametrize("count", [3, -5, 0, 5])
def test_cmd_zones_refuses_counts_the_gpu_cannot_have(count, capsys):
    from gpuwizard.gcp.commands import cmd_zones

    assert cmd_zones(ns(gpu="T4", count=count, offline=True)) == 2
    cap = capsys.readouterr()
    assert "T4 takes 1, 2 or 4 GPUs per VM" in cap.err and not cap.out


def test_cmd_zones_accepts_each_valid_count(capsys):
    from gpuwizard.gcp.commands import cmd_zones

    for n in (1, 2, 4):
        assert cmd_zones(ns(gpu="nvidia-tesla-t4", count=n, offline=True)) == 0
        assert f"{n} x nvidia-tesla-t4" in capsys.readouterr().out


def test_only_the_client_adaptor_imports_google():
    """google.cloud / google.api_core / google.auth are imported by the gcp adaptors alone:
    client.py (Compute), quotas_api.py (Cloud Quotas) and billing_api.py (Billing Catalog)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    rx = re.compile(r"^\s*(from|import)\s+google(\.|\s)", re.M)
    offenders = [str(p.relative_to(root)) for d in ("gpuwizard", "screens") for p in (root / d).rglob("*.py")
                 if p.name not in ("client.py", "quotas_api.py", "billing_api.py") or p.parent.name != "gcp"
                 if rx.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_zones_price_is_the_plan_price_of_the_machine_it_names(capsys):
    """Issue 11: `zones` said $0.40 and the Machine screen $0.54 for a T4 with no machine named.
    Now `zones` prices the cheapest machine with the recipe's default disk through the one price
    function, and names what it assumes."""
    import argparse

    from gpuwizard import catalog
    from gpuwizard.gcp.commands import cmd_zones

    assert cmd_zones(argparse.Namespace(gpu="T4", count=1, spot=False, offline=True, project=None)) == 0
    out = capsys.readouterr().out
    want = catalog.vm_price("n1-standard-1", "nvidia-tesla-t4", 1, False, disk_gb=100)
    assert f"  {want.per_hour:.2f}\n" in out
    assert f"$/HOUR: {want.assumes.split(';')[0]}, on-demand, in each zone's region, {want.source}" in out
