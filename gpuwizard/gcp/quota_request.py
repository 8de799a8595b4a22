"""Filing a GPU quota increase: which quotas block a VM, what exactly will be asked, and
the state of what was asked (issue 15).

A VM with N GPUs in a region needs two quotas (docs/facts/cloud-quotas.md): the global
``GPUS-ALL-REGIONS-per-project`` and the regional one (the GPU's per-model quota id, or
the ``GPUS-PER-GPU-FAMILY-per-project-region`` family quota for H100/H200/B200). Each
that has less than N free becomes one ``QuotaPreference`` asking for ``usage + N``. A
quota that already has a preference (Google keeps one per quota and dimensions) gets
that preference updated instead of a second create that Google would refuse.

The state of a preference is derived from its real fields: ``reconciling`` -> pending;
``grantedValue`` = ``preferredValue`` -> granted; 0 < granted < preferred -> partially
granted; otherwise denied, with ``stateDetail`` as Google's reason.
"""

from __future__ import annotations

import datetime
import re
import shlex
from dataclasses import dataclass
from typing import Any

from gpuwizard import catalog
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp import quotas_api
from gpuwizard.gcp.client import call
from gpuwizard.gcp.errors import ApiError, GcpError
from gpuwizard.gcp.quota import QuotaReport
from gpuwizard.gcp.quota_explain import explain

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
PENDING, GRANTED, PARTIAL, DENIED = "pending", "granted", "partially granted", "denied"


@dataclass
class Ask:
    """One quota to raise: from ``current`` to ``want``; ``existing``: its preference, if any."""

    target: QF.QuotaTarget
    current: float | None
    want: int
    existing: dict[str, Any] | None = None

    def line(self) -> str:
        now = "unknown" if self.current is None else f"{self.current:g}"
        scope = "" if self.target.dimensions else " (global)"
        again = f"; updates your earlier request {self.existing['name'].rsplit('/', 1)[-1]}" if self.existing else ""
        return f"{self.target.describe()}{scope}: {now} -> {self.want}{again}"


def check_inputs(region: str, count: int, email: str, justification: str) -> None:
    """Usage errors before anything is read or asked."""
    if not REGION_RE.match(region):
        raise GcpError(f"'{region}' is not a region: write it like us-central1 (a zone without its -a/-b suffix).",
                       kind="usage")
    if count < 1:
        raise GcpError(f"--count must be at least 1 (got {count}).", kind="usage")
    if not EMAIL_RE.match(email):
        raise GcpError(f"'{email}' is not an email address: Google writes to it if the request needs more "
                       "information.", kind="usage")
    if not justification.strip():
        raise GcpError("--justification is empty: say in a sentence what the GPUs are for (Google reads it).",
                       kind="usage")


def request_command(gpu: str, region: str, count: int, spot: bool, project: str | None) -> str:
    """The exact ``gpuwizard quota request`` command line for a VM's GPUs."""
    parts = ["gpuwizard", "quota", "request", "--gpu", gpu, "--region", region, "--count", str(count)]
    if spot:
        parts.append("--spot")
    parts += ["--email", "YOU@EXAMPLE.COM", "--justification", f"GPU VMs for my experiments ({count} x {gpu})"]
    if project:
        parts += ["--project", project]
    return " ".join(shlex.quote(p) for p in parts)


def _same(pref: dict[str, Any], target: QF.QuotaTarget) -> bool:
    return pref.get("quotaId") == target.quota_id and dict(pref.get("dimensions") or {}) == target.dims


def plan(report: QuotaReport, gpu: str, region: str, count: int, spot: bool,
         prefs: list[dict[str, Any]] | None = None) -> list[Ask]:
    """The quotas that keep ``count`` x ``gpu`` from running in ``region`` (global first)."""
    prefs = prefs or []
    cloud = report.cloud
    asks: list[Ask] = []
    glob = QF.global_target()
    gval = cloud.value(glob) if cloud is not None else None
    current = gval if gval is not None else report.global_limit
    usage = report.global_usage or 0.0
    if current is None or current - usage < count:
        asks.append(Ask(glob, current, int(usage) + count))
    target = QF.regional_target(gpu, spot, region, cloud)
    value = cloud.value(target) if cloud is not None else None
    g = catalog.gpu(gpu)
    metric = (g.spot_quota_metric if spot else g.quota_metric) if g else None
    row = next((r for r in report.rows if r.region == region and r.metric == metric), None)
    if value is None and row is not None and QF.family_of(gpu) is None:
        value = row.limit
    used = row.usage if row is not None else 0.0
    if value is None or value - used < count:
        asks.append(Ask(target, value, int(used) + count))
    for a in asks:
        a.existing = next((p for p in prefs if _same(p, a.target)), None)
    return asks


def preview(project: str, asks: list[Ask], email: str, justification: str) -> list[str]:
    """Exactly what will be sent to Google, one line each."""
    lines = [f"Project {project}: {len(asks)} quota increase request(s) will be filed with Google "
             "(service compute.googleapis.com):"]
    lines += [f"  {i}. {a.line()}" for i, a in enumerate(asks, 1)]
    lines += [f"  contact email: {email}", f"  justification: {justification}"]
    return lines


def preference_id(target: QF.QuotaTarget, when: datetime.datetime) -> str:
    """A readable preference id: ``gpuwizard-gpus-per-gpu-family-us-central1-nvidia-h100-20261129t2104``."""
    words = [target.quota_id.lower().replace("-per-project-region", "").replace("-per-project", "")]
    words += [v.lower().replace("_", "-") for _, v in target.dimensions]
    stamp = when.strftime("%Y%m%dt%H%M%S")
    base = re.sub(r"[^a-z0-9-]+", "-", "gpuwizard-" + "-".join(words))[: 63 - len(stamp) - 1].rstrip("-")
    return f"{base}-{stamp}"


def body(ask: Ask, email: str, justification: str) -> dict[str, Any]:
    """The QuotaPreference to create (resources.py: service, quotaId, quotaConfig, dimensions ...)."""
    out: dict[str, Any] = {"service": quotas_api.SERVICE, "quotaId": ask.target.quota_id,
                           "quotaConfig": {"preferredValue": str(ask.want)}, "contactEmail": email,
                           "justification": justification}
    if ask.target.dimensions:
        out["dimensions"] = ask.target.dims
    return out


def _file(project: str, asks: list[Ask], email: str, justification: str,
          when: datetime.datetime) -> list[dict[str, Any]]:
    api = quotas_api.open_quotas(project)
    out = []
    for a in asks:
        b = body(a, email, justification)
        try:
            if a.existing is not None:
                b.update(name=a.existing["name"], etag=a.existing.get("etag", ""))
                out.append(api.update_preference(b, ["quota_config.preferred_value", "justification",
                                                      "contact_email"]))
            else:
                out.append(api.create_preference(b, preference_id(a.target, when)))
        except ApiError as exc:
            done = f" ({len(out)} of {len(asks)} filed before it)" if out else ""
            raise explain(exc, project, f"filing {a.target.describe()}{done}", filing=True) from None
    return out


async def file_requests(project: str, asks: list[Ask], email: str, justification: str) -> list[dict[str, Any]]:
    """Create (or update) one QuotaPreference per ask; the preferences as Google answered."""
    return await call(_file, project, asks, email, justification, datetime.datetime.now(datetime.timezone.utc))


def _prefs(project: str) -> list[dict[str, Any]]:
    return quotas_api.open_quotas(project).preferences()


async def read_preferences(project: str) -> list[dict[str, Any]]:
    """The project's QuotaPreferences; a failure explained (API off, permission)."""
    try:
        return await call(_prefs, project)
    except ApiError as exc:
        raise explain(exc, project, "reading quota requests", filing=False) from None


def _int(v: Any) -> int | None:
    try:
        return None if v in (None, "") else int(v)
    except (TypeError, ValueError):
        return None


def state(pref: dict[str, Any]) -> tuple[str, str]:
    """(state, Google's words) of a QuotaPreference (see the module docstring)."""
    cfg = pref.get("quotaConfig") or {}
    detail = str(cfg.get("stateDetail") or "").strip()
    want = _int(cfg.get("preferredValue")) or 0
    got = _int(cfg.get("grantedValue"))
    if pref.get("reconciling"):
        return PENDING, detail
    if got is not None and got >= want:
        return GRANTED, detail
    if got is not None and 0 < got < want:
        return PARTIAL, detail
    return DENIED, detail or "Google gave no reason"
