"""Create the run's new VMs, failing over between zones.

Per the anchors study (docs/facts/gcp-provisioning-anchors.md: SkyPilot's error
blocklist, dstack's quota arithmetic) plus two things neither does:

* quota is checked up front (two requests): GPUS_ALL_REGIONS = 0 stops before any insert
  with the console link, and regions without free quota are never sent an insert;
* every error of an operation is classified, and the ``zonesAvailable`` hint of
  ``ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`` moves those zones to the front.

OS Login: ``projects.get`` (the request that reads ``GPUS_ALL_REGIONS``) also returns
the project's ``commonInstanceMetadata``. When it holds ``enable-oslogin`` = TRUE (any
case), the guest ignores the ``ssh-keys`` metadata gpuwizard logs in with: with
``ssh.user`` set the run proceeds (the user registered the key in OS Login), without it
it stops before creating or starting anything, naming the fix. gpuwizard never sets
``enable-oslogin`` on its VMs. An organisation policy (``compute.requireOsLogin``) that
enforces OS Login without project metadata is not visible to ``projects.get``; where the new
VM's own metadata shows it, :mod:`gpuwizard.gcp.oslogin` stops the run before SSH.

A zone that takes the VMs is recorded in the run's ledger at once (issue 13): from then
on the run owns them, whatever fails next.

One pass over the zones is :func:`one_pass`; ``run --wait`` repeats it for the zones that
lacked capacity, with growing gaps (:mod:`.wait`), instead of failing after one pass.
"""

from __future__ import annotations

from collections import deque
from typing import Awaitable, Callable

from gpuwizard import catalog
from gpuwizard.gcp import cluster_net
from gpuwizard.gcp import quota as Q
from gpuwizard.gcp.body import fill_project, instance_body
from gpuwizard.gcp.client import call
from gpuwizard.gcp.consumption import describe, model
from gpuwizard.gcp.context import Provisioner
from gpuwizard.gcp.errors import (EXISTS, GLOBAL_QUOTA, PERMISSION, REGION_QUOTA, STOCKOUT, UNFINISHED, GcpError,
                                  Verdict, console_link, global_quota_error, os_login_error, quota_error)
from gpuwizard.gcp.inventory import find
from gpuwizard.gcp.operations import run_operation
from gpuwizard.gcp.quota_gate import gate, unknown_note
from gpuwizard.gcp.wait import Round, WaitPolicy, Waiter, is_capacity
from gpuwizard.gcp.zones import zones_for_gpu


async def check_project(p: Provisioner, creating: bool) -> None:
    """OS Login first (see the module docstring), then, when VMs are to be created,
    GPUS_ALL_REGIONS (new projects have 0) and each region's free quota.

    One ``projects.get`` serves both (with ``regions.list`` beside it when creating GPU
    VMs). Fails open: a narrowly scoped account may lack compute.projects.get; inserts
    will still say what is wrong.
    """
    meta: dict[str, str] | None = None
    if creating and p.gpu is not None:
        # said first: the run screen shows the provisioning pane from its first line
        p.say(f"checking the project and its {p.gpu.name} quota (Compute Engine, Cloud Quotas)")
        try:
            p.quota = await Q.fetch_quota(p.project, p.gpu.name, p.preemptible)
            meta = p.quota.metadata
            if (note := unknown_note(p.quota)) is not None:
                p.say(note)
        except GcpError as exc:
            p.say(f"could not read quotas ({exc}); trying the zones anyway")
    else:
        try:
            meta = await Q.fetch_project_metadata(p.project)
        except GcpError as exc:
            p.say(f"could not read the project's metadata ({exc}); assuming metadata SSH keys work")
    if meta is not None and Q.os_login_enabled(meta):
        if not p.recipe.ssh.user:
            raise os_login_error(p.project, p.identity + ".pub")
        p.os_login = True
        p.say(f"project {p.project} enforces OS Login: logging in as OS Login user {p.user} with "
              f"{p.identity} and adding no ssh-keys metadata (if SSH is refused, add the key with "
              f"`gcloud compute os-login ssh-keys add --key-file={p.identity}.pub`)")
    q = p.quota
    if creating and q is not None and q.global_limit is not None and (q.global_free or 0) < p.need:
        raise global_quota_error(q.global_limit, q.global_usage, p.need, p.project)


async def candidates(p: Provisioner) -> list[str]:
    """The zones to try; those in regions whose GPU-family quota is too low are dropped
    (and the request to file said) before any insert (:mod:`.quota_gate`)."""
    if p.g.zones:
        return gate(p.quota, list(p.g.zones), p.need, p.say, p.report.gated)
    if p.gpu is None or p.g.gpu is None:
        raise GcpError("Set target.gcp.zones: a CPU-only VM has no GPU to choose zones by.", kind="usage")
    opts = await zones_for_gpu(p.project, p.gpu.name, int(p.g.gpu.count), p.preemptible,   # QuotaInfos read once
                               cloud=p.quota.cloud if p.quota else None, read_cloud=False)
    p.say(f"no zones in the recipe: trying the {len(opts)} zones that offer {p.gpu.label}, best first")
    return gate(p.quota, [o.zone for o in opts], p.need, p.say, p.report.gated)


async def attempt(p: Provisioner, zone: str, public_key: str) -> Verdict | None:
    """Insert :attr:`Provisioner.names` in ``zone`` and wait; None on success (recorded in
    the ledger before this returns), else the verdict on all its errors.

    A cluster (:attr:`Provisioner.cluster`) gets its firewall rule and placement policy
    first, and all its nodes or none (:mod:`.cluster_net`): a partial create is deleted."""
    net = await cluster_net.prepare(p, zone) if p.cluster is not None else None
    if len(p.names) == 1:
        body = instance_body(p.recipe, zone, p.names[0], p.run_id, p.user, public_key,
                             recipe_id=p.recipe_id, os_login=p.os_login, net=net)
        fill_project(body, p.project)

        def submit() -> dict:
            return p.compute.insert(zone, body)
    else:
        props = instance_body(p.recipe, zone, "", p.run_id, p.user, public_key, bare=True,
                              recipe_id=p.recipe_id, os_login=p.os_login, net=net)
        names = list(p.names)

        def submit() -> dict:
            return p.compute.bulk_insert(zone, props, names)

    try:
        verdict = await run_operation(p.compute, zone, submit, f"creating {', '.join(p.names)}", p.say)
    except GcpError as exc:
        if exc.kind != UNFINISHED:
            raise
        raise GcpError(f"{exc.message}: the VM(s) may exist and be billed. See `gpuwizard status RECIPE.yaml` "
                       f"(recipe {p.recipe.name}); `gpuwizard run RECIPE.yaml --resume` picks them up, "
                       f"`gpuwizard down RECIPE.yaml` deletes them.", kind=UNFINISHED, vm_exists=True) from None
    if p.cluster is not None:
        verdict = await cluster_net.all_or_none(p, zone, verdict)
    if verdict is None:
        await call(p.write_ledger, list(p.names), zone)
    return verdict


async def ours_in(p: Provisioner, zone: str) -> bool:
    """Whether every VM name of this run exists in ``zone`` with this run's labels."""
    vms = await find(p.compute, p.recipe.name, p.run_id, p.recipe_path)
    if {v.name for v in vms if v.zone == zone} >= set(p.names):
        await call(p.write_ledger, list(p.names), zone)
        return True
    return False


def _stop(p: Provisioner, zone: str, verdict: Verdict) -> GcpError | None:
    """The error that ends the failover for ``verdict``, or None to go on."""
    if verdict.kind == GLOBAL_QUOTA:
        q = p.quota
        if (verdict.metric in (None, "GPUS_ALL_REGIONS")) and q is not None and q.global_limit is not None:
            return global_quota_error(q.global_limit, q.global_usage, p.need, p.project)
        return quota_error(verdict, p.project, f"creating a VM in {zone}")
    if verdict.kind == PERMISSION:
        msg = verdict.items[0].message if verdict.items else "permission denied"
        return GcpError(f"Permission denied creating a VM in {zone}: {msg} Ask for roles/compute.instanceAdmin.v1 "
                        f"on project {p.project}, or check that the Compute Engine API is enabled.", kind=PERMISSION)
    return None


async def create(p: Provisioner, public_key: str, wait: WaitPolicy | None = None) -> str:
    """Try zones until one takes the VM(s); returns the zone. Raises GcpError with the reasons.

    With ``wait`` (``run --wait``), a round in which every zone lacked capacity is followed
    by another after a growing gap (:mod:`.wait`), until one works or ``max_wait`` passes."""
    zones = await candidates(p)
    if wait is None:
        res = await one_pass(p, zones, lambda zone: attempt(p, zone, public_key))
        if res.zone is not None:
            return res.zone
        reasons = "; ".join(f"{z}: {r}" for z, r in p.report.skipped) or "no zones to try"
        raise GcpError(f"No zone could take the VM ({reasons}). Add zones to target.gcp.zones "
                       f"(see `gpuwizard zones --gpu {p.g.gpu.type if p.g.gpu else 'TYPE'}`), try later, or "
                       f"wait for capacity with `gpuwizard run RECIPE.yaml --wait`.", kind=STOCKOUT)
    waiter = Waiter(p, wait, lambda zone: attempt(p, zone, public_key))
    return await waiter.run(zones, lambda order: one_pass(p, order, waiter.attempt))


async def one_pass(p: Provisioner, zones: list[str], insert: Callable[[str], Awaitable[Verdict | None]]) -> Round:
    """Try ``zones`` in order (``zonesAvailable`` hints moved to the front) until one takes
    the VM(s). Stops the run (raises) on quota, permission and name errors; returns the
    zone, or which zones lacked capacity and what they suggested."""
    p.report.skipped[:] = p.report.gated   # the gate's reasons stand for every pass
    out = Round()
    queue: deque[str] = deque(zones)
    tried: set[str] = set()
    blocked: dict[str, str] = {}      # region -> why
    while queue:
        zone = queue.popleft()
        if zone in tried:
            continue
        region = catalog.region_of(zone)
        why = blocked.get(region) or p.region_block(region)
        if why:
            if region not in blocked:
                blocked[region] = why
                p.say(f"skipping {region}: {why}")
            p.report.skipped.append((zone, "no free quota in " + region))
            tried.add(zone)
            continue
        tried.add(zone)
        what = f"{len(p.names)} x " if len(p.names) > 1 else ""
        p.say(f"{zone}: creating {what}{p.g.machine_type}"
              + (f" with {p.g.gpu.count} x {p.g.gpu.type}" if p.g.gpu else "")
              + (f" ({describe(p.g)})" if model(p.g) != "on-demand" else ""))
        verdict = await insert(zone)
        if verdict is None:
            out.zone = zone
            return out
        p.report.skipped.append((zone, verdict.reason))
        if verdict.kind == EXISTS:
            if await ours_in(p, zone):
                p.say(f"{zone}: this run's VM(s) already exist there (an earlier request went through)")
                out.zone = zone
                return out
            names = ", ".join(p.names)
            raise GcpError(f"A VM named {names} already exists in {zone} and is not this run's, so the run "
                           f"stops here (another zone would get a second VM of the same name). See it with "
                           f"`gpuwizard status RECIPE.yaml` (recipe {p.recipe.name}); delete it with "
                           f"`gpuwizard down RECIPE.yaml` if it is a leftover, or set target.gcp.name_prefix.",
                           kind=EXISTS)
        stop = _stop(p, zone, verdict)
        if stop is not None:
            raise stop
        if verdict.kind == REGION_QUOTA:
            metric = verdict.metric or p.metric() or "GPUS"
            link = console_link(metric, verdict.region or region, p.project)
            blocked[region] = f"{verdict.reason}; request more at {link}"
            p.say(f"{zone}: {verdict.reason}; skipping region {region} (request more at {link})")
            continue
        if is_capacity(verdict):
            out.capacity.append(zone)
            out.hints += [z for z in verdict.zones_available if z not in out.hints]
        hints = [z for z in verdict.zones_available
                 if z not in tried and not p.region_block(catalog.region_of(z))
                 and catalog.region_of(z) not in blocked]
        if hints:
            p.say(f"{zone}: {verdict.reason}; Compute Engine suggests {', '.join(hints)}: trying those first")
            queue.extendleft(reversed(hints))
        elif any(z not in tried for z in queue):
            p.say(f"{zone}: {verdict.reason}; trying the next zone")
        else:
            p.say(f"{zone}: {verdict.reason}; no zone left to try")
    return out


async def create_in(p: Provisioner, zone: str, public_key: str) -> str:
    """Create :attr:`Provisioner.names` in ``zone`` only: the zone of the run's other VMs
    (no failover, a run's VMs share a zone)."""
    region = catalog.region_of(zone)
    verdict = None
    why = p.region_block(region)
    if not why:
        p.say(f"{zone}: creating {', '.join(p.names)} beside the run's other VM(s)")
        verdict = await attempt(p, zone, public_key)
        if verdict is None or (verdict.kind == EXISTS and await ours_in(p, zone)):
            return zone
        why = verdict.reason
    raise GcpError(f"Replacing {', '.join(p.names)} in {zone}, where the run's other VMs are, failed ({why}): "
                   f"run `gpuwizard run RECIPE.yaml --resume` again later, or `gpuwizard down RECIPE.yaml` "
                   f"(recipe {p.recipe.name}) and a fresh run.", kind=verdict.kind if verdict else REGION_QUOTA)
