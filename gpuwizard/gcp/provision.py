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

Resume (same run id) finds the run's VMs by their labels and brings them back:

* RUNNING: reused as they are;
* TERMINATED / STOPPED (a spot VM preempted with ``instanceTerminationAction: STOP``,
  or a stopped VM): ``instances.start``, wait for the operation and for RUNNING, then
  read the external IP again (an ephemeral one changes on restart) and re-read and
  re-pin the host keys from guest attributes (same disk, same keys, but verified again,
  and the lines of the old address dropped). A start that hits a stockout stops with
  one sentence: wait and resume later, or ``down`` and a fresh run (which fails over);
* PROVISIONING / STAGING / STOPPING ...: waited for, then handled as above;
* gone (deleted: a spot VM preempted with ``instanceTerminationAction: DELETE``, or
  ``gpuwizard down``): replaced by a *new host*. The run's steps already done are kept
  per host name, and a replacement has a fresh disk, so it must not inherit them: the
  replacement of ``NAME`` is ``NAME-r1`` (then ``-r2`` ...), which the executor treats
  as a new host and runs every step on. Which names a run has used is remembered
  beside its known_hosts file (``<known_hosts>.vms``), since Compute forgets a deleted
  VM; a VM that is gone and was never used there keeps its plain name.

OS Login: ``projects.get`` (the request that reads ``GPUS_ALL_REGIONS``) also returns
the project's ``commonInstanceMetadata``. When it holds ``enable-oslogin`` = TRUE (any
case), the guest ignores the ``ssh-keys`` metadata gpuwizard logs in with, and the
rule is:

* the recipe sets ``ssh.user``: proceed, assuming the user registered the login key
  (``ssh.identity``, else gpuwizard's own key) in the OS Login profile of that POSIX
  user; no ``ssh-keys`` metadata is added;
* it does not: stop before creating or starting anything, with one sentence naming
  ``gcloud compute os-login ssh-keys add --key-file=<the public key's path>``, the
  ``ssh.user`` to set, and the other way out (a project owner allows metadata keys).

gpuwizard never sets ``enable-oslogin`` on its VMs (that would silently switch OS Login
off). An organisation policy (``compute.requireOsLogin``) that enforces OS Login without
project metadata is not visible to ``projects.get`` and is not detected.
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
                                  global_quota_error, os_login_error, region_quota_message)

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
STATE_POLL = float(os.environ.get("GPUWIZARD_GCP_STATE_POLL", "2"))  # instances.get while a VM changes state

STARTABLE = ("TERMINATED", "STOPPED")             # instances.start brings these back
SETTLING = ("PROVISIONING", "STAGING", "REPAIRING", "STOPPING", "SUSPENDING", "PENDING_STOP")

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


def instance_names(recipe: Any, run_id: str, generations: list[int] | None = None) -> list[str]:
    """VM names: ``<prefix>-<run>`` (``-<i>`` per VM when count > 1), valid GCE names.

    ``generations`` (one per VM, default all 0): generation ``g`` > 0 names the g-th
    replacement of a VM that was deleted (``-r<g>`` at the end), a new host for the run.
    Over 63 characters the *prefix* is shortened: the run part (the end of the run id,
    which carries its random tag), the VM index and the generation always survive, so
    two runs, or two VMs of one run, never share a name.
    """
    g = recipe.target.gcp
    prefix = re.sub(r"-+", "-", g.name_prefix or recipe.name).strip("-")
    if not re.match(r"^[a-z]", prefix):
        prefix = "g" + prefix
    run = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[-20:].strip("-") or "run"
    n = max(1, int(g.count or 1))
    tails = [f"-{run}"] if n == 1 else [f"-{run}-{i}" for i in range(n)]
    if generations:
        tails = [t + (f"-r{g}" if g else "") for t, g in zip(tails, list(generations) + [0] * n)]
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
                  *, bare: bool = False, recipe_id: str | None = None, os_login: bool = False) -> dict[str, Any]:
    """The Instance resource (proto-plus field names). ``bare``: names instead of zone paths,
    as bulkInsert's instanceProperties wants them (SkyPilot: a prefix there gives a 503).
    ``os_login``: the project enforces OS Login, so no ``ssh-keys`` metadata (it would be
    ignored); ``enable-oslogin`` is never set either way."""
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
        "metadata": {"items": ([] if os_login else [{"key": "ssh-keys", "value": key_line}])
                     + [{"key": "enable-guest-attributes", "value": "TRUE"}]},
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
                 recipe_path: str | None = None, previous_hosts: Any = ()) -> None:
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
        self.slots = instance_names(recipe, run_id)   # the run's VM names, one per VM (see plan())
        self.names = list(self.slots)                  # the names to create now
        self.previous_hosts = set(previous_hosts or ())
        self.gpu = catalog.gpu(self.g.gpu.type) if self.g.gpu else None
        self.quota: Any = None
        self.os_login = False
        self.identity = ""
        self.report = _Report()

    @property
    def need(self) -> int:
        """GPUs the VMs to create need."""
        return (int(self.g.gpu.count) * len(self.names)) if self.g.gpu else 0

    def say(self, text: str) -> None:
        """A plain progress line for the run log / UI."""
        if self.sink:
            self.sink(Output(host="gcp", step="provision", stream="stdout", data=text.rstrip("\n") + "\n"))

    # -- quota and candidates ------------------------------------------------

    def _metric(self) -> str | None:
        if self.gpu is None:
            return None
        return self.gpu.spot_quota_metric if self.g.spot else self.gpu.quota_metric

    async def check_project(self, creating: bool) -> None:
        """OS Login first (see the module docstring for the rule), then, when VMs are to be
        created, GPUS_ALL_REGIONS (new projects have 0) and each region's free quota.

        One ``projects.get`` serves both (with ``regions.list`` beside it when creating
        GPU VMs). Fails open: a narrowly scoped account may lack compute.projects.get;
        inserts will still say what is wrong.
        """
        from gpuwizard.gcp import quota as Q

        meta: dict[str, str] | None = None
        if creating and self.gpu is not None:
            try:
                self.quota = await Q.fetch_quota(self.project, self.gpu.name, self.g.spot)
                meta = self.quota.metadata
            except GcpError as exc:
                self.say(f"could not read quotas ({exc}); trying the zones anyway")
        else:
            try:
                meta = await Q.fetch_project_metadata(self.project)
            except GcpError as exc:
                self.say(f"could not read the project's metadata ({exc}); assuming metadata SSH keys work")
        if meta is not None and Q.os_login_enabled(meta):
            if not self.recipe.ssh.user:
                raise os_login_error(self.project, self.identity + ".pub")
            self.os_login = True
            self.say(f"project {self.project} enforces OS Login: logging in as OS Login user {self.user} with "
                     f"{self.identity} and adding no ssh-keys metadata (if SSH is refused, add the key with "
                     f"`gcloud compute os-login ssh-keys add --key-file={self.identity}.pub`)")
        q = self.quota
        if creating and q is not None and q.global_limit is not None and q.global_free < self.need:
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
                                 recipe_id=self.recipe_id, os_login=self.os_login)
            _fill_project(body, self.project)
            return await _client.call(inst.insert_unary, project=self.project, zone=zone,
                                      instance_resource=compute_v1.Instance(body))
        props = instance_body(self.recipe, zone, "", self.run_id, self.user, public_key, bare=True,
                              recipe_id=self.recipe_id, os_login=self.os_login)
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

    # -- resume: the run's VMs, restarted or replaced ------------------------------------

    def _ledger_path(self) -> str:
        return self.known_hosts + ".vms"

    def _read_ledger(self) -> set[str]:
        """Names of the VMs this run has had (Compute forgets deleted ones)."""
        import json

        try:
            with open(self._ledger_path(), encoding="utf-8") as fh:
                return set(json.load(fh).get("names") or [])
        except (OSError, ValueError, AttributeError):
            return set()

    def _write_ledger(self, names: list[str]) -> None:
        import json

        path = self._ledger_path()
        have = sorted(self._read_ledger() | set(names))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"run": self.run_id, "names": have}, fh)
        os.replace(tmp, path)

    def _slot_name(self, i: int, generation: int, n: int) -> str:
        """The name of VM ``i`` (of ``n``) in its ``generation``."""
        return instance_names(self.recipe, self.run_id, [generation if j == i else 0 for j in range(n)])[i]

    async def plan(self) -> list[VmInfo]:
        """Match the run's VMs to its slots: returns those that exist (in any state) and
        sets :attr:`names` to the ones to create, :attr:`slots` to all of them.

        Per slot, the latest generation the run has had (in Compute or the ledger) is
        looked at: it exists (resume it); it was had but is gone (create its replacement,
        the next generation, a new host); or it was never had (create it).
        """
        _, vms = await _list(self.project, self.recipe.name, self.run_id, self.recipe_path)
        found = {v.name: v for v in vms}
        used = await _client.call(self._read_ledger) | self.previous_hosts
        known = used | set(found)
        n = len(self.slots)
        keep: list[VmInfo] = []
        self.slots, self.names = [], []
        for i in range(n):
            g = 0
            while self._slot_name(i, g + 1, n) in known:
                g += 1
            cur = self._slot_name(i, g, n)
            if cur in found:
                keep.append(found[cur])
                self.slots.append(cur)
                continue
            if cur in used:
                new = self._slot_name(i, g + 1, n)
                self.say(f"{cur} no longer exists (deleted, or a spot VM preempted with instanceTerminationAction "
                         f"DELETE): creating {new} in its place, a new host with a fresh disk, so every step "
                         f"runs again on it")
                cur = new
            self.slots.append(cur)
            self.names.append(cur)
        if keep:
            self.say(f"reusing {len(keep)} VM(s) this run already created: "
                     + ", ".join(f"{v.name} ({v.status})" for v in keep))
        return keep

    async def _get(self, vm: VmInfo) -> VmInfo:
        inst = _client.compute("InstancesClient")
        got = await _client.call(inst.get, project=self.project, zone=vm.zone, instance=vm.name)
        return vm_info(_client.to_dict(got))

    def _start_error(self, vm: VmInfo, verdict: Verdict) -> GcpError:
        """One sentence for a start that failed, by what failed."""
        what = f"{vm.name} was preempted" if vm.spot else f"{vm.name} is stopped"
        rec = f"(recipe {self.recipe.name})"
        if verdict.kind == STOCKOUT:
            return GcpError(
                f"{what} and {vm.zone} has no {'spot ' if vm.spot else ''}capacity to start it again now "
                f"[{', '.join(dict.fromkeys(i.code for i in verdict.items if i.code))}]: wait and run "
                f"`gpuwizard run RECIPE.yaml --resume` again later, or run `gpuwizard down RECIPE.yaml` {rec}, "
                f"which deletes it and its disk, then a fresh `gpuwizard run RECIPE.yaml`, which fails over to "
                f"other zones.", kind=STOCKOUT)
        if verdict.kind in (REGION_QUOTA, GLOBAL_QUOTA):
            metric = verdict.metric or self._metric() or "GPUS_ALL_REGIONS"
            link = console_link(metric, verdict.region if verdict.kind == REGION_QUOTA else None, self.project)
            return GcpError(f"{what} and starting it again needs GPU quota that is now in use ({verdict.reason}): "
                            f"free some or request more at {link}, then run `gpuwizard run RECIPE.yaml --resume` "
                            f"{rec} again.", kind=verdict.kind, link=link)
        msg = verdict.items[0].message if verdict.items else verdict.reason
        if verdict.kind == PERMISSION:
            return GcpError(f"Permission denied starting {vm.name} in {vm.zone}: {msg} Ask for "
                            f"roles/compute.instanceAdmin.v1 on project {self.project}.", kind=PERMISSION)
        return GcpError(f"Starting {vm.name} in {vm.zone} failed ({msg}): run `gpuwizard run RECIPE.yaml --resume` "
                        f"again later, or `gpuwizard down RECIPE.yaml` {rec} and a fresh run.", kind=verdict.kind)

    async def _start(self, vm: VmInfo) -> None:
        """instances.start and wait for its operation; transient errors are retried."""
        from google.api_core import exceptions as gexc

        inst = _client.compute("InstancesClient")
        self.say(f"{vm.name}: {vm.status} in {vm.zone}"
                 + (" (preempted spot VM)" if vm.spot else "") + ": starting it again")
        for i in range(TRANSIENT_RETRIES + 1):
            try:
                op = await _client.call(inst.start_unary, project=self.project, zone=vm.zone, instance=vm.name)
                op = await self._wait(vm.zone, op)
            except gexc.GoogleAPICallError as exc:
                verdict = from_api_exception(exc)
            else:
                errs = list(op.error.errors) if op.error else []
                if not errs:
                    return
                verdict = classify([_client.to_dict(e) for e in errs], op.http_error_status_code or None)
            if verdict.kind != TRANSIENT or i == TRANSIENT_RETRIES:
                raise self._start_error(vm, verdict)
            delay = RETRY_BASE * (2 ** i)
            self.say(f"{vm.name}: {verdict.reason}; retrying the start in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def settle(self, vm: VmInfo) -> VmInfo:
        """Bring one of the run's existing VMs to RUNNING: wait out transitions, start it
        when TERMINATED/STOPPED; returns it as it is then (with its new address)."""
        deadline = time.monotonic() + OP_TIMEOUT
        started = False
        while vm.status != "RUNNING":
            if vm.status in STARTABLE:
                if started:  # stopped again while starting: preempted at once, capacity is gone
                    raise self._start_error(vm, classify([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                                                           "message": "preempted again while starting"}]))
                await self._start(vm)
                started = True
            elif vm.status == "SUSPENDED":
                raise GcpError(f"{vm.name} in {vm.zone} is suspended: resume it with `gcloud compute instances "
                               f"resume {vm.name} --zone {vm.zone}` and run `gpuwizard run RECIPE.yaml --resume` "
                               f"again, or delete it with `gpuwizard down RECIPE.yaml` (recipe {self.recipe.name}).",
                               kind="state")
            elif vm.status not in SETTLING:
                raise GcpError(f"{vm.name} in {vm.zone} is {vm.status}: delete it with `gpuwizard down RECIPE.yaml` "
                               f"(recipe {self.recipe.name}) and start a fresh run.", kind="state")
            elif time.monotonic() > deadline:
                raise GcpError(f"{vm.name} in {vm.zone} stayed {vm.status} for {OP_TIMEOUT:.0f} s: check the console, "
                               f"then run `gpuwizard run RECIPE.yaml --resume` again.", kind=TRANSIENT)
            else:
                await asyncio.sleep(STATE_POLL)
            vm = await self._get(vm)
        if started:
            self.say(f"{vm.name}: running again at {vm.address or vm.internal_address} (a restarted VM gets a new "
                     f"external IP unless it is static)")
        return vm

    async def create_in(self, zone: str, public_key: str) -> str:
        """Create :attr:`names` in ``zone`` only: the zone of the run's other VMs (no failover,
        a run's VMs share a zone)."""
        region = catalog.region_of(zone)
        verdict = None
        why = self.region_block(region)
        if not why:
            self.say(f"{zone}: creating {', '.join(self.names)} beside the run's other VM(s)")
            verdict = await self.attempt(zone, public_key)
            if verdict is None or (verdict.kind == EXISTS and await self._ours_in(zone)):
                return zone
            why = verdict.reason
        raise GcpError(f"Replacing {', '.join(self.names)} in {zone}, where the run's other VMs are, failed ({why}): "
                       f"run `gpuwizard run RECIPE.yaml --resume` again later, or `gpuwizard down RECIPE.yaml` "
                       f"(recipe {self.recipe.name}) and a fresh run.", kind=verdict.kind if verdict else REGION_QUOTA)

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
        """Read ``vm``'s host keys and make them the only ones its addresses have in the
        run's known_hosts (a restarted VM: new external address, same keys, verified again)."""
        address = vm.address or vm.internal_address or ""
        host = ProvisionedHost(name=vm.name, zone=vm.zone, address=address, port=self.port, user=self.user,
                               known_hosts=self.known_hosts, identity=identity,
                               internal_address=vm.internal_address, project=self.project)
        keys = await self.host_keys(vm)
        if keys:
            addrs = list(dict.fromkeys(a for a in (vm.address, vm.internal_address) if a))
            lines = sshkeys.known_hosts_lines(addrs, self.port, keys)
            dropped = await _client.call(sshkeys.replace_known_hosts, self.known_hosts, addrs, self.port, lines)
            host.host_key_verified = True
            self.say(f"{vm.name}: pinned {len(keys)} host key(s) from guest attributes in {self.known_hosts}")
            blobs = {b for _, b in keys}
            if any(ln.split()[2:3] and ln.split()[2] not in blobs for ln in dropped):
                self.say(f"{vm.name}: its host keys differ from the ones pinned before for {', '.join(addrs)}; "
                         f"the new ones, read from Compute Engine, replace them")
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
        self.identity = identity
        try:
            vms = await self.plan()
            await self.check_project(creating=bool(self.names))
            settled = await asyncio.gather(*(self.settle(v) for v in vms), return_exceptions=True)
            for res in settled:  # every start has ended (none left running unseen); report the first failure
                if isinstance(res, BaseException):
                    raise res
            vms = [v for v in settled if isinstance(v, VmInfo)]
            if self.names:
                zone = await (self.create_in(vms[0].zone, public_key) if vms else self.create(public_key))
                vms += await self.describe(zone)
            await _client.call(self._write_ledger, [v.name for v in vms])
            order = {n: i for i, n in enumerate(self.slots)}
            vms.sort(key=lambda v: order.get(v.name, len(order)))
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
                    recipe_path: str | None = None, previous_hosts: Any = ()) -> list[ProvisionedHost]:
    """Create the recipe's VM(s), failing over between zones, and pin their host keys.

    With a run id that already has VMs (resume) they are reused, started again when
    preempted or stopped, and replaced under a new name when deleted (see the module
    docstring). ``previous_hosts``: host names the run has used (e.g. those with done
    steps), added to the names remembered beside ``known_hosts_path``, so that a VM of
    one of those names that is gone is replaced by a new host and not recreated under
    the old name. A project that enforces OS Login needs ``ssh.user`` in the recipe.

    ``recipe_path``, the recipe file, labels the VMs with its :func:`recipe_id` so that
    ``status`` / ``down`` on that file find them and not those of another file that
    uses the same recipe name. Progress goes to ``sink`` as
    ``Output(host="gcp", step="provision", stream="stdout")`` lines. Raises
    :class:`GcpError` (one or two sentences with the fix) when it cannot.
    """
    return await Provisioner(recipe, run_id, sink, accept_new_host_key, known_hosts_path, host_key_timeout,
                             recipe_path=recipe_path, previous_hosts=previous_hosts).run()


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
