"""The state of one provisioning run, shared by failover, resume and host-key pinning.

Kept apart from the steps that use it (:mod:`.failover`, :mod:`.resume`,
:mod:`.hostkeys`) so each of those is a short module of functions over one
:class:`Provisioner`, and none imports another.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from gpuwizard import catalog, locations
from gpuwizard.events import Event, Output
from gpuwizard.gcp import budgets
from gpuwizard.gcp.cluster_spec import ClusterSpec, spec as cluster_spec
from gpuwizard.gcp.body import DEFAULT_USER, instance_names, label_value, recipe_id
from gpuwizard.gcp.client import Compute
from gpuwizard.gcp.errors import GcpError, region_quota_message
from gpuwizard.gcp.quota import QuotaReport
from gpuwizard.privatefile import write_atomic

if TYPE_CHECKING:
    from gpuwizard.recipe import Recipe

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
    price_hour: float | None = None  # what it costs while it runs (catalog), None when unknown
    refused_hint: str = ""           # what a refusal of our SSH key most likely means (gcp/oslogin.py)

    @property
    def spec(self) -> str:
        """``user@address:port``, the executor's host string."""
        return f"{self.user}@{self.address}:{self.port}"


@dataclass
class Report:
    """Why each zone was not used, for the final message."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Zones the GPU-family quota gate dropped before any pass; every pass starts its
    #: ``skipped`` from these, so the final message still names them.
    gated: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ClusterMade:
    """A cluster's firewall rule and placement policies as this call found or made them
    (gcp/cluster_net.py): what exists, and what this call created (and so removes again
    when no zone takes the nodes)."""

    firewall: bool = False                      # exists (found or made)
    firewall_made: bool = False                 # made by this call
    policies: dict[str, bool] = field(default_factory=dict)   # region -> made by this call


class Provisioner:
    """One provisioning run: the recipe's wishes, what the project allows, and the VMs."""

    def __init__(self, recipe: Recipe, run_id: str, sink: Sink | None, accept_new_host_key: bool,
                 known_hosts_path: str | None, host_key_timeout: float | None = None,
                 recipe_path: str | None = None, previous_hosts: Iterable[str] = ()) -> None:
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
            locations.ssh_dir() / "known_hosts.d" / f"{label_value(recipe.name)}-{label_value(run_id)}")
        self._host_key_timeout = host_key_timeout
        self.user = recipe.ssh.user or DEFAULT_USER
        self.port = int(recipe.ssh.port or 22)
        self.compute = Compute("")
        self.slots = instance_names(recipe, run_id)   # the run's VM names, one per VM (see resume.plan)
        self.names = list(self.slots)                  # the names to create now
        self.previous_hosts = set(previous_hosts or ())
        self.gpu = catalog.gpu(self.g.gpu.type) if self.g.gpu else None
        self.quota: QuotaReport | None = None
        self.os_login = False
        self.identity = ""
        self.report = Report()
        self.cluster: ClusterSpec | None = cluster_spec(recipe, run_id, self.recipe_id)
        self.cluster_made = ClusterMade()

    @property
    def project(self) -> str:
        return self.compute.project

    @property
    def host_key_timeout(self) -> float:
        return budgets.HOSTKEY_TIMEOUT if self._host_key_timeout is None else self._host_key_timeout

    @property
    def need(self) -> int:
        """GPUs the VMs to create need."""
        return (int(self.g.gpu.count) * len(self.names)) if self.g.gpu else 0

    @property
    def preemptible(self) -> bool:
        """Whether the VMs draw on preemptible GPU quota: Spot, and flex-start VMs too
        (docs/facts/gcp-flex-start-reservations.md)."""
        return bool(self.g.spot) or self.g.flex_start is not None

    def say(self, text: str) -> None:
        """A plain progress line for the run log / UI."""
        if self.sink:
            self.sink(Output(host="gcp", step="provision", stream="stdout", data=text.rstrip("\n") + "\n"))

    def metric(self) -> str | None:
        """The regional GPU quota metric the VMs draw on."""
        if self.gpu is None:
            return None
        return self.gpu.spot_quota_metric if self.preemptible else self.gpu.quota_metric

    def region_block(self, region: str) -> str | None:
        """Why ``region`` must not be tried (no free quota), or None."""
        if self.quota is None:
            return None
        free = self.quota.free_in(region)
        if free is None or free >= self.need:
            return None
        row = self.quota.regions().get(region)
        msg = region_quota_message(self.metric() or "", region, row.limit if row else None,
                                   row.usage if row else None, self.need, self.project)
        std = self.quota.fallback_row(region)
        if std is not None:  # spot: the standard quota it falls back to is exhausted too
            msg += (f"; the standard quota '{std.metric}' Spot VMs fall back to has {std.free:g} free: "
                    f"or request it at {std.link(self.project)}")
        return msg

    # -- the run's VM ledger: names (and zones) it has owned --------------------------------

    def ledger_path(self) -> str:
        return self.known_hosts + ".vms"

    def read_ledger(self) -> dict[str, Any]:
        """``{"names": [...], "zones": {name: zone}}``: the VMs this run has owned (Compute
        forgets deleted ones; an insert that succeeded is recorded before anything else)."""
        try:
            with open(self.ledger_path(), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {"names": [], "zones": {}}
        if not isinstance(data, dict):
            return {"names": [], "zones": {}}
        return {"names": [str(n) for n in data.get("names") or []],
                "zones": {str(k): str(v) for k, v in dict(data.get("zones") or {}).items()}}

    def write_ledger(self, names: list[str], zone: str | None = None) -> None:
        path = self.ledger_path()
        old = self.read_ledger()
        zones = dict(old["zones"])
        if zone:
            zones.update({n: zone for n in names})
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_atomic(path, json.dumps({"run": self.run_id, "names": sorted(set(old["names"]) | set(names)),
                                       "zones": zones}))
