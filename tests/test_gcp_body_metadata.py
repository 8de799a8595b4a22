"""What the instance body asks of the image (issue 12 item 4): Deep Learning VM images get
``install-nvidia-driver: True`` (they install the driver at first boot only when asked;
docs/facts/gcp-provisioning-anchors.md), other images do not. Checked on the request the fake
Compute server received through the real client."""

from __future__ import annotations

from tests.builders.gcp import make_recipe, run

DLVM = "    image: common-cu129-ubuntu-2204-nvidia-580\ndriver: preinstalled"


def _metadata(fake, tmp_path, extra: str) -> dict[str, str]:
    hosts, _ = run(make_recipe(["us-central1-a"], extra=extra), tmp_path)
    inst = fake.instances[("us-central1-a", hosts[0].name)]
    return {i["key"]: i["value"] for i in inst["metadata"]["items"]}


def test_deep_learning_vm_image_asks_for_the_driver(fake_compute, tmp_path):
    meta = _metadata(fake_compute, tmp_path, DLVM)
    assert meta["install-nvidia-driver"] == "True"
    assert meta["enable-guest-attributes"] == "TRUE"


def test_plain_image_does_not_ask_for_the_driver(fake_compute, tmp_path):
    meta = _metadata(fake_compute, tmp_path, "")
    assert "install-nvidia-driver" not in meta


def test_a_machine_that_runs_only_with_gvnic_gets_it_without_a_cluster(fake_compute, tmp_path):
    """A3 VMs only run with gVNIC (docs/facts/gcp-cluster.md); a single A3 VM asked for the default
    vNIC, which Compute Engine refuses. N1 keeps the default (no nicType). Checked on the body the
    fake received through the real client (and the discovery-document check)."""
    from gpuwizard import recipe as R

    a3 = R.loads(make_recipe(["us-central1-a"]).source.replace("machine_type: n1-standard-4", "machine_type: a3-highgpu-1g")
                 .replace("type: nvidia-tesla-t4", "type: nvidia-h100-80gb"))
    hosts, _ = run(a3, tmp_path)
    assert fake_compute.instances[("us-central1-a", hosts[0].name)]["networkInterfaces"][0]["nicType"] == "GVNIC"
    hosts, _ = run(make_recipe(["us-central1-b"], name="n1"), tmp_path)
    assert "nicType" not in fake_compute.instances[("us-central1-b", hosts[0].name)]["networkInterfaces"][0]
