"""Injected misbehaviour of the fake Compute server's zones: what a fault is, and how an
insert or start meets it (see :class:`Fault`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fake_compute_shapes import http_error as _http_error
from tests.fake_compute_shapes import region_of as _region

if TYPE_CHECKING:
    from tests.fake_compute import FakeCompute


@dataclass
class Fault:
    """One injected misbehaviour for a zone's inserts.

    Faults apply to ``instances.start`` in the zone too (a stockout stops a preempted spot
    VM from starting again, as it does on GCE).

    kind: ``stockout`` | ``stockout_details`` | ``insufficient_capacity`` |
    ``resource_not_found`` | ``quota_region`` | ``quota_global`` | ``permission`` |
    ``unavailable`` (HTTP 503) | ``rate_limit`` (HTTP 429) | ``slow`` | ``quota_metric`` (the
    operation error of any quota ``metric``: ``CPUS_ALL_REGIONS``, ``SSD_TOTAL_GB`` in the
    region ...) | ``stockout_sync`` (a synchronous HTTP 503 whose ``error.details`` carry
    the ErrorInfo with ``zonesAvailable``).
    ``times``: how many inserts it affects (None: all). ``zones_available`` for
    ``stockout_details`` / ``stockout_sync``; ``seconds`` for ``slow``; ``metric`` (and
    ``limit``) for ``quota_metric``. Cluster kinds (tests/fake_compute_cluster.py): ``capacity``
    (room for ``vms`` more VMs) and ``partial`` (``vms`` VMs made, then the operation fails).
    """

    kind: str
    times: int | None = None
    zones_available: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metric: str = ""
    limit: float = 0.0
    vms: int = 0

    def take(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


def zone_faults(self: "FakeCompute", zone: str, first: dict[str, Any], op_type: str,
            target: str) -> tuple[float | None, tuple[int, dict[str, Any]] | None]:
    """The zone's injected faults for one insert or start: (operation duration, the early
    answer when a fault decides it, else None). Caller holds the lock."""
    region = _region(zone)
    duration = None
    for f in self.faults.get(zone, []):
        if f.kind == "slow" and f.take():
            duration = f.seconds
    for f in self.faults.get(zone, []):
        if f.kind in ("slow", "capacity", "partial") or not f.take():
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
        elif f.kind == "quota_metric":
            err = self._quota_error(f.metric, f.limit, None if f.metric.endswith("_ALL_REGIONS") else region)
        elif f.kind == "stockout_sync":
            return duration, (503, self._stockout_sync(zone, first, f.zones_available))
        elif f.kind == "quota_global":
            err = self._quota_error("GPUS_ALL_REGIONS", self.global_quotas["GPUS_ALL_REGIONS"]["limit"], None)
        else:
            raise ValueError(f"unknown fault kind {f.kind!r}")
        op = self._new_op(zone, op_type, target, errors=[err], duration=duration,
                          http_status=503 if "EXHAUSTED" in err["code"] else 403)
        return duration, (200, self._op_json(op))
    return duration, None
