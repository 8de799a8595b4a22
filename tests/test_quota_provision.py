"""The provisioner and the GPU-family quota (Cloud Quotas QuotaInfo): an A3/H100 recipe is never
sent an insert into a region whose family quota is 0, and the run says which request to file.
Real google-cloud-compute and google-cloud-quotas clients against the two fake servers."""

from __future__ import annotations

import pytest

from gpuwizard import recipe as R
from gpuwizard.gcp.errors import GcpError
from tests.builders.gcp import run

FAMILY = "GPUS-PER-GPU-FAMILY-per-project-region"


def a3_recipe(zones: list[str]) -> R.Recipe:
    return R.loads(f"""
version: 1
name: h100
target:
  gcp:
    zones: [{", ".join(zones)}]
    machine_type: a3-highgpu-8g
    gpu: {{type: nvidia-h100-80gb, count: 8}}
""")


def test_zero_family_quota_sends_no_insert_and_names_the_request(fake_compute, fake_cloudquotas, tmp_path):
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    with pytest.raises(GcpError) as ei:
        run(a3_recipe(["us-central1-a", "us-central1-b"]), tmp_path)
    assert fake_compute.inserts() == []
    msg = str(ei.value)
    assert "GPUS-PER-GPU-FAMILY-per-project-region {region=us-central1, gpu_family=NVIDIA_H100} is 0" in msg
    assert ("gpuwizard quota request --gpu nvidia-h100-80gb --region us-central1 --count 8 "
            "--email YOU@EXAMPLE.COM") in msg
    assert "--project test-project" in msg
    assert "Nothing was sent to Compute Engine" in msg


def test_family_blocked_region_is_skipped_and_another_region_used(fake_compute, fake_cloudquotas, tmp_path):
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    hosts, lines = run(a3_recipe(["us-central1-a", "us-central1-b", "us-east4-a"]), tmp_path)
    assert [h.zone for h in hosts] == ["us-east4-a"]
    assert fake_compute.inserts() == ["/compute/v1/projects/test-project/zones/us-east4-a/instances"]
    skip = [ln for ln in lines if ln.startswith("skipping us-central1")]
    assert len(skip) == 1 and "gpuwizard quota request --gpu nvidia-h100-80gb --region us-central1 --count 8" \
        in skip[0]


def test_family_quota_smaller_than_the_vm_blocks_too(fake_compute, fake_cloudquotas, tmp_path):
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-east4", "gpu_family": "NVIDIA_H100"}, 4)
    with pytest.raises(GcpError) as ei:
        run(a3_recipe(["us-east4-a"]), tmp_path)
    assert fake_compute.inserts() == []
    assert "is 4 with 4 free (8 needed)" in str(ei.value)


def test_cloud_quotas_disabled_falls_back_to_regions_list(fake_compute, fake_cloudquotas, tmp_path):
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    fake_cloudquotas.fail("disabled")
    hosts, lines = run(a3_recipe(["us-central1-a"]), tmp_path)
    assert [h.zone for h in hosts] == ["us-central1-a"]   # nothing known says no: today's behaviour
    note = [ln for ln in lines if ln.startswith("GPU-family quota unknown: the Cloud Quotas API is not enabled")]
    assert len(note) == 1 and "gcloud services enable cloudquotas.googleapis.com" in note[0]


def test_t4_run_is_not_told_about_family_quotas(fake_compute, tmp_path):
    from tests.builders.gcp import make_recipe

    hosts, lines = run(make_recipe(["us-central1-a"]), tmp_path)
    assert hosts and not any("GPU-family" in ln for ln in lines)


def test_no_zone_message_still_names_the_family_blocked_region(fake_compute, fake_cloudquotas, tmp_path):
    """The zones the family-quota gate dropped stay among the reasons when the rest stock out
    (one_pass used to clear them before its first insert)."""
    fake_cloudquotas.set_quota(FAMILY, {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    fake_compute.add_fault("us-east4-a", "stockout")
    with pytest.raises(GcpError) as ei:
        run(a3_recipe(["us-central1-a", "us-east4-a"]), tmp_path)
    msg = str(ei.value)
    assert msg.startswith("No zone could take the VM")
    assert "us-central1-a: GPU-family quota too low in us-central1" in msg
    assert "us-east4-a: " in msg


def test_zones_ranks_family_blocked_regions_last(fake_compute, fake_cloudquotas):
    """`gpuwizard zones --gpu H100` (zones_for_gpu) caps each region's free quota by the GPU-family
    quota, as the provisioner does: a region whose family quota is 0 is ranked last, with 0 free."""
    import asyncio

    from gpuwizard.gcp.zones import zones_for_gpu

    fake_cloudquotas.set_quota(FAMILY, {"region": "us-central1", "gpu_family": "NVIDIA_H100"}, 0)
    opts = asyncio.run(zones_for_gpu(None, "nvidia-h100-80gb", 8, False))
    central = [o for o in opts if o.region == "us-central1"]
    others = [o for o in opts if o.region != "us-central1"]
    assert central and others
    assert all(o.free_quota == 0 and not o.fits(8) for o in central)
    assert opts[-len(central):] == central
