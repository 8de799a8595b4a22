"""GPU quota: the global GPUS_ALL_REGIONS and every region's NVIDIA_*_GPUS metrics.

Two requests for the whole world, sent together: ``projects.get`` (global quotas) and
one ``regions.list`` (every region with its quotas). ``projects.get`` also carries the
project's ``commonInstanceMetadata``, kept on the report (:attr:`QuotaReport.metadata`)
so the provisioner can see ``enable-oslogin`` without another request. Free is ``limit - usage`` (dstack's
rule) rather than SkyPilot's ``limit == 0``, because a region whose quota is all in use
is just as useless for the next VM.

Spot VMs draw on the ``PREEMPTIBLE_NVIDIA_*_GPUS`` quota where it is granted and fall
back to the standard ``NVIDIA_*_GPUS`` quota where it is not (Compute Engine docs, "Spot
VMs", quotas: https://cloud.google.com/compute/docs/instances/spot#quotas; issue 12,
item 1). So for a spot report both metrics are kept (:attr:`QuotaReport.fallback`), and
a region is out of quota only when both are exhausted.

GPU-family quotas (issue 15): beside those two requests, the Cloud Quotas API's
``QuotaInfo`` list (:mod:`.quotas_api`) is read, because ``regions.list`` omits the
``GPUS-PER-GPU-FAMILY-per-project-region`` quota that H100/H200/B200 VMs draw on
(:mod:`.quota_family`, docs/facts/cloud-quotas.md). Its value caps a region's free
quota (:meth:`QuotaReport.family_free`). Where that API is off or denied, the report
says so in one line (:attr:`QuotaReport.cloud_note`) and the regions.list reading stands.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from gpuwizard import catalog
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp import quotas_api
from gpuwizard.gcp.client import call, open_compute
from gpuwizard.gcp.errors import ApiError, GcpError, api_error, console_link
from gpuwizard.gcp.quota_explain import fallback_line

__all__ = ["QuotaRow", "QuotaReport", "fetch_quota", "read_quota_infos", "fetch_project_metadata", "console_link", "gpu_metric",
           "os_login_enabled", "parse_quotas", "project_metadata", "standard_metric"]

GPU_METRIC_RE = re.compile(r"^(PREEMPTIBLE_)?NVIDIA_[A-Z0-9_]+_GPUS$")


@dataclass(frozen=True)
class QuotaRow:
    """One quota metric in one region (or globally when region is None)."""

    metric: str
    region: str | None
    limit: float
    usage: float

    @property
    def free(self) -> float:
        return max(0.0, self.limit - self.usage)

    def link(self, project: str | None = None) -> str:
        return console_link(self.metric, self.region, project)


@dataclass
class QuotaReport:
    """Global GPU quota plus per-region GPU rows (filtered by GPU and spot when asked)."""

    project: str
    global_limit: float | None     # None: projects.get did not list GPUS_ALL_REGIONS
    global_usage: float
    rows: list[QuotaRow] = field(default_factory=list)
    metric: str | None = None      # the metric asked for (None: all GPU metrics)
    metadata: dict[str, str] = field(default_factory=dict)  # the project's commonInstanceMetadata
    fallback: str | None = None    # spot: the standard metric Spot VMs fall back to
    gpu: str | None = None         # the accelerator type asked for
    spot: bool = False
    cloud: QF.QuotaInfos | None = None  # Cloud Quotas' QuotaInfos (None: not read)
    cloud_note: str | None = None  # why Cloud Quotas was not used, in one line

    @property
    def global_free(self) -> float | None:
        return None if self.global_limit is None else max(0.0, self.global_limit - self.global_usage)

    def _free(self, region: str, metric: str | None) -> float | None:
        for r in self.rows:
            if r.region == region and r.metric == metric:
                return r.free
        return None

    def family_target(self, region: str) -> QF.QuotaTarget | None:
        """The GPU-family quota the asked GPU draws on in ``region`` (None: not a family GPU)."""
        if self.gpu is None or QF.family_of(self.gpu) is None:
            return None
        return QF.regional_target(self.gpu, self.spot, region, self.cloud)

    def family_limit(self, region: str) -> float | None:
        """The family quota's value in ``region`` from QuotaInfo; None when unknown."""
        t = self.family_target(region)
        return None if t is None or self.cloud is None else self.cloud.value(t)

    def family_free(self, region: str) -> float | None:
        """The family quota's value in ``region`` less what regions.list says is in use of
        the GPU's metric there (QuotaInfo carries no usage); None when unknown."""
        limit = self.family_limit(region)
        if limit is None:
            return None
        row = next((r for r in self.rows if r.region == region and r.metric == self.metric), None)
        return max(0.0, limit - (row.usage if row else 0.0))

    def free_in(self, region: str, metric: str | None = None) -> float | None:
        """Free quota of ``metric`` in ``region``; None when the region does not list it.

        Without ``metric``, for a spot report: the larger of the preemptible and the
        standard quota's free amount (Spot falls back to the standard one); for a
        GPU-family GPU, capped by the family quota (:meth:`family_free`)."""
        if metric is not None:
            return self._free(region, metric)
        own = self._free(region, self.metric)
        if self.fallback is None:
            free = own
        else:
            std = self._free(region, self.fallback)
            known = [f for f in (own, std) if f is not None]
            free = max(known) if known else None
        fam = self.family_free(region)
        if fam is None:
            return free
        return fam if free is None else min(free, fam)

    def fallback_row(self, region: str) -> QuotaRow | None:
        """The standard-quota row a spot VM falls back to in ``region``."""
        return next((r for r in self.rows if r.region == region and r.metric == self.fallback), None) \
            if self.fallback else None

    def regions(self) -> dict[str, QuotaRow]:
        """region -> row of the asked metric."""
        return {r.region: r for r in self.rows if r.region and (self.metric is None or r.metric == self.metric)}


def project_metadata(project_json: dict[str, Any]) -> dict[str, str]:
    """``commonInstanceMetadata`` of a projects.get payload as key -> value."""
    items = (project_json.get("commonInstanceMetadata") or {}).get("items") or []
    return {str(i.get("key")): str(i.get("value") or "") for i in items if i.get("key")}


def os_login_enabled(metadata: dict[str, str]) -> bool:
    """Whether metadata turns OS Login on: ``enable-oslogin`` is TRUE, any case (the guest
    agent parses it like Go's ParseBool, so ``1`` and ``t`` count too)."""
    return metadata.get("enable-oslogin", "").strip().lower() in ("true", "t", "1")


def require_gpu(gpu: str) -> catalog.GpuType:
    """The catalog GPU for an accelerator type or a name people type (T4, nvidia-l4, H100 ...);
    a usage error naming where the names are listed otherwise. The one look-up ``quota``,
    ``quota request`` and ``zones`` share."""
    g = catalog.gpu(gpu) or catalog.gpu_by_label(gpu)
    if g is None:
        raise GcpError(f"Unknown GPU '{gpu}': see `gpuwizard catalog gpus` for the names.", kind="usage")
    return g


def gpu_metric(gpu_type: str, spot: bool) -> str:
    """The regional quota metric for an accelerator type or label (T4, nvidia-l4 ...)."""
    g = require_gpu(gpu_type)
    return g.spot_quota_metric if spot else g.quota_metric


def standard_metric(metric: str) -> str | None:
    """``NVIDIA_T4_GPUS`` for ``PREEMPTIBLE_NVIDIA_T4_GPUS``; None for a standard metric."""
    return metric[len("PREEMPTIBLE_"):] if metric.startswith("PREEMPTIBLE_") else None


def parse_quotas(project_json: dict[str, Any], regions_json: list[dict[str, Any]], project: str,
                 metric: str | None) -> QuotaReport:
    """Build a report from projects.get and regions.list payloads (camelCase dicts);
    a ``PREEMPTIBLE_*`` metric brings its standard fallback's rows along."""
    fallback = standard_metric(metric) if metric else None
    wanted = {m for m in (metric, fallback) if m}
    glim: float | None = None
    gusage = 0.0
    for q in project_json.get("quotas") or []:
        if q.get("metric") == "GPUS_ALL_REGIONS":
            glim, gusage = float(q.get("limit") or 0), float(q.get("usage") or 0)
    rows = []
    for reg in regions_json:
        for q in reg.get("quotas") or []:
            m = str(q.get("metric") or "")
            if (metric and m in wanted) or (not metric and GPU_METRIC_RE.match(m)):
                rows.append(QuotaRow(m, reg.get("name"), float(q.get("limit") or 0), float(q.get("usage") or 0)))
    rows.sort(key=lambda r: (-r.free, r.region or "", r.metric))
    return QuotaReport(project=project, global_limit=glim, global_usage=gusage, rows=rows, metric=metric,
                       metadata=project_metadata(project_json), fallback=fallback)


def _quota_infos(project: str) -> list[dict[str, Any]]:
    return quotas_api.open_quotas(project).quota_infos()


async def read_quota_infos(project: str) -> tuple[QF.QuotaInfos | None, str | None]:
    """compute.googleapis.com's QuotaInfos, or (None, the one line saying why not)."""
    if not quotas_api.available():
        return None, (f"{quotas_api.ENDPOINT_ENV} is not set beside the overridden Compute endpoint: "
                      "showing regions.list quotas, which omit the GPU-family quotas.")
    try:
        return QF.QuotaInfos.of(await call(_quota_infos, project)), None
    except (ApiError, GcpError) as exc:
        return None, fallback_line(exc, project)


async def _project_and_regions(project: str | None
                               ) -> tuple[str, dict[str, Any], list[dict[str, Any]],
                                          tuple[QF.QuotaInfos | None, str | None]]:
    compute = await open_compute(project)
    p, rs, qi = await asyncio.gather(call(compute.get_project), call(compute.list_regions),
                                     read_quota_infos(compute.project))
    return compute.project, p, rs, qi


async def fetch_quota(project: str | None, gpu_type: str | None, spot: bool) -> QuotaReport:
    """Global and per-region GPU quota, with Cloud Quotas' QuotaInfos beside them (see the
    module docstring). ``gpu_type`` None: every NVIDIA metric (spot or not)."""
    metric = gpu_metric(gpu_type, spot) if gpu_type else None
    try:
        project, pj, rs, (infos, note) = await _project_and_regions(project)
    except GcpError:
        raise
    except Exception as exc:  # noqa: BLE001 - turn API errors into one sentence
        raise api_error(exc, "reading quotas") from None
    report = parse_quotas(pj, rs, project, metric)
    g = (catalog.gpu(gpu_type) or catalog.gpu_by_label(gpu_type)) if gpu_type else None
    report.gpu, report.spot = (g.name if g else None), spot
    report.cloud, report.cloud_note = infos, note
    if not gpu_type:
        report.rows = [r for r in report.rows if r.metric.startswith("PREEMPTIBLE_") == spot]
    return report


async def fetch_project_metadata(project: str | None) -> dict[str, str]:
    """The project's ``commonInstanceMetadata`` (one projects.get request)."""
    try:
        compute = await open_compute(project)
        p = await call(compute.get_project)
    except GcpError:
        raise
    except Exception as exc:  # noqa: BLE001 - turn API errors into one sentence
        raise api_error(exc, "reading the project's metadata") from None
    return project_metadata(p)
