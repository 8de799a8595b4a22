"""What the wizard's Project & quota screen shows from Cloud Quotas: the GPU-family quota,
the project's quota requests with their states, and what "Request more" would file.

Plain functions over the core (no Textual): the screen calls :func:`load_cloud` from a
thread worker and renders the text; the request dialog uses :func:`plan_for` and
:func:`file_for`, the same planning, preview and filing as ``gpuwizard quota request``
(:mod:`.quota_request`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gpuwizard import catalog
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp import quota_request as QR
from gpuwizard.gcp import quotas_api
from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.quota import QuotaReport, fetch_quota


@dataclass
class CloudView:
    """Cloud Quotas' part of the quota screen for one (project, GPU, spot)."""

    project: str | None
    gpu: str
    spot: bool
    report: QuotaReport | None = None
    prefs: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""          # why something could not be read, in one line

    def family_text(self) -> str:
        """``NVIDIA_H100 family quota: us-east4 16; other regions 8`` (empty: not a family GPU)."""
        fam = QF.family_of(self.gpu)
        rep = self.report
        if fam is None or rep is None or rep.cloud is None:
            return ""
        target = QF.regional_target(self.gpu, self.spot, "", rep.cloud)
        parts = []
        for _qid, dims, value, locs in rep.cloud.rows([target.quota_id]):
            if dims.get("gpu_family") not in (None, fam):
                continue
            where = dims.get("region") or ("other regions" if len(locs) > 1 else (locs[0] if locs else "all"))
            parts.append(f"{where} {value:g}")
        text = f"{fam} family quota ({target.quota_id}): " + ("; ".join(parts) if parts else "not listed")
        if self.family_zero():
            text += ". No region has any: no such VM can start until Google grants some (Request more quota)."
        return text

    def family_zero(self) -> bool:
        """True when the GPU's family quota is listed and 0 in every entry."""
        fam = QF.family_of(self.gpu)
        rep = self.report
        if fam is None or rep is None or rep.cloud is None:
            return False
        target = QF.regional_target(self.gpu, self.spot, "", rep.cloud)
        values = [v for _q, dims, v, _l in rep.cloud.rows([target.quota_id]) if dims.get("gpu_family") in (None, fam)]
        return bool(values) and max(values) == 0

    def requests_lines(self) -> list[str]:
        """One line per QuotaPreference: ``id: quota {dims} -> N: state (Google's words)``."""
        out = []
        for p in self.prefs:
            st, detail = QR.state(p)
            dims = ", ".join(f"{k}={v}" for k, v in sorted((p.get("dimensions") or {}).items()))
            want = (p.get("quotaConfig") or {}).get("preferredValue", "?")
            out.append(f"{str(p.get('name', '')).rsplit('/', 1)[-1]}: {p.get('quotaId')}"
                       + (f" {{{dims}}}" if dims else "") + f" -> {want}: {st}" + (f" ({detail})" if detail else ""))
        return out


async def _load(project: str, gpu: str, spot: bool) -> CloudView:
    view = CloudView(project, gpu, spot)
    if not quotas_api.available():
        view.note = f"Quota requests need {quotas_api.ENDPOINT_ENV} beside an overridden Compute endpoint."
        return view
    try:
        view.report = await fetch_quota(project, gpu, spot)
    except GcpError as exc:
        view.note = str(exc)
        return view
    view.project = view.report.project
    if view.report.cloud is None:
        view.note = view.report.cloud_note or ""
        return view
    try:
        view.prefs = await QR.read_preferences(view.report.project)
    except GcpError as exc:
        view.note = str(exc)
    return view


def load_cloud(project: str, gpu: str, spot: bool) -> CloudView:
    """Blocking (a worker thread): the report with QuotaInfos, and the project's requests."""
    return asyncio.run(_load(project, gpu, spot))


def regions_for(gpu: str) -> list[str]:
    """Regions that offer ``gpu`` (catalog snapshot), in the catalog's order."""
    return list(dict.fromkeys(catalog.region_of(z) for z in catalog.zones_for(gpu)))


def plan_for(view: CloudView, region: str, count: int) -> list[QR.Ask]:
    if view.report is None:
        return []
    return QR.plan(view.report, view.gpu, region, count, view.spot, view.prefs)


def file_for(view: CloudView, asks: list[QR.Ask], email: str, justification: str) -> list[dict[str, Any]]:
    """Blocking (a worker thread): file the requests; raises GcpError explained."""
    if view.project is None:
        raise GcpError("No project: enter the project id first.", kind="usage")
    return asyncio.run(QR.file_requests(view.project, asks, email, justification))
