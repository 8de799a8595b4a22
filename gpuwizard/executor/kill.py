"""Stopping a step's remote processes: on timeout or Ctrl-C, and the copy an earlier
attempt left running (reconnect after a dropped connection, resume after a hard exit).

Why a module of its own: these are the executor's only destructive commands, and their
rules (TERM, grace, KILL; trust a recorded pid only while it is the same process;
also the processes that left the group with ``setsid``, found by the step's token)
are easier to check in one place than spread through the host pipeline.
"""

from __future__ import annotations

import asyncio
import shlex

from gpuwizard.executor import remote
from gpuwizard.executor.procs import RemoteProc
from gpuwizard.ssh import Completed, Connection, ConnectionLost


async def stop_step(conn: Connection, pid: int | None, token: str, task: asyncio.Future[Completed],
                    grace: float) -> None:
    """TERM the step's processes (its group, and those carrying its token), KILL them
    if they linger past ``grace`` seconds; ``task`` is the step's output/exit reader,
    which ends once they are gone. Best effort: the host may be gone."""
    if conn.is_closed():
        return
    for sig in ("TERM", "KILL"):
        try:
            await asyncio.wait_for(conn.run(remote.signal_cmd(sig, pid, token)), 10)
        except Exception:  # noqa: BLE001 - best effort: the host may be gone
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
            if sig == "TERM":  # the step ended; a setsid child that ignores TERM may not have
                await asyncio.wait_for(conn.run(remote.signal_cmd("KILL", None, token)), 10)
            return
        except BaseException:  # noqa: BLE001 - still running (or failed): escalate
            if task.done():
                return


async def stop_stale(conn: Connection, rp: RemoteProc, grace: float) -> bool:
    """Stop ``rp`` if it still runs: TERM its process group, KILL it after the grace
    period, and wait until it is gone; True when it was stopped. The pid is trusted
    only while it is the same process: same start time and boot id (a rebooted or busy
    host reuses pids), or, for a record without them, still our wrapper's bash. A group
    whose leader exited is still ours: its id cannot be reused while the group exists.
    Raises ConnectionLost when the connection went (the caller retries after
    reconnecting); any other failure is given up on (the step goes ahead)."""
    cmd = "sh -c " + shlex.quote(remote.stale_kill_script(rp, int(grace * 10)))
    try:
        r = await asyncio.wait_for(conn.run(cmd), grace + 15)
    except Exception as exc:  # noqa: BLE001 - best effort; the step goes ahead unless the connection went
        if conn.is_closed():
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        return False
    return "stopped" in r.stdout
