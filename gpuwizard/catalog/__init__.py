"""The embedded catalog: offline facts about GPUs, machines, zones, images and prices.

Each data file (``*.yaml`` beside this module) carries a ``meta`` block with its
snapshot date and sources. The catalog always answers, instantly and without
credentials; live GCP data (``gpuwizard.gcp``) refines it when credentials exist.
Files are parsed once, on first use, with PyYAML's C loader.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gpuwizard.catalog import pricetable
from gpuwizard.catalog.pricetable import PriceTable

_DIR = os.path.dirname(__file__)


@functools.lru_cache(maxsize=None)
def data(name: str) -> dict[str, Any]:
    """The parsed data file ``name`` (without ``.yaml``)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(os.path.join(_DIR, f"{name}.yaml"), encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


@dataclass(frozen=True)
class GpuType:
    """One Compute Engine accelerator type."""

    name: str                 # accelerator type, e.g. nvidia-tesla-t4
    label: str                # what people call it, e.g. T4
    memory_gb: int
    arch: str                 # kepler, pascal, volta, turing, ampere, ada, hopper, blackwell
    cc: str                   # compute capability, e.g. "7.5"
    families: tuple[str, ...]
    counts: tuple[int, ...]
    quota_metric: str
    spot_quota_metric: str
    n1_limits: dict[int, tuple[int, float]] = field(default_factory=dict)
    price_hour: float = 0.0   # per GPU, for attachable GPUs; 0 where the machine price includes it
    spot_price_hour: float = 0.0
    retired: str | None = None
    notes: str | None = None

    @property
    def attachable(self) -> bool:
        """True for GPUs attached to N1 VMs; False for GPUs bundled with the machine type."""
        return "n1" in self.families

    @property
    def cc_float(self) -> float:
        return float(self.cc)


@dataclass(frozen=True)
class MachineType:
    name: str
    family: str
    vcpus: int
    memory_gb: float
    gpu_type: str | None
    gpu_count: int
    price_hour: float | None        # None: no catalog price (unknown, never guessed)
    spot_price_hour: float | None
    spot_only: bool = False


@dataclass(frozen=True)
class Image:
    family: str
    project: str
    os: str                   # ubuntu2204, ubuntu2404, debian12
    label: str
    dlvm: bool = False
    driver: str | None = None
    cuda: str | None = None
    torch: str | None = None


@functools.lru_cache(maxsize=None)
def gpus() -> dict[str, GpuType]:
    out = {}
    for name, g in data("gpus")["gpus"].items():
        out[name] = GpuType(
            name=name, label=g["label"], memory_gb=g["memory_gb"], arch=g["arch"], cc=str(g["cc"]),
            families=tuple(g["families"]), counts=tuple(g["counts"]), quota_metric=g["quota_metric"],
            spot_quota_metric=g["spot_quota_metric"],
            n1_limits={int(k): (int(v[0]), float(v[1])) for k, v in (g.get("n1_limits") or {}).items()},
            price_hour=float(g.get("price_hour") or 0), spot_price_hour=float(g.get("spot_price_hour") or 0),
            retired=g.get("retired"), notes=g.get("notes"))
    return out


def gpu(name: str) -> GpuType | None:
    return gpus().get(name)


def gpu_by_label(label: str) -> GpuType | None:
    """Find a GPU by what people call it ("T4", "a100", "H100") or by its accelerator type.

    In order: the accelerator type or label itself; the type without its ``nvidia-`` /
    ``nvidia-tesla-`` prefix ("a100" is nvidia-tesla-a100, as Google names it); the first
    word of the label, the plainest GPU of that name winning ("H100" is the H100 80GB, not
    the H100 Mega 80GB), so the name a student types works everywhere ``--gpu`` is asked."""
    key = label.strip().lower()
    for g in gpus().values():
        if key in (g.name, g.label.lower(), g.label.lower().replace(" ", "")):
            return g
    for g in gpus().values():
        if key == re.sub(r"^nvidia-(tesla-)?", "", g.name):
            return g
    named = sorted((g for g in gpus().values() if g.label.lower().split()[0] == key), key=lambda g: len(g.label))
    if named and (len(named) == 1 or len(named[0].label) < len(named[1].label)):
        return named[0]
    return None


@functools.lru_cache(maxsize=None)
def machine_types() -> dict[str, MachineType]:
    d = data("machines")
    spot_only = set(d.get("spot_only") or [])
    out = {}
    for name, (vcpus, mem, gtype, gcount, price, spot) in d["machine_types"].items():
        out[name] = MachineType(name=name, family=name.split("-", 1)[0], vcpus=int(vcpus), memory_gb=float(mem),
                                gpu_type=gtype, gpu_count=int(gcount), price_hour=_price(price),
                                spot_price_hour=_price(spot), spot_only=name in spot_only)
    return out


def _price(v: Any) -> float | None:
    return None if v is None else float(v)


def machine_type(name: str) -> MachineType | None:
    return machine_types().get(name)


def family(name: str) -> dict[str, Any] | None:
    return data("machines")["families"].get(name)


def machine_types_for(gpu_name: str, count: int) -> list[MachineType]:
    """Machine types that can carry ``count`` GPUs of ``gpu_name``, cheapest first."""
    g = gpu(gpu_name)
    if g is None:
        return []
    out = []
    for mt in machine_types().values():
        if mt.gpu_type is not None:
            if mt.gpu_type == gpu_name and mt.gpu_count == count:
                out.append(mt)
        elif mt.family in g.families:
            limit = g.n1_limits.get(count)
            if limit and mt.vcpus <= limit[0] and mt.memory_gb <= limit[1]:
                out.append(mt)
    return sorted(out, key=lambda m: (float("inf") if m.price_hour is None else m.price_hour, m.vcpus))


@functools.lru_cache(maxsize=None)
def images() -> dict[str, Image]:
    return {fam: Image(family=fam, project=i["project"], os=i["os"], label=i["label"], dlvm=bool(i.get("dlvm")),
                       driver=i.get("driver"), cuda=i.get("cuda"), torch=i.get("torch"))
            for fam, i in data("images")["images"].items()}


def image(family_or_path: str) -> Image | None:
    """Look up an image family; ``projects/P/global/images/family/F`` paths resolve by F."""
    name = family_or_path.rstrip("/").rsplit("/", 1)[-1]
    return images().get(name)


def zones_for(gpu_name: str) -> list[str]:
    return list(data("zones")["zones"].get(gpu_name, []))


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


#: The region a price is for when the caller names none (the catalog's machine and GPU list prices).
DEFAULT_REGION = "us-central1"

_live: PriceTable | None = None


def set_live_prices(table: PriceTable | None) -> None:
    """Use ``table`` (read from the Cloud Billing Catalog API by :mod:`gpuwizard.prices`) for
    every price from now on; None goes back to the snapshot. Fast paths (``--help``,
    ``validate``, ``plan``) never call this, so they price from the snapshot alone."""
    global _live
    _live = table


def live_prices() -> PriceTable | None:
    return _live


@functools.lru_cache(maxsize=None)
def snapshot_prices() -> PriceTable:
    """The per-region snapshot (``prices.yaml``), plus the us-central1 GPU list prices of
    ``gpus.yaml`` it does not repeat (V100, P100 ...)."""
    table = pricetable.from_snapshot(data("prices"))
    rates = dict(table.rates)
    for g in gpus().values():
        for spot, v in ((False, g.price_hour), (True, g.spot_price_hour)):
            if v and g.attachable:
                rates.setdefault(("gpu", g.name, DEFAULT_REGION, spot), v)
    return PriceTable(table.source, table.date, rates)


def price_source() -> str:
    """What prices come from right now: 'live list prices of D' or 'catalog prices of D'."""
    return (_live or snapshot_prices()).describe()


def sources_of(prices: "list[Price | None]") -> str:
    """Where a set of shown prices come from, e.g. 'live list prices of D' or, when the live
    list lacks some regions, 'live list prices of D (catalog prices of E for asia-east1)'."""
    by_source: dict[str, list[str]] = {}
    for p in prices:
        if p is not None and p.per_hour is not None:
            regions = by_source.setdefault(p.source, [])
            if p.region not in regions:
                regions.append(p.region)
    if not by_source:
        return price_source()
    main = max(by_source, key=lambda k: (k == price_source(), len(by_source[k])))
    rest = [f"{src} for {', '.join(rs)}" for src, rs in by_source.items() if src != main]
    return main + (f" ({'; '.join(rest)})" if rest else "")


@dataclass(frozen=True)
class Price:
    """What one VM costs per hour, and what that figure assumes.

    ``per_hour`` is None when any part has no price: the UI then says "price unknown"
    (with ``why``) rather than show a guess. ``assumes`` is one line a person can read next
    to the figure (machine, GPUs, disk, region, on-demand/spot, source and its date)."""

    per_hour: float | None
    machine: float | None
    gpus: float | None
    disk: float | None
    assumes: str
    why: str | None = None
    region: str = DEFAULT_REGION
    source: str = ""          # 'live list prices of D' / 'catalog prices of D'

    def label(self) -> str:
        """'~$0.73/h (n1-standard-4 + 1 x T4 + 100 GB pd-balanced; us-central1, on-demand, catalog prices of D)'."""
        if self.per_hour is None:
            return f"price unknown ({self.why})"
        return f"~${self.per_hour:.2f}/h ({self.assumes})"


def vm_price(machine: str, gpu_name: str | None, gpu_count: int, spot: bool = False, disk_gb: int = 0,
             disk_type: str = "pd-balanced", region: str | None = None, table: PriceTable | None = None) -> Price:
    """The project's one price rule: the machine type (its series' vCPU and memory prices, plus
    the GPUs bundled with it) + attached GPUs (N1) + the boot disk, per hour, in ``region``.

    Prices come from ``table`` when given, else the live table when one is loaded
    (:func:`set_live_prices`), else the snapshot; a VM the live table cannot price (a SKU it
    lacks) is priced from the snapshot, and ``source`` says which one answered."""
    region = region or DEFAULT_REGION
    tables = [table] if table is not None else [t for t in (_live, snapshot_prices()) if t is not None]
    price = _price_in(tables[0], machine, gpu_name, gpu_count, spot, disk_gb, disk_type, region)
    for t in tables[1:]:
        if price.per_hour is not None:
            break
        price = _price_in(t, machine, gpu_name, gpu_count, spot, disk_gb, disk_type, region)
    return price


def _price_in(t: PriceTable, machine: str, gpu_name: str | None, gpu_count: int, spot: bool, disk_gb: int,
              disk_type: str, region: str) -> Price:
    model = "spot" if spot else "on-demand"
    g = gpu(gpu_name) if gpu_name else None
    parts = [machine] + ([f"{gpu_count} x {g.label if g else gpu_name}"] if gpu_name and gpu_count else []) \
        + ([f"{disk_gb} GB {disk_type}"] if disk_gb else [])
    where = f"{region}, {model}, {t.describe()}"
    assumes = f"{' + '.join(parts)}; {where}"

    def unknown(why: str, m: float | None = None, gp: float | None = None) -> Price:
        return Price(None, m, gp, None, assumes, why, region, t.describe())

    mt = machine_type(machine)
    if mt is None:
        return unknown(f"{machine} is not in the catalog")
    m = _machine_part(t, mt, region, spot)
    if m is None:
        return unknown(f"the catalog has no {model} price for {machine} in {region} ({t.describe()}); see "
                       "cloud.google.com/compute/gpus-pricing")
    gp = 0.0
    if gpu_name and mt.gpu_type is None and gpu_count:
        if g is None:
            return unknown(f"{gpu_name} is not in the catalog", m)
        rate = t.rate("gpu", g.name, region, spot)
        if rate is None:
            return unknown(f"the catalog has no {model} price for {g.label} GPUs in {region} ({t.describe()})", m)
        gp = gpu_count * rate
    d = 0.0
    if disk_gb:
        per_gb = t.rate("disk", disk_type, region)
        if per_gb is None:
            per_gb = (data("machines").get("disk_prices") or {}).get(disk_type)
            if per_gb is not None and region != DEFAULT_REGION:
                assumes += f"; disk at {DEFAULT_REGION} list price"
        if per_gb is None:
            return unknown(f"the catalog has no price for {disk_type} disks", m, gp)
        d = disk_gb * float(per_gb) / float(data("machines").get("hours_per_month", 730))
    return Price(round(m + gp + d, 4), round(m, 4), round(gp, 4), round(d, 4), assumes, None, region, t.describe())


def _machine_part(t: PriceTable, mt: MachineType, region: str, spot: bool) -> float | None:
    """The machine type's price in ``region``: vCPUs and memory at its series' rates plus its
    bundled GPUs; else (snapshot, us-central1) the catalog's list price of the type."""
    core, ram = t.rate("core", mt.family, region, spot), t.rate("ram", mt.family, region, spot)
    if core is not None and ram is not None:
        bundled = 0.0
        if mt.gpu_type and mt.gpu_count:
            rate = t.rate("gpu", mt.gpu_type, region, spot)
            if rate is None:
                return None
            bundled = mt.gpu_count * rate
        return mt.vcpus * core + mt.memory_gb * ram + bundled
    if t.source == "snapshot" and region == DEFAULT_REGION:
        return mt.spot_price_hour if spot else mt.price_hour
    return None


def meta(name: str) -> dict[str, Any]:
    return data(name).get("meta", {})
