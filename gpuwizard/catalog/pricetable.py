"""Per-region list prices, in the shape the Cloud Billing Catalog API sells them.

Compute Engine bills a VM as parts, each with its own SKU per region: the vCPUs and the
memory of its machine series (N1, G2, A2, A3 ...), each GPU, and the disk. A
:class:`PriceTable` holds those parts, keyed by region and by on-demand/spot, from one
source: the live API (:mod:`gpuwizard.prices`) or the catalog snapshot (``prices.yaml``).
It never fills a gap with another region's figure: a part it lacks is ``None``, and the
caller says "unknown" (see docs/facts/billing-catalog.md for the SKU shapes).

Pure data: no I/O, no imports of the rest of gpuwizard, so the live source and the catalog
can both build one without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: (kind, name, region, spot). kind: "gpu" (USD per GPU-hour), "core" (per vCPU-hour),
#: "ram" (per GB-hour), "disk" (per GB-month); name: accelerator type, machine series or disk type.
Key = tuple[str, str, str, bool]


@dataclass(frozen=True)
class PriceTable:
    """List prices by (kind, name, region, spot); ``source`` is "live" or "snapshot",
    ``date`` the day the figures were read (YYYY-MM-DD)."""

    source: str
    date: str
    rates: Mapping[Key, float] = field(default_factory=dict)

    def rate(self, kind: str, name: str, region: str, spot: bool = False) -> float | None:
        return self.rates.get((kind, name, region, spot))

    def regions(self) -> set[str]:
        return {k[2] for k in self.rates}

    def describe(self) -> str:
        """'live list prices of 2026-11-29' or 'catalog prices of 2026-11-29'."""
        return f"live list prices of {self.date}" if self.source == "live" else f"catalog prices of {self.date}"

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON form for the day cache (:mod:`gpuwizard.prices`)."""
        return {"source": self.source, "date": self.date,
                "rates": [[k, n, r, s, v] for (k, n, r, s), v in sorted(self.rates.items())]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "PriceTable":
        rates = {(str(k), str(n), str(r), bool(s)): float(v) for k, n, r, s, v in doc["rates"]}
        return cls(str(doc["source"]), str(doc["date"]), rates)


def from_snapshot(doc: Mapping[str, Any]) -> PriceTable:
    """The table of ``prices.yaml``: ``regions: {R: {gpus: {type: [od, spot]}, series: {n1:
    {core: [od, spot], ram: [od, spot]}}, disks: {type: od}}}``; a null figure is left out."""
    rates: dict[Key, float] = {}

    def put(kind: str, name: str, region: str, pair: Any) -> None:
        od, spot = (list(pair) + [None, None])[:2]
        for is_spot, v in ((False, od), (True, spot)):
            if v is not None:
                rates[(kind, name, region, is_spot)] = float(v)

    for region, parts in (doc.get("regions") or {}).items():
        for gpu, pair in (parts.get("gpus") or {}).items():
            put("gpu", gpu, region, list(pair))
        for series, cr in (parts.get("series") or {}).items():
            put("core", series, region, list(cr["core"]))
            put("ram", series, region, list(cr["ram"]))
        for disk, od in (parts.get("disks") or {}).items():
            put("disk", disk, region, [od, None])
    return PriceTable("snapshot", str((doc.get("meta") or {}).get("snapshot", "?")), rates)
