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
* faults per zone: stockout (``ZONE_RESOURCE_POOL_EXHAUSTED`` or the ``_WITH_DETAILS``
  form, optionally naming ``zonesAvailable``), regional or ``GPUS_ALL_REGIONS`` quota,
  permission denied, HTTP 503, slow operations; plus a per-request latency.

Every request is recorded in :attr:`FakeCompute.requests` so tests can assert what was
(not) sent. Standalone: ``python -m tests.fake_compute --port 8089 --scenario failover``.
A tiny control API (``GET /_fake/state``, ``POST /_fake/fault``, ``POST /_fake/reset``,
``POST /_fake/preempt`` ``{"zone", "name"}`` or ``{"run"}`` [``"action"``], ``POST
/_fake/metadata`` ``{"key", "value"}``) lets a demo change things while it runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.discovery_contract import compute as compute_contract

BASE = "https://www.googleapis.com/compute/v1"
DEFAULT_PROJECT = "test-project"

# Fake but well-formed host keys (base64 of the OpenSSH wire format), one per type.
FAKE_HOST_KEYS = {
    "ssh-ed25519": "AAAAC3NzaC1lZDI1NTE5AAAAIPOyBbj9pEx7w3tMUzhQ5GEUHJZJ3uO4c3X1xEwZmZ9t",
    "ecdsa-sha2-nistp256": ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPq0D/X1yA5p7iY0m0G7zR1b2xGJ0"
                            "cQeN1oRk0yU2c3B6Pq3mQpC6Xb6oZL8o9z0b8hVt4k5N9d8qZs8o7WjY2Y="),
}


@dataclass
class Fault:
    """One injected misbehaviour for a zone's inserts.

    Faults apply to ``instances.start`` in the zone too (a stockout stops a preempted spot
    VM from starting again, as it does on GCE).

    kind: ``stockout`` | ``stockout_details`` | ``insufficient_capacity`` |
    ``resource_not_found`` | ``quota_region`` | ``quota_global`` | ``permission`` |
    ``unavailable`` (HTTP 503) | ``rate_limit`` (HTTP 429) | ``slow``.
    ``times``: how many inserts it affects (None: all). ``zones_available`` for
    ``stockout_details``; ``seconds`` for ``slow``.
    """

    kind: str
    times: int | None = None
    zones_available: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def take(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


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
    http_status: int = 200

    def status(self, now: float) -> str:
        t = now - self.created
        if t >= self.duration:
            return "DONE"
        return "PENDING" if t < self.duration * 0.3 else "RUNNING"


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


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


class FakeCompute:
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
        #: Requests (and answers) Google's discovery document says the real API would not
        #: take (or give): see tests/discovery_contract.py. The fixture fails a test on any.
        self.violations: list[str] = []
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
        self._ids = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
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

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0, host: str = "127.0.0.1") -> "FakeCompute":
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-compute", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

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
                if not op.errors and op.effect:
                    op.effect()

    def _op_json(self, op: Op) -> dict[str, Any]:
        status = op.status(time.monotonic())
        d: dict[str, Any] = {
            "kind": "compute#operation", "id": str(abs(hash(op.name)) % 10**12), "name": op.name,
            "zone": f"{BASE}/projects/{self.project}/zones/{op.zone}", "operationType": op.op_type,
            "targetLink": op.target, "status": status, "progress": 100 if status == "DONE" else 0,
            "selfLink": f"{BASE}/projects/{self.project}/zones/{op.zone}/operations/{op.name}",
        }
        if status == "DONE" and op.errors:
            d["error"] = {"errors": op.errors}
            d["httpErrorStatusCode"] = op.http_status
        return d

    def _new_op(self, zone: str, op_type: str, target: str, *, errors: list[dict[str, Any]] | None = None,
                effect: Any = None, duration: float | None = None, http_status: int = 200) -> Op:
        op = Op(name=f"operation-{next(self._ids)}-{op_type}", zone=zone, op_type=op_type, target=target,
                created=time.monotonic(), duration=self.op_seconds if duration is None else duration,
                errors=errors or [], effect=effect, http_status=http_status)
        self.ops[op.name] = op
        return op

    def _make_instance(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        name = body["name"]
        nat = self.nat_ip or f"203.0.113.{n % 250 + 1}"
        inst = dict(body)
        inst.update({
            "kind": "compute#instance", "id": str(n), "status": "RUNNING",
            "zone": f"{BASE}/projects/{self.project}/zones/{zone}",
            "selfLink": f"{BASE}/projects/{self.project}/zones/{zone}/instances/{name}",
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()),
            "networkInterfaces": [{"name": "nic0", "networkIP": f"10.128.0.{n % 250 + 1}",
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
            q = self.region_quotas.get(_region(zone), {}).get(self._metric(acc, self._spot(inst)))
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
                m = self._metric(acc, self._spot(b))
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

    # Errors in the shapes Compute uses ------------------------------------------------

    def _stockout(self, zone: str, body: dict[str, Any], details: bool, zones_available: list[str]) -> dict[str, Any]:
        code = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" if details else "ZONE_RESOURCE_POOL_EXHAUSTED"
        msg = (f"The zone 'projects/{self.project}/zones/{zone}' does not have enough resources available "
               f"to fulfill the request.  '(resource type:compute)'.")
        err: dict[str, Any] = {"code": code, "message": msg}
        if details:
            acc, n = self._gpus_of(body)
            meta = {"zone": zone, "vmType": str(body.get("machineType", "")).rsplit("/", 1)[-1],
                    "attachment": f"{acc}:{n}" if acc else ""}
            if zones_available:
                meta["zonesAvailable"] = ",".join(zones_available)
            err["errorDetails"] = [
                {"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com",
                               "metadatas": meta}},
                {"help": {"links": [{"description": "Troubleshooting documentation",
                                     "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
            ]
        return err

    def _quota_error(self, metric: str, limit: float, region: str | None) -> dict[str, Any]:
        where = f"in region {region}" if region else "globally"
        dims = {"region": region} if region else {"global": "global"}
        return {"code": "QUOTA_EXCEEDED",
                "message": f"Quota '{metric}' exceeded.  Limit: {limit:.1f} {where}.",
                "errorDetails": [{"quotaInfo": {"metricName": f"compute.googleapis.com/{metric.lower()}",
                                                "limitName": f"{metric}-per-project" + ("-region" if region else ""),
                                                "dimensions": dims, "limit": limit}}]}

    # ------------------------------------------------------------------ handlers

    def insert(self, zone: str, bodies: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """Insert one or more instances in ``zone`` (insert and bulkInsert share this)."""
        if zone not in self.world:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}' was not found", "notFound")
        first = bodies[0]
        target = f"{BASE}/projects/{self.project}/zones/{zone}/instances/{first['name']}"
        duration, early = self._faults(zone, first, "insert", target)
        if early is not None:
            return early
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
            for b in bodies:
                self.instances[(zone, b["name"])] = self._make_instance(zone, b)
            self._take_quota(zone, need)

        return 200, self._op_json(self._new_op(zone, "insert", target, effect=effect, duration=duration))

    def _faults(self, zone: str, first: dict[str, Any], op_type: str,
                target: str) -> tuple[float | None, tuple[int, dict[str, Any]] | None]:
        """The zone's injected faults for one insert or start: (operation duration, the early
        answer when a fault decides it, else None). Caller holds the lock."""
        region = _region(zone)
        duration = None
        for f in self.faults.get(zone, []):
            if f.kind == "slow" and f.take():
                duration = f.seconds
        for f in self.faults.get(zone, []):
            if f.kind == "slow" or not f.take():
                continue
            if f.kind == "permission":
                perm = "create" if op_type == "insert" else op_type
                return duration, (403, _http_error(
                    403, f"Required 'compute.instances.{perm}' permission for "
                         f"'projects/{self.project}/zones/{zone}/instances/{first['name']}'", "forbidden"))
            if f.kind == "unavailable":
                return duration, (503, _http_error(503, "Backend Error", "backendError"))
            if f.kind == "rate_limit":
                return duration, (429, _http_error(429, "Rate Limit Exceeded", "rateLimitExceeded"))
            if f.kind in ("stockout", "stockout_details"):
                err = self._stockout(zone, first, f.kind == "stockout_details", f.zones_available)
            elif f.kind == "insufficient_capacity":
                err = {"code": "insufficientCapacity", "message": "Insufficient capacity."}
            elif f.kind == "resource_not_found":
                err = {"code": "RESOURCE_NOT_FOUND", "message": "The resource was not found."}
            elif f.kind == "quota_region":
                acc, _ = self._gpus_of(first)
                metric = self._metric(acc or "nvidia-tesla-t4", self._spot(first))
                err = self._quota_error(metric, self.region_quotas.get(region, {}).get(metric, {}).get("limit", 0), region)
            elif f.kind == "quota_global":
                err = self._quota_error("GPUS_ALL_REGIONS", self.global_quotas["GPUS_ALL_REGIONS"]["limit"], None)
            else:
                raise ValueError(f"unknown fault kind {f.kind!r}")
            op = self._new_op(zone, op_type, target, errors=[err], duration=duration,
                              http_status=503 if "EXHAUSTED" in err["code"] else 403)
            return duration, (200, self._op_json(op))
        return duration, None

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

    def guest_attributes(self, zone: str, name: str, query_path: str) -> tuple[int, dict[str, Any]]:
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        ready = inst["status"] == "RUNNING" and time.monotonic() - inst["_running_since"] >= self.hostkey_delay
        if not ready or not self.host_keys or query_path.strip("/") != "hostkeys":
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}/"
                                         f"guestAttributes/{query_path}' was not found", "notFound")
        items = [{"namespace": "hostkeys", "key": k, "value": v} for k, v in self.host_keys.items()]
        return 200, {"kind": "compute#guestAttributes", "queryPath": query_path,
                     "selfLink": inst["selfLink"] + "/guestAttributes/" + query_path,
                     "queryValue": {"items": items}}

    def accelerator_types(self, flt: str) -> dict[str, Any]:
        want = _filter_value(flt, "name")
        items: dict[str, Any] = {}
        for zone, accs in sorted(self.world.items()):
            lst = [{"kind": "compute#acceleratorType", "name": a, "description": a,
                    "zone": f"{BASE}/projects/{self.project}/zones/{zone}", "maximumCardsPerInstance": n,
                    "selfLink": f"{BASE}/projects/{self.project}/zones/{zone}/acceleratorTypes/{a}"}
                   for a, n in sorted(accs.items()) if want is None or a == want]
            items[f"zones/{zone}"] = {"acceleratorTypes": lst} if lst else {
                "warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope"}}
        return {"kind": "compute#acceleratorTypeAggregatedList", "items": items}

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
        """``regions.list``: only the quota metrics the real API reports (its ``Quota.metric``
        enum in the discovery document). H100/H200/B200 on-demand quotas are not among them:
        Compute Engine keeps those in Cloud Quotas (``GPUS_PER_GPU_FAMILY``), and the fake still
        enforces them on insert as the real API does."""
        known = set(compute_contract().doc["schemas"]["Quota"]["properties"]["metric"]["enum"])
        return [{"kind": "compute#region", "name": r, "status": "UP",
                 "selfLink": f"{BASE}/projects/{self.project}/regions/{r}",
                 "zones": [f"{BASE}/projects/{self.project}/zones/{z}" for z in sorted(self.world) if _region(z) == r],
                 "quotas": [{"metric": m, "limit": q["limit"], "usage": q["usage"]}
                            for m, q in sorted(qs.items()) if m in known]}
                for r, qs in sorted(self.region_quotas.items())]

    def state(self) -> dict[str, Any]:
        return {"instances": [self._public(i) for i in self.instances.values()],
                "global_quotas": self.global_quotas, "faults": {z: [f.__dict__ for f in fs] for z, fs in self.faults.items()},
                "requests": len(self.requests)}


def _http_error(code: int, message: str, reason: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


def _filter_value(flt: str, key: str) -> str | None:
    m = re.search(rf"{re.escape(key)}\s*(?:=|eq)\s*\"?([^\"\s)]+)\"?", flt or "")
    return m.group(1) if m else None


def _matches(inst: dict[str, Any], flt: str) -> bool:
    """The subset of the Compute filter language gpuwizard uses: ``labels.K = "V"`` terms (ANDed)."""
    for key, val in re.findall(r"labels\.([A-Za-z0-9_-]+)\s*(?:=|eq)\s*\"?([^\"\s)]+)\"?", flt or ""):
        if (inst.get("labels") or {}).get(key) != val:
            return False
    return True


_P = r"/compute/v1/projects/(?P<project>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_P + r"$"), "project"),
    ("GET", re.compile(_P + r"/regions$"), "regions"),
    ("GET", re.compile(_P + r"/regions/(?P<region>[^/]+)$"), "region"),
    ("GET", re.compile(_P + r"/zones$"), "zones"),
    ("GET", re.compile(_P + r"/aggregated/acceleratorTypes$"), "acc_agg"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/acceleratorTypes$"), "acc_zone"),
    ("GET", re.compile(_P + r"/aggregated/instances$"), "inst_agg"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances$"), "inst_list"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances$"), "inst_insert"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/bulkInsert$"), "inst_bulk"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$"), "inst_get"),
    ("DELETE", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$"), "inst_delete"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/start$"), "inst_start"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/stop$"), "inst_stop"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/getGuestAttributes$"), "guest"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)$"), "op_get"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)/wait$"), "op_wait"),
]


class _Handler(BaseHTTPRequestHandler):
    state: FakeCompute
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        route = getattr(self, "_route", None)
        if route is not None:
            problems = compute_contract().check_response(route[0], route[1], code, body)
            if problems:
                with self.state.lock:
                    self.state.violations += problems
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        st = self.state
        self._route: tuple[str, str] | None = None
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        body = self._body() if method == "POST" else {}
        if url.path.startswith("/_fake/"):
            return self._control(method, url.path, body)
        problems = compute_contract().check_request(method, url.path, urllib.parse.parse_qs(url.query),
                                                     body if method == "POST" else None)
        self._route = (method, url.path)
        with st.lock:
            st.requests.append((time.monotonic(), method, url.path))
            st.authorizations.append(self.headers.get("Authorization"))
            st.violations += problems
        if st.latency:
            time.sleep(st.latency)
        for m, rx, name in ROUTES:
            match = rx.match(url.path) if m == method else None
            if match:
                args = match.groupdict()
                if args.get("project") != st.project:
                    return self._send(404, _http_error(404, f"The resource 'projects/{args.get('project')}' "
                                                            f"was not found", "notFound"))
                if name == "op_wait":
                    return self._wait(args["op"])
                with st.lock:
                    st._tick()
                    code, out = getattr(self, "_" + name)(args, query, body)
                    st.lock.notify_all()
                return self._send(code, out)
        self._send(404, _http_error(404, f"fake Compute has no route for {method} {url.path}", "notFound"))

    def _wait(self, op_name: str) -> None:
        st = self.state
        deadline = time.monotonic() + st.wait_cap
        with st.lock:
            op = st.ops.get(op_name)
            if op is None:
                return self._send(404, _http_error(404, f"operation {op_name} not found", "notFound"))
            while op.status(time.monotonic()) != "DONE" and time.monotonic() < deadline:
                remaining = min(deadline, op.created + op.duration) - time.monotonic()
                st.lock.wait(timeout=max(0.001, remaining))
            st._tick()
            out = st._op_json(op)
        self._send(200, out)

    def _control(self, method: str, path: str, body: dict[str, Any]) -> None:
        st = self.state
        with st.lock:
            if path == "/_fake/state":
                return self._send(200, st.state())
            if path == "/_fake/fault" and method == "POST":
                zone = body.pop("zone")
                st.faults.setdefault(zone, []).append(Fault(**body))
                return self._send(200, {"ok": True})
            if path == "/_fake/preempt" and method == "POST":
                return self._send(200, {"preempted": st.preempt(body.get("zone"), body.get("name"),
                                                                run=body.get("run"), action=body.get("action"))})
            if path == "/_fake/metadata" and method == "POST":
                st.set_project_metadata(body["key"], body.get("value"))
                return self._send(200, {"ok": True})
            if path == "/_fake/reset" and method == "POST":
                st.faults.clear()
                return self._send(200, {"ok": True})
        self._send(404, {"error": {"code": 404, "message": "no such control path"}})

    # ---- route handlers (called with the state lock held) ----

    def _project(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        return 200, {"kind": "compute#project", "name": st.project, "id": "1234567890",
                     "quotas": [{"metric": m, "limit": v["limit"], "usage": v["usage"]}
                                for m, v in sorted(st.global_quotas.items())],
                     "commonInstanceMetadata": {
                         "kind": "compute#metadata",
                         "fingerprint": f"fp{abs(hash(tuple(sorted(st.project_metadata.items())))) % 10**8:08d}",
                         "items": [{"key": k, "value": v} for k, v in sorted(st.project_metadata.items())]}}

    def _regions(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"kind": "compute#regionList", "items": self.state.regions_json()}

    def _region(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for r in self.state.regions_json():
            if r["name"] == a["region"]:
                return 200, r
        return 404, _http_error(404, f"region {a['region']} not found", "notFound")

    def _zones(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        return 200, {"kind": "compute#zoneList", "items": [
            {"name": z, "status": "UP", "region": f"{BASE}/projects/{st.project}/regions/{_region(z)}"}
            for z in sorted(st.world)]}

    def _acc_agg(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, self.state.accelerator_types(q.get("filter", ""))

    def _acc_zone(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        agg = self.state.accelerator_types(q.get("filter", ""))
        return 200, {"items": agg["items"].get(f"zones/{a['zone']}", {}).get("acceleratorTypes", [])}

    def _inst_agg(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        items: dict[str, Any] = {}
        for inst in st.list_instances(None, q.get("filter", "")):
            z = inst["zone"].rsplit("/", 1)[-1]
            items.setdefault(f"zones/{z}", {"instances": []})["instances"].append(inst)
        return 200, {"kind": "compute#instanceAggregatedList", "items": items}

    def _inst_list(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"kind": "compute#instanceList", "items": self.state.list_instances(a["zone"], q.get("filter", ""))}

    def _inst_insert(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.insert(a["zone"], [b])

    def _inst_bulk(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        props = dict(b.get("instanceProperties") or {})
        names = list((b.get("perInstanceProperties") or {}).keys())
        if not names:
            pattern = b.get("namePattern") or "instance-####"
            width = pattern.count("#")
            names = [pattern.replace("#" * width, str(i + 1).zfill(width)) for i in range(int(b.get("count") or 1))]
        zone = a["zone"]
        bodies = []
        for n in names:
            body = dict(props, name=n)
            mt = str(body.get("machineType", ""))
            if mt and "/" not in mt:
                body["machineType"] = f"zones/{zone}/machineTypes/{mt}"
            bodies.append(body)
        return self.state.insert(zone, bodies)

    def _inst_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inst = self.state.instances.get((a["zone"], a["name"]))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{a['project']}/zones/{a['zone']}/instances/"
                                         f"{a['name']}' was not found", "notFound")
        return 200, self.state._public(inst)

    def _inst_delete(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.delete(a["zone"], a["name"])

    def _inst_start(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.start_instance(a["zone"], a["name"])

    def _inst_stop(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.stop_instance(a["zone"], a["name"])

    def _guest(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.guest_attributes(a["zone"], a["name"], q.get("queryPath", ""))

    def _op_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        op = self.state.ops.get(a["op"])
        if op is None:
            return 404, _http_error(404, f"operation {a['op']} not found", "notFound")
        return 200, self.state._op_json(op)


# ---------------------------------------------------------------------- scenarios

SCENARIOS = {
    "default": "every zone has capacity; 8 GPUs of quota per region, 16 globally",
    "failover": "us-central1-a stocked out, us-central1-b (WITH_DETAILS, hints us-west1-b), us-east1 quota exceeded",
    "no-global-quota": "GPUS_ALL_REGIONS = 0 (a new project)",
    "stockout": "every zone stocked out",
    "slow": "operations take 3 s; 100 ms per request",
}


def apply_scenario(fake: FakeCompute, name: str) -> None:
    """Configure a named scenario (for the standalone server and demos)."""
    if name == "default":
        return
    if name == "failover":
        fake.add_fault("us-central1-a", "stockout")
        fake.add_fault("us-central1-b", "stockout_details", zones_available=["us-west1-b"])
        fake.add_fault("us-east1-c", "quota_region")
        fake.add_fault("us-east1-d", "quota_region")
    elif name == "no-global-quota":
        fake.set_global_quota("GPUS_ALL_REGIONS", 0)
    elif name == "stockout":
        for z in fake.world:
            fake.add_fault(z, "stockout")
    elif name == "slow":
        fake.op_seconds = 3.0
        fake.latency = 0.1
    else:
        raise SystemExit(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_compute", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--project", default=DEFAULT_PROJECT)
    ap.add_argument("--scenario", default="default", help="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    ap.add_argument("--op-seconds", type=float, default=0.5, help="how long operations take")
    ap.add_argument("--nat-ip", help="external IP every VM gets (e.g. 127.0.0.1 for a local sshd)")
    args = ap.parse_args(argv)
    fake = FakeCompute(args.project, latency=args.latency, op_seconds=args.op_seconds, nat_ip=args.nat_ip)
    apply_scenario(fake, args.scenario)
    fake.start(args.port, args.host)
    print(f"fake Compute on {fake.url} (project {args.project}, scenario {args.scenario})", flush=True)
    print(f"export GPUWIZARD_COMPUTE_ENDPOINT={fake.url} GOOGLE_CLOUD_PROJECT={args.project}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
