"""Provisioning with failover, against the fake Compute server through the real client."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.provision import instance_body, instance_names, provision
from tests.builders.gcp import make_recipe, run
from tests.fake_compute import FAKE_HOST_KEYS


def test_failover_stockout_then_quota_then_ok(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout")
    fake_compute.add_fault("us-east1-c", "quota_region")
    hosts, lines = run(make_recipe(["us-central1-a", "us-east1-c", "us-west1-b"]), tmp_path)

    assert [h.zone for h in hosts] == ["us-west1-b"]
    assert [z for (z, _) in fake_compute.instances] == ["us-west1-b"]
    assert len(fake_compute.inserts()) == 3
    text = "\n".join(lines)
    assert "us-central1-a: no capacity [ZONE_RESOURCE_POOL_EXHAUSTED]" in text
    assert "us-east1-c: regional quota exhausted (NVIDIA_T4_GPUS in us-east1)" in text
    h = hosts[0]
    assert (h.user, h.port, h.address) == ("gpuwizard", 22, fake_compute.instances[("us-west1-b", h.name)]
                                           ["networkInterfaces"][0]["accessConfigs"][0]["natIP"])
    assert h.identity and os.path.exists(h.identity)
    assert stat.S_IMODE(os.stat(h.identity).st_mode) == 0o600


def test_regional_quota_error_skips_rest_of_region(fake_compute, tmp_path):
    fake_compute.add_fault("us-east1-c", "quota_region")
    hosts, _ = run(make_recipe(["us-east1-c", "us-east1-d", "us-west1-b"]), tmp_path)
    assert hosts[0].zone == "us-west1-b"
    assert fake_compute.inserts("us-east1-d") == []


def test_zones_available_hint_is_followed(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout_details", zones_available=["us-west1-b", "us-west1-a"])
    hosts, lines = run(make_recipe(["us-central1-a", "us-central1-b", "us-east1-c"]), tmp_path)
    assert hosts[0].zone == "us-west1-b"
    assert fake_compute.inserts("us-central1-b") == [] and fake_compute.inserts("us-east1-c") == []
    assert any("suggests us-west1-b, us-west1-a" in ln for ln in lines)


def test_stockout_with_details_but_no_hint_goes_to_next_zone(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout_details")
    fake_compute.add_fault("us-central1-b", "resource_not_found")
    fake_compute.add_fault("us-central1-c", "insufficient_capacity")
    hosts, _ = run(make_recipe(["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]), tmp_path)
    assert hosts[0].zone == "us-central1-f"


def test_zero_quota_regions_are_never_sent_an_insert(fake_compute, tmp_path):
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 0)
    fake_compute.set_quota("us-east1", "NVIDIA_T4_GPUS", 4, usage=4)
    hosts, lines = run(make_recipe(["us-central1-a", "us-central1-b", "us-east1-c", "us-west1-b"]), tmp_path)
    assert hosts[0].zone == "us-west1-b"
    assert fake_compute.inserts() == ["/compute/v1/projects/test-project/zones/us-west1-b/instances"]
    skip = [ln for ln in lines if ln.startswith("skipping us-central1")]
    assert skip and "iam-admin/quotas" in skip[0] and "nvidia_t4_gpus" in skip[0] and "us-central1" in skip[0]


def test_hint_into_zero_quota_region_is_ignored(fake_compute, tmp_path):
    fake_compute.set_quota("us-west1", "NVIDIA_T4_GPUS", 0)
    fake_compute.add_fault("us-central1-a", "stockout_details", zones_available=["us-west1-b"])
    hosts, _ = run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert hosts[0].zone == "us-central1-b"
    assert fake_compute.inserts("us-west1-b") == []


def test_global_quota_zero_stops_before_any_insert(fake_compute, tmp_path):
    fake_compute.set_global_quota("GPUS_ALL_REGIONS", 0)
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"]), tmp_path)
    msg = str(ei.value)
    assert msg.startswith("Quota 'GPUS_ALL_REGIONS' is 0")
    assert "https://console.cloud.google.com/iam-admin/quotas?" in msg and "gpus_all_regions" in msg
    assert fake_compute.inserts() == []


def test_global_quota_error_from_operation_stops(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "quota_global")
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert ei.value.kind == "global_quota" and "GPUS_ALL_REGIONS" in str(ei.value)
    assert fake_compute.inserts("us-central1-b") == []


def test_permission_denied_stops_with_the_fix(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "permission")
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert ei.value.kind == "permission" and "roles/compute.instanceAdmin.v1" in str(ei.value)
    assert fake_compute.inserts("us-central1-b") == []


def test_transient_503_is_retried_in_the_same_zone(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "unavailable", times=2)
    hosts, lines = run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert hosts[0].zone == "us-central1-a"
    assert len(fake_compute.inserts("us-central1-a")) == 3
    assert sum("retrying in" in ln for ln in lines) == 2


def test_every_zone_stocked_out_says_why_each_was_skipped(fake_compute, tmp_path):
    for z in ("us-central1-a", "us-central1-b"):
        fake_compute.add_fault(z, "stockout")
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    msg = str(ei.value)
    assert "us-central1-a: no capacity" in msg and "us-central1-b: no capacity" in msg
    assert "gpuwizard zones --gpu nvidia-tesla-t4" in msg
    assert fake_compute.instances == {}


def test_slow_operation_is_waited_for(fake_compute, tmp_path):
    fake_compute.wait_cap = 0.1  # several wait calls per operation
    fake_compute.add_fault("us-central1-a", "slow", seconds=0.5)
    hosts, _ = run(make_recipe(["us-central1-a"]), tmp_path)
    assert hosts[0].zone == "us-central1-a"
    waits = [p for _, m, p in fake_compute.requests if p.endswith("/wait")]
    assert len(waits) >= 3


def test_count_creates_n_vms_in_one_zone(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout")
    hosts, _ = run(make_recipe(["us-central1-a", "us-central1-b"], count=3), tmp_path)
    assert sorted(h.name for h in hosts) == ["exp-run-1-0", "exp-run-1-1", "exp-run-1-2"]
    assert {h.zone for h in hosts} == {"us-central1-b"}
    assert all(p.endswith("/bulkInsert") for p in fake_compute.inserts())
    assert len(fake_compute.instances) == 3
    assert fake_compute.region_quotas["us-central1"]["NVIDIA_T4_GPUS"]["usage"] == 3


def test_count_needs_quota_for_all_vms(fake_compute, tmp_path):
    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 2)
    hosts, _ = run(make_recipe(["us-central1-a", "us-west1-b"], count=2, gpus=2), tmp_path)
    assert {h.zone for h in hosts} == {"us-west1-b"}
    assert fake_compute.inserts("us-central1-a") == []


def test_host_keys_from_guest_attributes_end_up_in_known_hosts(fake_compute, tmp_path):
    fake_compute.hostkey_delay = 0.3  # published a little after boot: polled until present
    hosts, _ = run(make_recipe(["us-central1-a"]), tmp_path)
    h = hosts[0]
    assert h.host_key_verified and h.known_hosts == str(tmp_path / "known_hosts")
    lines = open(h.known_hosts).read().splitlines()
    for typ, blob in FAKE_HOST_KEYS.items():
        assert f"{h.address},{h.internal_address} {typ} {blob}" in lines
    guests = [p for _, m, p in fake_compute.requests if p.endswith("/getGuestAttributes")]
    assert len(guests) >= 2


def test_no_published_host_keys_requires_accept_new(fake_compute, tmp_path):
    fake_compute.host_keys = {}
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"]), tmp_path, host_key_timeout=0.2)
    assert "--accept-new-host-key" in str(ei.value) and "gpuwizard down" in str(ei.value)
    hosts, lines = run(make_recipe(["us-central1-a"], name="exp2"), tmp_path, host_key_timeout=0.2,
                       accept_new_host_key=True)
    assert not hosts[0].host_key_verified
    assert any("published no host keys" in ln for ln in lines)


def test_instance_body_has_what_a_gpu_vm_needs(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout")
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True, extra="ssh: {user: alice}")
    hosts, _ = run(r, tmp_path)
    inst = fake_compute.instances[("us-central1-b", hosts[0].name)]
    assert inst["scheduling"] == {"onHostMaintenance": "TERMINATE", "automaticRestart": False,
                                  "provisioningModel": "SPOT", "instanceTerminationAction": "STOP"}
    assert inst["labels"] == {"gpuwizard-recipe": "exp", "gpuwizard-run": "run-1"}
    assert inst["guestAccelerators"] == [{"acceleratorType": "projects/test-project/zones/us-central1-b/"
                                                             "acceleratorTypes/nvidia-tesla-t4",
                                          "acceleratorCount": 1}]
    meta = {i["key"]: i["value"] for i in inst["metadata"]["items"]}
    assert meta["enable-guest-attributes"] == "TRUE"
    assert meta["ssh-keys"].startswith("alice:ssh-ed25519 ")
    assert inst["disks"][0]["initializeParams"]["sourceImage"] == "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
    assert hosts[0].user == "alice"
    # spot quota was used, not on-demand
    assert fake_compute.region_quotas["us-central1"]["PREEMPTIBLE_NVIDIA_T4_GPUS"]["usage"] == 1


def test_names_are_valid_gce_names():
    r = make_recipe(["us-central1-a"], count=2)
    names = instance_names(r, "2026-01-02T03:04:05Z_ABC")
    assert all(len(n) <= 63 and n[0].isalpha() and n[-1].isalnum() for n in names)
    body = instance_body(make_recipe(["us-central1-a"]), "us-central1-a", "x", "r", "u", "ssh-ed25519 AAAA c")
    assert body["machine_type"] == "zones/us-central1-a/machineTypes/n1-standard-4"


def test_rerun_of_the_same_run_reuses_its_vm(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"])
    first, _ = run(r, tmp_path)
    again, lines = run(r, tmp_path)
    assert [h.name for h in again] == [h.name for h in first]
    assert len(fake_compute.inserts()) == 1 and len(fake_compute.instances) == 1
    assert any(ln.startswith("reusing 1 VM") for ln in lines)


def test_endpoint_override_covers_every_request(fake_compute, tmp_path):
    """Operations are polled through our ZoneOperationsClient on the fake, not on the default host
    (there is no network here: a request to compute.googleapis.com would fail the run)."""
    fake_compute.add_fault("us-central1-a", "slow", seconds=0.2)
    run(make_recipe(["us-central1-a"]), tmp_path)
    kinds = {p.rsplit("/", 1)[-1] if not p.endswith("/instances") else "insert" for _, _, p in fake_compute.requests}
    assert {"insert", "wait", "getGuestAttributes"} <= kinds


def test_standalone_server_runs(tmp_path):
    import json
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_compute", "--port", "0", "--scenario", "failover"],
                            stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        first = proc.stdout.readline()
        url = first.split()[3]
        with urllib.request.urlopen(url + "/_fake/state", timeout=5) as resp:
            state = json.load(resp)
        assert "us-central1-a" in state["faults"]
        with urllib.request.urlopen(url + "/compute/v1/projects/test-project", timeout=5) as resp:
            assert json.load(resp)["name"] == "test-project"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


LONG = "a-very-long-recipe-name-for-a-sweep-of-many-experiments"[:55] + "9"
GCE_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


def _run_ids(name: str) -> tuple[str, str]:
    """Two run ids in the form runlog.new_run_id makes, one second and a random tag apart."""
    return f"20260102-030405-{name[:40]}-1a2b", f"20260102-030406-{name[:40]}-9f8e"


@pytest.mark.parametrize("count", [1, 2])
def test_long_recipe_name_keeps_the_run_suffix(count):
    import re

    assert len(LONG) == 56
    r = make_recipe(["us-central1-a"], name=LONG, count=count)
    a, b = (instance_names(r, rid) for rid in _run_ids(LONG))
    assert len(a) == len(b) == count
    for n in a + b:
        assert len(n) <= 63 and re.match(GCE_NAME, n), n
    assert not set(a) & set(b), (a, b)
    assert all(n.endswith(("-1a2b", "-1a2b-0", "-1a2b-1")) for n in a), a
    # short names are unchanged (a resumed run finds the VMs it created before)
    assert instance_names(make_recipe(["us-central1-a"]), "run-1") == ["exp-run-1"]


def test_two_runs_of_a_long_recipe_get_two_vms(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], name=LONG)
    names = []
    for rid in _run_ids(LONG):
        hosts = asyncio.run(provision(r, rid, known_hosts_path=str(tmp_path / f"kh-{rid[-4:]}")))
        names += [h.name for h in hosts]
    assert len(set(names)) == 2
    assert sorted(fake_compute.instances) == sorted(("us-central1-a", n) for n in names)


def test_name_already_taken_stops_instead_of_failing_over(fake_compute, tmp_path):
    """409 alreadyExists is not a zone problem: another zone would get a second VM of the
    same name (and a stranger's VM would look like ours to status and down)."""
    r = make_recipe(["us-central1-a", "us-central1-b"])
    (name,) = instance_names(r, "run-1")
    fake_compute.add_instance("us-central1-a", name, {"gpuwizard-recipe": "someone-else"})
    with pytest.raises(GcpError) as ei:
        run(r, tmp_path)
    assert ei.value.kind == "exists"
    assert name in str(ei.value) and "us-central1-a" in str(ei.value)
    assert fake_compute.inserts("us-central1-b") == []
    assert list(fake_compute.instances) == [("us-central1-a", name)]


def test_already_exists_is_classified_as_its_own_final_kind():
    from gpuwizard.gcp.errors import EXISTS, classify

    v = classify([{"reason": "alreadyExists", "message": "The resource 'x' already exists"}], 409)
    assert v.kind == EXISTS
