"""Resume (same run id): find the run's VMs by their labels and bring them back.

* RUNNING: reused as they are;
* TERMINATED / STOPPED (a spot VM preempted with ``instanceTerminationAction: STOP``,
  or a stopped VM): ``instances.start``, wait for the operation and for RUNNING, then
  read the external IP again (an ephemeral one changes on restart) and re-read and
  re-pin the host keys (same disk, same keys, but verified again, and the lines of the
  old address dropped). A start that hits a stockout stops with one sentence: wait and
  resume later, or ``down`` and a fresh run (which fails over);
* PROVISIONING / STAGING / STOPPING ...: waited for, then handled as above;
* gone (deleted: a spot VM preempted with ``instanceTerminationAction: DELETE``, or
  ``gpuwizard down``): replaced by a *new host*. The run's steps already done are kept
  per host name, and a replacement has a fresh disk, so it must not inherit them: the
  replacement of ``NAME`` is ``NAME-r1`` (then ``-r2`` ...), which the executor treats
  as a new host and runs every step on. Which names a run has used is remembered in
  its ledger beside its known_hosts file (``<known_hosts>.vms``), since Compute forgets
  a deleted VM; a VM that is gone and was never used there keeps its plain name.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from gpuwizard.gcp import budgets
from gpuwizard.gcp.body import instance_names
from gpuwizard.gcp.client import call
from gpuwizard.gcp.context import Provisioner
from gpuwizard.gcp.errors import (GLOBAL_QUOTA, PERMISSION, REGION_QUOTA, STOCKOUT, TRANSIENT, GcpError, Verdict,
                                  classify, console_link)
from gpuwizard.gcp.inventory import VmInfo, find, vm_info
from gpuwizard.gcp.operations import run_operation

STARTABLE = ("TERMINATED", "STOPPED")             # instances.start brings these back
SETTLING = ("PROVISIONING", "STAGING", "REPAIRING", "STOPPING", "SUSPENDING", "PENDING_STOP")


def _slot_name(p: Provisioner, i: int, generation: int, n: int) -> str:
    """The name of VM ``i`` (of ``n``) in its ``generation``."""
    return instance_names(p.recipe, p.run_id, [generation if j == i else 0 for j in range(n)])[i]


async def plan(p: Provisioner) -> list[VmInfo]:
    """Match the run's VMs to its slots: returns those that exist (in any state) and
    sets :attr:`Provisioner.names` to the ones to create, :attr:`Provisioner.slots` to all.

    Per slot, the latest generation the run has had (in Compute or the ledger) is
    looked at: it exists (resume it); it was had but is gone (create its replacement,
    the next generation, a new host); or it was never had (create it).
    """
    vms = await find(p.compute, p.recipe.name, p.run_id, p.recipe_path)
    found = {v.name: v for v in vms}
    used = set((await call(p.read_ledger))["names"]) | p.previous_hosts
    known = used | set(found)
    n = len(p.slots)
    keep: list[VmInfo] = []
    p.slots, p.names = [], []
    for i in range(n):
        g = 0
        while _slot_name(p, i, g + 1, n) in known:
            g += 1
        cur = _slot_name(p, i, g, n)
        if cur in found:
            keep.append(found[cur])
            p.slots.append(cur)
            continue
        if cur in used:
            new = _slot_name(p, i, g + 1, n)
            p.say(f"{cur} no longer exists (deleted, or a spot VM preempted with instanceTerminationAction "
                  f"DELETE): creating {new} in its place, a new host with a fresh disk, so every step "
                  f"runs again on it")
            cur = new
        p.slots.append(cur)
        p.names.append(cur)
    if keep:
        p.say(f"reusing {len(keep)} VM(s) this run already created: "
              + ", ".join(f"{v.name} ({v.status})" for v in keep))
    return keep


async def get(p: Provisioner, zone: str, name: str) -> VmInfo:
    """instances.get with the read budget (retries 5xx/429/connection errors)."""
    return vm_info(await call(p.compute.get_instance, zone, name))


def start_error(p: Provisioner, vm: VmInfo, verdict: Verdict) -> GcpError:
    """One sentence for a start that failed, by what failed."""
    what = f"{vm.name} was preempted" if vm.spot else f"{vm.name} is stopped"
    rec = f"(recipe {p.recipe.name})"
    if verdict.kind == STOCKOUT:
        return GcpError(
            f"{what} and {vm.zone} has no {'spot ' if vm.spot else ''}capacity to start it again now "
            f"[{', '.join(dict.fromkeys(i.code for i in verdict.items if i.code))}]: wait and run "
            f"`gpuwizard run RECIPE.yaml --resume` again later, or run `gpuwizard down RECIPE.yaml` {rec}, "
            f"which deletes it and its disk, then a fresh `gpuwizard run RECIPE.yaml`, which fails over to "
            f"other zones.", kind=STOCKOUT)
    if verdict.kind in (REGION_QUOTA, GLOBAL_QUOTA):
        metric = verdict.metric or p.metric() or "GPUS_ALL_REGIONS"
        link = console_link(metric, verdict.region if verdict.kind == REGION_QUOTA else None, p.project)
        return GcpError(f"{what} and starting it again needs quota that is now in use ({verdict.reason}): "
                        f"free some or request more at {link}, then run `gpuwizard run RECIPE.yaml --resume` "
                        f"{rec} again.", kind=verdict.kind, link=link)
    msg = verdict.items[0].message if verdict.items else verdict.reason
    if verdict.kind == PERMISSION:
        return GcpError(f"Permission denied starting {vm.name} in {vm.zone}: {msg} Ask for "
                        f"roles/compute.instanceAdmin.v1 on project {p.project}.", kind=PERMISSION)
    return GcpError(f"Starting {vm.name} in {vm.zone} failed ({msg}): run `gpuwizard run RECIPE.yaml --resume` "
                    f"again later, or `gpuwizard down RECIPE.yaml` {rec} and a fresh run.", kind=verdict.kind)


def _since(vm: VmInfo) -> str:
    """``, stopped at 18:02 UTC (35 min ago)``: when Compute Engine stopped or preempted it."""
    if vm.stopped is None:
        return ""
    ago = max(0, int((datetime.now(timezone.utc) - vm.stopped).total_seconds() // 60))
    return f", stopped at {vm.stopped.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({ago} min ago)"


async def start(p: Provisioner, vm: VmInfo) -> None:
    """instances.start and wait for its operation; transient errors are retried."""
    p.say(f"{vm.name}: {vm.status} in {vm.zone}" + (" (preempted spot VM)" if vm.spot else "")
          + _since(vm) + ": starting it again")
    verdict = await run_operation(p.compute, vm.zone, lambda: p.compute.start(vm.zone, vm.name),
                                  f"starting {vm.name}", p.say)
    if verdict is not None:
        raise start_error(p, vm, verdict)


async def settle(p: Provisioner, vm: VmInfo) -> VmInfo:
    """Bring one of the run's existing VMs to RUNNING: wait out transitions, start it
    when TERMINATED/STOPPED; returns it as it is then (with its new address)."""
    deadline = time.monotonic() + budgets.OP_TIMEOUT
    started = announced = False
    since = time.monotonic()
    while vm.status != "RUNNING":
        if vm.status in STARTABLE:
            if started:  # stopped again while starting: preempted at once, capacity is gone
                raise start_error(p, vm, classify([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                                                    "message": "preempted again while starting"}]))
            await start(p, vm)
            started = True
        elif vm.status == "SUSPENDED":
            raise GcpError(f"{vm.name} in {vm.zone} is suspended: resume it with `gcloud compute instances "
                           f"resume {vm.name} --zone {vm.zone}` and run `gpuwizard run RECIPE.yaml --resume` "
                           f"again, or delete it with `gpuwizard down RECIPE.yaml` (recipe {p.recipe.name}).",
                           kind="state")
        elif vm.status not in SETTLING:
            raise GcpError(f"{vm.name} in {vm.zone} is {vm.status}: delete it with `gpuwizard down RECIPE.yaml` "
                           f"(recipe {p.recipe.name}) and start a fresh run.", kind="state")
        elif time.monotonic() > deadline:
            raise GcpError(f"{vm.name} in {vm.zone} stayed {vm.status} for {budgets.OP_TIMEOUT:.0f} s: check the "
                           f"console, then run `gpuwizard run RECIPE.yaml --resume` again.", kind=TRANSIENT)
        else:
            if not announced and time.monotonic() - since >= budgets.ANNOUNCE_AFTER:
                p.say(f"{vm.name}: waiting while it is {vm.status} (at most "
                      f"{deadline - time.monotonic():.0f} s more)")
                announced = True
            await asyncio.sleep(budgets.STATE_POLL)
        vm = await get(p, vm.zone, vm.name)
    if started:
        p.say(f"{vm.name}: running again at {vm.address or vm.internal_address} (a restarted VM gets a new "
              f"external IP unless it is static)")
    return vm
