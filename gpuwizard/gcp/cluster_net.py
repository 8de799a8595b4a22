"""A GCP cluster's own resources: its firewall rule and compact placement policy, made before
the nodes and removed with them; and the all-or-none check after a bulk create.

What each is and why: :mod:`.cluster_spec` (pure) and docs/facts/gcp-cluster.md.

* :func:`prepare` (before each zone's insert): the firewall rule (global, once per run) and
  the placement policy in the zone's region (regional, as the policy must be), each looked up
  first so a resumed run reuses them;
* :func:`all_or_none` (after the insert): every node exists, or none does. ``minCount`` = N
  already asks Compute Engine to roll back a partial create, but the run does not rely on the
  rollback having finished: each VM of the run found in the zone is recorded in the ledger,
  then deleted, and the zone counts as out of capacity (the next one is tried);
* :func:`settle` / :func:`abandon`: placement policies made in regions that did not take the
  nodes are deleted; when no zone took them, so is everything this call made;
* :func:`list_resources` / :func:`delete_resources`: ``status`` and ``down``, by name prefix
  (firewall rules and resource policies carry no labels); :func:`delete_run_resources`: one
  run's, for ``--delete-on-failure``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gpuwizard import catalog
from gpuwizard.events import Output
from gpuwizard.gcp import budgets
from gpuwizard.gcp.body import NodeNet, recipe_id
from gpuwizard.gcp.client import Compute, call, open_compute
from gpuwizard.gcp.cluster_spec import (GVNIC_REQUIRED, firewall_body, image_ref, key, nic_from_features,
                                        policy_body, resource_prefix, series)
from gpuwizard.gcp.cluster_spec import spec as cluster_spec
from gpuwizard.gcp.context import Provisioner, Sink
from gpuwizard.gcp.errors import EXISTS, STOCKOUT, UNFINISHED, ApiError, ErrorItem, GcpError, Verdict, api_error
from gpuwizard.gcp.inventory import delete, find
from gpuwizard.gcp.operations import retrying

Wait = Callable[[str, float], dict[str, Any]]


async def _operation(submit: Callable[[], dict[str, Any]], wait: Wait, what: str) -> Verdict | None:
    """Submit a region or global operation and wait for it; None on success, else the verdict.
    Transient failures are retried with back-off (as :func:`.operations.run_operation` does
    for zone operations)."""
    async def once() -> dict[str, Any]:
        op = await call(submit)
        deadline = time.monotonic() + budgets.OP_TIMEOUT
        while op.get("status") != "DONE":
            left = deadline - time.monotonic()
            if left <= 0:
                raise GcpError(f"{what} did not finish in {budgets.OP_TIMEOUT:.0f} s (operation "
                               f"{op.get('name')})", kind=UNFINISHED)
            op = await call(wait, str(op.get("name")), left)
        return op

    return await retrying(once, None)


async def _exists(read: Callable[[], dict[str, Any]], what: str) -> bool:
    """Whether ``read`` finds it (404: no); any other failure as one sentence naming ``what``."""
    try:
        await call(read)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise api_error(exc, f"looking up {what}") from None
    return True


def _failed(what: str, verdict: Verdict, project: str) -> GcpError:
    msg = verdict.items[0].message if verdict.items else verdict.reason
    return GcpError(f"{what} failed: {msg}. The cluster needs roles/compute.securityAdmin (firewall rules) and "
                    f"roles/compute.instanceAdmin.v1 (placement policies) on project {project}.", kind=verdict.kind)


async def ensure_firewall(p: Provisioner) -> None:
    """The cluster's firewall rule: found (a resumed run), else created and waited for."""
    s, made = p.cluster, p.cluster_made
    assert s is not None
    if made.firewall:
        return
    c = p.compute
    if not await _exists(lambda: c.get_firewall(s.name), f"firewall rule {s.name}"):
        verdict = await _operation(lambda: c.insert_firewall(firewall_body(s, p.recipe.name, p.run_id)),
                                   c.wait_global, f"creating firewall rule {s.name}")
        if verdict is not None and verdict.kind != EXISTS:
            raise _failed(f"Creating firewall rule {s.name}", verdict, p.project)
        made.firewall_made = verdict is None
        p.say(f"firewall rule {s.name}: TCP, UDP and ICMP allowed between VMs tagged {s.name} (the nodes only)")
    made.firewall = True


async def ensure_policy(p: Provisioner, region: str) -> None:
    """The compact placement policy in ``region``: found, else created and waited for."""
    s, made = p.cluster, p.cluster_made
    assert s is not None
    if region in made.policies:
        return
    c = p.compute
    created = False
    if not await _exists(lambda: c.get_policy(region, s.name), f"placement policy {s.name} in {region}"):
        verdict = await _operation(lambda: c.insert_policy(region, policy_body(s, p.recipe.name, p.run_id)),
                                   lambda op, t: c.wait_region(region, op, t),
                                   f"creating placement policy {s.name} in {region}")
        if verdict is not None and verdict.kind != EXISTS:
            raise _failed(f"Creating placement policy {s.name} in {region}", verdict, p.project)
        created = verdict is None
        p.say(f"{region}: compact placement policy {s.name} (COLLOCATED) for the {s.nodes} nodes")
    made.policies[region] = created


async def resolve_nic(p: Provisioner) -> None:
    """For an image given as a path, read its ``guestOsFeatures`` (``images.get`` /
    ``getFromFamily``): gVNIC when they list GVNIC, else VIRTIO_NET, and the note says which."""
    s, g = p.cluster, p.g
    if s is None or s.nic_type == "GVNIC" or series(g.machine_type) in GVNIC_REQUIRED:
        return   # a catalog image, a DLVM path, or a machine that takes nothing else
    ref = image_ref(g.image, p.project)
    if ref is None:
        return
    project, name, family = ref
    features: list[str] | None = None
    why = ""
    try:
        img = await call(p.compute.get_image, project, name, family)
        features = [str(f.get("type", "")) for f in img.get("guestOsFeatures") or []]
    except (ApiError, GcpError) as exc:
        why = str(getattr(exc, "message", exc))
    nic, note = nic_from_features(g.image, features, why)
    p.cluster = dataclasses.replace(s, nic_type=nic, nic_note=note)


async def prepare(p: Provisioner, zone: str) -> NodeNet:
    """Firewall rule and (where the machine takes one) placement policy, before inserting in ``zone``."""
    s = p.cluster
    assert s is not None
    await ensure_firewall(p)
    if s.placement:
        await ensure_policy(p, catalog.region_of(zone))
    return s.node_net()


async def all_or_none(p: Provisioner, zone: str, verdict: Verdict | None) -> Verdict | None:
    """After the nodes' insert in ``zone``: None when all of :attr:`Provisioner.names` exist;
    else every one that does is recorded in the ledger and deleted, and the verdict says why
    the zone did not take the cluster (its own, or a partial create as no capacity)."""
    if verdict is not None and verdict.kind == EXISTS:
        return verdict       # the names are taken: failover decides whose they are
    want = set(p.names)
    try:
        there = [v for v in await find(p.compute, p.recipe.name, p.run_id, p.recipe_path)
                 if v.zone == zone and v.name in want]
    except GcpError:
        if verdict is None:
            raise
        there = []
    if verdict is None and len(there) == len(want):
        return None
    if verdict is None:
        verdict = Verdict(kind=STOCKOUT, items=[ErrorItem(
            code="PARTIAL_CREATE", message=f"{zone} created {len(there)} of the {len(want)} nodes")])
    if there:
        names = sorted(v.name for v in there)
        await call(p.write_ledger, names, zone)
        p.say(f"{zone}: {len(there)} of {len(want)} nodes were created ({', '.join(names)}): a cluster is all "
              f"or none, so deleting them before the next zone")
        try:
            await delete(p.compute, there, lambda ev: p.say(getattr(ev, "data", "")))
        except GcpError as exc:
            raise GcpError(f"{exc.message.rstrip('.')}. They are in the run's ledger: `gpuwizard down RECIPE.yaml` "
                           f"(recipe {p.recipe.name}) deletes them.", kind=exc.kind, vm_exists=True) from None
    return verdict


async def _delete_policy(c: Compute, region: str, name: str) -> Verdict | None:
    return await _operation(lambda: c.delete_policy(region, name), lambda op, t: c.wait_region(region, op, t),
                            f"deleting placement policy {name} in {region}")


async def _remove(p: Provisioner, what: str, verdict_of: Any) -> bool:
    """Await a delete; a failure is said (``down`` will retry it), never raised over the run."""
    try:
        verdict = await verdict_of
    except (GcpError, ApiError) as exc:       # e.g. an operation that did not finish
        p.say(f"could not delete {what} ({getattr(exc, 'message', exc)}): `gpuwizard down RECIPE.yaml` will")
        return False
    if verdict is not None and not verdict.not_found:
        p.say(f"could not delete {what} ({verdict.reason}): `gpuwizard down RECIPE.yaml` will")
        return False
    return True


async def settle(p: Provisioner, zone: str) -> None:
    """The nodes are in ``zone``: delete the placement policies this call made elsewhere."""
    s = p.cluster
    if s is None:
        return
    keep = catalog.region_of(zone)
    for region, made in list(p.cluster_made.policies.items()):
        if region != keep and made:
            await _remove(p, f"placement policy {s.name} in {region}", _delete_policy(p.compute, region, s.name))
            del p.cluster_made.policies[region]


async def abandon(p: Provisioner) -> None:
    """No zone took the nodes: delete what this call made (best effort, said when it fails)."""
    s = p.cluster
    if s is None:
        return
    c, made = p.compute, p.cluster_made
    for region, mine in list(made.policies.items()):
        if mine:
            await _remove(p, f"placement policy {s.name} in {region}", _delete_policy(c, region, s.name))
    if made.firewall_made:
        await _remove(p, f"firewall rule {s.name}", _operation(lambda: c.delete_firewall(s.name), c.wait_global,
                                                                f"deleting firewall rule {s.name}"))
    made.policies.clear()
    made.firewall = made.firewall_made = False


# -- status and down --------------------------------------------------------------------------------------


@dataclass
class ClusterResources:
    """A recipe file's cluster resources: firewall rule names and (region, name) placement policies."""

    firewalls: list[str] = field(default_factory=list)
    policies: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.firewalls or self.policies)

    def lines(self) -> list[str]:
        return ([f"firewall rule {n} (TCP/UDP/ICMP between VMs tagged {n})" for n in self.firewalls]
                + [f"placement policy {n} in {r}" for r, n in self.policies])


async def list_resources(project: str | None, key_: str) -> ClusterResources:
    """The firewall rules and placement policies named for the recipe file with id ``key_``."""
    c = await open_compute(project)
    prefix = resource_prefix(key_)
    flt = f'name eq "{prefix}.*"'
    try:
        fws, pols = await asyncio.gather(call(c.list_firewalls, flt), call(c.list_policies, flt))
    except ApiError as exc:
        raise api_error(exc, "listing the cluster's firewall rules and placement policies") from None
    out = ClusterResources()
    out.firewalls = sorted(f["name"] for f in fws if str(f.get("name", "")).startswith(prefix))
    out.policies = sorted((str(r.get("region", "")).rsplit("/", 1)[-1], r["name"]) for r in pols
                          if str(r.get("name", "")).startswith(prefix))
    return out


async def delete_resources(project: str | None, res: ClusterResources, sink: Sink | None = None) -> list[str]:
    """Delete ``res`` (after the VMs that use them: a policy in use cannot be deleted);
    returns what was deleted; raises GcpError naming what was not."""
    c = await open_compute(project)

    def say(text: str) -> None:
        if sink:
            sink(Output(host="gcp", step="down", stream="stdout", data=text + "\n"))

    async def one(what: str, verdict_of: Any) -> str | None:
        verdict = await verdict_of
        if verdict is None:
            say(f"{what}: deleted")
            return what
        if verdict.not_found:
            say(f"{what}: already gone")
            return None
        raise GcpError(f"Deleting {what} failed: {verdict.items[0].message if verdict.items else verdict.reason}",
                       kind="delete")

    jobs = [one(f"placement policy {n} in {r}", _delete_policy(c, r, n)) for r, n in res.policies]
    jobs += [one(f"firewall rule {n}", _operation(lambda n=n: c.delete_firewall(n), c.wait_global,
                                                   f"deleting firewall rule {n}")) for n in res.firewalls]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    if errors:
        raise GcpError("; ".join(errors) + ". Run `gpuwizard down RECIPE.yaml` again.", kind="delete")
    return [r for r in results if isinstance(r, str)]


async def delete_run_resources(project: str | None, recipe: Any, run_id: str, recipe_path: str | None,
                               sink: Sink | None = None) -> list[str]:
    """Delete one run's firewall rule and placement policies (``--delete-on-failure``, after
    its VMs); nothing for a recipe that is not a cluster."""
    s = cluster_spec(recipe, run_id, recipe_id(recipe_path) if recipe_path else None)
    if s is None:
        return []
    res = await list_resources(project, key(recipe, recipe_id(recipe_path) if recipe_path else None))
    mine = ClusterResources(firewalls=[n for n in res.firewalls if n == s.name],
                            policies=[(r, n) for r, n in res.policies if n == s.name])
    return await delete_resources(project, mine, sink) if mine else []
