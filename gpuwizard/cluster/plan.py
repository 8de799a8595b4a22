"""One step list -> one list per node: ``on:`` decides where a step runs, and every
step gets the node's ``GPUWIZARD_*`` variables (:mod:`.env`).

Why after the hosts are known: the variables carry the nodes' private addresses,
which a GCP cluster has only once its VMs exist. The planner (:mod:`gpuwizard.plan`)
builds the one list from the recipe alone, as for any recipe; the runner calls
:func:`split` once it has the hosts. Steps that nodes must take in order (the head's
download before the workers' copy, torchrun everywhere at once) carry
``Step.barrier`` / ``Step.gang``, which the executor honours across the lists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from gpuwizard.cluster import env
from gpuwizard.cluster.nodes import Node, from_hosts, runs_on
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step

if TYPE_CHECKING:  # the recipe imports this package's torchrun module: no run-time import back
    from gpuwizard.recipe import Recipe


@dataclass(frozen=True)
class Layout:
    """What the runner hands the executor for a cluster: a list per node, the ranks."""

    nodes: list[Node]
    steps: dict[str, list[Step]]

    @property
    def ranks(self) -> dict[str, int]:
        return {n.host: n.rank for n in self.nodes}


def gpus_per_node(recipe: Recipe) -> int | None:
    """``target.gcp.gpu.count`` (0: a CPU-only VM); None on SSH hosts: detected there."""
    g = recipe.target.gcp
    if g is None:
        return None
    return g.gpu.count if g.gpu is not None else 0


def split(recipe: Recipe, steps: Sequence[Step], hosts: Sequence[HostSpec]) -> Layout | None:
    """The per-node lists of a cluster recipe; None for a recipe without ``cluster``."""
    if recipe.cluster is None:
        return None
    nodes = from_hosts(hosts)
    return Layout(nodes, per_node(steps, nodes, recipe.cluster.master_port, gpus_per_node(recipe)))


def per_node(steps: Sequence[Step], nodes: Sequence[Node], master_port: int,
             gpus: int | None) -> dict[str, list[Step]]:
    """Each node's steps: those whose ``on`` includes it, with its variables (and, when
    the GPU count is detected on the node, the line that detects it)."""
    out: dict[str, list[Step]] = {}
    for node in nodes:
        values = env.node_env(nodes, node, master_port, gpus)
        mine = []
        for s in steps:
            if not runs_on(s.on, node):
                continue
            if gpus is None:
                s = replace(s, run=env.DETECT_SH + s.run,
                            check=None if s.check is None else env.DETECT_SH + s.check)
            mine.append(replace(s, node_env=values))
        out[node.host] = mine
    return out


def where(step: Step, nodes: int) -> str:
    """Where a step runs, in words (``plan``): "all 3 nodes", "node 0 (head)", ..."""
    if step.on == "head":
        return "node 0 (head)"
    if step.on == "workers":
        return "node 1" if nodes == 2 else f"nodes 1-{nodes - 1} (workers)"
    return f"all {nodes} nodes"
