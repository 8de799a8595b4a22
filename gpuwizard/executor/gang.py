"""Steps that hosts take together: ``Step.barrier`` and ``Step.gang``.

Why: the executor runs every host's list on its own, which is right for set-up steps and
wrong for a cluster. A worker that copies the head's dataset must wait until the head
has it (a barrier); a ``torchrun`` launch is one job spread over the nodes, so one
rank dying must stop the others at once instead of leaving them hung in a collective
until a timeout hours later (a gang). SkyPilot's users met both (a slow worker failing
over without saying why, skypilot#1450); here every host's result names the node that
broke the step.

The rules, for a step id that has the flag on the hosts whose lists hold it (the
*members*):

- **barrier**: no member starts the step before every member has reached it. A member
  reaches it when its pipeline gets to the step: resumed as done (the journal) or
  skipped by its check counts too. A member that stops before reaching it (a failed
  earlier step, no connection, a cancel) releases the others: their step ends
  ``not_run`` with "node 1 h1 failed at step apt".
- **gang** (implies barrier): while the step runs, the first member whose run fails
  (exit code, timeout, lost connection) ends it on every other member: the executor
  kills their remote process groups (:mod:`.kill`), and each one's result says which
  node failed first and how. A member that finishes well waits for the others, so the
  step is ``ok`` on a node only when it is ``ok`` on all of them. Its check skips it
  only where it passes on every member: a head that skipped ``torchrun`` because its
  own check passed would leave the workers waiting at the rendezvous for rank 0.

A sync point across nodes is a barrier step on all of them (``run: "true"``): the head
reaches it after its download, the workers wait there before they copy.

Everything here runs on the executor's one event loop: plain sets and asyncio Events,
no locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Mapping, Sequence

from gpuwizard.cluster.nodes import host_label
from gpuwizard.steps import Step


@dataclass(frozen=True)
class Failure:
    """Who broke a barrier or a gang step, and how (for every member's message)."""

    host: str
    label: str               # "node 1 h1" in a cluster, else the host's name
    step: str                # the step the host failed at (not always the synced one)
    exit_code: int | None = None
    message: str = ""

    def barrier_text(self) -> str:
        why = f" ({self.message})" if self.message else ""
        return f"{self.label} failed at step {self.step}{why}, so this step did not start here"

    def gang_text(self) -> str:
        how = f"exit code {self.exit_code}" if self.exit_code is not None else (self.message or "failed")
        return f"{self.label} failed first ({how}); the step was stopped on every node"


class Sync:
    """One barrier or gang step shared by its member hosts."""

    def __init__(self, step: Step, members: Sequence[str]):
        self.step = step.id
        self.gang = step.gang
        self.members = frozenset(members)
        self.arrived: set[str] = set()
        self.broken: Failure | None = None   # a member stopped before reaching the step
        self.released = asyncio.Event()      # everyone arrived, or broken
        self.ended: set[str] = set()         # gang: members whose run of it ended (or was done before)
        self.failed: Failure | None = None   # gang: the first failure while it ran
        self.abort = asyncio.Event()         # gang: set with ``failed``
        self.settled = asyncio.Event()       # gang: every member ended, or one failed
        self.votes: dict[str, bool] = {}     # gang: whether each member's check passed
        self.voted = asyncio.Event()         # gang: every member's check is in

    def waiting_for(self) -> list[str]:
        return sorted(self.members - self.arrived)

    def arrive(self, host: str) -> None:
        self.arrived.add(host)
        if self.arrived >= self.members:
            self.released.set()

    def vote(self, host: str, passed: bool) -> None:
        """``host``'s check of a gang step passed (or it was done before) or not."""
        self.votes[host] = passed
        if self.votes.keys() >= self.members:
            self.voted.set()

    def depart(self, host: str, failure: Failure) -> None:
        """``host`` will never reach this step (because of ``failure``)."""
        if host in self.arrived or self.broken is not None:
            return
        self.broken = failure
        self.released.set()

    def end(self, host: str, failure: Failure | None) -> None:
        """``host``'s run of the step ended (``failure`` None: it went well, or it was
        done already)."""
        self.ended.add(host)
        if failure is not None and self.failed is None:
            self.failed = failure
            self.abort.set()
        if self.failed is not None or self.ended >= self.members:
            self.settled.set()


class Coordinator:
    """The syncs of one run: made from the per-host step lists, shared by the hosts."""

    def __init__(self, plan: Mapping[str, Sequence[Step]], ranks: Mapping[str, int]):
        self.ranks = dict(ranks)
        members: dict[str, list[str]] = {}
        first: dict[str, Step] = {}
        for host, steps in plan.items():
            for step in steps:
                if step.barrier or step.gang:
                    members.setdefault(step.id, []).append(host)
                    first.setdefault(step.id, step)
        self.syncs = {sid: Sync(first[sid], hosts) for sid, hosts in members.items()}

    def label(self, host: str) -> str:
        """``node 1 h1``: as the run screen, headless lines and ``logs`` name the node."""
        return host_label(host, self.ranks)

    def labels(self, hosts: Sequence[str]) -> str:
        """``"node 1 h1, node 2 h2"``, in rank order."""
        order = sorted(hosts, key=lambda h: (self.ranks.get(h, len(self.ranks)), h))
        return ", ".join(self.label(h) for h in order)

    def get(self, step: Step) -> Sync | None:
        return self.syncs.get(step.id) if (step.barrier or step.gang) else None

    def leave(self, host: str, failure: Failure) -> None:
        """``host`` stops: it releases every barrier it has not reached, naming
        ``failure`` (the root cause, also when it is another node's)."""
        for sync in self.syncs.values():
            if host in sync.members:
                sync.depart(host, failure)
