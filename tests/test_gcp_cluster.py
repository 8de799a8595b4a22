"""A GCP cluster (``cluster: {nodes: N}``) against the fake Compute server, through the real client:
all nodes or none in one zone (bulkInsert with minCount), a partial create cleaned up, the compact
placement policy and the firewall rule made before the nodes and removed with them, gVNIC, and a
lost node replaced alone. Every request and answer is held to the discovery document (fixture)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib

import pytest

from gpuwizard import recipe as R
from gpuwizard.gcp import cluster_spec
from gpuwizard.gcp.body import recipe_id
from gpuwizard.gcp.errors import STOCKOUT, GcpError, classify
from gpuwizard.gcp.provision import provision
from gpuwizard.gcp.wait import is_capacity
from tests.builders.gcp import run

PREFIX = "/compute/v1/projects/test-project"


def cluster_recipe(zones: list[str], *, nodes: int = 3, machine: str = "g2-standard-8", gpu: str = "nvidia-l4",
                   image: str | None = None, name: str = "clu", spot: bool = False) -> R.Recipe:
    return R.loads(f"""
version: 1
name: {name}
target:
  gcp:
    zones: [{", ".join(zones)}]
    machine_type: {machine}
    gpu: {{type: {gpu}, count: 1}}
    spot: {str(spot).lower()}
{f"    image: {image}" if image else ""}
cluster: {{nodes: {nodes}}}
""")


TAG = cluster_spec.resource_name(cluster_spec.key(cluster_recipe(["us-central1-a"]), None), "run-1")  # "clu", run-1


def write_recipe(path: pathlib.Path, machine: str, gpu: str) -> None:
    """A 2-node cluster recipe file (status, down and plan read files; the id is its path's)."""
    path.write_text(f"version: 1\nname: clu\ntarget:\n  gcp:\n    zones: [us-central1-a]\n    machine_type: {machine}\n"
                    f"    gpu: {{type: {gpu}, count: 1}}\ncluster: {{nodes: 2}}\n")


def posts(fake, suffix: str) -> list[str]:
    return [p for _, m, p in fake.requests if m == "POST" and p.endswith(suffix)]


def test_nodes_come_from_one_bulk_insert_with_min_count_placement_firewall_and_gvnic(fake_compute, tmp_path):
    hosts, lines = run(cluster_recipe(["us-central1-a"]), tmp_path)

    assert [h.name for h in hosts] == ["clu-run-1-0", "clu-run-1-1", "clu-run-1-2"]   # rank order
    assert all(h.internal_address for h in hosts)
    (bulk,) = fake_compute.bulk_bodies
    assert (bulk["count"], bulk["minCount"]) == ("3", "3")
    tag = TAG
    props = bulk["instanceProperties"]
    assert props["resourcePolicies"] == [tag] and props["tags"] == {"items": [tag]}
    assert props["networkInterfaces"][0]["nicType"] == "GVNIC"
    # the firewall rule and the policy exist before the nodes' insert is sent
    order = [p for _, m, p in fake_compute.requests if m == "POST" and not p.endswith("/wait")]
    assert order == [f"{PREFIX}/global/firewalls", f"{PREFIX}/regions/us-central1/resourcePolicies",
                     f"{PREFIX}/zones/us-central1-a/instances/bulkInsert"]
    fw = fake_compute.firewalls[tag]
    assert fw["sourceTags"] == fw["targetTags"] == [tag] and fw["direction"] == "INGRESS"
    assert [a["IPProtocol"] for a in fw["allowed"]] == ["tcp", "udp", "icmp"]
    assert "ports" not in json.dumps(fw["allowed"]) and fw["network"].endswith("/global/networks/default")
    assert fake_compute.policies[("us-central1", tag)]["groupPlacementPolicy"] == {"collocation": "COLLOCATED"}
    for h in hosts:
        inst = fake_compute.instances[("us-central1-a", h.name)]
        assert inst["networkInterfaces"][0]["nicType"] == "GVNIC" and inst["tags"]["items"] == [tag]
        assert inst["resourcePolicies"] == [fake_compute.policies[("us-central1", tag)]["selfLink"]]
    text = "\n".join(lines)
    assert "g2-standard-8: compact placement policy (COLLOCATED)" in text and "gVNIC network interface" in text


def test_a_zone_with_room_for_fewer_than_min_count_creates_none_and_the_next_zone_is_tried(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "capacity", vms=2)
    hosts, lines = run(cluster_recipe(["us-central1-a", "us-east1-b"]), tmp_path)

    assert {h.zone for h in hosts} == {"us-east1-b"}
    assert sorted(z for z, _ in fake_compute.instances) == ["us-east1-b"] * 3
    assert fake_compute.inserts("us-central1-a") == [f"{PREFIX}/zones/us-central1-a/instances/bulkInsert"]
    tag = TAG
    # nothing was made in us-central1-a, so nothing deleted there; only the policy of its region goes
    assert [p for _, m, p in fake_compute.requests if m == "DELETE"] == [
        f"{PREFIX}/regions/us-central1/resourcePolicies/{tag}"]
    assert any("us-central1-a: no capacity" in ln for ln in lines)
    assert list(fake_compute.policies) == [("us-east1", tag)]


def test_min_count_not_reached_is_no_capacity_also_for_the_wait():
    # what a bulkInsert says when its zone cannot make minCount VMs, often alone and with 503
    verdict = classify([{"code": "VM_MIN_COUNT_NOT_REACHED",
                         "message": "Requested minimum count of 3 VMs could not be created."}], 503)
    assert verdict.kind == STOCKOUT and is_capacity(verdict)


def test_a_policy_left_in_another_region_that_cannot_be_deleted_is_said_not_fatal(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "stockout")
    fake_compute.add_http_fault("rp_delete", 500)
    hosts, lines = run(cluster_recipe(["us-central1-a", "us-east1-b"]), tmp_path)
    assert {h.zone for h in hosts} == {"us-east1-b"}
    assert any(ln.startswith(f"could not delete placement policy {TAG} in us-central1") and "gpuwizard down" in ln
               for ln in lines)


def test_a_resumed_cluster_gets_its_firewall_rule_back(fake_compute, tmp_path):
    r = cluster_recipe(["us-central1-a"], nodes=2)
    run(r, tmp_path)
    with fake_compute.lock:
        del fake_compute.firewalls[TAG]
    again, lines = run(r, tmp_path)
    assert len(again) == 2 and len(fake_compute.inserts()) == 1
    assert TAG in fake_compute.firewalls and len(posts(fake_compute, "/global/firewalls")) == 2


def test_a_partial_create_is_recorded_deleted_and_the_next_zone_tried(fake_compute, tmp_path):
    fake_compute.add_fault("us-central1-a", "partial", vms=2)
    r = cluster_recipe(["us-central1-a", "us-east1-c"], machine="n1-standard-8", gpu="nvidia-tesla-t4")
    hosts, lines = run(r, tmp_path)

    assert {h.zone for h in hosts} == {"us-east1-c"} and len(hosts) == 3
    assert sorted(z for z, _ in fake_compute.instances) == ["us-east1-c"] * 3
    deleted = sorted(p.rsplit("/", 1)[-1] for _, m, p in fake_compute.requests
                     if m == "DELETE" and "/zones/us-central1-a/instances/" in p)
    assert len(deleted) == 2 and set(deleted) < {"clu-run-1-0", "clu-run-1-1", "clu-run-1-2"}
    assert any(f"us-central1-a: 2 of 3 nodes were created ({', '.join(deleted)})" in ln for ln in lines)
    ledger = json.loads((tmp_path / "known_hosts.vms").read_text())
    assert set(ledger["names"]) == {"clu-run-1-0", "clu-run-1-1", "clu-run-1-2"}
    # the GPU quota the deleted nodes held is free again: only the 3 live nodes hold T4s
    assert fake_compute.global_quotas["GPUS_ALL_REGIONS"]["usage"] == 3
    assert fake_compute.region_quotas["us-central1"]["NVIDIA_T4_GPUS"]["usage"] == 0


def test_the_ledger_holds_the_partial_nodes_before_they_are_deleted(fake_compute, tmp_path):
    """Deleting fails (the fake refuses it): the error names them, `down` finds them, and
    the ledger recorded them before the delete was tried."""
    fake_compute.add_fault("us-central1-a", "partial", vms=1)
    fake_compute.add_http_fault("inst_delete", 403)
    with pytest.raises(GcpError) as ei:
        run(cluster_recipe(["us-central1-a", "us-east1-b"]), tmp_path)
    assert ei.value.vm_exists and "gpuwizard down" in str(ei.value)
    ledger = json.loads((tmp_path / "known_hosts.vms").read_text())
    (name,) = ledger["names"]
    assert ledger["zones"] == {name: "us-central1-a"} and ("us-central1-a", name) in fake_compute.instances
    assert fake_compute.inserts("us-east1-b") == []
    assert TAG in fake_compute.firewalls    # a node that still exists keeps its network until `down`


def test_no_zone_takes_the_nodes_so_nothing_of_the_cluster_is_left(fake_compute, tmp_path):
    for z in ("us-central1-a", "us-east1-b"):
        fake_compute.add_fault(z, "stockout")
    with pytest.raises(GcpError):
        run(cluster_recipe(["us-central1-a", "us-east1-b"]), tmp_path)
    assert fake_compute.instances == {} and fake_compute.firewalls == {} and fake_compute.policies == {}
    assert len(posts(fake_compute, "/resourcePolicies")) == 2   # one per region tried


def test_n1_gets_no_placement_policy_and_the_run_says_so(fake_compute, tmp_path):
    r = cluster_recipe(["us-central1-a"], nodes=2, machine="n1-standard-8", gpu="nvidia-tesla-t4")
    hosts, lines = run(r, tmp_path)
    assert len(hosts) == 2
    assert posts(fake_compute, "/resourcePolicies") == [] and fake_compute.policies == {}
    assert "resourcePolicies" not in fake_compute.bulk_bodies[0]["instanceProperties"]
    note = "n1-standard-8: compact placement is not available for N1; nodes may be far apart"
    assert any(note in ln for ln in lines)
    assert any(note in ln for ln in cluster_spec.plan_notes(r))


def test_the_fake_refuses_a_placement_policy_on_n1_as_compute_engine_does(fake_compute, tmp_path):
    """The rule the N1 test relies on is the fake's too (dstack#2591): had gpuwizard sent the
    policy for N1, the insert would have failed."""
    fake_compute.policies[("us-central1", "p")] = {"selfLink": "x"}
    body = {"name": "v", "machineType": "zones/us-central1-a/machineTypes/n1-standard-8", "resourcePolicies": ["p"]}
    code, out = fake_compute.insert("us-central1-a", [body])
    assert code == 400 and "not applicable to machine type n1-standard-8" in out["error"]["message"]


@pytest.mark.parametrize("image, machine, nic", [
    ("ubuntu-2204-lts", "g2-standard-8", "GVNIC"),
    ("debian-12", "n1-standard-8", "GVNIC"),
    ("common-cu128-ubuntu-2204-nvidia-570", "g2-standard-8", "GVNIC"),
    ("projects/deeplearning-platform-release/global/images/family/some-new-dlvm", "g2-standard-8", "GVNIC"),
    ("projects/me/global/images/my-image", "g2-standard-8", "VIRTIO_NET"),
    ("projects/me/global/images/my-image", "a3-highgpu-8g", "GVNIC"),
])
def test_gvnic_where_image_and_machine_support_it(image, machine, nic):
    """Before any request: catalog images and DLVM have gVNIC, A3 needs it; a path image is
    read when the run starts (next test), so plan says VIRTIO_NET unless it lists GVNIC."""
    r = cluster_recipe(["us-central1-a"], machine=machine, image=image)
    s = cluster_spec.spec(r, "run-1", None)
    assert s is not None and s.nic_type == nic
    if nic == "VIRTIO_NET":
        assert "unless projects/me/global/images/my-image lists the GVNIC guest OS feature" in s.nic_note


@pytest.mark.parametrize("features, nic, said", [
    (("UEFI_COMPATIBLE", "GVNIC"), "GVNIC", "gVNIC network interface (projects/me/global/images/family/mine lists "
                                           "the GVNIC guest OS feature)"),
    (("UEFI_COMPATIBLE",), "VIRTIO_NET", "does not list the GVNIC guest OS feature"),
    (None, "VIRTIO_NET", "could not read projects/me/global/images/family/mine's guest OS features"),
])
def test_a_path_image_gets_gvnic_when_its_guest_os_features_list_it(fake_compute, tmp_path, features, nic, said):
    if features is not None:
        fake_compute.add_image("me", "mine-v2", family="mine", features=features)
    r = cluster_recipe(["us-central1-a"], nodes=2, image="projects/me/global/images/family/mine")
    hosts, lines = run(r, tmp_path)
    assert fake_compute.bulk_bodies[0]["instanceProperties"]["networkInterfaces"][0]["nicType"] == nic
    assert any(said in ln for ln in lines)
    assert fake_compute.route_requests("img_family") == 1


def test_a_recipe_without_cluster_gets_no_cluster_resources(fake_compute, tmp_path):
    from tests.builders.gcp import make_recipe

    run(make_recipe(["us-central1-a"], count=2), tmp_path)
    assert fake_compute.firewalls == {} and fake_compute.policies == {}
    assert "tags" not in fake_compute.bulk_bodies[0]["instanceProperties"]


def test_a_lost_node_is_replaced_alone_in_its_zone_and_rank(fake_compute, tmp_path):
    r = cluster_recipe(["us-central1-a", "us-east1-b"])
    first, _ = run(r, tmp_path)
    with fake_compute.lock:          # node 1 is gone (deleted outside gpuwizard)
        fake_compute._release(fake_compute.instances.pop(("us-central1-a", "clu-run-1-1")))
    before = len(fake_compute.requests)
    again, lines = run(r, tmp_path)

    new = [(m, p) for _, m, p in fake_compute.requests[before:] if m in ("POST", "DELETE") and not p.endswith("/wait")]
    assert new == [("POST", f"{PREFIX}/zones/us-central1-a/instances")]     # one insert, nothing else touched
    assert [h.name for h in again] == ["clu-run-1-0", "clu-run-1-1-r1", "clu-run-1-2"]
    assert [h.address for h in again][::2] == [h.address for h in first][::2]
    inst = fake_compute.instances[("us-central1-a", "clu-run-1-1-r1")]
    tag = cluster_spec.resource_name(cluster_spec.key(r, None), "run-1")
    assert inst["tags"]["items"] == [tag] and inst["networkInterfaces"][0]["nicType"] == "GVNIC"
    assert inst["resourcePolicies"] == [fake_compute.policies[("us-central1", tag)]["selfLink"]]


def test_a_preempted_node_is_started_again_alone(fake_compute, tmp_path):
    r = cluster_recipe(["us-central1-a"], spot=True)
    first, _ = run(r, tmp_path)
    assert fake_compute.preempt("us-central1-a", "clu-run-1-2") == ["clu-run-1-2"]
    before = len(fake_compute.requests)
    again, _ = run(r, tmp_path)
    new = [(m, p) for _, m, p in fake_compute.requests[before:] if m in ("POST", "DELETE") and not p.endswith("/wait")]
    assert new == [("POST", f"{PREFIX}/zones/us-central1-a/instances/clu-run-1-2/start")]
    assert [h.name for h in again] == [h.name for h in first]


def test_status_and_down_list_and_delete_the_cluster_network(fake_compute, tmp_path, monkeypatch):
    from tests.builders.gcp import gw

    path = tmp_path / "clu.yaml"
    write_recipe(path, "g2-standard-8", "nvidia-l4")
    r = R.load(str(path))
    asyncio.run(provision(r, "run-1", known_hosts_path=str(tmp_path / "kh"), recipe_path=str(path)))
    tag = cluster_spec.resource_name(recipe_id(str(path)), "run-1")
    assert tag in fake_compute.firewalls
    env = {"GPUWIZARD_COMPUTE_ENDPOINT": fake_compute.url, "GOOGLE_CLOUD_PROJECT": fake_compute.project,
           "NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    st = gw("status", str(path), state=tmp_path / "state", env=env)
    assert st.returncode == 0, st.stderr
    assert f"firewall rule {tag} (TCP/UDP/ICMP between VMs tagged {tag})" in st.stdout
    assert f"placement policy {tag} in us-central1" in st.stdout
    down = gw("down", str(path), "--yes", state=tmp_path / "state", env=env)
    assert down.returncode == 0, down.stderr
    assert fake_compute.instances == {} and fake_compute.firewalls == {} and fake_compute.policies == {}
    assert f"Deleted 2 VM(s). Deleted placement policy {tag} in us-central1, firewall rule {tag}." in down.stdout
    again = gw("down", str(path), "--yes", state=tmp_path / "state", env=env)
    assert "nothing to delete" in again.stdout


def test_down_deletes_a_leftover_cluster_network_without_vms(fake_compute, tmp_path):
    from tests.builders.gcp import gw

    path = tmp_path / "clu.yaml"
    write_recipe(path, "g2-standard-8", "nvidia-l4")
    tag = cluster_spec.resource_name(recipe_id(str(path)), "old-run")
    other = cluster_spec.resource_name("0" * 12, "old-run")            # another recipe file's: never touched
    with fake_compute.lock:
        seconds, fake_compute.op_seconds = fake_compute.op_seconds, 0
        for name in (tag, other):
            fake_compute.fw_insert({"name": name, "network": "global/networks/default"})
        fake_compute._tick()
        fake_compute.op_seconds = seconds
    env = {"GPUWIZARD_COMPUTE_ENDPOINT": fake_compute.url, "GOOGLE_CLOUD_PROJECT": fake_compute.project,
           "NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    st = gw("status", str(path), state=tmp_path / "state", env=env)
    assert f"firewall rule {tag}" in st.stdout and other not in st.stdout and "No VMs from recipe clu" in st.stdout
    down = gw("down", str(path), "--yes", state=tmp_path / "state", env=env)
    assert down.returncode == 0, down.stderr
    assert list(fake_compute.firewalls) == [other], down.stdout


def test_plan_says_what_the_cluster_gets(tmp_path):
    from tests.builders.gcp import gw

    path = tmp_path / "clu.yaml"
    write_recipe(path, "n1-standard-8", "nvidia-tesla-t4")
    out = gw("plan", str(path), state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    assert "create 2 x n1-standard-8" in out.stdout
    assert "n1-standard-8: compact placement is not available for N1; nodes may be far apart" in out.stdout
    assert "gVNIC network interface (Ubuntu 22.04 LTS supports it" in out.stdout
    assert "firewall rule gpuwizard-<recipe>-<run>: all TCP/UDP and ICMP between the nodes only" in out.stdout


def test_delete_run_resources_removes_one_runs_network_only(fake_compute, tmp_path):
    from gpuwizard.gcp import cluster_net
    from gpuwizard.gcp.inventory import delete_recipe_vms

    path = tmp_path / "clu.yaml"
    write_recipe(path, "g2-standard-8", "nvidia-l4")
    r = R.load(str(path))
    for rid in ("run-1", "run-2"):
        asyncio.run(provision(r, rid, known_hosts_path=str(tmp_path / f"kh-{rid}"), recipe_path=str(path)))
    asyncio.run(delete_recipe_vms(None, "clu", run_id="run-1", recipe_path=str(path)))
    gone = asyncio.run(cluster_net.delete_run_resources(None, r, "run-1", str(path)))
    one, two = (cluster_spec.resource_name(recipe_id(str(path)), rid) for rid in ("run-1", "run-2"))
    assert gone == [f"placement policy {one} in us-central1", f"firewall rule {one}"]
    assert list(fake_compute.firewalls) == [two] and list(fake_compute.policies) == [("us-central1", two)]
    plain = dataclasses.replace(r, cluster=None)      # not a cluster: nothing looked up, nothing deleted
    before = len(fake_compute.requests)
    assert asyncio.run(cluster_net.delete_run_resources(None, plain, "run-2", str(path))) == []
    assert len(fake_compute.requests) == before and two in fake_compute.firewalls
