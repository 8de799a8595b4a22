"""Live Google Cloud data for the wizard, with the catalog as the always-there fallback.

No Textual here: these are plain functions the screens call from thread workers (so a
1.4-2 s ``import google.cloud.compute_v1`` never blocks a paint). They adapt whatever
:mod:`gpuwizard.gcp` returns into the small view dataclasses below, and fall back to
the embedded catalog when ``gpuwizard.gcp`` or credentials are missing: offline, the
wizard says so and carries on.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from gpuwizard import catalog

CONSOLE_QUOTAS = "https://console.cloud.google.com/iam-admin/quotas"


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


@dataclass(frozen=True)
class QuotaView:
    """What the Project & quota screen shows."""

    online: bool
    project: str | None
    gpu: str
    spot: bool
    rows: tuple[QuotaRow, ...] = ()
    message: str = ""

    @property
    def global_free(self) -> float | None:
        for r in self.rows:
            if r.scope == "global":
                return r.free
        return None

    def region_free(self, region: str) -> float | None:
        for r in self.rows:
            if r.scope == region:
                return r.free
        return None

    @property
    def zero(self) -> bool:
        """True when the quota is known and no region (or the global cap) has a free GPU."""
        if not self.online or not self.rows:
            return False
        g = self.global_free
        regional = [r.free for r in self.rows if r.scope != "global"]
        return (g is not None and g < 1) or (bool(regional) and max(regional) < 1)


@dataclass(frozen=True)
class ZoneRow:
    """A zone offering the GPU: region free quota (None: unknown) and hourly price."""

    zone: str
    region: str
    max_count: int | None = None
    free_quota: float | None = None
    price_hour: float | None = None
    live: bool = False


@dataclass
class LiveState:
    """Results the App keeps between screen visits (screens are rebuilt on each visit)."""

    project: ProjectInfo | None = None
    quota: dict[tuple[str | None, str, bool], QuotaView] = field(default_factory=dict)
    zones: dict[tuple[str | None, str, int, bool], list[ZoneRow]] = field(default_factory=dict)


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


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute (or key) of ``obj`` among ``names``."""
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def quota_metric(gpu: str, spot: bool) -> str:
    g = catalog.gpu(gpu)
    if g is None:
        return "?"
    return g.spot_quota_metric if spot else g.quota_metric


def quota_link(project: str | None, gpu: str, spot: bool) -> str:
    metric = quota_metric(gpu, spot).lower()
    q = f"?project={project}&" if project else "?"
    return f"{CONSOLE_QUOTAS}{q}metric=compute.googleapis.com%2F{metric}"


def zero_quota_advice(project: str | None, gpu: str, spot: bool, count: int = 1) -> str:
    """What to ask for when the project has no GPU quota: plain words plus the console link."""
    metric = quota_metric(gpu, spot)
    g = catalog.gpu(gpu)
    label = g.label if g else gpu
    return (f"This project has no free {label} quota. New projects start at 0 GPUs. In the console, "
            f"ask for GPUS_ALL_REGIONS >= {count} (global) and {metric} >= {count} in the region you "
            f"want; small requests are often approved within minutes, larger ones can take 2 business "
            f"days.\n{quota_link(project, gpu, spot)}")


# ------------------------------------------------------------------------- project


def load_project() -> ProjectInfo:
    """The Application Default Credentials project; offline when there are no credentials.

    Runs in a worker thread: google-auth (and later google.cloud) are imported here only.
    """
    if os.environ.get("GPUWIZARD_OFFLINE") == "1":
        return ProjectInfo(None, False, offline_reason())
    try:
        from gpuwizard.gcp import client
        from gpuwizard.gcp.errors import GcpError
    except ImportError:
        return ProjectInfo(os.environ.get("GOOGLE_CLOUD_PROJECT"), False, offline_reason())
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
        from gpuwizard.gcp import quota as gq  # type: ignore[attr-defined]
    except ImportError:
        return QuotaView(False, project, gpu, spot, (), "Live quota is not available in this version; "
                         "continuing with the built-in catalog.")
    try:
        report = _run(gq.fetch_quota(project, gpu, spot))
    except Exception as exc:  # noqa: BLE001
        return QuotaView(False, project, gpu, spot, (), f"Could not read quota: {_short(exc)}. "
                         "Continuing with the built-in catalog.")
    return QuotaView(True, project, gpu, spot, tuple(_quota_rows(report)), "")


def _quota_rows(report: Any) -> list[QuotaRow]:
    """Rows from a ``gpuwizard.gcp.quota.QuotaReport``: the global cap first, then regions by free quota."""
    rows: list[QuotaRow] = []
    if getattr(report, "global_limit", None) is not None:
        rows.append(QuotaRow("global", "GPUS_ALL_REGIONS", float(report.global_limit), float(report.global_usage or 0)))
    regional = report.regions() if hasattr(report, "regions") else {}
    for region, r in regional.items():
        rows.append(QuotaRow(str(region), str(r.metric), float(r.limit), float(r.usage)))
    rows.sort(key=lambda r: (r.scope != "global", -r.free, r.scope))
    return rows


# ------------------------------------------------------------------------- zones


def offline_zones(gpu: str, count: int, spot: bool) -> list[ZoneRow]:
    """Zones from the catalog snapshot with catalog prices: instant, no credentials."""
    out = []
    for z in catalog.zones_for(gpu):
        out.append(ZoneRow(z, catalog.region_of(z), None, None, None, False))
    return order_best_first(out)


def load_zones(project: str | None, gpu: str, count: int, spot: bool, online: bool = True) -> list[ZoneRow]:
    """Zones offering ``count`` x ``gpu`` with region free quota and price; catalog offline."""
    if not online or not project:
        return offline_zones(gpu, count, spot)
    try:
        from gpuwizard.gcp import zones as gz  # type: ignore[attr-defined]
    except ImportError:
        return offline_zones(gpu, count, spot)
    options = _run(gz.zones_for_gpu(project, gpu, count, spot))
    out = []
    for o in options or []:
        zone = str(_get(o, "zone"))
        free = _get(o, "free_quota")
        price = _get(o, "price_hour")
        mc = _get(o, "max_count")
        out.append(ZoneRow(zone, str(_get(o, "region", default=catalog.region_of(zone))),
                           int(mc) if mc is not None else None, float(free) if free is not None else None,
                           float(price) if price is not None else None, True))
    return order_best_first(out)


_REGION_RANK = ("us-central1", "us-east", "us-west", "europe", "asia", "australia", "northamerica", "southamerica")


def order_best_first(rows: list[ZoneRow]) -> list[ZoneRow]:
    """Best first: zones whose region has free quota, then cheaper, then well-stocked regions."""
    def key(r: ZoneRow) -> tuple:
        quota_rank = 0 if r.free_quota and r.free_quota >= 1 else (1 if r.free_quota is None else 2)
        region_rank = next((i for i, p in enumerate(_REGION_RANK) if r.region.startswith(p)), len(_REGION_RANK))
        return (quota_rank, r.price_hour if r.price_hour is not None else 1e9, region_rank, r.zone)
    return sorted(rows, key=key)


def default_preference(rows: list[ZoneRow], n: int = 3) -> list[str]:
    """The default failover list: the best ``n`` zones (``rows`` is already best first),
    leaving out zones whose region is known to have no free quota unless nothing else is left."""
    usable = [r.zone for r in rows if r.free_quota is None or r.free_quota >= 1]
    return (usable or [r.zone for r in rows])[:n]
