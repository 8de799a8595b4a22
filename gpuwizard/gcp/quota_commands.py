"""``gpuwizard quota request`` and ``gpuwizard quota --requests``, and the GPU-family part of
``gpuwizard quota`` (the Cloud Quotas half of the command; :mod:`.commands` keeps the
regions.list half).

Filing is outward-facing (an email address and a justification go to Google), so it
always shows the exact requests first and asks y/N (``-y`` skips; without a terminal
and without ``-y`` it refuses, like ``down``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gpuwizard import catalog
from gpuwizard.exit_codes import FAILED, OK, USAGE
from gpuwizard.gcp import quota_family as QF
from gpuwizard.gcp import quota_request as QR
from gpuwizard.gcp import quotas_api
from gpuwizard.gcp.client import call, credentials_and_project
from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.quota import QuotaReport, fetch_quota, require_gpu
from gpuwizard.tables import table


def _err(msg: str) -> None:
    print(f"gpuwizard: {msg}", file=sys.stderr)


def _fail(exc: GcpError) -> int:
    _err(str(exc))
    return USAGE if exc.kind in ("usage", "project", "credentials") else FAILED


def _num(x: float | None) -> str:
    return "?" if x is None else ("unlimited" if x == float("inf") else f"{x:g}")


def print_family(rep: QuotaReport) -> None:
    """The Cloud Quotas part of ``gpuwizard quota``: the GPU-family quotas regions.list
    omits, or the one line saying why they could not be read."""
    if rep.cloud is None:
        if rep.cloud_note:
            print(f"\nNote: {rep.cloud_note}")
        return
    fam = QF.family_of(rep.gpu) if rep.gpu else None
    ids = [q for q in (QF.FAMILY_QUOTA_ID, QF.SPOT_FAMILY_QUOTA_ID) if rep.cloud.has(q)]
    rows = [(qid, dims, value, locs) for qid, dims, value, locs in rep.cloud.rows(ids)
            if fam is None or dims.get("gpu_family") in (None, fam)]
    if not rows:
        if fam:
            print(f"\nCloud Quotas lists no GPU-family quota for {fam}.")
        return
    print("\nGPU-family quotas (Cloud Quotas; regions.list does not list them):")
    print(table(["REGION", "GPU FAMILY", "QUOTA ID", "VALUE"],
                [[dims.get("region") or _where(locs), dims.get("gpu_family") or "(every family)", qid, _num(v)]
                 for qid, dims, v, locs in rows], rule=False))


def _where(locs: list[str]) -> str:
    if not locs or locs == ["global"]:
        return "(every region)"
    return locs[0] if len(locs) == 1 else f"({len(locs)} other regions)"


def family_advice(rep: QuotaReport, count: int = 1) -> str | None:
    """The request to file when the asked family GPU has a 0 family quota everywhere listed."""
    if rep.cloud is None or rep.gpu is None or QF.family_of(rep.gpu) is None:
        return None
    target = QF.regional_target(rep.gpu, rep.spot, "", rep.cloud)
    values = [v for qid, dims, v, _ in rep.cloud.rows([target.quota_id])
              if dims.get("gpu_family") in (None, QF.family_of(rep.gpu))]
    if values and max(values) > 0:
        return None
    region = next((catalog.region_of(z) for z in catalog.zones_for(rep.gpu)), catalog.DEFAULT_REGION)
    return ("The GPU-family quota for " + str(QF.family_of(rep.gpu)) + " is 0: no such VM can start. File the "
            "increase for a region that offers it, e.g.:\n  " +
            QR.request_command(rep.gpu, region, count, rep.spot, rep.project))


def print_requests(project: str | None) -> int:
    """``gpuwizard quota --requests``: the project's QuotaPreferences and their states."""
    try:
        prefs = asyncio.run(_requests(project))
    except GcpError as exc:
        return _fail(exc)
    proj, items = prefs
    if not items:
        print(f"Project {proj}: no quota requests (QuotaPreferences) yet. `gpuwizard quota request --help` files one.")
        return OK
    rows, reasons = [], []
    for p in items:
        st, detail = QR.state(p)
        cfg = p.get("quotaConfig") or {}
        dims = ", ".join(f"{k}={v}" for k, v in sorted((p.get("dimensions") or {}).items())) or "-"
        pid = str(p.get("name", "")).rsplit("/", 1)[-1]
        rows.append([pid, p.get("quotaId", "?"), dims, str(cfg.get("preferredValue", "?")),
                     str(cfg.get("grantedValue", "-")), st])
        if st in (QR.DENIED, QR.PARTIAL) or (detail and st != QR.GRANTED):
            reasons.append(f"  {pid}: {st}: {detail or 'no reason given'}")
    print(f"Project {proj}: {len(items)} quota request(s)")
    print(table(["REQUEST", "QUOTA", "DIMENSIONS", "ASKED", "GRANTED", "STATE"], rows, rule=False))
    if reasons:
        print("\nGoogle's words:")
        print("\n".join(reasons))
    return OK


async def _requests(project: str | None) -> tuple[str, list[dict[str, Any]]]:
    _check_available()
    proj = await _project(project)
    return proj, await QR.read_preferences(proj)


async def _project(project: str | None) -> str:
    _, proj = await call(credentials_and_project, project)
    return proj


def _check_available() -> None:
    if not quotas_api.available():
        raise GcpError(f"Set {quotas_api.ENDPOINT_ENV} too: with the Compute endpoint overridden, gpuwizard does "
                       "not send quota requests to the real Cloud Quotas API.", kind="usage")


def _confirm(n: int) -> bool | None:
    """True/False from the user; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"File {n} request(s) with Google? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_quota_request(args: argparse.Namespace) -> int:
    """Preview, confirm and file the quota increases a VM of ``--count`` x ``--gpu`` needs."""
    try:
        g = require_gpu(args.gpu)
        QR.check_inputs(args.region, int(args.count), args.email, args.justification)
        _check_available()
        rep, prefs = asyncio.run(_read(getattr(args, "project", None), g.name, bool(args.spot)))
    except GcpError as exc:
        return _fail(exc)
    if rep.cloud_note:
        print(f"Note: {rep.cloud_note}")
    offered = {catalog.region_of(z) for z in catalog.zones_for(g.name)}
    if offered and args.region not in offered:
        print(f"Note: the catalog snapshot lists no zone in {args.region} with {g.label} "
              f"(it does in {', '.join(sorted(offered)[:6])}{' ...' if len(offered) > 6 else ''}); "
              f"see `gpuwizard zones --gpu {g.name}`.")
    asks = QR.plan(rep, g.name, args.region, int(args.count), bool(args.spot), prefs)
    if not asks:
        print(f"Nothing to request: project {rep.project} already has room for {args.count} x {g.label} in "
              f"{args.region} (global and regional quota).")
        return OK
    for line in QR.preview(rep.project, asks, args.email, args.justification):
        print(line)
    if not args.yes:
        ok = _confirm(len(asks))
        if ok is None:
            _err("refusing to file quota requests without confirmation: run again with -y.")
            return USAGE
        if not ok:
            print("Nothing filed.")
            return FAILED
    try:
        done = asyncio.run(QR.file_requests(rep.project, asks, args.email, args.justification))
    except GcpError as exc:
        return _fail(exc)
    for p in done:
        st, _ = QR.state(p)
        print(f"Filed {str(p.get('name', '')).rsplit('/', 1)[-1]}: {p.get('quotaId')} -> "
              f"{(p.get('quotaConfig') or {}).get('preferredValue')} ({st})")
    print("Google reviews each request (small ones often within minutes, larger ones can take 2 business days); "
          "`gpuwizard quota --requests` shows their states.")
    return OK


async def _read(project: str | None, gpu: str, spot: bool) -> tuple[QuotaReport, list[dict[str, Any]]]:
    rep = await fetch_quota(project, gpu, spot)
    if rep.cloud is None:
        return rep, []   # the create will say why the API cannot be used
    try:
        prefs = await QR.read_preferences(rep.project)
    except GcpError:
        prefs = []
    return rep, prefs
