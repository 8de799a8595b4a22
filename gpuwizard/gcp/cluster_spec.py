"""What a GCP cluster (``cluster: {nodes: N}``) adds to its VMs, decided from the recipe alone (pure).

Facts, with sources, in docs/facts/gcp-cluster.md:

* all N nodes or none, in one zone: ``instances.bulkInsert`` with ``minCount`` = ``count`` = N;
* compact placement: a ``resourcePolicies`` group placement policy with ``collocation:
  COLLOCATED`` in the zone's region, named by every node. Only some machine series take one
  (A2, A3, A4, C2, C2D, C3, C3D, C4, G2, G4, H3, N2, N2D); N1 does not, and Compute Engine
  refuses the whole insert when it is asked (dstack#2591), so there the policy is left out and
  the plan says the nodes may be far apart. ``vmCount`` is not set (Google advises against it
  unless the policy must hold exactly that many VMs: a replaced node would not fit);
  ``maxDistance`` is not in the v1 API;
* gVNIC (``nicType: GVNIC``) where the image supports it (every image in gpuwizard's catalog:
  Ubuntu 22.04/24.04, Debian 12, Deep Learning VM; an image given as a path when its
  ``guestOsFeatures`` list GVNIC, read by :func:`gpuwizard.gcp.cluster_net.resolve_nic`) and
  always where the machine series requires it (A3 and later); otherwise VIRTIO_NET, said;
* a firewall rule that lets the nodes reach each other on every TCP/UDP port and ICMP, and
  nothing else: source tag = target tag = the cluster's own network tag, which only its
  nodes carry.

The firewall rule, the tag and the placement policy share one name, ``gpuwizard-<key>-<run>``:
``<key>`` is the recipe file's id (:func:`gpuwizard.gcp.body.recipe_id`), so ``status`` and
``down`` on that file find them by name prefix (neither resource takes labels).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuwizard import catalog
from gpuwizard.gcp.body import GVNIC_REQUIRED, NodeNet, is_dlvm, node_count, series

if TYPE_CHECKING:
    from gpuwizard.recipe import Recipe

#: Machine series that take a compact placement policy (no maxDistance), docs/facts/gcp-cluster.md.
PLACEMENT_SERIES = frozenset({"a2", "a3", "a4", "a4x", "c2", "c2d", "c3", "c3d", "c4", "g2", "g4", "h3", "n2",
                              "n2d"})
NAME_PREFIX = "gpuwizard-"
NETWORK = "global/networks/default"   # the network instance_body puts the nodes on


def key(recipe: Recipe, recipe_id: str | None) -> str:
    """The recipe file's id (12 hex digits), or, without a known file, one of its name."""
    return recipe_id or hashlib.sha256(f"name:{recipe.name}".encode()).hexdigest()[:12]


def resource_prefix(key_: str) -> str:
    """The name prefix of every cluster resource made for one recipe file."""
    return f"{NAME_PREFIX}{key_}-"


def resource_name(key_: str, run_id: str) -> str:
    """The firewall rule's, network tag's and placement policy's name for one run (valid GCE
    name, at most 43 characters): the end of the run id, as VM names keep it."""
    run = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[-20:].strip("-") or "run"
    return re.sub(r"-+", "-", resource_prefix(key_) + run)


@dataclass(frozen=True)
class ClusterSpec:
    """One run's cluster: how many nodes, and what each node's body and network get."""

    nodes: int
    name: str                     # firewall rule, network tag and placement policy
    placement: bool               # a compact placement policy is made and named by the nodes
    placement_note: str
    nic_type: str                 # GVNIC or VIRTIO_NET
    nic_note: str

    def node_net(self) -> NodeNet:
        return NodeNet(nic_type=self.nic_type, tag=self.name, placement=self.name if self.placement else None)

    def notes(self) -> list[str]:
        return [self.placement_note, self.nic_note,
                f"firewall rule {self.name}: all TCP/UDP and ICMP between the nodes only (network tag {self.name}); "
                f"deleted with the cluster by `gpuwizard down`"]


def _placement(machine_type: str) -> tuple[bool, str]:
    s = series(machine_type)
    if s in PLACEMENT_SERIES:
        return True, f"{machine_type}: compact placement policy (COLLOCATED), so the nodes sit close together"
    return False, (f"{machine_type}: compact placement is not available for {s.upper()}; nodes may be far apart "
                   f"(A2, A3, G2, C2, C3, N2 ... take it)")


def image_ref(image: str, project: str) -> tuple[str, str, bool] | None:
    """(project, name, is_family) of an image given as a path (``projects/P/global/images/[family/]N``,
    ``global/images/...`` in ``project``, or a URL); None for a catalog family."""
    if not image.startswith(("projects/", "https://", "global/")):
        return None
    m = re.search(r"(?:projects/([^/]+)/)?global/images/(family/)?([^/]+)$", image)
    if m is None:
        return None
    return (m.group(1) or project, m.group(3), bool(m.group(2)))


def nic_from_features(image: str, features: list[str] | None, why: str = "") -> tuple[str, str]:
    """The vNIC for a path image whose guestOsFeatures were read (None: they could not be)."""
    if features is not None and "GVNIC" in features:
        return "GVNIC", f"gVNIC network interface ({image} lists the GVNIC guest OS feature)"
    if features is not None:
        return "VIRTIO_NET", (f"VIRTIO_NET network interface: {image} does not list the GVNIC guest OS feature "
                              f"(gVNIC is faster between nodes; a catalog image has it)")
    return "VIRTIO_NET", (f"VIRTIO_NET network interface: could not read {image}'s guest OS features ({why}); "
                          f"gVNIC is faster between nodes, and every catalog image has it")


def _nic(image: str, machine_type: str) -> tuple[str, str]:
    s = series(machine_type)
    if s in GVNIC_REQUIRED:
        return "GVNIC", f"gVNIC network interface ({s.upper()} requires it)"
    img = catalog.image(image)
    if img is not None or is_dlvm(image):
        label = img.label if img is not None else "Deep Learning VM"
        return "GVNIC", f"gVNIC network interface ({label} supports it; faster than VIRTIO_NET between nodes)"
    return "VIRTIO_NET", (f"VIRTIO_NET network interface unless {image} lists the GVNIC guest OS feature (read when "
                          f"the run starts; gVNIC is faster between nodes, and every catalog image has it)")


def spec(recipe: Recipe, run_id: str, recipe_id: str | None) -> ClusterSpec | None:
    """The run's cluster, or None when the recipe is not a GCP cluster."""
    g = recipe.target.gcp
    if g is None or getattr(recipe, "cluster", None) is None or not recipe.cluster.nodes:
        return None
    placement, pnote = _placement(g.machine_type)
    nic, nnote = _nic(g.image, g.machine_type)
    return ClusterSpec(nodes=node_count(recipe), name=resource_name(key(recipe, recipe_id), run_id),
                       placement=placement, placement_note=pnote, nic_type=nic, nic_note=nnote)


def plan_notes(recipe: Recipe) -> list[str]:
    """What ``plan`` says about a GCP cluster's network (the run's name is not known yet)."""
    g = recipe.target.gcp
    if g is None or getattr(recipe, "cluster", None) is None or not recipe.cluster.nodes:
        return []
    return [f"cluster: {node_count(recipe)} nodes, all or none, in one zone (bulkInsert with minCount)",
            _placement(g.machine_type)[1], _nic(g.image, g.machine_type)[1],
            "firewall rule gpuwizard-<recipe>-<run>: all TCP/UDP and ICMP between the nodes only; deleted by "
            "`gpuwizard down`"]


def firewall_body(s: ClusterSpec, recipe_name: str, run_id: str) -> dict[str, Any]:
    """The Firewall resource (proto-plus field names): ingress between the cluster's nodes."""
    return {"name": s.name, "network": NETWORK, "direction": "INGRESS", "priority": 1000,
            "description": f"gpuwizard cluster of recipe {recipe_name}, run {run_id}: traffic between its nodes",
            "source_tags": [s.name], "target_tags": [s.name],
            "allowed": [{"I_p_protocol": "tcp"}, {"I_p_protocol": "udp"}, {"I_p_protocol": "icmp"}]}


def policy_body(s: ClusterSpec, recipe_name: str, run_id: str) -> dict[str, Any]:
    """The ResourcePolicy (proto-plus field names): compact placement, no vmCount (see module)."""
    return {"name": s.name, "description": f"gpuwizard cluster of recipe {recipe_name}, run {run_id}",
            "group_placement_policy": {"collocation": "COLLOCATED"}}
