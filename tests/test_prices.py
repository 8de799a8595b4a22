"""Prices per region, live (issue 15): the real google-cloud-billing client against the fake
Billing Catalog server, the SKU mapping, the day cache, the snapshot fallback, and
`gpuwizard zones` / `status` showing each region at its own price."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat

import pytest

from gpuwizard import catalog, prices
from gpuwizard.gcp import billing_api, zones
from gpuwizard.gcp.commands import cmd_zones
from tests.fake_billing import COMPUTE, PRICES, default_skus, sku

SNAPSHOT = catalog.meta("prices")["snapshot"]
DAY = 24 * 3600


def _zones_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"gpu": "T4", "count": 1, "spot": False, "offline": False, "project": None, **kw})


def _row_prices(out: str) -> dict[str, str]:
    """ZONE -> $/HOUR from `gpuwizard zones` output (the last column of each zone row)."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+-\S+-[a-z])\s.*\s(\S+)$", line)
        if m:
            rows[m[1]] = m[2]
    return rows


def test_the_real_client_reads_every_page_of_the_fake(fake_billing) -> None:
    skus = billing_api.list_compute_skus()
    assert [s["skuId"] for s in skus] == [s["skuId"] for s in fake_billing.skus]
    pages = -(-len(fake_billing.skus) // fake_billing.page_size)
    assert fake_billing.sku_requests() == pages > 1
    assert all(r.startswith(f"/v1/services/{COMPUTE}/skus?") and "currencyCode=USD" in r
               for r in fake_billing.requests)
    assert "pageToken=" not in fake_billing.requests[0] and "pageToken=" in fake_billing.requests[-1]


def test_skus_map_to_gpu_core_ram_and_disk_per_region_and_commitments_are_skipped() -> None:
    t = prices.parse_skus(default_skus(), "2026-11-29")
    for region, p in PRICES.items():
        assert t.rate("gpu", "nvidia-tesla-t4", region) == pytest.approx(p["t4"])
        assert t.rate("gpu", "nvidia-tesla-t4", region, spot=True) == pytest.approx(p["t4s"])
        assert t.rate("core", "n1", region) == pytest.approx(p["core"])
        assert t.rate("ram", "n1", region, spot=True) == pytest.approx(p["rams"])
        assert t.rate("disk", "pd-balanced", region) == pytest.approx(p["pd"])
    assert 9.0 not in t.rates.values()  # the sole-tenancy premium
    assert not any(v == pytest.approx(p["t4"] / 2) for p in PRICES.values() for v in t.rates.values())
    assert t.source == "live" and t.describe() == "live list prices of 2026-11-29"


@pytest.mark.parametrize("description, name", [
    ("Nvidia Tesla A100 80GB GPU running in Americas", "nvidia-a100-80gb"),
    ("Nvidia Tesla A100 GPU running in Americas", "nvidia-tesla-a100"),
    ("Nvidia H100 80GB Mega GPU running in Americas", "nvidia-h100-mega-80gb"),
    ("Nvidia H100 80GB GPU running in Americas", "nvidia-h100-80gb"),
    ("Nvidia Tesla P4 GPU running in Americas", "nvidia-tesla-p4"),
    ("Nvidia Tesla P100 GPU running in Americas", "nvidia-tesla-p100"),
    ("Nvidia L4 GPU running in Americas", "nvidia-l4"),
])
def test_gpu_skus_are_told_apart_by_their_description(description: str, name: str) -> None:
    assert prices.classify(sku("X", description, "Compute", "GPU", "OnDemand", ["us-central1"], 1.0)) == \
        ("gpu", name, False)


def test_the_more_specific_sku_wins_where_two_price_one_region() -> None:
    wide = sku("W", "Nvidia Tesla T4 GPU running in Americas", "Compute", "GPU", "OnDemand",
               ["us-central1", "us-east1", "us-west1"], 0.35)
    narrow = sku("N", "Nvidia Tesla T4 GPU running in Iowa", "Compute", "GPU", "OnDemand", ["us-central1"], 0.33)
    for order in ([wide, narrow], [narrow, wide]):
        t = prices.parse_skus(order, "d")
        assert t.rate("gpu", "nvidia-tesla-t4", "us-central1") == pytest.approx(0.33)
        assert t.rate("gpu", "nvidia-tesla-t4", "us-east1") == pytest.approx(0.35)


def test_vm_price_uses_the_live_table_per_region_and_says_so(fake_billing) -> None:
    assert zones.use_live_prices() is None
    us = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, disk_gb=100, region="us-central1")
    eu = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, disk_gb=100, region="europe-west1")
    p = PRICES["europe-west1"]
    assert eu.per_hour == pytest.approx(4 * p["core"] + 15 * p["ram"] + p["t4"] + 100 * p["pd"] / 730, abs=1e-4)
    assert us.per_hour != eu.per_hour
    assert "europe-west1, on-demand, live list prices of" in eu.assumes and eu.source.startswith("live")
    # A region the live list does not price comes from the snapshot, and says so.
    asia = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, region="asia-east1")
    assert asia.per_hour is not None and asia.source == f"catalog prices of {SNAPSHOT}"


def test_two_regions_get_different_prices_in_gpuwizard_zones(fake_billing, fake_compute, capsys) -> None:
    assert cmd_zones(_zones_args()) == 0
    out, err = capsys.readouterr()
    rows = _row_prices(out)
    assert rows["us-central1-a"] != rows["europe-west1-b"]
    for zone in ("us-central1-a", "europe-west1-b"):
        want = zones.zone_price("nvidia-tesla-t4", 1, False, catalog.region_of(zone))
        assert rows[zone] == f"{want.per_hour:.2f}" and want.source.startswith("live list prices of")
    assert "$/HOUR: n1-standard-1 + 1 x T4 + 100 GB pd-balanced, on-demand, in each zone's region, live list " \
           "prices of" in out
    assert err == ""


def test_offline_zones_show_the_snapshot_date_and_read_no_live_price(fake_billing, capsys) -> None:
    assert cmd_zones(_zones_args(offline=True)) == 0
    out = capsys.readouterr().out
    assert f"catalog prices of {SNAPSHOT}" in out and "live list prices" not in out
    assert fake_billing.sku_requests() == 0
    rows = _row_prices(out)
    assert rows["us-central1-a"] != rows["europe-west2-a"]  # the snapshot is per region too


def test_without_credentials_the_snapshot_is_used_quietly(fake_compute, monkeypatch, capsys) -> None:
    """No billing endpoint, no ADC file, not on GCE: no request, no warning, snapshot prices."""
    monkeypatch.delenv("GPUWIZARD_BILLING_ENDPOINT", raising=False)
    monkeypatch.delenv("GPUWIZARD_BILLING_API_KEY", raising=False)
    assert cmd_zones(_zones_args()) == 0
    out, err = capsys.readouterr()
    assert f"in each zone's region, catalog prices of {SNAPSHOT}" in out and err == ""
    assert catalog.live_prices() is None


def test_the_cache_serves_the_second_call_and_is_refreshed_after_a_day(fake_billing) -> None:
    t0 = 1_800_000_000.0
    assert zones.use_live_prices(clock=lambda: t0) is None
    first = fake_billing.sku_requests()
    assert first > 0
    path = prices.cache_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".prices-")]  # no temp file left
    catalog.set_live_prices(None)
    assert zones.use_live_prices(clock=lambda: t0 + DAY - 1) is None
    assert fake_billing.sku_requests() == first  # from the cache
    assert catalog.live_prices() is not None and catalog.live_prices().source == "live"
    fake_billing.skus = [s for s in fake_billing.skus if "europe" not in str(s["serviceRegions"])]
    assert zones.use_live_prices(clock=lambda: t0 + DAY + 1) is None
    assert fake_billing.sku_requests() > first  # a day later: read again
    assert catalog.live_prices().rate("gpu", "nvidia-tesla-t4", "europe-west1") is None


def test_a_cache_for_another_endpoint_is_not_used(fake_billing, monkeypatch) -> None:
    zones.use_live_prices()
    n = fake_billing.sku_requests()
    monkeypatch.setenv("GPUWIZARD_BILLING_ENDPOINT", fake_billing.url + "/")
    zones.use_live_prices()
    assert fake_billing.sku_requests() > n


@pytest.mark.parametrize("code, said", [(403, "The caller does not have permission"),
                                        (500, "Internal error encountered.")])
def test_an_api_error_falls_back_to_the_snapshot_with_one_clear_line(fake_billing, fake_compute, capsys,
                                                                    code: int, said: str) -> None:
    fake_billing.fail_with = code
    assert cmd_zones(_zones_args()) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gpuwizard: Live prices unavailable (Cloud Billing Catalog API: HTTP {code}, "
                                f"{said}); showing catalog prices of {SNAPSHOT}."]
    want = catalog.vm_price("n1-standard-1", "nvidia-tesla-t4", 1, disk_gb=100, region="europe-west1",
                            table=catalog.snapshot_prices())
    assert _row_prices(out)["europe-west1-b"] == f"{want.per_hour:.2f}"
    assert fake_billing.sku_requests() == 1  # no retry storm: the snapshot is there
    assert not os.path.exists(prices.cache_path())


def test_the_snapshot_names_real_regions_and_gpus_and_spot_is_cheaper() -> None:
    """prices.yaml is hand-assembled: every region is a Compute Engine region, every GPU a
    catalog GPU, every figure positive with spot below on-demand, and each T4 zone's region
    is priced (the zone screen's first paint)."""
    doc = catalog.data("prices")
    known = set(catalog.data("zones")["regions"])
    assert set(doc["regions"]) <= known
    for region, parts in doc["regions"].items():
        pairs = list((parts.get("gpus") or {}).items()) + [
            (f"{s}.{k}", v) for s, cr in (parts.get("series") or {}).items() for k, v in cr.items()]
        for name, (od, spot) in pairs:
            assert 0 < spot < od, (region, name)
        assert set(parts.get("gpus") or {}) <= set(catalog.gpus()), region
    for zone in catalog.zones_for("nvidia-tesla-t4"):
        p = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, region=catalog.region_of(zone),
                             table=catalog.snapshot_prices())
        assert p.per_hour is not None, zone


def test_plan_and_validate_price_from_the_snapshot_without_a_request(fake_billing, capsys) -> None:
    """The fast paths never wait on the network: `plan` names the snapshot and its date."""
    from gpuwizard.cli import main

    recipe = os.path.join(os.path.dirname(__file__), "..", "recipes", "dlvm-quickstart.yaml")
    assert main(["plan", recipe]) == 0
    assert main(["validate", recipe]) == 0
    out = capsys.readouterr().out
    assert f"catalog prices of {SNAPSHOT}" in out and "live list prices" not in out
    assert fake_billing.requests == []


def test_status_prices_each_vm_in_its_region_at_live_prices(fake_billing, fake_compute, tmp_path, capsys) -> None:
    from gpuwizard.gcp.commands import cmd_status

    fake_compute.add_instance("us-central1-a", "exp-r1", {"gpuwizard-recipe": "exp"}, "nvidia-tesla-t4", 1)
    fake_compute.add_instance("europe-west1-b", "exp-r2", {"gpuwizard-recipe": "exp"}, "nvidia-tesla-t4", 1)
    path = tmp_path / "exp.yaml"
    path.write_text("version: 1\nname: exp\ntarget:\n  gcp:\n    zones: [us-central1-a]\n"
                    "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n")
    assert cmd_status(argparse.Namespace(recipe=str(path))) == 0
    out = capsys.readouterr().out
    # NAME ZONE STATE IP "1 x nvidia-tesla-t4" $/HOUR ...: the price is the 8th word
    hourly = {line.split()[0]: line.split()[7] for line in out.splitlines() if line.startswith("exp-")}
    assert "?" not in hourly.values() and hourly["exp-r1"] != hourly["exp-r2"]
    # (the fake's instances carry no boot disk size, so no disk is priced)
    assert "  exp-r2: n1-standard-4 + 1 x T4; europe-west1, on-demand, live list prices of" in out


def test_runs_cost_line_prices_the_first_zones_region_at_live_prices(fake_billing, capsys) -> None:
    from gpuwizard import recipe as rc
    from gpuwizard import runner

    r = rc.loads("version: 1\nname: eu\ntarget:\n  gcp:\n    zones: [europe-west1-b, us-central1-a]\n"
                 "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n", "eu.yaml")
    runner._announce_cost(r)
    err = capsys.readouterr().err
    want = catalog.vm_price("n1-standard-4", "nvidia-tesla-t4", 1, disk_gb=r.target.gcp.disk_gb,
                            region="europe-west1")
    assert want.source.startswith("live list prices of")
    assert f"cost: ~${want.per_hour:.2f}/hour per VM ({want.assumes})" in err
    catalog.set_live_prices(None)
    os.unlink(prices.cache_path())
    fake_billing.fail_with = 500
    runner._announce_cost(r)
    err = capsys.readouterr().err
    assert err.count("Live prices unavailable") == 1 and f"europe-west1, on-demand, catalog prices of {SNAPSHOT}" in err


@pytest.mark.parametrize("content", ["[]", "null", '"text"', '{"fetched_at": 1800000000, "endpoint": "", "table": []}',
                                     '{"fetched_at": 1800000000, "endpoint": "", "table": {"source": "live", '
                                     '"date": "2026-01-01", "rates": [["gpu", "x", "r", false, "NaN?"]]}}',
                                     "\x00\xff garbage"])
def test_a_damaged_cache_file_is_read_again_not_a_crash(fake_billing, content: str) -> None:
    """Whatever a crash, a disk or another version left in the cache file: the prices are read
    again (and the file replaced), never a traceback in `zones` or the wizard."""
    path = prices.cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(content)
    assert zones.use_live_prices(clock=lambda: 1_800_000_000.0) is None
    assert fake_billing.sku_requests() > 0
    assert catalog.live_prices() is not None and catalog.live_prices().source == "live"


def test_a_cache_of_another_format_version_is_not_trusted(fake_billing) -> None:
    """A cache written by another gpuwizard version (its rows may mean something else) is read
    again rather than trusted."""
    t0 = 1_800_000_000.0
    zones.use_live_prices(clock=lambda: t0)
    n = fake_billing.sku_requests()
    path = prices.cache_path()
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["version"] = 999
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    catalog.set_live_prices(None)
    zones.use_live_prices(clock=lambda: t0 + 1)
    assert fake_billing.sku_requests() > n


def test_an_unreachable_endpoint_is_said_in_words_not_as_a_pool_message(fake_compute, capsys,
                                                                        monkeypatch) -> None:
    """Nothing listens on the Billing endpoint: the one line names the host and the reason,
    not urllib3's 'HTTPConnectionPool(...): Max retries exceeded with url: ... (Caused by'."""
    import socket

    with socket.socket() as s:   # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GPUWIZARD_BILLING_ENDPOINT", f"http://127.0.0.1:{port}")
    assert cmd_zones(_zones_args()) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [f"gpuwizard: Live prices unavailable (Cloud Billing Catalog API: cannot reach "
                                f"127.0.0.1:{port}: Connection refused); showing catalog prices of {SNAPSHOT}."]
