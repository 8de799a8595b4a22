"""Resume after spot preemption, and OS Login, against the fake Compute server through the real client."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest

from gpuwizard.gcp import provision as P
from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.quota import os_login_enabled
from tests.builders.gcp import make_recipe, run


def nat(fake, zone, name):
    return fake.instances[(zone, name)]["networkInterfaces"][0]["accessConfigs"][0].get("natIP")


def post(fake, path, body):
    req = urllib.request.Request(fake.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


# ---------------------------------------------------------------- preempted with STOP: started again

def test_preempted_spot_vm_is_started_again_with_its_new_address(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True)
    (first,), _ = run(r, tmp_path)
    old = first.address
    assert post(fake_compute, "/_fake/preempt", {"run": "run-1"}) == {"preempted": [first.name]}
    inst = fake_compute.instances[("us-central1-a", first.name)]
    assert inst["status"] == "TERMINATED" and nat(fake_compute, "us-central1-a", first.name) is None
    assert fake_compute.region_quotas["us-central1"]["PREEMPTIBLE_NVIDIA_T4_GPUS"]["usage"] == 0

    (again,), lines = run(r, tmp_path)

    assert again.name == first.name and again.zone == "us-central1-a"
    assert len(fake_compute.inserts()) == 1                       # no new instance
    assert len(fake_compute.starts("us-central1-a")) == 1
    new = nat(fake_compute, "us-central1-a", first.name)
    assert again.address == new and new != old
    assert inst["status"] == "RUNNING"
    assert fake_compute.region_quotas["us-central1"]["PREEMPTIBLE_NVIDIA_T4_GPUS"]["usage"] == 1
    # the start went through our ZoneOperationsClient (wait), and host keys were read again
    paths = [p for _, _, p in fake_compute.requests]
    i = paths.index(fake_compute.starts()[0])
    assert any(p.endswith("/wait") for p in paths[i:]) and any(p.endswith("/getGuestAttributes") for p in paths[i:])
    assert again.host_key_verified
    with open(again.known_hosts) as fh:
        kh = fh.read()
    assert f"{new},{again.internal_address} ssh-ed25519 " in kh
    assert old not in kh                                          # the released address is no longer trusted
    text = "\n".join(lines)
    # it says that the VM was preempted, and when (issue 14): the fake's lastStopTimestamp
    assert re.search(r"TERMINATED in us-central1-a \(preempted spot VM\), stopped at 20\d\d-\d\d-\d\d \d\d:\d\d UTC "
                     r"\(\d+ min ago\): starting it again", text), text
    assert f"running again at {new}" in text


def test_start_that_hits_a_stockout_says_what_to_do(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True)
    (first,), _ = run(r, tmp_path)
    fake_compute.preempt("us-central1-a", first.name)
    fake_compute.add_fault("us-central1-a", "stockout")
    with pytest.raises(GcpError) as ei:
        run(r, tmp_path)
    msg = str(ei.value)
    assert ei.value.kind == "stockout"
    assert msg.startswith(f"{first.name} was preempted and us-central1-a has no spot capacity to start it again now")
    assert "`gpuwizard down RECIPE.yaml`" in msg and "fails over to other zones" in msg and "--resume" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")               # one sentence
    assert len(fake_compute.inserts()) == 1                        # nothing new created elsewhere
    assert fake_compute.instances[("us-central1-a", first.name)]["status"] == "TERMINATED"
    # capacity came back: the same resume works
    fake_compute.clear_faults()
    (again,), _ = run(r, tmp_path)
    assert again.name == first.name and len(fake_compute.inserts()) == 1


def test_a_vm_being_stopped_is_waited_for_then_started(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"])
    (first,), _ = run(r, tmp_path)
    fake_compute.op_seconds = 0.3
    with fake_compute.lock:
        fake_compute.stop_instance("us-central1-a", first.name)   # someone's `instances stop`, in flight
    assert fake_compute.instances[("us-central1-a", first.name)]["status"] == "STOPPING"
    (again,), lines = run(r, tmp_path)
    assert again.address == nat(fake_compute, "us-central1-a", first.name)
    assert len(fake_compute.starts()) == 1 and len(fake_compute.inserts()) == 1
    assert any(line.startswith(f"{first.name}: TERMINATED in us-central1-a, stopped at ") and line.endswith("starting it again") for line in lines)


def test_running_vm_is_reused_without_a_start(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"])
    run(r, tmp_path)
    _, lines = run(r, tmp_path)
    assert fake_compute.starts() == [] and len(fake_compute.inserts()) == 1
    assert any(ln.startswith("reusing 1 VM") for ln in lines)


# ---------------------------------------------------------------- preempted with DELETE: a new host

def test_deleted_spot_vm_is_replaced_under_a_new_host_name(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True)
    (first,), _ = run(r, tmp_path)
    assert first.name == "exp-run-1"
    assert json.loads((tmp_path / "known_hosts.vms").read_text())["names"] == ["exp-run-1"]
    fake_compute.preempt(run="run-1", action="DELETE")
    assert fake_compute.instances == {}

    (again,), lines = run(r, tmp_path)
    assert again.name == "exp-run-1-r1"                    # a new host: no done-steps of exp-run-1 apply
    assert len(fake_compute.inserts()) == 2 and fake_compute.starts() == []
    assert list(fake_compute.instances) == [("us-central1-a", "exp-run-1-r1")]
    labels = fake_compute.instances[("us-central1-a", "exp-run-1-r1")]["labels"]
    assert labels["gpuwizard-run"] == "run-1"              # still this run's: status/down find it
    assert any("exp-run-1 no longer exists" in ln and "every step runs again" in ln for ln in lines)

    (third,), _ = run(r, tmp_path)                          # resumed again: the replacement is reused
    assert third.name == "exp-run-1-r1" and len(fake_compute.inserts()) == 2
    fake_compute.preempt(run="run-1", action="DELETE")
    (fourth,), _ = run(r, tmp_path)
    assert fourth.name == "exp-run-1-r2"


def test_replacement_fails_over_like_a_fresh_vm(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True)
    run(r, tmp_path)
    fake_compute.preempt(run="run-1", action="DELETE")
    fake_compute.add_fault("us-central1-a", "stockout")
    (again,), _ = run(r, tmp_path)
    assert (again.name, again.zone) == ("exp-run-1-r1", "us-central1-b")


def test_previous_hosts_mark_a_name_as_used_without_the_ledger(fake_compute, tmp_path):
    """A run dir without the ledger (made before it existed): the runner's host names still count."""
    r = make_recipe(["us-central1-a"])
    hosts = asyncio.run(P.provision(r, "run-1", known_hosts_path=str(tmp_path / "kh"),
                                    previous_hosts=["exp-run-1"]))
    assert [h.name for h in hosts] == ["exp-run-1-r1"]
    fresh = asyncio.run(P.provision(make_recipe(["us-central1-a"], name="other"), "run-1",
                                    known_hosts_path=str(tmp_path / "kh2")))
    assert [h.name for h in fresh] == ["other-run-1"]       # never used: the plain name


def test_count_2_one_deleted_one_terminated(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True, count=2)
    hosts, _ = run(r, tmp_path)
    assert [h.name for h in hosts] == ["exp-run-1-0", "exp-run-1-1"]
    fake_compute.preempt("us-central1-a", "exp-run-1-0")
    fake_compute.preempt("us-central1-a", "exp-run-1-1", action="DELETE")
    # the replacement joins its sibling's zone (a run's VMs share one)
    again, _ = run(r, tmp_path)
    assert [h.name for h in again] == ["exp-run-1-0", "exp-run-1-1-r1"]
    assert {h.zone for h in again} == {"us-central1-a"}
    assert len(fake_compute.starts()) == 1
    assert fake_compute.inserts()[-1].endswith("/zones/us-central1-a/instances")   # one insert, not bulk
    assert fake_compute.region_quotas["us-central1"]["PREEMPTIBLE_NVIDIA_T4_GPUS"]["usage"] == 2


def test_replacement_beside_siblings_does_not_fail_over(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a", "us-central1-b"], spot=True, count=2)
    run(r, tmp_path)
    fake_compute.preempt("us-central1-a", "exp-run-1-1", action="DELETE")
    fake_compute.add_fault("us-central1-a", "stockout")
    with pytest.raises(GcpError) as ei:
        run(r, tmp_path)
    assert "Replacing exp-run-1-1-r1 in us-central1-a" in str(ei.value) and ei.value.kind == "stockout"
    assert fake_compute.inserts("us-central1-b") == []


# ---------------------------------------------------------------- OS Login

def test_os_login_without_ssh_user_stops_before_anything_is_created(fake_compute, tmp_path):
    fake_compute.set_project_metadata("enable-oslogin", "True")
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"]), tmp_path)
    msg = str(ei.value)
    from gpuwizard.gcp.sshkeys import default_key_path

    pub = f"{default_key_path()}.pub"
    assert ei.value.kind == "os_login"
    assert f"`gcloud compute os-login ssh-keys add --key-file={pub}`" in msg
    assert "ssh.user" in msg and "gcloud compute os-login describe-profile" in msg
    assert "project owner" in msg and msg.count(". ") == 0
    assert fake_compute.inserts() == []


def test_os_login_with_ssh_user_proceeds_without_metadata_keys(fake_compute, tmp_path):
    fake_compute.set_project_metadata("enable-oslogin", "TRUE")
    (h,), lines = run(make_recipe(["us-central1-a"], extra="ssh: {user: alice_example_com}"), tmp_path)
    assert h.user == "alice_example_com"
    meta = {i["key"]: i["value"] for i in fake_compute.instances[("us-central1-a", h.name)]["metadata"]["items"]}
    assert "ssh-keys" not in meta and "enable-oslogin" not in meta       # never switched off behind the user's back
    assert meta["enable-guest-attributes"] == "TRUE"
    assert any("enforces OS Login" in ln for ln in lines)
    gets = [p for _, m, p in fake_compute.requests if m == "GET" and p == "/compute/v1/projects/test-project"]
    assert len(gets) == 1                                  # the quota read's projects.get served both


def test_os_login_checked_on_resume_too(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"], spot=True)
    run(r, tmp_path)
    fake_compute.preempt(run="run-1")
    fake_compute.set_project_metadata("enable-oslogin", "true")
    with pytest.raises(GcpError) as ei:
        run(r, tmp_path)
    assert ei.value.kind == "os_login" and fake_compute.starts() == []


def test_os_login_for_a_cpu_only_vm_reads_project_metadata(fake_compute, tmp_path):
    from gpuwizard import recipe as R

    fake_compute.set_project_metadata("enable-oslogin", "TRUE")
    r = R.loads("version: 1\nname: cpu\ntarget:\n  gcp:\n    zones: [us-central1-a]\n    machine_type: n1-standard-4\n")
    with pytest.raises(GcpError) as ei:
        run(r, tmp_path)
    assert ei.value.kind == "os_login" and fake_compute.inserts() == []


def test_os_login_off_keeps_metadata_keys(fake_compute, tmp_path):
    fake_compute.set_project_metadata("enable-oslogin", "FALSE")
    (h,), _ = run(make_recipe(["us-central1-a"]), tmp_path)
    meta = {i["key"]: i["value"] for i in fake_compute.instances[("us-central1-a", h.name)]["metadata"]["items"]}
    assert meta["ssh-keys"].startswith("gpuwizard:ssh-ed25519 ")


@pytest.mark.parametrize("value,on", [("TRUE", True), ("true", True), ("True", True), ("1", True),
                                      ("FALSE", False), ("false", False), ("", False), ("yes please", False)])
def test_os_login_enabled_values(value, on):
    assert os_login_enabled({"enable-oslogin": value}) is on
    assert os_login_enabled({}) is False


# ---------------------------------------------------------------- the fake itself

def test_fake_terminated_vm_publishes_no_guest_attributes_and_start_on_running_is_a_no_op(fake_compute, tmp_path):
    from tests.fake_compute import FakeCompute  # noqa: F401 - documents what is exercised

    (h,), _ = run(make_recipe(["us-central1-a"]), tmp_path)
    with fake_compute.lock:
        code, _ = fake_compute.start_instance("us-central1-a", h.name)
        assert code == 200
        fake_compute.preempt("us-central1-a", h.name)
        code, _ = fake_compute.guest_attributes("us-central1-a", h.name, "hostkeys/")
    assert code == 404
    body = json.load(urllib.request.urlopen(fake_compute.url + "/compute/v1/projects/test-project", timeout=5))
    assert body["commonInstanceMetadata"]["items"] == []
    post(fake_compute, "/_fake/metadata", {"key": "enable-oslogin", "value": "TRUE"})
    body = json.load(urllib.request.urlopen(fake_compute.url + "/compute/v1/projects/test-project", timeout=5))
    assert body["commonInstanceMetadata"]["items"] == [{"key": "enable-oslogin", "value": "TRUE"}]
