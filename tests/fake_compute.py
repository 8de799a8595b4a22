"""A small, stateful fake of the Compute Engine v1 REST API, for tests, benches and demos.

The real ``google-cloud-compute`` client talks to it over HTTP (point
``GPUWIZARD_COMPUTE_ENDPOINT`` at :attr:`FakeCompute.url`), so tests exercise the same
request paths, JSON shapes, pagination and error parsing as production, and nothing
patches the client. What it keeps:

* a project with global quotas (``GPUS_ALL_REGIONS``) and regions with per-region quotas
  whose usage moves as instances are created and deleted;
* zones with accelerator types (``maximumCardsPerInstance``), by default from the
  catalog's zone snapshot, so "all regions" really is the whole world;
* instances (with labels, IPs and guest attributes that publish SSH host keys while
  RUNNING); ``instances.start`` / ``stop``; :meth:`FakeCompute.preempt` plays a spot
  preemption (TERMINATED with the ephemeral external IP released, or deleted, as the
  VM's ``instanceTerminationAction`` says); GPU quota is held only while RUNNING;
* the project's ``commonInstanceMetadata`` (``enable-oslogin`` ...) in ``projects.get``;
* zone operations that go PENDING -> RUNNING -> DONE over ``op_seconds`` and apply their
  effect when DONE; ``.../wait`` blocks until DONE like the real endpoint;
* faults per zone (:mod:`tests.fake_compute_faults`): stockout (``ZONE_RESOURCE_POOL_EXHAUSTED``
  or the ``_WITH_DETAILS`` form, optionally naming ``zonesAvailable``, also as a synchronous
  HTTP error with ``error.details``), regional, ``GPUS_ALL_REGIONS`` or any other quota
  metric, permission denied, HTTP 503, slow operations; plus a per-request latency;
* faults per route (:meth:`FakeCompute.add_http_fault`: HTTP 500/503 on ``instances.get``,
  ``getGuestAttributes`` ...), operation durations per type (a delete that never finishes);
* the serial console (``getSerialPortOutput``), optionally printing the host keys;
* Spot VMs charge ``PREEMPTIBLE_*`` quota where granted, else the standard metric.
* a cluster's side (:mod:`tests.fake_compute_cluster`): firewall rules, placement policies,
  images of any project, region/global operations, bulkInsert ``count`` / ``minCount``.

The JSON shapes, each with its source, are in :mod:`tests.fake_compute_shapes`; routes and
the HTTP handler in :mod:`tests.fake_compute_http`; the standalone server in
:mod:`tests.fake_compute_cli`.

Every request is recorded in :attr:`FakeCompute.requests` so tests can assert what was
(not) sent. Standalone: ``python -m tests.fake_compute --port 8089 --scenario failover``.
A tiny control API (``GET /_fake/state``, ``POST /_fake/fault``, ``POST /_fake/reset``,
``POST /_fake/preempt`` ``{"zone", "name"}`` or ``{"run"}`` [``"action"``], ``POST
/_fake/metadata`` ``{"key", "value"}``) lets a demo change things while it runs.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests import fake_compute_shapes as shapes
from tests.discovery_contract import compute as compute_contract
from tests.fake_compute_cluster import ClusterSide
from tests.fake_compute_faults import Fault, zone_faults
from tests.fake_compute_guest import GuestSide
from tests.fake_compute_http import ROUTES, Handler as _Handler
from tests.fake_compute_shapes import BASE, FAKE_HOST_KEYS, region_of
from tests.fake_compute_shapes import filter_value as _filter_value
from tests.fake_compute_shapes import http_error as _http_error
from tests.fake_compute_shapes import matches as _matches
from tests.fake_http import FakeServer

__all__ = ["BASE", "DEFAULT_PROJECT", "FAKE_HOST_KEYS", "FakeCompute", "Fault"]

DEFAULT_PROJECT = "test-project"


@dataclass
class Op:
    name: str
    zone: str
    op_type: str
    target: str
    created: float
    duration: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    effect: Any = None          # callable applied once when the op is DONE (if no errors)
    applied: bool = False
    always: bool = False        # apply the effect despite the errors (a partial create)
    http_status: int = 200

    def status(self, now: float) -> str:
        t = now - self.created
        if t >= self.duration:
            return "DONE"
        return "PENDING" if t < self.duration * 0.3 else "RUNNING"


_region = region_of


def _default_world() -> dict[str, dict[str, int]]:
    """zone -> {accelerator type: maximumCardsPerInstance}, from the catalog snapshot."""
    try:
        from gpuwizard import catalog
    except ImportError:  # pragma: no cover - standalone use outside the repo
        return {"us-central1-a": {"nvidia-tesla-t4": 4}, "us-central1-b": {"nvidia-tesla-t4": 4}}
    world: dict[str, dict[str, int]] = {}
    for name, g in catalog.gpus().items():
        for z in catalog.zones_for(name):
            world.setdefault(z, {})[name] = max(g.counts)
    return world


class FakeCompute(FakeServer, ClusterSide, GuestSide):
    """The fake's state and HTTP server. Thread-safe: the server answers in threads."""

    def __init__(self, project: str = DEFAULT_PROJECT, *, world: dict[str, dict[str, int]] | None = None,
                 gpu_quota: float = 8, global_gpu_quota: float = 16, op_seconds: float = 0.05,
                 latency: float = 0.0, hostkey_delay: float = 0.0, wait_cap: float = 5.0,
                 host_keys: dict[str, str] | None = None, nat_ip: str | None = None) -> None:
        self.project = project
        self.world = world if world is not None else _default_world()
        self.op_seconds = op_seconds
        self.latency = latency
        self.hostkey_delay = hostkey_delay
        self.wait_cap = wait_cap
        self.host_keys = dict(FAKE_HOST_KEYS if host_keys is None else host_keys)
        self.nat_ip = nat_ip
        self.lock = threading.Condition()
        self.requests: list[tuple[float, str, str]] = []   # (time, method, path)
        self.authorizations: list[str | None] = []          # each request's Authorization header
        #: What Google's discovery document says the real API would refuse to take or never
        #: give (tests/discovery_contract.py); the fixture fails the test on any.
        self.violations: list[str] = []
        #: Requests whose body never arrived whole (the client died mid-send, as a Ctrl-C'd
        #: gpuwizard's daemon request threads do): dropped unanswered, like a real server.
        self.aborted = 0
        self.global_quotas: dict[str, dict[str, float]] = {
            "GPUS_ALL_REGIONS": {"limit": global_gpu_quota, "usage": 0.0},
            "CPUS_ALL_REGIONS": {"limit": 1000.0, "usage": 0.0},
        }
        self.region_quotas: dict[str, dict[str, dict[str, float]]] = {}
        for zone, accs in self.world.items():
            q = self.region_quotas.setdefault(_region(zone), {"CPUS": {"limit": 500.0, "usage": 0.0}})
            for acc in accs:
                metric = self._metric(acc, spot=False)
                q.setdefault(metric, {"limit": float(gpu_quota), "usage": 0.0})
                q.setdefault("PREEMPTIBLE_" + metric, {"limit": float(gpu_quota), "usage": 0.0})
        self.project_metadata: dict[str, str] = {}   # commonInstanceMetadata
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}   # (zone, name) -> instance
        self.ops: dict[str, Op] = {}
        self.faults: dict[str, list[Fault]] = {}
        # Faults by route (``inst_get``, ``guest``, ``serial`` ...): [HTTP status, times left or None].
        self.http_faults: dict[str, list[list[Any]]] = {}
        # Operation durations by type (``delete`` ...), overriding op_seconds; inf: never DONE.
        self.op_durations: dict[str, float] = {}
        # Keys the guest prints on its serial console (None: none printed), see serial_output().
        self.serial_host_keys: dict[str, str] | None = None
        # Items added to every new instance's metadata, as an organisation policy or an image
        # may (e.g. ``{"enable-oslogin": "TRUE"}`` with no project metadata saying so).
        self.instance_metadata: dict[str, str] = {}
        self._ids = itertools.count(1000)
        self._cluster_init()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ scenario knobs

    @staticmethod
    def _metric(acc: str, spot: bool) -> str:
        """The quota metric for an accelerator type (NVIDIA_T4_GPUS ...)."""
        special = {"nvidia-tesla-a100": "NVIDIA_A100_GPUS", "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
                   "nvidia-h100-80gb": "NVIDIA_H100_GPUS", "nvidia-h100-mega-80gb": "NVIDIA_H100_MEGA_GPUS",
                   "nvidia-h200-141gb": "NVIDIA_H200_GPUS"}
        base = special.get(acc) or "NVIDIA_" + acc.replace("nvidia-tesla-", "").replace("nvidia-", "").upper() + "_GPUS"
        return ("PREEMPTIBLE_" if spot else "") + base

    def set_quota(self, region: str, metric: str, limit: float, usage: float = 0.0) -> None:
        """Set a regional quota (metric like NVIDIA_T4_GPUS)."""
        with self.lock:
            self.region_quotas.setdefault(region, {})[metric] = {"limit": float(limit), "usage": float(usage)}

    def set_global_quota(self, metric: str, limit: float, usage: float = 0.0) -> None:
        with self.lock:
            self.global_quotas[metric] = {"limit": float(limit), "usage": float(usage)}

    def add_fault(self, zone: str, kind: str, **kw: Any) -> None:
        """Inject a fault into ``zone``'s inserts (see :class:`Fault`)."""
        with self.lock:
            self.faults.setdefault(zone, []).append(Fault(kind, **kw))

    def set_project_metadata(self, key: str, value: str | None) -> None:
        """Set (None: remove) a commonInstanceMetadata item, e.g. ``enable-oslogin``."""
        with self.lock:
            if value is None:
                self.project_metadata.pop(key, None)
            else:
                self.project_metadata[key] = value

    def preempt(self, zone: str | None = None, name: str | None = None, *, run: str | None = None,
                action: str | None = None) -> list[str]:
        """Preempt VMs now: by ``zone``/``name``, or every VM labelled ``gpuwizard-run=run``.

        ``action`` (default: the VM's ``scheduling.instanceTerminationAction``, else STOP):
        STOP leaves it TERMINATED with its ephemeral external IP released (a start gives it
        a new one); DELETE removes it with its disk. Either frees its GPU quota. Returns
        the names preempted.
        """
        with self.lock:
            self._tick()
            keys = [k for k, i in self.instances.items()
                    if (name is None or k == (zone, name) or (zone is None and k[1] == name))
                    and (run is None or (i.get("labels") or {}).get("gpuwizard-run") == run)]
            for k in keys:
                inst = self.instances[k]
                act = (action or (inst.get("scheduling") or {}).get("instanceTerminationAction") or "STOP").upper()
                self._release(inst)
                if act == "DELETE":
                    del self.instances[k]
                else:
                    self._halt(inst)
            self.lock.notify_all()
            return [k[1] for k in keys]

    def starts(self, zone: str | None = None) -> list[str]:
        """Paths of the instances.start requests received."""
        return [p for _, m, p in self.requests if m == "POST" and p.endswith("/start")
                and (zone is None or f"/zones/{zone}/" in p)]

    def add_http_fault(self, route: str, status: int, times: int | None = None) -> None:
        """Answer requests of ``route`` (a name in :data:`ROUTES`: ``inst_get``, ``guest`` ...)
        with HTTP ``status`` (500, 503, 429 ...), ``times`` times (None: always)."""
        with self.lock:
            self.http_faults.setdefault(route, []).append([status, times])

    def _http_fault(self, route: str) -> int | None:
        """The status to fail this request of ``route`` with, if a fault takes it. Caller holds the lock."""
        for f in self.http_faults.get(route, []):
            if f[1] is None:
                return int(f[0])
            if f[1] > 0:
                f[1] -= 1
                return int(f[0])
        return None

    def route_requests(self, route: str) -> int:
        """How many requests ``route`` received."""
        rx = next(r for _, r, n in ROUTES if n == route)
        return sum(1 for _, _, path in self.requests if rx.match(path))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def add_instance(self, zone: str, name: str, labels: dict[str, str] | None = None,
                     gpu: str | None = None, gpu_count: int = 0, status: str = "RUNNING") -> dict[str, Any]:
        """Put an instance in place directly (for down/status tests)."""
        with self.lock:
            body: dict[str, Any] = {"name": name, "labels": labels or {},
                                    "machineType": f"zones/{zone}/machineTypes/n1-standard-4"}
            if gpu:
                body["guestAccelerators"] = [{"acceleratorType": gpu, "acceleratorCount": gpu_count or 1}]
            inst = self._make_instance(zone, body)
            inst["_holds_quota"] = False  # placed, not created: no quota was taken
            if status != "RUNNING":
                self._halt(inst, status)
            self.instances[(zone, name)] = inst
            return inst

    def inserts(self, zone: str | None = None) -> list[str]:
        """Paths of the insert/bulkInsert requests received (optionally for one zone)."""
        return [p for _, m, p in self.requests if m == "POST" and re.search(r"/instances(/bulkInsert)?$", p)
                and (zone is None or f"/zones/{zone}/" in p)]

    # ------------------------------------------------------------------ server

    def start(self, port: int = 0, host: str = "127.0.0.1") -> "FakeCompute":
        self.serve(_Handler, "state", "fake-compute", port, host)
        return self

    def __enter__(self) -> "FakeCompute":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ model helpers

    def _tick(self) -> None:
        """Apply the effect of every operation that has become DONE. Caller holds the lock."""
        now = time.monotonic()
        for op in self.ops.values():
            if not op.applied and op.status(now) == "DONE":
                op.applied = True
                if op.effect and (not op.errors or op.always):
                    op.effect()

    def _op_json(self, op: Op) -> dict[str, Any]:
        status = op.status(time.monotonic())
        scope = op.zone if op.zone == "global" or "/" in op.zone else f"zones/{op.zone}"   # or regions/R
        d: dict[str, Any] = {
            "kind": "compute#operation", "id": str(abs(hash(op.name)) % 10**12), "name": op.name,
            "operationType": op.op_type, "targetLink": op.target, "status": status,
            "progress": 100 if status == "DONE" else 0,
            "selfLink": f"{BASE}/projects/{self.project}/{scope}/operations/{op.name}",
        }
        if scope != "global":
            d[scope.split("/")[0][:-1]] = f"{BASE}/projects/{self.project}/{scope}"
        if status == "DONE" and op.errors:
            d["error"] = {"errors": op.errors}
            d["httpErrorStatusCode"] = op.http_status
        return d

    def _new_op(self, zone: str, op_type: str, target: str, *, errors: list[dict[str, Any]] | None = None,
                effect: Any = None, duration: float | None = None, http_status: int = 200) -> Op:
        if duration is None:
            duration = self.op_durations.get(op_type, self.op_seconds)
        op = Op(name=f"operation-{next(self._ids)}-{op_type}", zone=zone, op_type=op_type, target=target,
                created=time.monotonic(), duration=duration,
                errors=errors or [], effect=effect, http_status=http_status)
        self.ops[op.name] = op
        return op

    def _make_instance(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        name = body["name"]
        nat = self.nat_ip or f"203.0.113.{n % 250 + 1}"
        inst = dict(body)
        if self.instance_metadata:
            items = [i for i in (body.get("metadata") or {}).get("items") or [] if i.get("key") not in self.instance_metadata]
            inst["metadata"] = {**(body.get("metadata") or {}),
                                "items": items + [{"key": k, "value": v} for k, v in self.instance_metadata.items()]}
        inst.update({
            "kind": "compute#instance", "id": str(n), "status": "RUNNING",
            "zone": f"{BASE}/projects/{self.project}/zones/{zone}",
            "selfLink": f"{BASE}/projects/{self.project}/zones/{zone}/instances/{name}",
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()),
            "networkInterfaces": [{"name": "nic0", "networkIP": f"10.128.0.{n % 250 + 1}",
                                   **{k: v for k, v in ((body.get("networkInterfaces") or [{}])[0]).items()
                                      if k == "nicType"},
                                   "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT",
                                                      "natIP": nat}]}],
            "_running_since": time.monotonic(), "_holds_quota": True,
        })
        return inst

    def _halt(self, inst: dict[str, Any], status: str = "TERMINATED") -> None:
        """Stopped: the ephemeral external IP goes back to the pool (a static one would stay)."""
        inst["status"] = status
        inst["lastStopTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())
        for nic in inst.get("networkInterfaces") or []:
            for ac in nic.get("accessConfigs") or []:
                ac.pop("natIP", None)

    def _release(self, inst: dict[str, Any]) -> None:
        """Give back the GPU quota a running VM holds. Caller holds the lock."""
        if not inst.get("_holds_quota"):
            return
        inst["_holds_quota"] = False
        acc, n = self._gpus_of(inst)
        if acc:
            zone = inst["zone"].rsplit("/", 1)[-1]
            q = self.region_quotas.get(_region(zone), {}).get(
                inst.get("_quota_metric") or self._metric(acc, self._spot(inst)))
            if q is not None:
                q["usage"] = max(0.0, q["usage"] - n)
            g = self.global_quotas["GPUS_ALL_REGIONS"]
            g["usage"] = max(0.0, g["usage"] - n)

    def _quota_errors(self, zone: str, bodies: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Quota errors for running ``bodies`` in ``zone``, and the GPUs they need per metric."""
        region = _region(zone)
        need: dict[str, int] = {}
        for b in bodies:
            acc, n = self._gpus_of(b)
            if acc:
                m = self._charged_metric(region, acc, self._spot(b))
                need[m] = need.get(m, 0) + n
        total = sum(need.values())
        errors = []
        g = self.global_quotas["GPUS_ALL_REGIONS"]
        if total and g["usage"] + total > g["limit"]:
            errors.append(self._quota_error("GPUS_ALL_REGIONS", g["limit"], None))
        for m, n in need.items():
            q = self.region_quotas.get(region, {}).get(m)
            if q is not None and q["usage"] + n > q["limit"]:
                errors.append(self._quota_error(m, q["limit"], region))
        return errors, need

    def _charged_metric(self, region: str, acc: str, spot: bool) -> str:
        """The regional metric a VM draws on: a Spot VM uses PREEMPTIBLE_* where that quota is
        granted (limit > 0) and the standard metric where it is not (Compute Engine docs, Spot
        VMs, quotas: https://cloud.google.com/compute/docs/instances/spot#quotas)."""
        m = self._metric(acc, spot)
        if spot and self.region_quotas.get(region, {}).get(m, {}).get("limit", 0) <= 0:
            return self._metric(acc, False)
        return m

    def _take_quota(self, zone: str, need: dict[str, int]) -> None:
        for m, n in need.items():
            q = self.region_quotas.get(_region(zone), {}).get(m)
            if q is not None:
                q["usage"] += n
        self.global_quotas["GPUS_ALL_REGIONS"]["usage"] += sum(need.values())

    def _gpus_of(self, body: dict[str, Any]) -> tuple[str | None, int]:
        accs = body.get("guestAccelerators") or []
        if not accs:
            return None, 0
        acc = str(accs[0].get("acceleratorType", "")).rsplit("/", 1)[-1]
        return acc, int(accs[0].get("acceleratorCount") or 1)

    def _spot(self, body: dict[str, Any]) -> bool:
        sch = body.get("scheduling") or {}
        return sch.get("provisioningModel") == "SPOT" or bool(sch.get("preemptible"))

    # Errors in the shapes Compute uses (tests/fake_compute_shapes.py, with their sources) ----------

    def _stockout(self, zone: str, body: dict[str, Any], details: bool, zones_available: list[str]) -> dict[str, Any]:
        acc, n = self._gpus_of(body)
        return shapes.stockout_error(self.project, zone, body, details, zones_available, f"{acc}:{n}" if acc else "")

    def _stockout_sync(self, zone: str, body: dict[str, Any], zones_available: list[str]) -> dict[str, Any]:
        return shapes.stockout_http_error(self.project, zone, body, zones_available)

    @staticmethod
    def _quota_error(metric: str, limit: float, region: str | None) -> dict[str, Any]:
        return shapes.quota_error(metric, limit, region)

    # ------------------------------------------------------------------ handlers

    def insert(self, zone: str, bodies: list[dict[str, Any]], min_count: int | None = None) -> tuple[int, dict[str, Any]]:
        """Insert one or more instances in ``zone`` (insert and bulkInsert share this; ``min_count``:
        bulkInsert's, see tests/fake_compute_cluster.py)."""
        if zone not in self.world:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}' was not found", "notFound")
        first = bodies[0]
        target = f"{BASE}/projects/{self.project}/zones/{zone}/instances/{first['name']}"
        early = self.placement_errors(zone, bodies)
        if early is not None:
            return early
        duration, early = self._faults(zone, first, "insert", target)
        if early is not None:
            return early
        room = self.room(zone)
        if room is not None and room < len(bodies):   # capacity for fewer VMs than asked
            if room < (len(bodies) if min_count is None else min_count):
                # bulkInsert says only that minCount was not reached (tests/fake_compute_cluster.py)
                error = (self._stockout(zone, first, False, []) if min_count is None else
                         {"code": "VM_MIN_COUNT_NOT_REACHED",
                          "message": f"Requested minimum count of {min_count} VMs could not be created."})
                return 200, self._op_json(self._new_op(zone, "insert", target, duration=duration, http_status=503,
                                                       errors=[error]))
            bodies = bodies[:room]
        partial = self.partial(zone)
        # Real quota accounting: regional metric and GPUS_ALL_REGIONS.
        errors, need = self._quota_errors(zone, bodies)
        for b in bodies:
            if (zone, b["name"]) in self.instances:
                return 409, _http_error(409, f"The resource 'projects/{self.project}/zones/{zone}/instances/"
                                             f"{b['name']}' already exists", "alreadyExists")
            acc, n = self._gpus_of(b)
            if acc and acc not in self.world[zone]:
                errors.append({"code": "RESOURCE_NOT_FOUND",
                               "message": f"The resource 'projects/{self.project}/zones/{zone}/acceleratorTypes/{acc}' was not found"})
            elif acc and n > self.world[zone][acc]:
                errors.append({"code": "INVALID_FIELD_VALUE", "message": f"{acc} takes at most {self.world[zone][acc]} per VM."})
        if errors:
            return 200, self._op_json(self._new_op(zone, "insert", target, errors=errors, duration=duration,
                                                   http_status=403))

        def effect() -> None:
            for b in bodies[:partial]:
                inst = self.instances[(zone, b["name"])] = self._make_instance(zone, b)
                acc, _ = self._gpus_of(b)
                if acc:
                    inst["_quota_metric"] = self._charged_metric(_region(zone), acc, self._spot(b))
            self._take_quota(zone, need if partial is None else self._quota_errors(zone, bodies[:partial])[1])

        if partial is not None:   # some VMs made, then the operation fails (no rollback)
            op = self._new_op(zone, "insert", target, effect=effect, duration=duration, http_status=503,
                              errors=[self._stockout(zone, first, False, [])])
            op.always = True
            return 200, self._op_json(op)
        return 200, self._op_json(self._new_op(zone, "insert", target, effect=effect, duration=duration))

    def _faults(self, zone: str, first: dict[str, Any], op_type: str,
                target: str) -> tuple[float | None, tuple[int, dict[str, Any]] | None]:
        return zone_faults(self, zone, first, op_type, target)

    def start_instance(self, zone: str, name: str) -> tuple[int, dict[str, Any]]:
        """instances.start: a TERMINATED/STOPPED VM runs again (new ephemeral external IP,
        GPU quota taken again); zone faults (stockout ...) and quota can refuse it."""
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        target = inst["selfLink"]
        if inst["status"] == "RUNNING":
            return 200, self._op_json(self._new_op(zone, "start", target))
        if inst["status"] not in ("TERMINATED", "STOPPED"):
            return 400, _http_error(400, f"The resource '{target}' is not ready", "resourceNotReady")
        duration, early = self._faults(zone, inst, "start", target)
        if early is not None:
            return early
        errors, need = self._quota_errors(zone, [inst])
        if errors:
            return 200, self._op_json(self._new_op(zone, "start", target, errors=errors, duration=duration,
                                                   http_status=403))
        inst["status"] = "STAGING"

        def effect() -> None:
            if self.instances.get((zone, name)) is not inst:
                return
            n = next(self._ids)
            for nic in inst.get("networkInterfaces") or []:
                for ac in nic.get("accessConfigs") or []:
                    ac["natIP"] = self.nat_ip or f"198.51.100.{n % 250 + 1}"
            inst.update({"status": "RUNNING", "_running_since": time.monotonic(), "_holds_quota": True,
                         "lastStartTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())})
            if need:
                inst["_quota_metric"] = next(iter(need))
            self._take_quota(zone, need)

        return 200, self._op_json(self._new_op(zone, "start", target, effect=effect, duration=duration))

    def stop_instance(self, zone: str, name: str) -> tuple[int, dict[str, Any]]:
        """instances.stop: STOPPING, then TERMINATED when the operation is done."""
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        if inst["status"] == "RUNNING":
            inst["status"] = "STOPPING"

        def effect() -> None:
            if self.instances.get((zone, name)) is inst and inst["status"] == "STOPPING":
                self._release(inst)
                self._halt(inst)

        return 200, self._op_json(self._new_op(zone, "stop", inst["selfLink"], effect=effect))

    def delete(self, zone: str, name: str) -> tuple[int, dict[str, Any]]:
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        inst["status"] = "STOPPING"

        def effect() -> None:
            gone = self.instances.pop((zone, name), None)
            if gone:
                self._release(gone)

        return 200, self._op_json(self._new_op(zone, "delete", inst["selfLink"], effect=effect))

    def accelerator_types(self, flt: str) -> dict[str, Any]:
        return shapes.accelerator_types(self.project, self.world, _filter_value(flt, "name"))

    def _public(self, inst: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in inst.items() if not k.startswith("_")}

    def list_instances(self, zone: str | None, flt: str) -> list[dict[str, Any]]:
        out = []
        for (z, _), inst in sorted(self.instances.items()):
            if zone is not None and z != zone:
                continue
            if _matches(inst, flt):
                out.append(self._public(inst))
        return out

    def regions_json(self) -> list[dict[str, Any]]:
        return shapes.regions(self.project, self.world, self.region_quotas, compute_contract().enum("Quota", "metric"))

    def state(self) -> dict[str, Any]:
        return {"instances": [self._public(i) for i in self.instances.values()],
                "global_quotas": self.global_quotas, "faults": {z: [f.__dict__ for f in fs] for z, fs in self.faults.items()},
                "requests": len(self.requests)}


if __name__ == "__main__":  # python -m tests.fake_compute: the standalone server
    from tests.fake_compute_cli import main

    raise SystemExit(main())
