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
