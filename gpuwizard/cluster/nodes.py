"""The nodes of a cluster: its hosts in rank order.

Why rank = order: on an SSH target the user lists the hosts, and the first one is the
head; on GCP the VMs are named ``NAME-0``, ``NAME-1`` ... and resolved in that order.
The address other nodes use is the host's private address (a VM's internal IP) when
it has one, else the address gpuwizard connects to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from gpuwizard.ssh import HostSpec


@dataclass(frozen=True)
class Node:
    """One node: its rank, the host's name (events, logs) and the address the other
    nodes reach it at."""

    rank: int
    host: str
    address: str

    @property
    def head(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        """``node 0 (head)`` / ``node 2``: how screens and logs name it."""
        return rank_label(self.rank)


def rank_label(rank: int) -> str:
    """``node 0 (head)`` for rank 0, else ``node N``."""
    return f"node {rank} (head)" if rank == 0 else f"node {rank}"


def host_label(host: str, ranks: Mapping[str, int]) -> str:
    """``node 0 (head) HOST`` for a cluster node, else the host's name: how the run
    screen and the headless lines name a host."""
    rank = ranks.get(host)
    return host if rank is None else f"{rank_label(rank)} {host}"


def from_hosts(hosts: Sequence[HostSpec]) -> list[Node]:
    """The hosts as nodes, rank = position."""
    return [Node(i, h.name, h.private_address or h.address) for i, h in enumerate(hosts)]


def runs_on(where: str, node: Node) -> bool:
    """Whether a step with ``on: where`` (all, head, workers) runs on ``node``."""
    return where == "all" or (where == "head") == node.head
