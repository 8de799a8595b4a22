"""Faults after an insert succeeded, API storms, and the reads' budgets (issue 13), plus
what a delete reports, against the fake Compute server through the real client."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from gpuwizard.gcp import budgets
from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.inventory import list_recipe_vms
from gpuwizard.gcp.provision import delete_vms, vm_info
from tests.builders.gcp import make_recipe, run


def ledger(tmp_path) -> dict:
    return json.loads((tmp_path / "known_hosts.vms").read_text())


# ---------------------------------------------------------------- delete

def test_delete_that_never_finishes_is_not_reported_deleted(fake_compute, monkeypatch):
    fake_compute.add_instance("us-central1-a", "stuck", labels={"gpuwizard-recipe": "r"})
    fake_compute.op_durations["delete"] = math.inf      # the operation never becomes DONE
    fake_compute.wait_cap = 0.05                         # .../wait answers "still RUNNING" quickly
    monkeypatch.setattr(budgets, "OP_TIMEOUT", 0.5)
    vms = asyncio.run(list_recipe_vms(None, "r"))
    lines: list[str] = []
    with pytest.raises(GcpError) as ei:
        asyncio.run(delete_vms(None, vms, sink=lambda ev: lines.append(ev.data)))
    assert "did not finish" in str(ei.value) and "stuck" in str(ei.value)
    assert not any("deleted" in ln for ln in lines)
    assert ("us-central1-a", "stuck") in fake_compute.instances


def test_a_vm_already_gone_is_not_counted_as_deleted(fake_compute):
    fake_compute.add_instance("us-central1-a", "here", labels={"gpuwizard-recipe": "r"})
    fake_compute.add_instance("us-central1-a", "gone", labels={"gpuwizard-recipe": "r"})
    vms = asyncio.run(list_recipe_vms(None, "r"))
    del fake_compute.instances[("us-central1-a", "gone")]  # deleted by someone else meanwhile
    lines: list[str] = []
    deleted = asyncio.run(delete_vms(None, vms, sink=lambda ev: lines.append(ev.data)))
    assert deleted == ["us-central1-a/here"]
    assert any("gone" in ln and "already gone" in ln for ln in lines)


# ---------------------------------------------------------------- after a successful insert

def test_one_500_on_instances_get_after_insert_is_retried(fake_compute, tmp_path):
    fake_compute.add_http_fault("inst_get", 500, times=1)
    hosts, _ = run(make_recipe(["us-central1-a"]), tmp_path)
    assert [h.name for h in hosts] == ["exp-run-1"]
    assert fake_compute.route_requests("inst_get") == 2
    assert len(fake_compute.inserts()) == 1
    assert ledger(tmp_path)["zones"] == {"exp-run-1": "us-central1-a"}


def test_instances_get_storm_after_insert_says_the_vm_runs_and_is_billed(fake_compute, tmp_path, monkeypatch):
    monkeypatch.setattr(budgets, "READ_BUDGET", 0.5)
    fake_compute.add_http_fault("inst_get", 503)
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"]), tmp_path)
    msg = str(ei.value)
    assert ei.value.vm_exists
    assert "exp-run-1 in us-central1-a is running (and billed, ~$" in msg
    assert "--resume" in msg and "gpuwizard down" in msg and "Timeout of" not in msg
    assert ledger(tmp_path)["names"] == ["exp-run-1"]   # recorded before anything else
    # The run resumes onto it: no second VM.
    fake_compute.clear_faults()
    fake_compute.http_faults.clear()
    hosts, _ = run(make_recipe(["us-central1-a"]), tmp_path)
    assert [h.name for h in hosts] == ["exp-run-1"] and len(fake_compute.inserts()) == 1


def test_guest_attributes_storm_ends_at_the_host_key_timeout(fake_compute, tmp_path, monkeypatch):
    monkeypatch.setattr(budgets, "READ_BUDGET", 30.0)   # the host-key timeout must cap it
    fake_compute.add_http_fault("guest", 503)
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"]), tmp_path, host_key_timeout=1.0)
    assert ei.value.kind == "hostkey" and ei.value.vm_exists
    assert "published no SSH host keys in 1 s" in str(ei.value) and "running (and billed" in str(ei.value)


# ---------------------------------------------------------------- host keys from the serial console

def test_host_keys_from_the_serial_console_when_guest_attributes_are_empty(fake_compute, tmp_path):
    keys = dict(fake_compute.host_keys)
    fake_compute.host_keys = {}                 # set_host_keys=false: nothing in guest attributes
    fake_compute.serial_host_keys = keys
    hosts, lines = run(make_recipe(["us-central1-a"]), tmp_path)
    assert hosts[0].host_key_verified
    assert any("from the serial console" in ln for ln in lines)
    kh = (tmp_path / "known_hosts").read_text()
    assert all(k in kh for k in keys.values())


def test_guest_attributes_are_the_first_source(fake_compute, tmp_path):
    fake_compute.serial_host_keys = dict(fake_compute.host_keys)
    _, lines = run(make_recipe(["us-central1-a"]), tmp_path)
    assert any("from guest attributes" in ln for ln in lines)
    assert fake_compute.route_requests("serial") == 0


def test_vm_info_is_unchanged_by_the_split():
    vm = vm_info({"name": "a", "zone": "z/us-central1-a", "status": "RUNNING",
                  "machineType": "x/n1-standard-4", "labels": {"gpuwizard-run": "r"}})
    assert (vm.name, vm.zone, vm.run, vm.machine_type) == ("a", "us-central1-a", "r", "n1-standard-4")


# ---------------------------------------------------------------- issue 12: spot quota, quota names, hints

def test_spot_falls_back_to_standard_quota_when_no_preemptible_quota(fake_compute, tmp_path):
    fake_compute.set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 0)   # none granted
    hosts, lines = run(make_recipe(["us-central1-a"], spot=True), tmp_path)
    assert [h.zone for h in hosts] == ["us-central1-a"]
    assert not any("skipping us-central1" in ln for ln in lines)
    assert fake_compute.region_quotas["us-central1"]["NVIDIA_T4_GPUS"]["usage"] == 1


def test_spot_region_is_skipped_only_when_both_quotas_are_exhausted(fake_compute, tmp_path):
    fake_compute.set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 0)
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 0)
    with pytest.raises(GcpError):
        run(make_recipe(["us-central1-a"], spot=True), tmp_path)
    assert fake_compute.inserts() == []


def test_quota_and_zones_show_both_spot_metrics(fake_compute, capsys):
    import argparse

    from gpuwizard.gcp.commands import cmd_quota, cmd_zones

    fake_compute.set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 0)
    assert cmd_quota(argparse.Namespace(project=None, gpu="T4", spot=True)) == 0
    out = capsys.readouterr().out
    assert "PREEMPTIBLE_NVIDIA_T4_GPUS" in out and " NVIDIA_T4_GPUS" in out and "fall back" in out
    assert "is 0 in every region" not in out
    assert cmd_zones(argparse.Namespace(project=None, gpu="T4", count=1, spot=True, offline=False)) == 0
    out = capsys.readouterr().out
    assert "PREEMPTIBLE" in out and "STANDARD" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("us-central1-a "))
    assert row.split()[3:6] == ["8", "0", "8"]   # usable 8 = max(preemptible 0, standard 8)


def test_cpus_all_regions_is_named_with_its_own_link(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "quota_metric", metric="CPUS_ALL_REGIONS", limit=12.0)
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    msg = str(ei.value)
    assert "CPUS_ALL_REGIONS" in msg and "limit 12" in msg and "GPUS_ALL_REGIONS" not in msg
    assert "compute.googleapis.com%2Fcpus_all_regions" in msg.replace('"', "") or "cpus_all_regions" in msg
    assert len(fake_compute.inserts()) == 1     # global: no other zone is tried


def test_regional_ssd_quota_is_named_and_skips_the_region(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "quota_metric", metric="SSD_TOTAL_GB", limit=500.0)
    hosts, lines = run(make_recipe(["us-central1-a", "us-central1-b", "us-west1-b"]), tmp_path)
    assert hosts[0].zone == "us-west1-b"
    assert any("SSD_TOTAL_GB in us-central1" in ln and "ssd_total_gb" in ln for ln in lines)


def test_zones_available_of_a_synchronous_error_is_followed(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout_sync", zones_available=["us-west1-b"])
    hosts, lines = run(make_recipe(["us-central1-a", "us-central1-b", "us-west1-b"]), tmp_path)
    assert hosts[0].zone == "us-west1-b"
    assert fake_compute.inserts("us-central1-b") == []   # the hint went first
    assert any("suggests us-west1-b" in ln for ln in lines)


def test_a_long_operation_says_what_it_waits_for(fake_compute, tmp_path, monkeypatch):
    monkeypatch.setattr(budgets, "ANNOUNCE_AFTER", 0.2)
    fake_compute.add_fault("us-central1-a", "slow", seconds=1.0)
    fake_compute.wait_cap = 0.3        # .../wait returns before the operation is DONE
    _, lines = run(make_recipe(["us-central1-a"]), tmp_path)
    assert any("still waiting for creating exp-run-1" in ln and "at most" in ln for ln in lines)


def test_an_insert_that_never_finishes_says_the_vm_may_exist(fake_compute, tmp_path, monkeypatch):
    monkeypatch.setattr(budgets, "OP_TIMEOUT", 0.5)
    fake_compute.op_durations["insert"] = math.inf
    fake_compute.wait_cap = 0.05
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert ei.value.vm_exists and "did not finish" in str(ei.value) and "gpuwizard down" in str(ei.value)
    assert fake_compute.inserts("us-central1-b") == []   # no second VM in another zone
