"""Provision a recipe's VMs: resume the run's own, create the missing ones, pin host keys.

The steps live in their own modules, each a few functions over one
:class:`~gpuwizard.gcp.context.Provisioner`:

* :mod:`.resume`     the run's existing VMs: reuse, start again, or replace under a new name;
* :mod:`.failover`   quota and OS Login checks, then inserts with zone failover;
* :mod:`.hostkeys`   read each VM's host keys (guest attributes, then serial console) and pin them;
* :mod:`.inventory`  list / describe / delete the VMs of a recipe (``status``, ``down``);
* :mod:`.operations` the one loop that runs an operation to a verdict.

Once an insert has succeeded the run owns the VM (issue 13): it is in the run's ledger
before anything else happens, every later failure says it is running and billed (name,
zone, ~$/h) and how to resume onto it or delete it, and the error carries
``vm_exists`` so ``--delete-on-failure`` deletes it.

This module re-exports the names callers used before the split (``runner``, the
commands, tests).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterable

from gpuwizard import catalog
from gpuwizard.gcp import failover, hostkeys, resume, sshkeys
from gpuwizard.gcp.body import (DEFAULT_USER, LABEL_RECIPE, LABEL_RECIPE_ID, LABEL_RUN, instance_body,
                                instance_names, label_value, recipe_id)
from gpuwizard.gcp.client import call, in_flight, open_compute
from gpuwizard.gcp.context import ProvisionedHost, Provisioner, Sink
from gpuwizard.gcp.errors import ApiError, GcpError, api_error
from gpuwizard.gcp.inventory import (Deletion, VmInfo, delete_recipe_vms, delete_vms, list_recipe_vms,
                                     vm_info)
from gpuwizard.gcp.wait import WaitPolicy

if TYPE_CHECKING:
    from gpuwizard.recipe import Recipe

__all__ = ["DEFAULT_USER", "LABEL_RECIPE", "LABEL_RECIPE_ID", "LABEL_RUN", "Deletion", "ProvisionedHost", "VmInfo",
           "delete_recipe_vms", "delete_vms", "instance_body", "instance_names", "label_value", "list_recipe_vms",
           "provision", "recipe_id", "vm_info"]


def _billed(p: Provisioner, names: list[str], zone: str | None, vms: list[VmInfo]) -> str:
    """The sentence that says which VMs are running and billed, and what to do."""
    g = p.g
    known = {v.name: v for v in vms}
    price = catalog.vm_price(g.machine_type, g.gpu.type if g.gpu else None, int(g.gpu.count) if g.gpu else 0,
                             bool(g.spot), g.disk_gb, g.disk_type,
                             region=catalog.region_of(zone) if zone else None).per_hour  # the one price rule
    total = sum((known[n].price_hour if n in known and known[n].price_hour else price or 0) for n in names)
    where = f" in {zone}" if zone else ""
    cost = f", ~${total:.2f}/h" if total else ""
    verb = "is" if len(names) == 1 else "are"
    return (f"{', '.join(names)}{where} {verb} running (and billed{cost}): `gpuwizard run RECIPE.yaml --resume` "
            f"(recipe {p.recipe.name}) picks {'it' if len(names) == 1 else 'them'} up, `gpuwizard down RECIPE.yaml` "
            f"deletes {'it' if len(names) == 1 else 'them'}, and --delete-on-failure deletes what a failed run "
            f"created.")


def _owned_error(p: Provisioner, exc: BaseException, names: list[str], zone: str | None,
                 vms: list[VmInfo], doing: str) -> GcpError:
    err = exc if isinstance(exc, GcpError) else api_error(exc, doing)
    out = GcpError(f"{err.message.rstrip('.')}. {_billed(p, names, zone, vms)}", kind=err.kind, link=err.link)
    out.vm_exists = True
    return out


async def _describe(p: Provisioner, zone: str, names: list[str]) -> list[VmInfo]:
    return list(await asyncio.gather(*(resume.get(p, zone, n) for n in names)))


async def _run(p: Provisioner, wait: WaitPolicy | None = None) -> list[ProvisionedHost]:
    p.compute = await open_compute(p.g.project)
    identity, public_key = await call(sshkeys.ensure_identity, p.recipe.ssh.identity)
    p.identity = identity
    created = False                # the run has just created VMs: it owns them, whatever fails next
    zone: str | None = None
    vms: list[VmInfo] = []
    try:
        vms = await resume.plan(p)
        zone = vms[0].zone if vms else None
        await failover.check_project(p, creating=bool(p.names))
        settled = await asyncio.gather(*(resume.settle(p, v) for v in vms), return_exceptions=True)
        for res in settled:  # every start has ended (none left running unseen); report the first failure
            if isinstance(res, BaseException):
                raise res
        vms = [v for v in settled if isinstance(v, VmInfo)]
        if p.names:
            created_in = await (failover.create_in(p, vms[0].zone, public_key) if vms
                                else failover.create(p, public_key, wait))
            zone, created = created_in, True   # recorded in the ledger already (failover.attempt)
            vms += await _describe(p, created_in, p.names)
        await call(p.write_ledger, [v.name for v in vms], zone)
        order = {n: i for i, n in enumerate(p.slots)}
        vms.sort(key=lambda v: order.get(v.name, len(order)))
    except asyncio.CancelledError:
        p.say(f"interrupted while waiting for {', '.join(in_flight()) or 'Compute Engine'}"
              + (f"; {_billed(p, p.slots, zone, vms)}" if created or vms else ""))
        raise
    except (GcpError, ApiError) as exc:
        if created:
            raise _owned_error(p, exc, p.slots, zone, vms, "reading the new VM") from None
        if isinstance(exc, GcpError):
            raise
        raise api_error(exc, "creating the VM") from None
    for vm in vms:
        p.say(f"{vm.name}: {vm.status} in {vm.zone} at {vm.address or vm.internal_address}"
              + (f" (~${vm.price_hour:.2f}/h)" if vm.price_hour else ""))

    async def pin(vm: VmInfo) -> ProvisionedHost:
        host = ProvisionedHost(name=vm.name, zone=vm.zone, address=vm.address or vm.internal_address or "",
                               port=p.port, user=p.user, known_hosts=p.known_hosts, identity=identity,
                               internal_address=vm.internal_address, project=p.project, price_hour=vm.price_hour)
        return await hostkeys.pin(p, vm, host)

    try:
        return list(await asyncio.gather(*(pin(vm) for vm in vms)))
    except (GcpError, ApiError) as exc:
        raise _owned_error(p, exc, [v.name for v in vms], zone, vms, "reading host keys") from None


async def provision(recipe: Recipe, run_id: str, sink: Sink | None = None, accept_new_host_key: bool = False,
                    known_hosts_path: str | None = None, host_key_timeout: float | None = None,
                    recipe_path: str | None = None, previous_hosts: Iterable[str] = (),
                    wait: WaitPolicy | None = None) -> list[ProvisionedHost]:
    """Create the recipe's VM(s), failing over between zones, and pin their host keys.

    With a run id that already has VMs (resume) they are reused, started again when
    preempted or stopped, and replaced under a new name when deleted (see
    :mod:`.resume`). ``previous_hosts``: host names the run has used (e.g. those with
    done steps), added to the names remembered in the run's ledger, so that a VM of one
    of those names that is gone is replaced by a new host and not recreated under the
    old name. A project that enforces OS Login needs ``ssh.user`` in the recipe.

    ``recipe_path``, the recipe file, labels the VMs with its :func:`recipe_id` so that
    ``status`` / ``down`` on that file find them and not those of another file that
    uses the same recipe name. ``wait`` (``run --wait``): keep trying zones out of capacity
    (:mod:`.wait`). Progress goes to ``sink`` as
    ``Output(host="gcp", step="provision", stream="stdout")`` lines. Raises
    :class:`GcpError` (one or two sentences with the fix; ``vm_exists`` when the run
    owns a VM that is still running) when it cannot.
    """
    p = Provisioner(recipe, run_id, sink, accept_new_host_key, known_hosts_path, host_key_timeout,
                    recipe_path=recipe_path, previous_hosts=previous_hosts)
    return await _run(p, wait)
