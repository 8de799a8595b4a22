"""The VMs runs of a recipe created: find them by label, describe them, delete them.

``status`` and ``down`` start here, and so does resume. Labels are filtered server-side
(one ``aggregatedList``) and checked again here, so a lax filter never deletes a
stranger's VM. A delete is reported as done only when its operation is DONE without
errors; a VM that was already gone is reported as such, never counted as deleted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from gpuwizard import catalog
from gpuwizard.autostop import status as agent_status
from gpuwizard.events import Event, Output
from gpuwizard.gcp import budgets
from gpuwizard.gcp.body import LABEL_RECIPE, LABEL_RECIPE_ID, LABEL_RUN, label_value, recipe_id
from gpuwizard.gcp.client import Compute, call, open_compute
from gpuwizard.gcp.errors import GcpError, api_error
from gpuwizard.gcp.operations import run_operation

Sink = Callable[[Event], None]


@dataclass
class VmInfo:
    """A VM that runs of a recipe created (``gpuwizard status`` / ``down``)."""

    name: str
    zone: str
    status: str
    address: str | None
    internal_address: str | None
    machine_type: str
    gpu_type: str | None
    gpu_count: int
    spot: bool
    created: datetime | None
    run: str | None
    price_hour: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    stopped: datetime | None = None   # lastStopTimestamp: when it last stopped (or was preempted)
    #: The instance's own metadata (``enable-oslogin`` there means OS Login on this VM).
    metadata: dict[str, str] = field(default_factory=dict)
    #: What ``price_hour`` assumes (:attr:`gpuwizard.catalog.Price.assumes`): machine type,
    #: GPUs, boot disk, region, on-demand/spot, and the prices' source with its date.
    price_assumes: str = ""

    @property
    def recipe_id(self) -> str | None:
        """Its ``gpuwizard-recipe-id`` label; None on VMs made before that label existed."""
        return self.labels.get(LABEL_RECIPE_ID)

    @property
    def hours(self) -> float:
        if self.created is None:
            return 0.0
        return max(0.0, (datetime.now(timezone.utc) - self.created).total_seconds() / 3600)

    @property
    def cost_so_far(self) -> float | None:
        """Rough cost since creation (assumes it ran the whole time)."""
        return None if self.price_hour is None else round(self.price_hour * self.hours, 2)


@dataclass
class Deletion:
    """What a delete did: ``deleted`` and ``gone`` (already absent) as ``zone/name``."""

    deleted: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


def _parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def vm_info(inst: dict[str, Any]) -> VmInfo:
    """A VmInfo from an Instance dict (camelCase, as :func:`client.to_dict` gives)."""
    zone = str(inst.get("zone", "")).rsplit("/", 1)[-1]
    nat = internal = None
    for nic in inst.get("networkInterfaces") or []:
        internal = internal or nic.get("networkIP")
        for ac in nic.get("accessConfigs") or []:
            nat = nat or ac.get("natIP")
    mt = str(inst.get("machineType", "")).rsplit("/", 1)[-1]
    accs = inst.get("guestAccelerators") or []
    gtype = str(accs[0].get("acceleratorType", "")).rsplit("/", 1)[-1] if accs else None
    gcount = int(accs[0].get("acceleratorCount") or 0) if accs else 0
    if gtype is None and (m := catalog.machine_type(mt)) and m.gpu_type:
        gtype, gcount = m.gpu_type, m.gpu_count
    sch = inst.get("scheduling") or {}
    spot = sch.get("provisioningModel") == "SPOT" or bool(sch.get("preemptible"))
    boot = next((d for d in inst.get("disks") or [] if d.get("boot")), {})
    # AttachedDisk.diskSizeGb (int64 as a string in the API's JSON); at creation, initializeParams
    disk_gb = int(boot.get("diskSizeGb") or (boot.get("initializeParams") or {}).get("diskSizeGb") or 0)
    disk_type = str((boot.get("initializeParams") or {}).get("diskType") or "pd-balanced").rsplit("/", 1)[-1]
    price = catalog.vm_price(mt, gtype, gcount, spot, disk_gb, disk_type, region=catalog.region_of(zone))
    return VmInfo(name=str(inst.get("name")), zone=zone, status=str(inst.get("status", "")), address=nat,
                  internal_address=internal, machine_type=mt, gpu_type=gtype, gpu_count=gcount, spot=spot,
                  created=_parse_time(inst.get("creationTimestamp")),
                  run=(inst.get("labels") or {}).get(LABEL_RUN),
                  price_hour=price.per_hour, price_assumes=price.assumes if price.per_hour is not None else
                  price.label(),
                  labels=dict(inst.get("labels") or {}), stopped=_parse_time(inst.get("lastStopTimestamp")),
                  metadata={str(i.get("key")): str(i.get("value", "")) for i in
                            (inst.get("metadata") or {}).get("items") or [] if i.get("key")})


def recipe_filter(recipe_name: str, run_id: str | None = None) -> str:
    f = f'(labels.{LABEL_RECIPE} = "{label_value(recipe_name)}")'
    if run_id:
        f += f' AND (labels.{LABEL_RUN} = "{label_value(run_id)}")'
    return f


async def find(compute: Compute, recipe_name: str, run_id: str | None,
               recipe_path: str | None = None) -> list[VmInfo]:
    """The VMs labelled with ``recipe_name`` (and ``run_id``); with ``recipe_path``, only
    those of that recipe file, plus unmarked ones (no recipe-id label: made before the
    label existed), which only the name can match."""
    try:
        vms = [vm_info(i) for i in await call(compute.list_instances, recipe_filter(recipe_name, run_id))]
    except Exception as exc:  # noqa: BLE001 - API errors become one sentence
        raise api_error(exc, "listing VMs") from None
    want = label_value(recipe_name)
    rid = recipe_id(recipe_path) if recipe_path else None
    mine = [v for v in vms if v.labels.get(LABEL_RECIPE) == want
            and (run_id is None or v.labels.get(LABEL_RUN) == label_value(run_id))
            and (rid is None or v.recipe_id in (None, rid))]
    return sorted(mine, key=lambda v: (v.zone, v.name))


async def list_recipe_vms(project: str | None, recipe_name: str, run_id: str | None = None,
                          recipe_path: str | None = None) -> list[VmInfo]:
    """VMs labelled as created by runs of ``recipe_name`` (one aggregatedList request);
    with ``recipe_path``, of that recipe file (see :func:`find`)."""
    return await find(await open_compute(project), recipe_name, run_id, recipe_path)


async def autostop_states(project: str | None, vms: list[VmInfo]) -> dict[str, str]:
    """What each running VM's auto-stop agent last published (guest attribute
    ``gpuwizard/autostop``), as the phrase ``gpuwizard status`` shows; one read per VM, at once."""
    compute = await open_compute(project)

    async def one(vm: VmInfo) -> tuple[str, str]:
        if vm.status != "RUNNING":
            return vm.name, "-"
        try:
            items = await call(compute.guest_attributes, vm.zone, vm.name, "gpuwizard/", budgets.READ_BUDGET)
        except GcpError:
            return vm.name, "?"
        text = next((i["value"] for i in items or [] if i["key"] == "autostop"), None)
        return vm.name, agent_status.describe(agent_status.parse(text))

    return dict(await asyncio.gather(*(one(v) for v in vms)))


async def delete_recipe_vms(project: str | None, recipe_name: str, run_id: str | None = None,
                            sink: Sink | None = None, recipe_path: str | None = None) -> list[str]:
    """Delete every VM that runs of ``recipe_name`` (of the file ``recipe_path`` when
    given) created, wait for it, return the ``zone/name``s deleted."""
    compute = await open_compute(project)
    return (await delete(compute, await find(compute, recipe_name, run_id, recipe_path), sink)).deleted


async def delete_vms(project: str | None, vms: list[VmInfo], sink: Sink | None = None) -> list[str]:
    """Delete exactly ``vms`` (e.g. the list a user confirmed), wait, return the
    ``zone/name``s deleted (not those that were already gone: see :func:`delete`)."""
    if not vms:
        return []
    return (await delete(await open_compute(project), vms, sink)).deleted


async def delete(compute: Compute, vms: list[VmInfo], sink: Sink | None = None) -> Deletion:
    """Delete ``vms`` in parallel and wait for each operation.

    Every delete is followed to its end before anything is reported; then the first
    failure (an error, or an operation still running at the deadline) raises, naming
    what was deleted, what was gone and what failed.
    """

    def say(text: str) -> None:
        if sink:
            sink(Output(host="gcp", step="down", stream="stdout", data=text + "\n"))

    async def one(vm: VmInfo) -> str:
        where = f"{vm.zone}/{vm.name}"
        verdict = await run_operation(compute, vm.zone, lambda: compute.delete(vm.zone, vm.name),
                                      f"deleting {vm.name}", say, timeout=budgets.OP_TIMEOUT)
        if verdict is None:
            say(f"{where}: deleted")
            return "deleted"
        if verdict.not_found:
            say(f"{where}: already gone (nothing to delete)")
            return "gone"
        msg = verdict.items[0].message if verdict.items else verdict.reason
        raise GcpError(f"Deleting {vm.name} in {vm.zone} failed: {msg}", kind="delete")

    results = await asyncio.gather(*(one(v) for v in vms), return_exceptions=True)
    out = Deletion()
    failures: list[str] = []
    for vm, res in zip(vms, results):
        where = f"{vm.zone}/{vm.name}"
        if res == "deleted":
            out.deleted.append(where)
        elif res == "gone":
            out.gone.append(where)
        elif isinstance(res, GcpError):
            failures.append(str(res))
        elif isinstance(res, BaseException):
            failures.append(str(api_error(res, f"deleting {vm.name}")))
    if failures:
        done = f" Deleted: {', '.join(out.deleted)}." if out.deleted else ""
        raise GcpError("; ".join(failures) + f".{done} Check with `gpuwizard status RECIPE.yaml` and run "
                       f"`gpuwizard down RECIPE.yaml` again.", kind="delete")
    return out
