"""The embedded catalog: consistent data, sources on every file, and the typed API."""

from __future__ import annotations

import pytest

from gpuwizard import catalog


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


def test_hourly_price_adds_attached_gpus_only() -> None:
    assert catalog.hourly_price("n1-standard-4", "nvidia-tesla-t4", 2) == pytest.approx(0.19 + 2 * 0.35)
    assert catalog.hourly_price("g2-standard-8", "nvidia-l4", 1) == pytest.approx(0.8536)
    assert catalog.hourly_price("n1-standard-4", "nvidia-tesla-t4", 1, spot=True) < catalog.hourly_price(
        "n1-standard-4", "nvidia-tesla-t4", 1)
    assert catalog.hourly_price("nope-1", None, 0) is None


def test_images() -> None:
    assert catalog.image("ubuntu-2204-lts").os == "ubuntu2204"
    dl = catalog.image("projects/deeplearning-platform-release/global/images/family/common-cu129-ubuntu-2204-nvidia-580")
    assert dl is not None and dl.dlvm and dl.driver == "580"
