"""The embedded catalog: consistent data, sources on every file, and the typed API."""

from __future__ import annotations

import argparse

import pytest

from gpuwizard import catalog, commands


@pytest.mark.parametrize("name", ["gpus", "machines", "zones", "images"])
def test_every_data_file_has_snapshot_and_sources(name: str) -> None:
    meta = catalog.meta(name)
    assert meta.get("snapshot") and meta.get("sources")


def test_gpu_facts_match_the_matrix() -> None:
    t4 = catalog.gpu("nvidia-tesla-t4")
    assert t4 and (t4.cc, t4.families, t4.counts, t4.quota_metric) == ("7.5", ("n1",), (1, 2, 4), "NVIDIA_T4_GPUS")
    assert t4.spot_quota_metric == "PREEMPTIBLE_NVIDIA_T4_GPUS"
    assert catalog.gpu("nvidia-tesla-v100").n1_limits[1] == (12, 78.0)
    assert catalog.gpu("nvidia-l4").families == ("g2",)
    assert catalog.gpu_by_label("a100 40gb").name == "nvidia-tesla-a100"
    assert catalog.gpu_by_label("T4").name == "nvidia-tesla-t4"


def test_every_bundled_machine_names_a_known_gpu_of_its_family() -> None:
    for mt in catalog.machine_types().values():
        fam = catalog.family(mt.family)
        assert fam is not None, mt.name
        if mt.gpu_type:
            assert mt.gpu_type in fam["gpus"], mt.name
            assert mt.gpu_count in catalog.gpu(mt.gpu_type).counts, mt.name


def test_every_gpu_count_has_a_machine() -> None:
    for g in catalog.gpus().values():
        if g.retired:
            continue
        for count in g.counts:
            assert catalog.machine_types_for(g.name, count), (g.name, count)


def test_machine_types_for_respects_n1_limits_and_sorts_by_price() -> None:
    v100 = catalog.machine_types_for("nvidia-tesla-v100", 1)
    assert v100 and all(m.vcpus <= 12 and m.memory_gb <= 78 for m in v100)
    assert [m.price_hour for m in v100] == sorted(m.price_hour for m in v100)
    assert [m.name for m in catalog.machine_types_for("nvidia-l4", 2)] == ["g2-standard-24"]
    assert catalog.machine_types_for("nvidia-bogus", 1) == []


def test_zone_snapshot_uses_known_regions() -> None:
    regions = set(catalog.data("zones")["regions"])
    for gpu, zones in catalog.data("zones")["zones"].items():
        assert gpu in catalog.gpus()
        for z in zones:
            assert catalog.region_of(z) in regions, z


def _per_hour(*args, **kw):
    return catalog.vm_price(*args, **kw).per_hour


def test_hourly_price_adds_attached_gpus_only() -> None:
    assert _per_hour("n1-standard-4", "nvidia-tesla-t4", 2) == pytest.approx(0.19 + 2 * 0.35)
    assert _per_hour("g2-standard-8", "nvidia-l4", 1) == pytest.approx(0.8536)
    assert _per_hour("n1-standard-4", "nvidia-tesla-t4", 1, spot=True) < _per_hour(
        "n1-standard-4", "nvidia-tesla-t4", 1)
    assert _per_hour("nope-1", None, 0) is None


def test_images() -> None:
    assert catalog.image("ubuntu-2204-lts").os == "ubuntu2204"
    dl = catalog.image("projects/deeplearning-platform-release/global/images/family/common-cu129-ubuntu-2204-nvidia-580")
    assert dl is not None and dl.dlvm and dl.driver == "580"


def test_the_price_includes_the_boot_disk_and_says_what_it_assumes() -> None:
    p = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, disk_gb=100, disk_type="pd-balanced")
    assert p.disk == pytest.approx(100 * 0.10 / 730, abs=1e-4)
    assert p.per_hour == pytest.approx(0.19 + 0.35 + 100 * 0.10 / 730, abs=1e-4)
    assert "100 GB pd-balanced" in p.assumes and "us-central1" in p.assumes and "on-demand" in p.assumes
    assert p.label().startswith("~$0.55/h (n1-standard-4 + 1 x T4 + 100 GB pd-balanced")
    ssd = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, disk_gb=100, disk_type="pd-ssd")
    assert ssd.per_hour > p.per_hour
    # Each region at its own price (issue 15), named with the snapshot's date.
    eu = catalog.vm_price("n1-standard-4", None, 0, region="europe-west4")
    assert "europe-west4" in eu.assumes and f"catalog prices of {catalog.meta('prices')['snapshot']}" in eu.assumes
    assert eu.per_hour != catalog.vm_price("n1-standard-4", None, 0, region="us-central1").per_hour


@pytest.mark.parametrize("machine,gpu", [("a3-megagpu-8g", "nvidia-h100-mega-80gb"),
                                         ("a3-ultragpu-8g", "nvidia-h200-141gb"), ("a4-highgpu-8g", "nvidia-b200"),
                                         ("g4-standard-48", "nvidia-rtx-pro-6000")])
def test_placeholder_prices_are_unknown_not_invented(machine: str, gpu: str) -> None:
    p = catalog.vm_price(machine, gpu, catalog.machine_type(machine).gpu_count, disk_gb=200,
                         disk_type="hyperdisk-balanced")
    assert p.per_hour is None and _per_hour(machine, gpu, 8) is None
    assert p.label().startswith("price unknown (the catalog has no on-demand price for " + machine)


def test_g4_rtx_pro_6000_is_in_the_catalog() -> None:
    g = catalog.gpu_by_label("RTX PRO 6000")
    assert g is not None and g.name == "nvidia-rtx-pro-6000" and g.arch == "blackwell" and g.families == ("g4",)
    assert [m.name for m in catalog.machine_types_for(g.name, 1)] == ["g4-standard-48"]
    assert catalog.zones_for(g.name)


def test_every_disk_type_a_family_offers_has_a_price() -> None:
    prices = catalog.data("machines")["disk_prices"]
    for name in catalog.data("machines")["families"]:
        for disk in catalog.family(name)["disks"]:
            assert disk in prices, (name, disk)


def test_catalog_machines_says_unknown_for_unknown_prices(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.cmd_catalog(argparse.Namespace(what="machines", gpu="b200")) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("a4-highgpu-8g")][0]
    assert row.split()[-2:] == ["unknown", "unknown"]


@pytest.mark.parametrize("typed, name", [("H100", "nvidia-h100-80gb"), ("h200", "nvidia-h200-141gb"),
                                         ("A100", "nvidia-tesla-a100"), ("a100-80gb", "nvidia-a100-80gb"),
                                         ("B200", "nvidia-b200"), ("rtx-pro-6000", "nvidia-rtx-pro-6000")])
def test_the_names_people_type_find_the_gpu(typed: str, name: str) -> None:
    """`gpuwizard quota --gpu H100` (and zones, quota request) must not answer "Unknown GPU"."""
    assert catalog.gpu_by_label(typed).name == name
