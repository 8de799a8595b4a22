"""Live per-region prices: the Cloud Billing Catalog API's Compute Engine SKUs, parsed into a
:class:`~gpuwizard.catalog.pricetable.PriceTable`, cached for a day, the snapshot otherwise.

Three jobs, each small:

* :func:`parse_skus` maps SKUs to the parts Compute Engine bills (a GPU type, a machine
  series' vCPU or memory, a disk type), on-demand (``usageType: OnDemand``) or spot
  (``Preemptible``), in each region of ``serviceRegions``; commitments, sole tenancy,
  custom and reserved SKUs are skipped. The SKU shapes and descriptions relied on are in
  docs/facts/billing-catalog.md.
* the day cache: the parsed table as JSON under the user cache dir
  (:func:`gpuwizard.locations.cache_dir`), written atomically, mode 0600, trusted for
  :data:`MAX_AGE` seconds by the injected clock.
* :func:`load_live`: the cached table if fresh, else one read through the fetcher the
  caller passes (:func:`gpuwizard.gcp.zones.use_live_prices` passes the Billing adaptor);
  on any failure it returns no table and, unless the failure is marked quiet (no
  credentials), one sentence saying that the snapshot's prices are shown instead.

The fetcher is passed in, not imported, so this module stays free of Google and of the
gcp package (which imports it); it reports failures as :class:`PriceFetchError`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from gpuwizard import catalog, locations
from gpuwizard.catalog.pricetable import Key, PriceTable
from gpuwizard.privatefile import write_atomic

#: How long a fetched table is trusted (seconds).
MAX_AGE = 24 * 3600
CACHE_NAME = "billing-prices.json"
#: The cache file's format; a file of another version (or none) is read again, not trusted.
CACHE_VERSION = 1

#: Accelerator type by the words its SKU description uses before "GPU" (longest first, so
#: "A100 80GB GPU" is never read as "A100 GPU"). SkyPilot's fetch_gcp.py matches the same words.
_GPU_WORDS: list[tuple[str, str]] = sorted([
    ("T4", "nvidia-tesla-t4"), ("P4", "nvidia-tesla-p4"), ("P100", "nvidia-tesla-p100"),
    ("V100", "nvidia-tesla-v100"), ("K80", "nvidia-tesla-k80"), ("L4", "nvidia-l4"),
    ("A100", "nvidia-tesla-a100"), ("A100 80GB", "nvidia-a100-80gb"), ("H100 80GB", "nvidia-h100-80gb"),
    ("H100 80GB Mega", "nvidia-h100-mega-80gb"), ("H100 Mega 80GB", "nvidia-h100-mega-80gb"),
    ("H100 80GB Plus", "nvidia-h100-mega-80gb"), ("H200 141GB", "nvidia-h200-141gb"), ("B200", "nvidia-b200"),
], key=lambda kv: -len(kv[0]))

#: Machine series by the words that open its vCPU / memory SKU descriptions.
_SERIES_WORDS = {"n1": "N1 Predefined Instance", "g2": "G2 Instance", "a2": "A2 Instance", "a3": "A3 Instance",
                 "a4": "A4 Instance", "g4": "G4 Instance"}

#: Disk type by its capacity SKU's description (zonal disks only).
_DISK_WORDS = {"pd-standard": "Storage PD Capacity", "pd-balanced": "Balanced PD Capacity",
               "pd-ssd": "SSD backed PD Capacity", "hyperdisk-balanced": "Hyperdisk Balanced Capacity"}

_SKIP = re.compile(r"commit|sole tenan|custom|reserved|premium|regional|extended|virtual workstation|dws|calendar"
                   r"|flex|confidential|\bmig\b", re.I)
_PREFIX = re.compile(r"^(spot preemptible|preemptible)\s+", re.I)
_USAGE = {"OnDemand": False, "Preemptible": True}
_UNITS = {"gpu": "h", "core": "h", "ram": "GiBy.h", "disk": "GiBy.mo"}


def _unit_price(sku: Mapping[str, Any]) -> tuple[float, str] | None:
    """USD per usage unit of the SKU's current pricing: the first non-zero tier (a free
    tier, where there is one, comes first)."""
    infos = sku.get("pricingInfo") or []
    if not infos:
        return None
    expr = infos[0].get("pricingExpression") or {}
    for tier in expr.get("tieredRates") or []:
        money = tier.get("unitPrice") or {}
        if (money.get("currencyCode") or "USD") != "USD":
            return None
        value = int(money.get("units") or 0) + int(money.get("nanos") or 0) / 1e9
        if value > 0:
            return value, str(expr.get("usageUnit") or "")
    return None


def classify(sku: Mapping[str, Any]) -> tuple[str, str, bool] | None:
    """(kind, name, spot) of a SKU gpuwizard prices with, else None."""
    cat = sku.get("category") or {}
    usage = _USAGE.get(str(cat.get("usageType") or ""))
    desc = str(sku.get("description") or "")
    if usage is None or _SKIP.search(desc):
        return None
    body = _PREFIX.sub("", desc)
    group, family = str(cat.get("resourceGroup") or ""), str(cat.get("resourceFamily") or "")
    if group == "GPU":
        for words, name in _GPU_WORDS:
            if re.search(rf"(?<![\w]){re.escape(words)} GPU\b", body):
                return "gpu", name, usage
        return None
    if family == "Compute":
        for series, words in _SERIES_WORDS.items():
            if body.startswith(words + " Core"):
                return "core", series, usage
            if body.startswith(words + " Ram"):
                return "ram", series, usage
        return None
    if family == "Storage" and not usage:
        for disk, words in _DISK_WORDS.items():
            if body.startswith(words):
                return "disk", disk, False
    return None


def parse_skus(skus: Iterable[Mapping[str, Any]], date: str) -> PriceTable:
    """The live table: each priced SKU's rate in each of its ``serviceRegions``. Where two
    SKUs price the same part in a region, the one naming fewer regions (the more specific)
    wins."""
    best: dict[Key, tuple[int, float]] = {}
    for sku in skus:
        what = classify(sku)
        priced = _unit_price(sku) if what else None
        if what is None or priced is None or priced[1] != _UNITS[what[0]]:
            continue
        regions = [str(r) for r in sku.get("serviceRegions") or []]
        for region in regions:
            key = (what[0], what[1], region, what[2])
            if key not in best or len(regions) < best[key][0]:
                best[key] = (len(regions), priced[0])
    return PriceTable("live", date, {k: v for k, (_n, v) in best.items()})


# ---------------------------------------------------------------- the day cache


def cache_path() -> str:
    return str(locations.cache_dir() / CACHE_NAME)


def _read_cache(now: float, endpoint: str) -> PriceTable | None:
    try:
        with open(cache_path(), encoding="utf-8") as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or doc.get("endpoint") != endpoint \
                or not 0 <= now - float(doc["fetched_at"]) < MAX_AGE:
            return None
        return PriceTable.from_json(doc["table"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):   # damaged: read the prices again
        return None


def _write_cache(table: PriceTable, now: float, endpoint: str) -> None:
    """Atomically (temp file + rename in the same folder), mode 0600 from creation."""
    folder = os.path.dirname(cache_path())
    os.makedirs(folder, mode=0o700, exist_ok=True)
    write_atomic(cache_path(), json.dumps({"version": CACHE_VERSION, "fetched_at": now, "endpoint": endpoint,
                                           "table": table.to_json()}))


# ---------------------------------------------------------------- loading


class PriceFetchError(Exception):
    """A fetcher's failure: ``quiet`` when it is only "no credentials" (the snapshot is then
    used without a word, as the issue asks)."""

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


@dataclass(frozen=True)
class LiveResult:
    """``table``: the live table, None when the snapshot is to be used; ``note``: one
    sentence for the user when a read failed (None when all is well or simply offline);
    ``cached``: the table came from the day cache."""

    table: PriceTable | None
    note: str | None = None
    cached: bool = False


def load_live(fetch: Callable[[], list[dict[str, Any]]], endpoint: str = "",
              clock: Callable[[], float] = time.time) -> LiveResult:
    """The day-cached live table, or a fresh one from ``fetch``; see the module docstring."""
    now = clock()
    cached = _read_cache(now, endpoint)
    if cached is not None:
        return LiveResult(cached, cached=True)
    try:
        skus = fetch()
    except PriceFetchError as exc:
        return LiveResult(None, None if exc.quiet else _fallback_note(str(exc)))
    date = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%d")
    table = parse_skus(skus, date)
    if not table.rates:
        return LiveResult(None, _fallback_note("its answer held no Compute Engine price gpuwizard uses"))
    try:
        _write_cache(table, now, endpoint)
    except OSError:
        pass  # a read-only cache dir costs a fetch next time, nothing more
    return LiveResult(table)


def _fallback_note(why: str) -> str:
    first = why.strip().splitlines()[0] if why.strip() else "unknown error"
    return (f"Live prices unavailable (Cloud Billing Catalog API: {first[:200]}); showing "
            f"{catalog.snapshot_prices().describe()}.")
