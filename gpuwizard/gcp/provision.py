"""Create a recipe's VMs with zone failover; read their host keys; list and delete them.

The failover loop, per the anchors study (SkyPilot's error blocklist, dstack's quota
arithmetic) plus two things neither does:

* quota is checked up front (two requests): GPUS_ALL_REGIONS = 0 stops before any insert
  with the console link, and regions without free quota are never sent an insert;
* every error of an operation is classified, and the ``zonesAvailable`` hint of
  ``ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`` moves those zones to the front.

Operations are polled with our own ZoneOperationsClient (``*_unary`` calls +
``zone_operations.wait``), not the ExtendedOperation that ``insert()`` returns: its
poller is built on the default Google host and would ignore an endpoint override.
Every blocking client call runs in a thread (:func:`client.call`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from gpuwizard import catalog
from gpuwizard.events import Event, Output
from gpuwizard.gcp import client as _client
from gpuwizard.gcp import sshkeys
from gpuwizard.gcp.errors import (EXISTS, GLOBAL_QUOTA, PERMISSION, REGION_QUOTA, STOCKOUT, TRANSIENT, GcpError,
                                  Verdict, api_error, classify, console_link, from_api_exception,
                                  global_quota_error, region_quota_message)

LABEL_RECIPE = "gpuwizard-recipe"
LABEL_RUN = "gpuwizard-run"
# Which recipe *file* made the VM (two files may share a recipe name): a short hash of
# its real path. VMs made before this label existed, or without a known path, lack it.
LABEL_RECIPE_ID = "gpuwizard-recipe-id"
DEFAULT_USER = "gpuwizard"

# Tunables (seconds). Environment overrides exist for tests, benches and slow networks.
OP_TIMEOUT = float(os.environ.get("GPUWIZARD_GCP_OP_TIMEOUT", "600"))
RETRY_BASE = float(os.environ.get("GPUWIZARD_GCP_RETRY_BASE", "2.0"))
TRANSIENT_RETRIES = 3
HOSTKEY_TIMEOUT = float(os.environ.get("GPUWIZARD_HOSTKEY_TIMEOUT", "180"))
HOSTKEY_POLL = float(os.environ.get("GPUWIZARD_HOSTKEY_POLL", "3"))

Sink = Callable[[Event], None]


@dataclass
class ProvisionedHost:
    """A VM ready for the executor: where it is, how to log in, and its pinned host keys."""

    name: str
    zone: str
    address: str                    # external IP, or the internal one when there is none
    port: int = 22
    user: str = DEFAULT_USER
    known_hosts: str | None = None  # the run's known_hosts file, holding this VM's keys
    identity: str | None = None     # private key path
    internal_address: str | None = None
    project: str | None = None
    host_key_verified: bool = False  # False only with accept_new_host_key and no published keys

    @property
    def spec(self) -> str:
        """``user@address:port``, the executor's host string."""
        return f"{self.user}@{self.address}:{self.port}"


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
class _Report:
    """Why each zone was not used, for the final message."""

    skipped: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------- pure helpers

def label_value(s: str) -> str:
    """A string as a valid label value (lower-case letters, digits, _ and -, at most 63)."""
    return re.sub(r"[^a-z0-9_-]", "-", s.lower())[:63]


def recipe_id(recipe_path: str) -> str:
    """The ``gpuwizard-recipe-id`` label value of a recipe file: 12 hex digits of the
    SHA-256 of its real path (the same file by any relative path or symlink)."""
    real = os.path.realpath(os.path.expanduser(recipe_path))
    return hashlib.sha256(real.encode("utf-8")).hexdigest()[:12]


def instance_names(recipe: Any, run_id: str) -> list[str]:
    """VM names: ``<prefix>-<run>`` (``-<i>`` per VM when count > 1), valid GCE names.

    Over 63 characters the *prefix* is shortened: the run part (the end of the run id,
    which carries its random tag) and the VM index always survive, so two runs, or two
    VMs of one run, never share a name.
    """
    g = recipe.target.gcp
    prefix = re.sub(r"-+", "-", g.name_prefix or recipe.name).strip("-")
    if not re.match(r"^[a-z]", prefix):
        prefix = "g" + prefix
    run = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[-20:].strip("-") or "run"
    n = max(1, int(g.count or 1))
    tails = [f"-{run}"] if n == 1 else [f"-{run}-{i}" for i in range(n)]
    out = []
    for tail in tails:
        tail = re.sub(r"-+", "-", tail)
        out.append(prefix[: 63 - len(tail)].rstrip("-") + tail)
    return out


def _source_image(image: str) -> str:
    if image.startswith(("projects/", "https://", "global/")):
        return image
    img = catalog.image(image)
    if img is None:
        raise GcpError(f"Unknown image '{image}': use an image family from `gpuwizard catalog images` "
                       f"or a full projects/P/global/images/NAME path.", kind="usage")
    return f"projects/{img.project}/global/images/family/{img.family}"


def instance_body(recipe: Any, zone: str, name: str, run_id: str, ssh_user: str, public_key: str,
                  *, bare: bool = False, recipe_id: str | None = None) -> dict[str, Any]:
    """The Instance resource (proto-plus field names). ``bare``: names instead of zone paths,
    as bulkInsert's instanceProperties wants them (SkyPilot: a prefix there gives a 503)."""
    g = recipe.target.gcp
    mt = g.machine_type if bare else f"zones/{zone}/machineTypes/{g.machine_type}"
    disk_type = g.disk_type if bare else f"zones/{zone}/diskTypes/{g.disk_type}"
    key = public_key.split()
    key_line = f"{ssh_user}:{key[0]} {key[1]} {ssh_user}" if len(key) >= 2 else f"{ssh_user}:{public_key}"
    body: dict[str, Any] = {
        "machine_type": mt,
        "labels": {LABEL_RECIPE: label_value(recipe.name), LABEL_RUN: label_value(run_id),
                   **({LABEL_RECIPE_ID: recipe_id} if recipe_id else {})},
        "disks": [{"boot": True, "auto_delete": True, "initialize_params": {
            "source_image": _source_image(g.image), "disk_size_gb": int(g.disk_gb), "disk_type": disk_type}}],
        "network_interfaces": [{"network": "global/networks/default",
                                "access_configs": [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]}],
        "metadata": {"items": [{"key": "ssh-keys", "value": key_line},
                               {"key": "enable-guest-attributes", "value": "TRUE"}]},
        # GPUs cannot live-migrate: TERMINATE is the only valid maintenance policy.
        "scheduling": {"on_host_maintenance": "TERMINATE", "automatic_restart": not g.spot},
    }
    if not bare:
        body["name"] = name
    if g.spot:
        # STOP keeps the disk (and the data) on preemption; `gpuwizard down` deletes it.
        body["scheduling"].update({"provisioning_model": "SPOT", "instance_termination_action": "STOP"})
    gpu = catalog.gpu(g.gpu.type) if g.gpu else None
    mtype = catalog.machine_type(g.machine_type)
    if g.gpu and (mtype is None or mtype.gpu_type is None) and (gpu is None or gpu.attachable):
        acc = g.gpu.type if bare else f"projects/{{project}}/zones/{zone}/acceleratorTypes/{g.gpu.type}"
        body["guest_accelerators"] = [{"accelerator_type": acc, "accelerator_count": int(g.gpu.count)}]
    return body


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
    return VmInfo(name=str(inst.get("name")), zone=zone, status=str(inst.get("status", "")), address=nat,
                  internal_address=internal, machine_type=mt, gpu_type=gtype, gpu_count=gcount, spot=spot,
                  created=_parse_time(inst.get("creationTimestamp")),
                  run=(inst.get("labels") or {}).get(LABEL_RUN),
                  price_hour=catalog.hourly_price(mt, gtype, gcount, spot),
                  labels=dict(inst.get("labels") or {}))


# ---------------------------------------------------------------------- the provisioner

class Provisioner:
    """One provisioning run: state of the failover and the clients it uses."""

    def __init__(self, recipe: Any, run_id: str, sink: Sink | None, accept_new_host_key: bool,
                 known_hosts_path: str | None, host_key_timeout: float | None = None,
                 recipe_path: str | None = None) -> None:
        if recipe.target.gcp is None:
            raise GcpError("This recipe has no target.gcp: there is nothing to provision.", kind="usage")
        self.recipe = recipe
        self.g = recipe.target.gcp
        self.run_id = run_id
        self.recipe_path = recipe_path
        self.recipe_id = recipe_id(recipe_path) if recipe_path else None
        self.sink = sink
        self.accept_new = accept_new_host_key
        self.known_hosts = known_hosts_path or str(
            sshkeys.config_dir() / "known_hosts.d" / f"{label_value(recipe.name)}-{label_value(run_id)}")
        self.host_key_timeout = HOSTKEY_TIMEOUT if host_key_timeout is None else host_key_timeout
        self.user = recipe.ssh.user or DEFAULT_USER
        self.port = int(recipe.ssh.port or 22)
        self.project = ""
        self.names = instance_names(recipe, run_id)
        self.gpu = catalog.gpu(self.g.gpu.type) if self.g.gpu else None
        self.need = (int(self.g.gpu.count) * len(self.names)) if self.g.gpu else 0
        self.quota: Any = None
        self.report = _Report()

    def say(self, text: str) -> None:
        """A plain progress line for the run log / UI."""
        if self.sink:
            self.sink(Output(host="gcp", step="provision", stream="stdout", data=text.rstrip("\n") + "\n"))

    # -- quota and candidates ------------------------------------------------

    def _metric(self) -> str | None:
        if self.gpu is None:
            return None
        return self.gpu.spot_quota_metric if self.g.spot else self.gpu.quota_metric

    async def check_quota(self) -> None:
        """GPUS_ALL_REGIONS first (new projects have 0), then remember each region's free quota."""
        if self.gpu is None:
            return
        from gpuwizard.gcp.quota import fetch_quota

        try:
            self.quota = await fetch_quota(self.project, self.gpu.name, self.g.spot)
        except GcpError as exc:
            # Fail open: reading quotas needs compute.projects.get / regions.list, which a
            # narrowly scoped account may lack; inserts will still say what is wrong.
            self.say(f"could not read quotas ({exc}); trying the zones anyway")
            return
        q = self.quota
        if q.global_limit is not None and q.global_free < self.need:
            raise global_quota_error(q.global_limit, q.global_usage, self.need, self.project)

    def region_block(self, region: str) -> str | None:
        """Why ``region`` must not be tried (no free quota), or None."""
        if self.quota is None:
            return None
        free = self.quota.free_in(region)
        if free is None or free >= self.need:
            return None
        row = self.quota.regions().get(region)
        return region_quota_message(self._metric() or "", region, row.limit if row else None,
                                    row.usage if row else None, self.need, self.project)

    async def candidates(self) -> list[str]:
        if self.g.zones:
            return list(self.g.zones)
        if self.gpu is None:
            raise GcpError("Set target.gcp.zones: a CPU-only VM has no GPU to choose zones by.", kind="usage")
        from gpuwizard.gcp.zones import zones_for_gpu

        opts = await zones_for_gpu(self.project, self.gpu.name, int(self.g.gpu.count), self.g.spot)
        self.say(f"no zones in the recipe: trying the {len(opts)} zones that offer {self.gpu.label}, best first")
        return [o.zone for o in opts]

    # -- one attempt ------------------------------------------------------------

    async def _wait(self, zone: str, op: Any) -> Any:
        """Wait for a zone operation with our own client (endpoint override holds)."""
        from google.cloud import compute_v1

        ops = _client.compute("ZoneOperationsClient")
        deadline = time.monotonic() + OP_TIMEOUT
        while op.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise GcpError(f"Operation {op.name} in {zone} did not finish in {OP_TIMEOUT:.0f} s; check the "
                               f"console, then `gpuwizard down RECIPE.yaml` (recipe {self.recipe.name}) "
                               f"if a VM was left.", kind=TRANSIENT)
            op = await _client.call(ops.wait, project=self.project, zone=zone, operation=op.name)
        return op

    async def _insert(self, zone: str, public_key: str) -> Any:
        from google.cloud import compute_v1

        inst = _client.compute("InstancesClient")
        if len(self.names) == 1:
            body = instance_body(self.recipe, zone, self.names[0], self.run_id, self.user, public_key,
                                 recipe_id=self.recipe_id)
            _fill_project(body, self.project)
            return await _client.call(inst.insert_unary, project=self.project, zone=zone,
                                      instance_resource=compute_v1.Instance(body))
        props = instance_body(self.recipe, zone, "", self.run_id, self.user, public_key, bare=True,
                              recipe_id=self.recipe_id)
        res = compute_v1.BulkInsertInstanceResource(
            count=len(self.names), min_count=len(self.names), instance_properties=props,
            per_instance_properties={n: {} for n in self.names})
        return await _client.call(inst.bulk_insert_unary, project=self.project, zone=zone,
                                  bulk_insert_instance_resource_resource=res)

    async def attempt(self, zone: str, public_key: str) -> Verdict | None:
        """Insert in ``zone`` and wait; None on success, else the verdict on all its errors.

        Transient errors (5xx, rate limits) are retried here with exponential back-off.
        """
        from google.api_core import exceptions as gexc

        verdict: Verdict | None = None
        for i in range(TRANSIENT_RETRIES + 1):
            try:
                op = await self._insert(zone, public_key)
                op = await self._wait(zone, op)
            except gexc.GoogleAPICallError as exc:
                verdict = from_api_exception(exc)
            else:
                errs = list(op.error.errors) if op.error else []
                if not errs:
                    return None
                verdict = classify([_client.to_dict(e) for e in errs], op.http_error_status_code or None)
            if verdict.kind != TRANSIENT or i == TRANSIENT_RETRIES:
                return verdict
            delay = RETRY_BASE * (2 ** i)
            self.say(f"{zone}: {verdict.reason}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
        return verdict

    # -- the loop -------------------------------------------------------------------

    async def create(self, public_key: str) -> str:
        """Try zones until one takes the VM(s); returns the zone. Raises GcpError with the reasons."""
        queue: deque[str] = deque(await self.candidates())
        tried: set[str] = set()
        blocked: dict[str, str] = {}      # region -> why
        while queue:
            zone = queue.popleft()
            if zone in tried:
                continue
            region = catalog.region_of(zone)
            why = blocked.get(region) or self.region_block(region)
            if why:
                if region not in blocked:
                    blocked[region] = why
                    self.say(f"skipping {region}: {why}")
                self.report.skipped.append((zone, "no free quota in " + region))
                tried.add(zone)
                continue
            tried.add(zone)
            what = f"{len(self.names)} x " if len(self.names) > 1 else ""
            self.say(f"{zone}: creating {what}{self.g.machine_type}"
                     + (f" with {self.g.gpu.count} x {self.g.gpu.type}" if self.g.gpu else "")
                     + (" (spot)" if self.g.spot else ""))
            verdict = await self.attempt(zone, public_key)
            if verdict is None:
                return zone
            self.report.skipped.append((zone, verdict.reason))
            if verdict.kind == EXISTS:
                if await self._ours_in(zone):
                    self.say(f"{zone}: this run's VM(s) already exist there (an earlier request went through)")
                    return zone
                names = ", ".join(self.names)
                raise GcpError(f"A VM named {names} already exists in {zone} and is not this run's, so the run "
                               f"stops here (another zone would get a second VM of the same name). See it with "
                               f"`gpuwizard status RECIPE.yaml` (recipe {self.recipe.name}); delete it with "
                               f"`gpuwizard down RECIPE.yaml` if it is a leftover, or set target.gcp.name_prefix.",
                               kind=EXISTS)
            if verdict.kind == GLOBAL_QUOTA:
                q = self.quota
                raise global_quota_error(q.global_limit if q and q.global_limit is not None else 0,
                                         q.global_usage if q else 0, self.need, self.project)
            if verdict.kind == PERMISSION:
                msg = verdict.items[0].message if verdict.items else "permission denied"
                raise GcpError(f"Permission denied creating a VM in {zone}: {msg} Ask for "
                               f"roles/compute.instanceAdmin.v1 on project {self.project}, or check that the "
                               f"Compute Engine API is enabled.", kind=PERMISSION)
            if verdict.kind == REGION_QUOTA:
                metric = verdict.metric or self._metric() or "GPUS"
                link = console_link(metric, verdict.region or region, self.project)
                blocked[region] = f"{verdict.reason}; request more at {link}"
                self.say(f"{zone}: {verdict.reason}; skipping region {region}")
                continue
            hints = [z for z in verdict.zones_available
                     if z not in tried and not self.region_block(catalog.region_of(z))
                     and catalog.region_of(z) not in blocked]
            if hints:
                self.say(f"{zone}: {verdict.reason}; Compute Engine suggests {', '.join(hints)}: trying those first")
                queue.extendleft(reversed(hints))
            else:
                self.say(f"{zone}: {verdict.reason}; trying the next zone")
        reasons = "; ".join(f"{z}: {r}" for z, r in self.report.skipped) or "no zones to try"
        raise GcpError(f"No zone could take the VM ({reasons}). Add zones to target.gcp.zones "
                       f"(see `gpuwizard zones --gpu {self.g.gpu.type if self.g.gpu else 'TYPE'}`), or try later.",
                       kind=STOCKOUT)

    # -- after creation --------------------------------------------------------------

    async def _ours_in(self, zone: str) -> bool:
        """Whether every VM name of this run exists in ``zone`` with this run's labels."""
        _, vms = await _list(self.project, self.recipe.name, self.run_id, self.recipe_path)
        return {v.name for v in vms if v.zone == zone} >= set(self.names)

    async def existing(self) -> list[VmInfo]:
        """This run's VMs if a previous attempt already created them (resume is idempotent)."""
        _, vms = await _list(self.project, self.recipe.name, self.run_id, self.recipe_path)
        vms = [v for v in vms if v.name in self.names]
        if not vms:
            return []
        if len(vms) != len(self.names) or any(v.status != "RUNNING" for v in vms):
            states = ", ".join(f"{v.name} {v.status}" for v in vms)
            raise GcpError(f"This run's VMs exist but are not all running ({states}): delete them with "
                           f"`gpuwizard down RECIPE.yaml` (recipe {self.recipe.name}) and start a fresh run.",
                           kind="state")
        self.say(f"reusing {len(vms)} VM(s) this run already created: {', '.join(v.name for v in vms)}")
        return vms

    async def describe(self, zone: str) -> list[VmInfo]:
        inst = _client.compute("InstancesClient")
        got = await asyncio.gather(*(_client.call(inst.get, project=self.project, zone=zone, instance=n)
                                     for n in self.names))
        return [vm_info(_client.to_dict(i)) for i in got]

    async def host_keys(self, vm: VmInfo) -> list[tuple[str, str]]:
        """Poll guest attributes ``hostkeys/`` until keys appear or the timeout passes."""
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        inst = _client.compute("InstancesClient")
        req = compute_v1.GetGuestAttributesInstanceRequest(project=self.project, zone=vm.zone, instance=vm.name,
                                                           query_path="hostkeys/")
        deadline = time.monotonic() + self.host_key_timeout
        while True:
            try:
                ga = await _client.call(inst.get_guest_attributes, request=req)
                items = [{"namespace": it.namespace, "key": it.key, "value": it.value}
                         for it in (ga.query_value.items if ga.query_value else [])]
                keys = sshkeys.parse_host_keys(items)
                if keys:
                    return keys
            except gexc.NotFound:
                pass  # the guest agent has not published them yet
            if time.monotonic() + HOSTKEY_POLL > deadline:
                return []
            await asyncio.sleep(HOSTKEY_POLL)

    async def pin(self, vm: VmInfo, identity: str) -> ProvisionedHost:
        address = vm.address or vm.internal_address or ""
        host = ProvisionedHost(name=vm.name, zone=vm.zone, address=address, port=self.port, user=self.user,
                               known_hosts=self.known_hosts, identity=identity,
                               internal_address=vm.internal_address, project=self.project)
        keys = await self.host_keys(vm)
        if keys:
            addrs = list(dict.fromkeys(a for a in (vm.address, vm.internal_address) if a))
            sshkeys.add_known_hosts(self.known_hosts, sshkeys.known_hosts_lines(addrs, self.port, keys))
            host.host_key_verified = True
            self.say(f"{vm.name}: pinned {len(keys)} host key(s) from guest attributes in {self.known_hosts}")
        elif self.accept_new:
            self.say(f"{vm.name}: published no host keys in {self.host_key_timeout:.0f} s; "
                     f"--accept-new-host-key: the key it presents on first connect will be trusted")
        else:
            raise GcpError(
                f"VM {vm.name} ({vm.zone}) published no SSH host keys in {self.host_key_timeout:.0f} s, so its "
                f"identity cannot be verified: run again with --accept-new-host-key to trust the key it presents "
                f"on first connect, or delete it with `gpuwizard down RECIPE.yaml` (recipe {self.recipe.name}).",
                kind="hostkey")
        return host

    async def run(self) -> list[ProvisionedHost]:
        creds, self.project = await _client.call(_client.credentials_and_project, self.g.project)
        identity, public_key = await _client.call(sshkeys.ensure_identity, self.recipe.ssh.identity)
        try:
            vms = await self.existing()
            if not vms:
                await self.check_quota()
                zone = await self.create(public_key)
                vms = await self.describe(zone)
        except GcpError:
            raise
        except Exception as exc:  # noqa: BLE001 - API errors become one sentence
            if type(exc).__module__.startswith(("google.", "requests", "urllib3")):
                raise api_error(exc, "creating the VM") from None
            raise
        for vm in vms:
            self.say(f"{vm.name}: {vm.status} in {vm.zone} at {vm.address or vm.internal_address}"
                     + (f" (~${vm.price_hour:.2f}/h)" if vm.price_hour else ""))
        return list(await asyncio.gather(*(self.pin(vm, identity) for vm in vms)))


def _fill_project(body: dict[str, Any], project: str) -> None:
    for acc in body.get("guest_accelerators") or []:
        acc["accelerator_type"] = acc["accelerator_type"].replace("{project}", project)


# ---------------------------------------------------------------------- public API

async def provision(recipe: Any, run_id: str, sink: Sink | None = None, accept_new_host_key: bool = False,
                    known_hosts_path: str | None = None, host_key_timeout: float | None = None,
                    recipe_path: str | None = None) -> list[ProvisionedHost]:
    """Create the recipe's VM(s), failing over between zones, and pin their host keys.

    ``recipe_path``, the recipe file, labels the VMs with its :func:`recipe_id` so that
    ``status`` / ``down`` on that file find them and not those of another file that
    uses the same recipe name. Progress goes to ``sink`` as
    ``Output(host="gcp", step="provision", stream="stdout")`` lines. Raises
    :class:`GcpError` (one or two sentences with the fix) when it cannot.
    """
    return await Provisioner(recipe, run_id, sink, accept_new_host_key, known_hosts_path, host_key_timeout,
                             recipe_path=recipe_path).run()


def _recipe_filter(recipe_name: str, run_id: str | None = None) -> str:
    f = f'(labels.{LABEL_RECIPE} = "{label_value(recipe_name)}")'
    if run_id:
        f += f' AND (labels.{LABEL_RUN} = "{label_value(run_id)}")'
    return f


async def _list(project: str | None, recipe_name: str, run_id: str | None,
                recipe_path: str | None = None) -> tuple[str, list[VmInfo]]:
    """The VMs labelled with ``recipe_name`` (and ``run_id``); with ``recipe_path``, only
    those of that recipe file, plus unmarked ones (no recipe-id label: made before the
    label existed), which only the name can match."""
    creds, project = await _client.call(_client.credentials_and_project, project)
    from google.cloud import compute_v1

    inst = _client.compute("InstancesClient", creds)

    def go() -> list[VmInfo]:
        req = compute_v1.AggregatedListInstancesRequest(
            project=project, filter=_recipe_filter(recipe_name, run_id), max_results=500)
        out = []
        for _, scoped in inst.aggregated_list(request=req):
            out.extend(vm_info(_client.to_dict(i)) for i in scoped.instances)
        return out

    try:
        vms = await _client.call(go)
    except Exception as exc:  # noqa: BLE001
        raise api_error(exc, "listing VMs") from None
    # Labels are filtered server-side; check again so a lax filter never deletes a stranger's VM.
    want = label_value(recipe_name)
    rid = recipe_id(recipe_path) if recipe_path else None
    mine = [v for v in vms if v.labels.get(LABEL_RECIPE) == want
            and (run_id is None or v.labels.get(LABEL_RUN) == label_value(run_id))
            and (rid is None or v.recipe_id in (None, rid))]
    return project, sorted(mine, key=lambda v: (v.zone, v.name))


async def list_recipe_vms(project: str | None, recipe_name: str, run_id: str | None = None,
                          recipe_path: str | None = None) -> list[VmInfo]:
    """VMs labelled as created by runs of ``recipe_name`` (one aggregatedList request);
    with ``recipe_path``, of that recipe file (see :func:`_list`)."""
    _, vms = await _list(project, recipe_name, run_id, recipe_path)
    return vms


async def delete_recipe_vms(project: str | None, recipe_name: str, run_id: str | None = None,
                            sink: Sink | None = None, recipe_path: str | None = None) -> list[str]:
    """Delete every VM that runs of ``recipe_name`` (of the file ``recipe_path`` when
    given) created, wait for it, return ``zone/name``s."""
    project, vms = await _list(project, recipe_name, run_id, recipe_path)
    return await _delete(project, vms, sink)


async def delete_vms(project: str | None, vms: list[VmInfo], sink: Sink | None = None) -> list[str]:
    """Delete exactly ``vms`` (e.g. the list a user confirmed), wait, return ``zone/name``s."""
    if not vms:
        return []
    _creds, project = await _client.call(_client.credentials_and_project, project)
    return await _delete(project, vms, sink)


async def _delete(project: str, vms: list[VmInfo], sink: Sink | None) -> list[str]:
    inst = _client.compute("InstancesClient")
    ops_client = _client.compute("ZoneOperationsClient")
    from google.api_core import exceptions as gexc
    from google.cloud import compute_v1

    def say(text: str) -> None:
        if sink:
            sink(Output(host="gcp", step="down", stream="stdout", data=text + "\n"))

    async def one(vm: VmInfo) -> str | None:
        try:
            op = await _client.call(inst.delete_unary, project=project, zone=vm.zone, instance=vm.name)
            deadline = time.monotonic() + OP_TIMEOUT
            while op.status != compute_v1.Operation.Status.DONE and time.monotonic() < deadline:
                op = await _client.call(ops_client.wait, project=project, zone=vm.zone, operation=op.name)
        except gexc.NotFound:
            say(f"{vm.zone}/{vm.name}: already gone")
            return f"{vm.zone}/{vm.name}"
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"deleting {vm.name}") from None
        if op.error and op.error.errors:
            raise GcpError(f"Deleting {vm.name} in {vm.zone} failed: {op.error.errors[0].message}", kind="delete")
        say(f"{vm.zone}/{vm.name}: deleted")
        return f"{vm.zone}/{vm.name}"

    done = await asyncio.gather(*(one(v) for v in vms))
    return [d for d in done if d]
