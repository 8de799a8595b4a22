"""The provisioner's GPU-family quota gate: no insert goes to a region whose family quota
(Cloud Quotas ``QuotaInfo``) cannot hold the run's GPUs, and the user is told the exact
``gpuwizard quota request`` command that files the increase (issue 15).

Why before any insert: an H100/H200/B200 request into a region with a 0 family quota
fails with ``QUOTA_EXCEEDED`` anyway, after an operation round trip per zone, and the
failure names the quota but not how to get it. ``regions.list`` does not list the
family quota, so :mod:`.quota`'s report is the only place it is known
(docs/facts/cloud-quotas.md). Where Cloud Quotas could not be read, nothing is gated
here and the per-region regions.list check stands.
"""

from __future__ import annotations

from typing import Callable

from gpuwizard import catalog
from gpuwizard.gcp.errors import REGION_QUOTA, GcpError
from gpuwizard.gcp.quota import QuotaReport
from gpuwizard.gcp.quota_request import request_command


def unknown_note(report: QuotaReport | None) -> str | None:
    """For a GPU-family GPU whose family quota could not be read: the one line saying why."""
    if report is None or report.cloud is not None or not report.cloud_note or report.family_target("") is None:
        return None
    return f"GPU-family quota unknown: {report.cloud_note}"


def blocked_regions(report: QuotaReport | None, regions: list[str], need: int) -> dict[str, str]:
    """region -> why, for each region whose family quota has fewer than ``need`` GPUs free."""
    out: dict[str, str] = {}
    if report is None or report.cloud is None or report.gpu is None or need <= 0:
        return out
    for region in regions:
        target = report.family_target(region)
        free = report.family_free(region)
        if target is None or free is None or free >= need:
            continue
        limit = report.family_limit(region)
        out[region] = (f"the GPU-family quota {target.describe()} is {limit:g} with {free:g} free ({need} needed); "
                       f"file the increase with: "
                       f"{request_command(report.gpu, region, need, report.spot, report.project)}")
    return out


def gate(report: QuotaReport | None, zones: list[str], need: int, say: Callable[[str], None],
         skipped: list[tuple[str, str]]) -> list[str]:
    """``zones`` without those in family-blocked regions (each region said once, each zone
    recorded in ``skipped``); raises when no zone is left."""
    regions = list(dict.fromkeys(catalog.region_of(z) for z in zones))
    blocked = blocked_regions(report, regions, need)
    if not blocked:
        return zones
    for region, why in blocked.items():
        say(f"skipping {region}: {why}")
    kept = []
    for z in zones:
        if catalog.region_of(z) in blocked:
            skipped.append((z, "GPU-family quota too low in " + catalog.region_of(z)))
        else:
            kept.append(z)
    if not kept:
        first = next(iter(blocked.values()))
        where = ", ".join(blocked)
        raise GcpError(f"No VM can be created: in {where} {first.split('; file', 1)[0]}. Nothing was sent to "
                       f"Compute Engine. File the increase with:\n  {first.split('with: ', 1)[1]}\n"
                       f"(with your own --email and words; `gpuwizard quota --requests` then shows its state).",
                       kind=REGION_QUOTA)
    return kept
