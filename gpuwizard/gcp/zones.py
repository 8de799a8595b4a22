"""Zones that offer a GPU at a given count, with the region's free quota and a price.

Two round trips for the whole world, sent together: ``acceleratorTypes.aggregatedList``
(filtered to the one type; ``maximumCardsPerInstance`` per zone) and ``regions.list``
(quotas). Never one request per zone or region: SkyPilot users waited 25 s for per-zone
look-ups (skypilot #2405).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gpuwizard import catalog
from gpuwizard.gcp.client import call, open_compute
from gpuwizard.gcp.errors import GcpError, api_error
from gpuwizard.gcp.quota import gpu_metric, parse_quotas


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


def _gpu(gpu_type: str) -> catalog.GpuType:
    g = catalog.gpu(gpu_type) or catalog.gpu_by_label(gpu_type)
    if g is None:
        raise GcpError(f"Unknown GPU '{gpu_type}': see `gpuwizard catalog gpus` for the names.", kind="usage")
    return g


#: The boot disk `gpuwizard zones` prices with (a recipe's default), so its figure is the one
#: `plan` and the wizard show for the same machine.
ZONES_DISK_GB = 100


def cheapest_price(gpu_name: str, count: int, spot: bool) -> catalog.Price | None:
    """The catalog price (:func:`catalog.vm_price`, boot disk included) of the cheapest VM
    carrying ``count`` such GPUs; its ``assumes`` names the machine type and disk."""
    prices = [catalog.vm_price(m.name, gpu_name, count, spot, disk_gb=ZONES_DISK_GB)
              for m in catalog.machine_types_for(gpu_name, count)]
    known = [p for p in prices if p.per_hour is not None]
    return min(known, key=lambda p: p.per_hour or 0.0) if known else None


def price_for(gpu_name: str, count: int, spot: bool) -> float | None:
    """USD/hour of :func:`cheapest_price` (None when unknown)."""
    best = cheapest_price(gpu_name, count, spot)
    return None if best is None else best.per_hour


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
    g = _gpu(gpu_type)
    if count not in g.counts and count > max(g.counts):
        return []
    price = price_for(g.name, count, spot)
    zones = catalog.zones_for(g.name)
    opts = [ZoneOption(z, catalog.region_of(z), max(g.counts), None, price) for z in zones]
    return sort_options(opts, count, zones)


def join(acc_items: dict[str, Any], regions_json: list[dict[str, Any]], gpu_name: str, count: int, spot: bool,
         project: str) -> list[ZoneOption]:
    """Join an aggregated accelerator list with the regions' quotas (pure, for tests and the UI)."""
    metric = gpu_metric(gpu_name, spot)
    report = parse_quotas({}, regions_json, project, metric)
    price = price_for(gpu_name, count, spot)
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
            opts.append(ZoneOption(zone, region, n, report.free_in(region), price, *both))
    return sort_options(opts, count, catalog.zones_for(gpu_name))


async def zones_for_gpu(project: str | None, gpu_type: str, count: int = 1, spot: bool = False) -> list[ZoneOption]:
    """Live zones offering ``count`` x ``gpu_type``, best candidates first (two round trips)."""
    g = _gpu(gpu_type)
    compute = await open_compute(project)
    try:
        items, rs = await asyncio.gather(call(compute.accelerator_types, f"name = {g.name}"),
                                         call(compute.list_regions))
    except Exception as exc:  # noqa: BLE001 - API errors become one sentence
        raise api_error(exc, "listing zones") from None
    return join(items, rs, g.name, count, spot, compute.project)
