"""Live Google Cloud data for the wizard, with the catalog as the always-there fallback.

No Textual here: these are plain functions the screens call from thread workers (so a
1.4-2 s ``import google.cloud.compute_v1`` never blocks a paint). Every rule is the
core's: zones and their order come from :mod:`gpuwizard.gcp.zones` (the list the
provisioner and ``gpuwizard zones`` use), quota metrics and console links from
:mod:`gpuwizard.gcp.quota` / :mod:`gpuwizard.gcp.errors`. Those modules import
``google.cloud`` only inside the calls that talk to Google, so importing them here
costs no paint time. Without credentials the wizard says so and carries on with the
catalog snapshot.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from gpuwizard import catalog
from gpuwizard.gcp import client
from gpuwizard.gcp import quota as gq
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp import quota_view as QV
from gpuwizard.gcp import zones as gz
from gpuwizard.gcp.errors import GcpError, console_link

#: A zone offering the GPU (the core's type): zone, region, max_count, free_quota, price_hour.
ZoneRow = gz.ZoneOption


@dataclass(frozen=True)
class ProjectInfo:
    """Who we are talking to: the ADC project (or None) and whether we are online."""

    project: str | None
    online: bool
    message: str = ""


@dataclass(frozen=True)
class QuotaRow:
    """One quota line: ``scope`` is "global" or a region name."""

    scope: str
    metric: str
    limit: float
    usage: float

    @property
    def free(self) -> float:
        return max(0.0, self.limit - self.usage)


#: The metric column's ending for a GPU-family quota row ("NVIDIA_H100 family").
FAMILY_SUFFIX = " family"


@dataclass(frozen=True)
class QuotaView:
    """What the Project & quota screen shows."""

    online: bool
    project: str | None
    gpu: str
    spot: bool
    rows: tuple[QuotaRow, ...] = ()
    message: str = ""
    #: The core's report the rows came from: what is free where is its rule (Spot's fallback
    #: to the standard quota, the family cap), not the screen's.
    report: gq.QuotaReport | None = field(default=None, compare=False, repr=False)

    @property
    def global_free(self) -> float | None:
        for r in self.rows:
            if r.scope == "global":
                return r.free
        return None

    def region_free(self, region: str) -> float | None:
        """The GPUs free in ``region``, as the provisioner counts them
        (:meth:`gpuwizard.gcp.quota.QuotaReport.free_in`: the family quota caps the regional
        one; a Spot VM falls back to the standard quota)."""
        if self.report is not None:
            return self.report.free_in(region)
        free = [r.free for r in self.rows if r.scope == region]
        return min(free) if free else None

    @property
    def family(self) -> bool:
        """Whether the rows include the GPU-family quota (Cloud Quotas)."""
        return any(r.metric.endswith(FAMILY_SUFFIX) for r in self.rows)

    @property
    def zero(self) -> bool:
        """True when the quota is known and no region (or the global cap) has a free GPU."""
        if not self.online or not self.rows:
            return False
        g = self.global_free
        regional = [f for f in (self.region_free(s) for s in {r.scope for r in self.rows if r.scope != "global"})
                    if f is not None]
        return (g is not None and g < 1) or (bool(regional) and max(regional) < 1)


@dataclass
class LiveState:
    """Results the App keeps between screen visits (screens are rebuilt on each visit)."""

    project: ProjectInfo | None = None
    quota: dict[tuple[str | None, str, bool], QuotaView] = field(default_factory=dict)
    zones: dict[tuple[str | None, str, int, bool], list[ZoneRow]] = field(default_factory=dict)
    """Live zone lists by (project, gpu, count, spot); the catalog's list is never stored here."""


# ------------------------------------------------------------------------- helpers


def offline_reason() -> str:
    return ("Offline: no Google Cloud credentials were found (run `gcloud auth application-default "
            "login` to see live quota and zones). Continuing with the built-in catalog "
            f"(snapshot {catalog.meta('zones').get('snapshot', '?')}); quota is unknown.")


def _run(coro_or_value: Any) -> Any:
    """Run a coroutine to completion in this (worker) thread; pass plain values through."""
    if asyncio.iscoroutine(coro_or_value):
        return asyncio.run(coro_or_value)
    return coro_or_value


def quota_metric(gpu: str, spot: bool) -> str:
    """The regional quota metric of the GPU (:func:`gpuwizard.gcp.quota.gpu_metric`)."""
    return gq.gpu_metric(gpu, spot)


def quota_link(project: str | None, gpu: str, spot: bool, region: str | None = None) -> str:
    """The console page that raises the GPU's quota (:func:`gpuwizard.gcp.errors.console_link`)."""
    return console_link(quota_metric(gpu, spot), region, project)


def zero_quota_advice(project: str | None, gpu: str, spot: bool, count: int = 1) -> str:
    """What to ask for when the project has no GPU quota: plain words plus the console link."""
    metric = quota_metric(gpu, spot)
    g = catalog.gpu(gpu)
    label = g.label if g else gpu
    return (f"This project has no free {label} quota. New projects start at 0 GPUs. In the console, "
            f"ask for GPUS_ALL_REGIONS >= {count} (global) and {metric} >= {count} in the region you "
            f"want; small requests are often approved within minutes, larger ones can take 2 business "
            f"days.\n{quota_link(project, gpu, spot)}")


def quota_note(view: QuotaView, project: str | None, gpu: str, spot: bool, need: int) -> tuple[str, bool]:
    """The line under the quota table, and whether it is a warning: "fine" only when one VM
    of ``need`` GPUs fits somewhere (the GPU-family quota included)."""
    if not view.online:
        return view.message, False
    if view.zero and view.family:
        return (f"No region has free {gpu} GPU-family quota (the family rows above): GPUS_ALL_REGIONS "
                f"alone is not enough. Use Request more quota below to file the increase."), True
    if view.zero:
        return zero_quota_advice(project, gpu, spot, need), True
    free = {r.scope: view.region_free(r.scope) or 0.0 for r in view.rows if r.scope != "global"}
    best = max(free, key=lambda k: free[k], default=None)
    glob = f"{view.global_free:g}" if view.global_free is not None else "?"
    most = f"; most in {best} ({free[best]:g})." if best else "."
    if (view.global_free is not None and view.global_free < need) or (best and free[best] < need):
        return (f"Not enough quota for {need} GPUs in one VM: {glob} GPUs free across regions{most} "
                + ("Use Request more quota below." if view.family else quota_link(project, gpu, spot))), True
    return f"Quota looks fine: {glob} GPUs free across regions{most}", False


# ------------------------------------------------------------------------- project


def load_project() -> ProjectInfo:
    """The Application Default Credentials project; offline when there are no credentials.

    Runs in a worker thread: google-auth (and later google.cloud) are imported here only.
    """
    if os.environ.get("GPUWIZARD_OFFLINE") == "1":
        return ProjectInfo(None, False, offline_reason())
    try:
        _creds, project = client.credentials_and_project(None)
    except GcpError as exc:
        if getattr(exc, "kind", "") == "project":
            return ProjectInfo(None, True, "Signed in, but no default project: type the project id.")
        return ProjectInfo(None, False, offline_reason())
    except Exception as exc:  # noqa: BLE001 - any failure means "offline", said plainly
        return ProjectInfo(os.environ.get("GOOGLE_CLOUD_PROJECT"), False,
                           f"Offline: {_short(exc)}. Continuing with the built-in catalog.")
    return ProjectInfo(project, True)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# ------------------------------------------------------------------------- quota


def load_quota(project: str | None, gpu: str, spot: bool, online: bool = True) -> QuotaView:
    """Global and regional quota for ``gpu`` from live GCP, or an offline view."""
    if not online or not project:
        msg = offline_reason() if not online else "Enter a project id to see its GPU quota."
        return QuotaView(False, project, gpu, spot, (), msg)
    try:
        report = _run(gq.fetch_quota(project, gpu, spot))
    except Exception as exc:  # noqa: BLE001
        return QuotaView(False, project, gpu, spot, (), f"Could not read quota: {_short(exc)}. "
                         "Continuing with the built-in catalog.")
    return quota_view_of(report, project, gpu, spot)


def quota_view_of(report: gq.QuotaReport, project: str | None, gpu: str, spot: bool) -> QuotaView:
    """The screen's view of a report already read (the Cloud Quotas worker's), so the screen
    reads the quotas once."""
    return QuotaView(True, project, gpu, spot, tuple(_quota_rows(report)), "", report)


def _quota_rows(report: gq.QuotaReport) -> list[QuotaRow]:
    """Rows from a ``gpuwizard.gcp.quota.QuotaReport``: the global cap first, then regions by
    free quota; for a GPU-family GPU (H100, H200, B200) also the family quota of each region
    that offers it, which ``regions.list`` omits and which caps what the region can take."""
    rows: list[QuotaRow] = []
    if report.global_limit is not None:
        rows.append(QuotaRow("global", "GPUS_ALL_REGIONS", float(report.global_limit), float(report.global_usage or 0)))
    regional = report.regions()
    for region, r in regional.items():
        rows.append(QuotaRow(str(region), str(r.metric), float(r.limit), float(r.usage)))
    fam = QF.family_of(report.gpu) if report.gpu else None
    if fam is not None and report.cloud is not None:
        offered = dict.fromkeys(QV.regions_for(report.gpu or "") + list(regional))
        for region in offered:
            limit, free = report.family_limit(region), report.family_free(region)
            if limit is not None and free is not None:
                rows.append(QuotaRow(str(region), fam + FAMILY_SUFFIX, float(limit), float(limit) - float(free)))
    rows.sort(key=lambda r: (r.scope != "global", -r.free, r.scope))
    return rows


# ------------------------------------------------------------------------- zones


def offline_zones(gpu: str, count: int, spot: bool) -> list[ZoneRow]:
    """Zones from the catalog snapshot (no quota known): instant, no credentials.
    The same list and order as ``gpuwizard zones --offline``."""
    return gz.zones_offline(gpu, count, spot)


def load_zones(project: str | None, gpu: str, count: int, spot: bool, online: bool = True) -> list[ZoneRow]:
    """Zones offering ``count`` x ``gpu`` with region free quota, best first, in the order
    the provisioner tries them (:func:`gpuwizard.gcp.zones.zones_for_gpu`); the catalog offline."""
    if not online or not project:
        return offline_zones(gpu, count, spot)
    return _run(gz.zones_for_gpu(project, gpu, count, spot))


def best_first(rows: list[ZoneRow], gpu: str, count: int) -> list[ZoneRow]:
    """``rows`` in the core's order (:func:`gpuwizard.gcp.zones.sort_options`)."""
    return gz.sort_options(rows, count, catalog.zones_for(gpu))


def default_preference(rows: list[ZoneRow], n: int = 3) -> list[str]:
    """The default failover list: the best ``n`` zones (``rows`` is already best first),
    leaving out zones whose region is known to have no free quota unless nothing else is left."""
    usable = [r.zone for r in rows if r.free_quota is None or r.free_quota >= 1]
    return (usable or [r.zone for r in rows])[:n]
