"""Zones that offer a GPU at a given count, with the region's free quota and its region's price.

Two round trips for the whole world, sent together: ``acceleratorTypes.aggregatedList``
(filtered to the one type; ``maximumCardsPerInstance`` per zone) and ``regions.list``
(quotas); for a GPU-family GPU (H100, H200, B200) a third beside them, Cloud Quotas'
QuotaInfos, whose family quota caps each region's free quota as it does in the
provisioner (:mod:`.quota_gate`). Never one request per zone or region: SkyPilot users
waited 25 s for per-zone look-ups (skypilot #2405).

Each zone is priced in its region (:func:`zone_price`, the one price rule of
:func:`gpuwizard.catalog.vm_price`) for one machine type, named with its disk;
:func:`use_live_prices` loads the Cloud Billing Catalog's live prices (day-cached) first,
for the commands and screens that show prices and may take a network round trip.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from gpuwizard import catalog, prices
from gpuwizard.gcp import billing_api
from gpuwizard.gcp.client import call, open_compute
from gpuwizard.gcp.errors import ApiError, GcpError, api_error
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp.quota import gpu_metric, parse_quotas, read_quota_infos, require_gpu


@dataclass(frozen=True)
class ZoneOption:
    """One candidate zone. ``free_quota`` None: unknown (offline, or not listed by regions.list).

    For spot, ``free_quota`` is what a Spot VM can use (the larger of the two, see
    :mod:`.quota`), and ``free_preemptible`` / ``free_standard`` show both."""

    zone: str
    region: str
    max_count: int
    free_quota: float | None
    price_hour: float | None
    free_preemptible: float | None = None
    free_standard: float | None = None

    def fits(self, count: int) -> bool:
        return self.max_count >= count and (self.free_quota is None or self.free_quota >= count)


#: The boot disk `gpuwizard zones` prices with (a recipe's default), so its figure is the one
#: `plan` and the wizard show for the same machine.
ZONES_DISK_GB = 100


def _fetch_skus() -> list[dict[str, Any]]:
    """The Billing adaptor's SKU list, its failures as :class:`prices.PriceFetchError`."""
    try:
        return billing_api.list_compute_skus()
    except GcpError as exc:
        raise prices.PriceFetchError(str(exc), quiet=exc.kind == "credentials") from None
    except ApiError as exc:
        raise prices.PriceFetchError(f"HTTP {exc.code}, {exc.message}" if exc.code else exc.message) from None


def use_live_prices(clock: Callable[[], float] = time.time) -> str | None:
    """Price from the Cloud Billing Catalog API from now on (day-cached; blocking, so call
    it in a thread from a UI). Returns one sentence when live prices were wanted but could
    not be read (the snapshot is then used), None otherwise (also when there are simply no
    credentials: the snapshot is used quietly)."""
    res = prices.load_live(_fetch_skus, billing_api.endpoint() or "", clock)
    if res.table is not None:
        catalog.set_live_prices(res.table)
    return res.note


def machine_for(gpu_name: str, count: int, spot: bool) -> str | None:
    """The machine type `zones` prices with: the cheapest with a known price in the default
    region (so every region's row prices the same machine)."""
    for m in catalog.machine_types_for(gpu_name, count):
        if catalog.vm_price(m.name, gpu_name, count, spot, disk_gb=ZONES_DISK_GB).per_hour is not None:
            return m.name
    return None


def zone_price(gpu_name: str, count: int, spot: bool, region: str | None = None,
               machine: str | None = None) -> catalog.Price | None:
    """The price (:func:`catalog.vm_price`, boot disk included) of ``machine`` (default
    :func:`machine_for`) in ``region``; its ``assumes`` names the machine type and disk."""
    machine = machine or machine_for(gpu_name, count, spot)
    if machine is None:
        return None
    return catalog.vm_price(machine, gpu_name, count, spot, disk_gb=ZONES_DISK_GB, region=region)


def sort_options(options: list[ZoneOption], count: int, order: list[str] | None = None) -> list[ZoneOption]:
    """Best first: fits with known quota, then unknown quota, then no quota; cheaper first; catalog order."""
    rank = {z: i for i, z in enumerate(order or [])}

    def key(o: ZoneOption) -> tuple[Any, ...]:
        q = 0 if o.free_quota is not None and o.free_quota >= count else 1 if o.free_quota is None else 2
        return (q, o.price_hour if o.price_hour is not None else float("inf"),
                -(o.free_quota or 0), rank.get(o.zone, len(rank)), o.zone)

    return sorted(options, key=key)


def zones_offline(gpu_type: str, count: int = 1, spot: bool = False) -> list[ZoneOption]:
    """The catalog snapshot's zones for the GPU (no quota known), for --offline and the wizard's first paint."""
    g = require_gpu(gpu_type)
    if count not in g.counts and count > max(g.counts):
        return []
    zones = catalog.zones_for(g.name)
    machine = machine_for(g.name, count, spot)
    opts = [ZoneOption(z, catalog.region_of(z), max(g.counts), None, _per_hour(g.name, count, spot, z, machine))
            for z in zones]
    return sort_options(opts, count, zones)


def _per_hour(gpu_name: str, count: int, spot: bool, zone: str, machine: str | None) -> float | None:
    p = zone_price(gpu_name, count, spot, catalog.region_of(zone), machine) if machine else None
    return None if p is None else p.per_hour


def join(acc_items: dict[str, Any], regions_json: list[dict[str, Any]], gpu_name: str, count: int, spot: bool,
         project: str, cloud: QF.QuotaInfos | None = None) -> list[ZoneOption]:
    """Join an aggregated accelerator list with the regions' quotas (pure, for tests and the UI);
    ``cloud``: the QuotaInfos whose GPU-family quota caps a region's free quota."""
    metric = gpu_metric(gpu_name, spot)
    report = parse_quotas({}, regions_json, project, metric)
    report.gpu, report.spot, report.cloud = gpu_name, spot, cloud
    machine = machine_for(gpu_name, count, spot)
    opts = []
    for scope, scoped in acc_items.items():
        for acc in scoped.get("acceleratorTypes") or []:
            if acc.get("name") != gpu_name:
                continue
            zone = str(acc.get("zone") or scope).rsplit("/", 1)[-1]
            n = int(acc.get("maximumCardsPerInstance") or 0)
            if n < count:
                continue
            region = catalog.region_of(zone)
            both = (report.free_in(region, report.metric), report.free_in(region, report.fallback)) \
                if report.fallback else (None, None)
            opts.append(ZoneOption(zone, region, n, report.free_in(region),
                                   _per_hour(gpu_name, count, spot, zone, machine), *both))
    return sort_options(opts, count, catalog.zones_for(gpu_name))


async def _no_infos() -> tuple[QF.QuotaInfos | None, str | None]:
    return None, None


async def zones_for_gpu(project: str | None, gpu_type: str, count: int = 1, spot: bool = False,
                        cloud: QF.QuotaInfos | None = None, read_cloud: bool = True) -> list[ZoneOption]:
    """Live zones offering ``count`` x ``gpu_type``, best candidates first (two round trips;
    three for a GPU-family GPU unless ``cloud`` is given or ``read_cloud`` is False, as for a
    caller that read the QuotaInfos already). Where QuotaInfos cannot be read the family
    quota is simply unknown, as in the provisioner."""
    g = require_gpu(gpu_type)
    compute = await open_compute(project)
    family = read_cloud and cloud is None and QF.family_of(g.name) is not None
    try:
        items, rs, (infos, _note) = await asyncio.gather(
            call(compute.accelerator_types, f"name = {g.name}"), call(compute.list_regions),
            read_quota_infos(compute.project) if family else _no_infos())
    except Exception as exc:  # noqa: BLE001 - API errors become one sentence
        raise api_error(exc, "listing zones") from None
    return join(items, rs, g.name, count, spot, compute.project, cloud or infos)
