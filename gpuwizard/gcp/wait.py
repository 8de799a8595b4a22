"""``gpuwizard run --wait``: when every zone is out of capacity, keep trying until one has it.

SkyPilot's ``--retry-until-up`` retries a whole launch with a 30 s first gap growing
exponentially (docs/facts/gcp-provisioning-anchors.md); gpuwizard does the same per round
of zones, with three differences that matter when a student leaves it running for hours:

* **only capacity is waited for.** A round retries the zones whose insert said "no
  capacity" (``ZONE_RESOURCE_POOL_EXHAUSTED*``, ``insufficientCapacity``, "does not have
  enough resources"); zones that failed for any other reason (a regional quota, an
  accelerator the zone lacks) drop out, and quota, permission or bad-request errors end
  the run at once, as they do without ``--wait`` (:mod:`.failover` decides those).
* **hints first.** Zones that Compute Engine named in ``zonesAvailable`` are tried first in
  the next round.
* **nothing left behind on Ctrl-C.** A stop during a gap ends at once (no request is
  pending then). A stop while an insert is in flight follows that operation to its end;
  if it created the VM after all, the VM is deleted, and the message says so. Either way
  the run ends with :class:`Stopped` (kind ``interrupted``) whose message tells what
  happened, never "a VM may exist".

The gaps (:class:`Backoff`): ``WAIT_FIRST`` (30 s), times ``WAIT_FACTOR`` (1.5) per round,
capped at ``WAIT_CAP`` (10 min), each jittered by +-20% so many waiting users do not hit
the API in step; the clock, the sleep and the random source are injectable, so tests
assert the exact schedule without waiting for it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from gpuwizard.autostop.settings import parse_duration
from gpuwizard.gcp import budgets
from gpuwizard.gcp.errors import STOCKOUT, GcpError, Verdict
from gpuwizard.gcp.operations import run_operation

if TYPE_CHECKING:
    from gpuwizard.gcp.context import Provisioner
    from gpuwizard.recipe import Recipe

INTERRUPTED = "interrupted"   # GcpError kind: the user stopped the wait (exit 130)

#: Error codes that mean "this zone has no capacity now" (and nothing else).
CAPACITY_CODES = frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                            "insufficientCapacity", "VM_MIN_COUNT_NOT_REACHED"})  # the last: a cluster's bulkInsert


def is_capacity(verdict: Verdict) -> bool:
    """Whether ``verdict`` is a stockout worth waiting for (not a missing accelerator or
    an unsupported request, which :mod:`.errors` also files under STOCKOUT)."""
    if verdict.kind != STOCKOUT:
        return False
    return any(i.code in CAPACITY_CODES or "does not have enough resources" in i.message for i in verdict.items)


@dataclass(frozen=True)
class Backoff:
    """The gaps between rounds: ``first * factor**(n-1)``, capped, jittered by +-``jitter``."""

    first: float = 30.0
    factor: float = 1.5
    cap: float = 600.0
    jitter: float = 0.2

    def gap(self, round_no: int, rng: random.Random) -> float:
        """Seconds to wait after round ``round_no`` (1-based) failed; never above ``cap``."""
        base = min(self.cap, self.first * self.factor ** max(0, round_no - 1))
        return min(self.cap, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


def default_backoff() -> Backoff:
    """The backoff from :mod:`.budgets` (read at call time, so tests and env overrides apply)."""
    return Backoff(first=budgets.WAIT_FIRST, factor=budgets.WAIT_FACTOR, cap=budgets.WAIT_CAP)


@dataclass
class WaitPolicy:
    """How long to wait for capacity, and the seams tests replace."""

    max_wait: float | None = None        #: seconds; None: until it works or Ctrl-C
    backoff: Backoff = field(default_factory=default_backoff)
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Told (one sentence) when the VM is up after waiting: a bell and a desktop notification.
    on_ready: Callable[[str], None] | None = None


def policy_for(recipe: Recipe, wait: bool | None, max_wait: float | None) -> WaitPolicy | None:
    """The wait a run asked for; the command line wins over ``target.gcp.wait``.

    ``wait``: ``--wait`` (True), ``--no-wait`` (False) or neither (None); ``max_wait``:
    ``--max-wait`` in seconds (implies ``--wait``). None: do not wait (fail on stockout).
    """
    g = recipe.target.gcp
    if g is None or wait is False:
        return None
    if max_wait is not None:
        return WaitPolicy(max_wait=max_wait)
    from_recipe = parse_duration(g.wait) if g.wait else None
    if wait or from_recipe is not None:
        return WaitPolicy(max_wait=from_recipe)
    return None


def human(seconds: float) -> str:
    """45 s, 14 min, 2 h 5 min: the live line's units."""
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    h, m = divmod(s // 60, 60)
    return f"{h} h {m} min" if m else f"{h} h"


#: What stopped waits are following to its end now (see :func:`following`).
_following: dict[int, str] = {}


def following() -> list[str]:
    """The inserts a stopped wait is following to their end now (``the insert of vm-1 in
    us-central1-a (recipe r)``): what quitting at once (a second Ctrl-C) leaves unfinished,
    so the one who quits is told that those may still make a billed VM."""
    return list(_following.values())


class Stopped(GcpError):
    """The user stopped the wait; the message says what was (not) left behind."""

    def __init__(self, message: str, vm_exists: bool = False) -> None:
        super().__init__(message, kind=INTERRUPTED, vm_exists=vm_exists)


@dataclass
class Round:
    """What one pass over the zones found (:func:`gpuwizard.gcp.failover.one_pass`)."""

    zone: str | None = None                              #: the zone that took the VM(s)
    capacity: list[str] = field(default_factory=list)   #: zones that said "no capacity"
    hints: list[str] = field(default_factory=list)      #: zonesAvailable they named


Attempt = Callable[[str], Awaitable["Verdict | None"]]


class Waiter:
    """One ``--wait``: rounds of :func:`failover.one_pass` with gaps between them.

    :meth:`attempt` is what the pass calls for each insert, so that a Ctrl-C in the middle
    of an insert follows it to its end (see the module docstring).
    """

    def __init__(self, p: Provisioner, policy: WaitPolicy, insert: Attempt) -> None:
        self.p = p
        self.policy = policy
        self.insert = insert
        self.rounds = 0
        self.waited = False
        self.start = policy.clock()

    def elapsed(self) -> float:
        return self.policy.clock() - self.start

    async def attempt(self, zone: str) -> Verdict | None:
        """``insert(zone)``, finished even when the run is cancelled meanwhile."""
        task = asyncio.ensure_future(self.insert(zone))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            pass
        p = self.p
        names = ", ".join(p.names)
        p.say(f"stopping: following the insert of {names} in {zone} to its end so that nothing is left "
              f"behind (Ctrl-C again quits at once)")
        _following[id(task)] = f"the insert of {names} in {zone} (recipe {p.recipe.name})"
        try:
            try:
                verdict = await task
            except GcpError as exc:   # the operation did not end in its budget: it may still make the VM
                raise Stopped(f"interrupted while waiting for capacity; the insert of {names} in {zone} did not "
                              f"finish ({exc.message}): check with `gpuwizard status RECIPE.yaml` (recipe "
                              f"{p.recipe.name}) and delete it with `gpuwizard down RECIPE.yaml`.",
                              vm_exists=True) from None
            if verdict is not None:
                raise Stopped(f"interrupted while waiting for capacity: the last insert ({zone}) ended without a VM "
                              f"({verdict.reason}); no VM was created and no request is pending.")
            await self._delete_created(zone)
        finally:
            _following.pop(id(task), None)
        raise Stopped(f"interrupted while waiting for capacity: {names} came up in {zone} as you stopped and "
                      f"{'was' if len(p.names) == 1 else 'were'} deleted again; no VM is left and no request "
                      f"is pending.")

    async def _delete_created(self, zone: str) -> None:
        p = self.p
        failed: list[str] = []
        for name in p.names:
            verdict = await run_operation(p.compute, zone, lambda n=name: p.compute.delete(zone, n),
                                          f"deleting {name}", p.say, timeout=budgets.OP_TIMEOUT)
            if verdict is not None and not verdict.not_found:
                failed.append(f"{name} ({verdict.reason})")
        if failed:
            raise Stopped(f"interrupted while waiting for capacity: {', '.join(p.names)} came up in {zone} as you "
                          f"stopped, and deleting {', '.join(failed)} failed: it is running and billed; delete it "
                          f"with `gpuwizard down RECIPE.yaml` (recipe {p.recipe.name}).", vm_exists=True)

    async def run(self, zones: list[str], one_pass: Callable[[list[str]], Awaitable[Round]]) -> str:
        """Rounds until a zone takes the VM(s); returns it. Raises GcpError (STOCKOUT) at
        ``max_wait``, or when no zone failed for capacity; :class:`Stopped` on Ctrl-C."""
        order = list(zones)
        pol = self.policy
        while True:
            self.rounds += 1
            try:
                res = await one_pass(order)
            except asyncio.CancelledError:
                raise self._stopped() from None
            if res.zone is not None:
                if self.waited and pol.on_ready is not None:
                    pol.on_ready(f"{', '.join(self.p.names)} is up in {res.zone} after {human(self.elapsed())} "
                                 f"of waiting ({self.rounds} attempts).")
                return res.zone
            # zonesAvailable hints first, then the recipe's order; only zones that lacked capacity
            retry = list(dict.fromkeys([z for z in res.hints if z in res.capacity] + res.capacity))
            if not retry:
                raise GcpError(f"No zone could take the VM, and none of the reasons is a lack of capacity that "
                               f"waiting would cure ({self._reasons()}).", kind=STOCKOUT)
            elapsed = self.elapsed()
            if pol.max_wait is not None and elapsed >= pol.max_wait:
                raise GcpError(
                    f"Still no capacity for {self._what()} after waiting {human(elapsed)} ({self.rounds} attempts, "
                    f"--max-wait {human(pol.max_wait)}): {self._reasons()}. Run again later with a longer "
                    f"--max-wait, add zones to target.gcp.zones (`gpuwizard zones --gpu {self._gpu_type()}`), "
                    f"or consider spot or flex_start in the recipe.", kind=STOCKOUT)
            gap = pol.backoff.gap(self.rounds, pol.rng)
            if pol.max_wait is not None:
                gap = min(gap, max(0.0, pol.max_wait - elapsed))
            self.p.say(f"waiting for {self._what()} in {len(retry)} zone{'s' if len(retry) != 1 else ''}: next try "
                       f"in {human(gap)} (attempt {self.rounds + 1}, {human(elapsed)} so far)")
            self.waited = True
            try:
                await pol.sleep(gap)
            except asyncio.CancelledError:
                raise self._stopped() from None
            order = retry

    def _stopped(self) -> Stopped:
        return Stopped(f"interrupted while waiting for capacity ({self.rounds} attempt{'s' if self.rounds != 1 else ''}, "
                       f"{human(self.elapsed())}): no VM was created and no request is pending.")

    def _reasons(self) -> str:
        return "; ".join(f"{z}: {r}" for z, r in self.p.report.skipped) or "no zones to try"

    def _gpu_type(self) -> str:
        g = self.p.g
        return g.gpu.type if g.gpu else "TYPE"

    def _what(self) -> str:
        p = self.p
        if p.gpu is not None and p.g.gpu is not None:
            return f"{p.g.gpu.count} x {p.gpu.label}" if p.g.gpu.count > 1 else p.gpu.label
        return p.g.machine_type


__all__ = ["Backoff", "INTERRUPTED", "Round", "Stopped", "WaitPolicy", "Waiter", "default_backoff", "following",
           "human", "is_capacity", "policy_for"]
