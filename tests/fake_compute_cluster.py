"""The fake Compute server's cluster side: firewall rules, resource (placement) policies,
region and global operations, and bulkInsert's ``count`` / ``minCount`` semantics.

What the real API does, as the fake plays it (sources in docs/facts/gcp-cluster.md):

* ``instances.bulkInsert``: at most ``count`` VMs; when fewer than ``minCount`` (default:
  ``count``) can be made, none are, and the operation (HTTP status 503) names no stockout,
  only ``VM_MIN_COUNT_NOT_REACHED``: "Requested minimum count of 4 VMs could not be created."
  (the error SkyPilot's GCP provisioner quotes; google-cloud-go#5168 shows it alone, with 503;
  docs/facts/gcp-cluster.md);
* a VM naming a placement policy needs the policy in its region, and a machine series that
  takes none (N1) is refused: "Placement policy is not applicable to machine type"
  (dstack#2591);
* a policy still named by a VM cannot be deleted (``resourceInUseByAnotherResource``);
* firewall rules are global; resource policies regional; both answer with an operation
  (global / region) that is waited for like a zone's.

Zone faults for clusters (see :class:`tests.fake_compute_faults.Fault`): ``capacity``
(``vms``: the zone can make that many more VMs now) and ``partial`` (``vms`` VMs are made,
then the operation fails: a rollback that did not happen, which gpuwizard must clean up).
"""

from __future__ import annotations

import re
from typing import Any

from tests.fake_compute_shapes import BASE, region_of
from tests.fake_compute_shapes import http_error as _http_error

NO_PLACEMENT = ("n1",)   # machine series Compute Engine refuses a compact placement policy for


def name_filter(flt: str) -> re.Pattern[str] | None:
    """``name eq "RE2"`` (the list filter gpuwizard uses): the regex must match the whole name."""
    m = re.search(r'name\s+eq\s+"?([^"\s)]+)"?', flt or "")
    return re.compile(m.group(1)) if m else None


class ClusterSide:
    """Mixed into :class:`tests.fake_compute.FakeCompute` (its lock guards all of this)."""

    project: str
    instances: dict[tuple[str, str], dict[str, Any]]
    faults: dict[str, list[Any]]

    def _cluster_init(self) -> None:
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}   # (region, name) -> policy
        self.bulk_bodies: list[dict[str, Any]] = []                  # each bulkInsert request body
        self.images: dict[tuple[str, str], dict[str, Any]] = {}     # (project, name) -> image

    def add_image(self, project: str, name: str, family: str | None = None, features: tuple[str, ...] = ()) -> None:
        """An image in any project (``images.get`` / ``getFromFamily`` answer it), with its guestOsFeatures."""
        self.images[(project, name)] = {
            "kind": "compute#image", "name": name, "status": "READY", "id": str(abs(hash((project, name))) % 10**12),
            "selfLink": f"{BASE}/projects/{project}/global/images/{name}",
            **({"family": family} if family else {}), "guestOsFeatures": [{"type": f} for f in features]}

    def image(self, project: str, name: str, family: bool) -> tuple[int, dict[str, Any]]:
        for (proj, n), img in sorted(self.images.items()):
            if proj == project and (img.get("family") == name if family else n == name):
                return 200, img
        what = f"projects/{project}/global/images/{'family/' if family else ''}{name}"
        return 404, _http_error(404, f"The resource '{what}' was not found", "notFound")

    def _nf(self, what: str) -> tuple[int, dict[str, Any]]:
        return 404, _http_error(404, f"The resource 'projects/{self.project}/{what}' was not found", "notFound")

    # ---- firewalls (global) ----

    def fw_insert(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body["name"]
        if name in self.firewalls:
            return 409, _http_error(409, f"The resource 'projects/{self.project}/global/firewalls/{name}' already "
                                         f"exists", "alreadyExists")
        link = f"{BASE}/projects/{self.project}/global/firewalls/{name}"

        def effect() -> None:
            self.firewalls[name] = {**body, "kind": "compute#firewall", "id": str(abs(hash(name)) % 10**12),
                                    "selfLink": link, "network": f"{BASE}/projects/{self.project}/{body['network']}"
                                    if not str(body.get("network", "")).startswith("http") else body["network"]}

        return 200, self._op_json(self._new_op("global", "insert", link, effect=effect))

    def fw_get(self, name: str) -> tuple[int, dict[str, Any]]:
        fw = self.firewalls.get(name)
        return (200, fw) if fw else self._nf(f"global/firewalls/{name}")

    def fw_delete(self, name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.firewalls:
            return self._nf(f"global/firewalls/{name}")
        return 200, self._op_json(self._new_op("global", "delete", self.firewalls[name]["selfLink"],
                                               effect=lambda: self.firewalls.pop(name, None)))

    def fw_list(self, flt: str) -> tuple[int, dict[str, Any]]:
        rx = name_filter(flt)
        return 200, {"kind": "compute#firewallList", "items": [f for n, f in sorted(self.firewalls.items())
                                                                 if rx is None or rx.fullmatch(n)]}

    # ---- resource policies (regional) ----

    def rp_insert(self, region: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body["name"]
        link = f"{BASE}/projects/{self.project}/regions/{region}/resourcePolicies/{name}"
        if (region, name) in self.policies:
            return 409, _http_error(409, f"The resource '{link}' already exists", "alreadyExists")

        def effect() -> None:
            self.policies[(region, name)] = {**body, "kind": "compute#resourcePolicy", "status": "READY",
                                             "id": str(abs(hash(link)) % 10**12), "selfLink": link,
                                             "region": f"{BASE}/projects/{self.project}/regions/{region}"}

        return 200, self._op_json(self._new_op(f"regions/{region}", "insert", link, effect=effect))

    def rp_get(self, region: str, name: str) -> tuple[int, dict[str, Any]]:
        pol = self.policies.get((region, name))
        return (200, pol) if pol else self._nf(f"regions/{region}/resourcePolicies/{name}")

    def rp_delete(self, region: str, name: str) -> tuple[int, dict[str, Any]]:
        pol = self.policies.get((region, name))
        if pol is None:
            return self._nf(f"regions/{region}/resourcePolicies/{name}")
        users = [n for (_, n), i in self.instances.items() if pol["selfLink"] in (i.get("resourcePolicies") or [])]
        if users:
            return 400, _http_error(400, f"The resource_policy resource '{pol['selfLink']}' is already being used by "
                                         f"'{users[0]}'", "resourceInUseByAnotherResource")
        return 200, self._op_json(self._new_op(f"regions/{region}", "delete", pol["selfLink"],
                                               effect=lambda: self.policies.pop((region, name), None)))

    def rp_list(self, region: str | None, flt: str) -> list[dict[str, Any]]:
        rx = name_filter(flt)
        return [p for (r, n), p in sorted(self.policies.items())
                if (region is None or r == region) and (rx is None or rx.fullmatch(n))]

    # ---- what an instance insert must satisfy ----

    def room(self, zone: str) -> int | None:
        """How many more VMs ``zone`` can make now (a ``capacity`` fault), None: no limit."""
        for f in self.faults.get(zone, []):
            if f.kind == "capacity" and f.take():
                return int(f.vms)
        return None

    def partial(self, zone: str) -> int | None:
        """How many VMs an insert makes before failing (a ``partial`` fault), None: no such fault."""
        for f in self.faults.get(zone, []):
            if f.kind == "partial" and f.take():
                return int(f.vms)
        return None

    def placement_errors(self, zone: str, bodies: list[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
        """The synchronous refusal of VMs naming a missing policy, or one their machine cannot take."""
        region = region_of(zone)
        for b in bodies:
            for ref in b.get("resourcePolicies") or []:
                name = str(ref).rsplit("/", 1)[-1]
                if (region, name) not in self.policies:
                    return self._nf(f"regions/{region}/resourcePolicies/{name}")
                mt = str(b.get("machineType", "")).rsplit("/", 1)[-1]
                if mt.split("-", 1)[0] in NO_PLACEMENT:
                    return 400, _http_error(400, f"Placement policy {name} is not applicable to machine type {mt}.",
                                            "invalid")
        return None

    def policy_links(self, zone: str, body: dict[str, Any]) -> None:
        """bulkInsert's instanceProperties name policies; the instance shows their URLs."""
        refs = body.get("resourcePolicies")
        if refs:
            body["resourcePolicies"] = [r if r.startswith("http") else
                                        f"{BASE}/projects/{self.project}/regions/{region_of(zone)}/resourcePolicies/"
                                        f"{r.rsplit('/', 1)[-1]}" for r in refs]
