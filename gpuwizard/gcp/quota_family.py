"""Which Cloud Quotas quota governs a GPU, and its value in a region (pure; no Google import).

The Cloud Quotas API names quotas by *quota id* (``NVIDIA-T4-GPUS-per-project-region``),
not by the ``regions.list`` metric (``NVIDIA_T4_GPUS``), and gives each quota one value
per *dimensions* combination (``QuotaInfo.dimensionsInfos``: ``{region, gpu_family}``
-> ``details.value``). The newest GPUs have no per-model quota: they draw on
``GPUS-PER-GPU-FAMILY-per-project-region`` with a ``gpu_family`` dimension, which
``regions.list`` omits. Sources and what is inferred: docs/facts/cloud-quotas.md.

Reading a value follows the API's dimension precedence (Google, "Configure Cloud Quotas
dimensions"): the most specific ``dimensionsInfos`` entry whose dimensions all match
wins; an entry without a dimension applies to every value of it. An absent
``details.value`` is 0: proto3 JSON leaves an int64 0 out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from gpuwizard import catalog

GLOBAL_QUOTA_ID = "GPUS-ALL-REGIONS-per-project"
FAMILY_QUOTA_ID = "GPUS-PER-GPU-FAMILY-per-project-region"
SPOT_FAMILY_QUOTA_ID = "PREEMPTIBLE-GPUS-PER-GPU-FAMILY-per-project-region"

#: Accelerator type -> ``gpu_family`` dimension value. Not from Google's documentation
#: (no page found that maps them); from public code that reads live projects, see
#: docs/facts/cloud-quotas.md. A GPU not listed here uses its per-model quota id.
GPU_FAMILIES: dict[str, str] = {
    "nvidia-h100-80gb": "NVIDIA_H100",
    "nvidia-h100-mega-80gb": "NVIDIA_H100_MEGA",
    "nvidia-h200-141gb": "NVIDIA_H200",
    "nvidia-b200": "NVIDIA_B200",
}


def quota_id_of(metric: str) -> str:
    """The Cloud Quotas id of a ``regions.list`` / ``projects.get`` metric:
    ``NVIDIA_T4_GPUS`` -> ``NVIDIA-T4-GPUS-per-project-region``, ``GPUS_ALL_REGIONS`` ->
    ``GPUS-ALL-REGIONS-per-project``."""
    if metric == "GPUS_ALL_REGIONS":
        return GLOBAL_QUOTA_ID
    return metric.replace("_", "-") + "-per-project-region"


@dataclass(frozen=True)
class QuotaTarget:
    """One quota (id + dimensions) that a GPU draws on."""

    quota_id: str
    dimensions: tuple[tuple[str, str], ...] = ()

    @property
    def dims(self) -> dict[str, str]:
        return dict(self.dimensions)

    @property
    def region(self) -> str | None:
        return self.dims.get("region")

    def describe(self) -> str:
        """``GPUS-PER-GPU-FAMILY-per-project-region {region=us-central1, gpu_family=NVIDIA_H100}``."""
        if not self.dimensions:
            return self.quota_id
        return f"{self.quota_id} {{{', '.join(f'{k}={v}' for k, v in self.dimensions)}}}"


def global_target() -> QuotaTarget:
    return QuotaTarget(GLOBAL_QUOTA_ID)


def family_of(gpu: str) -> str | None:
    """The ``gpu_family`` of an accelerator type (None: it has a per-model quota)."""
    return GPU_FAMILIES.get(gpu)


@dataclass
class QuotaInfos:
    """The QuotaInfos of compute.googleapis.com, by quota id (camelCase dicts)."""

    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, infos: Iterable[dict[str, Any]]) -> "QuotaInfos":
        return cls({str(i.get("quotaId")): i for i in infos if i.get("quotaId")})

    def has(self, quota_id: str) -> bool:
        return quota_id in self.by_id

    def value(self, target: QuotaTarget) -> float | None:
        """The quota's value for ``target``'s dimensions; None when the API does not list
        the quota (or no entry matches); ``inf`` for -1 (unlimited)."""
        info = self.by_id.get(target.quota_id)
        if info is None:
            return None
        want = target.dims
        best: tuple[int, float] | None = None
        for di in info.get("dimensionsInfos") or []:
            dims = {str(k): str(v) for k, v in (di.get("dimensions") or {}).items()}
            if any(want.get(k) != v for k, v in dims.items()):
                continue
            locs = [str(x) for x in di.get("applicableLocations") or []]
            region = want.get("region")
            if region and locs and "region" not in dims and region not in locs and "global" not in locs:
                continue
            raw = (di.get("details") or {}).get("value")
            v = float(raw) if raw not in (None, "") else 0.0
            score = len(dims)
            if best is None or score > best[0]:
                best = (score, float("inf") if v < 0 else v)
        return None if best is None else best[1]

    def rows(self, quota_ids: Iterable[str]) -> list[tuple[str, dict[str, str], float, list[str]]]:
        """(quota id, dimensions, value, applicable locations) of every entry of those quotas."""
        out = []
        for qid in quota_ids:
            for di in (self.by_id.get(qid) or {}).get("dimensionsInfos") or []:
                raw = (di.get("details") or {}).get("value")
                out.append((qid, {str(k): str(v) for k, v in (di.get("dimensions") or {}).items()},
                            float(raw) if raw not in (None, "") else 0.0,
                            [str(x) for x in di.get("applicableLocations") or []]))
        return out


def regional_target(gpu: str, spot: bool, region: str, infos: QuotaInfos | None = None) -> QuotaTarget:
    """The regional quota a VM with ``gpu`` draws on in ``region``.

    A family GPU: the family quota (its preemptible twin for Spot where the API lists
    one; elsewhere Spot falls back to the standard quota, docs/facts/cloud-quotas.md).
    Any other GPU: its per-model quota id (``[PREEMPTIBLE-]NVIDIA-T4-GPUS-per-project-region``).
    """
    fam = family_of(gpu)
    if fam is not None:
        qid = SPOT_FAMILY_QUOTA_ID if spot and infos is not None and infos.has(SPOT_FAMILY_QUOTA_ID) \
            else FAMILY_QUOTA_ID
        return QuotaTarget(qid, (("region", region), ("gpu_family", fam)))
    g = catalog.gpu(gpu)
    if g is None:
        raise ValueError(f"unknown accelerator type {gpu!r}")
    return QuotaTarget(quota_id_of(g.spot_quota_metric if spot else g.quota_metric), (("region", region),))
