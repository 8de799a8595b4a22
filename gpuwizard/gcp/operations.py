"""Run one Compute operation (insert, bulkInsert, start, delete) to a verdict.

The one retry-and-classify loop: submit, wait for the zone operation, classify *all*
its errors (or the synchronous HTTP error) with :func:`errors.classify`, retry
transient ones with exponential back-off, and hand every other verdict back to the
caller, whose policy differs (failover moves on, resume explains, delete reports).

An operation that is not DONE when its budget ends is *not* a success: it raises
:class:`GcpError` (kind ``unfinished``) saying what is still in progress, so nobody
reports "deleted" or "created" for something that may not be.

Operations are waited for with ``zoneOperations.wait`` through our own client, not the
ExtendedOperation that ``insert()`` returns: its poller is built on the default Google
host and would ignore an endpoint override.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from gpuwizard.gcp import budgets
from gpuwizard.gcp.client import Compute, call
from gpuwizard.gcp.errors import TRANSIENT, UNFINISHED, ApiError, GcpError, Verdict, classify, from_api_exception

Say = Callable[[str], None]


def op_verdict(op: dict[str, Any]) -> Verdict | None:
    """None when a DONE operation succeeded, else the verdict on all its errors."""
    errs = ((op.get("error") or {}).get("errors")) or []
    if not errs:
        return None
    return classify(errs, int(op.get("httpErrorStatusCode") or 0) or None)


async def wait_done(compute: Compute, zone: str, op: dict[str, Any], what: str, say: Say,
                    timeout: float | None = None) -> dict[str, Any]:
    """Wait until ``op`` is DONE; raise GcpError(kind=unfinished) when ``timeout`` passes first.

    A wait longer than :data:`budgets.ANNOUNCE_AFTER` says once what it waits for and
    for how long at most.
    """
    budget = budgets.OP_TIMEOUT if timeout is None else timeout
    start = time.monotonic()
    deadline = start + budget
    announced = False
    while op.get("status") != "DONE":
        now = time.monotonic()
        if now >= deadline:
            raise GcpError(f"{what} did not finish in {budget:.0f} s (operation {op.get('name')} in {zone} is "
                           f"{op.get('status') or 'pending'})", kind=UNFINISHED)
        if not announced and now - start >= budgets.ANNOUNCE_AFTER:
            say(f"{zone}: still waiting for {what} (operation {op.get('name')}; at most "
                f"{deadline - now:.0f} s more)")
            announced = True
        try:
            op = await call(compute.wait, zone, str(op.get("name")), deadline - now)
        except ApiError as exc:
            if not (exc.transport or (exc.code or 0) >= 500 or exc.code == 429):
                raise
            # No answer in time (or a storm): the deadline check above decides.
            await asyncio.sleep(min(budgets.RETRY_BASE, max(0.0, deadline - time.monotonic())))
    return op


async def run_operation(compute: Compute, zone: str, submit: Callable[[], dict[str, Any]], what: str,
                        say: Say, *, retries: int | None = None, timeout: float | None = None) -> Verdict | None:
    """Submit (``submit`` is a blocking call returning the Operation dict) and wait; None
    on success, else the verdict on all its errors. Transient verdicts are retried up to
    ``retries`` times with back-off first; an operation still running at ``timeout``
    raises GcpError(kind=unfinished)."""
    async def once() -> dict[str, Any]:
        return await wait_done(compute, zone, await call(submit), what, say, timeout)

    return await retrying(once, lambda verdict, delay: say(f"{zone}: {what}: {verdict.reason}; retrying in "
                                                         f"{delay:.1f} s"), retries)


async def retrying(once: Callable[[], Awaitable[dict[str, Any]]], on_retry: Callable[[Verdict, float], None] | None,
                   retries: int | None = None) -> Verdict | None:
    """The one retry-and-classify loop: ``once`` submits an operation and returns it DONE;
    None on success, else the verdict on its errors. Transient verdicts are retried up to
    ``retries`` times (default budgets.TRANSIENT_RETRIES) with exponential back-off;
    ``on_retry`` hears each retry and its delay. Zone operations (:func:`run_operation`)
    and a cluster's region/global ones (gcp/cluster_net.py) both go through it."""
    n = budgets.TRANSIENT_RETRIES if retries is None else retries
    verdict: Verdict | None = None
    for i in range(n + 1):
        try:
            op = await once()
        except ApiError as exc:
            verdict = from_api_exception(exc)
        else:
            verdict = op_verdict(op)
            if verdict is None:
                return None
        if verdict.kind != TRANSIENT or i == n:
            return verdict
        delay = budgets.RETRY_BASE * (2 ** i)
        if on_retry is not None:
            on_retry(verdict, delay)
        await asyncio.sleep(delay)
    return verdict
