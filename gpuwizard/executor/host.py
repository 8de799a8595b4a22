"""One host's pipeline: connect, then each step in order (check, upload, run, reboot),
with reconnect-and-re-run after a dropped connection and the stop of any copy of a step
an earlier attempt left running.

Why a module of its own: this is everything the executor does *on* a host; the
:class:`~gpuwizard.executor.core.Executor` only fans hosts out and in; stopping
processes is :mod:`.kill`; the rules of steps hosts take together (barrier, gang) are
:mod:`.gang`. Why ~490 lines in one piece: the retry, reconnect, timeout, cancel and
gang-abort paths share the host's state (connection, the process group in flight,
secrets) and their order is the contract (a stale copy is always stopped before
anything runs; a step ends with exactly one StepFinished); split further, that order
would be spread over modules.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Awaitable, Sequence, TypeVar

from gpuwizard import events as ev
from gpuwizard.executor import kill, remote
from gpuwizard.executor.gang import Coordinator, Failure, Sync
from gpuwizard.executor.options import NOTE, ExecOptions, Sink, fingerprint
from gpuwizard.executor.procs import RemoteProc
from gpuwizard.executor.stream import OutputPump
from gpuwizard.masking import mask_all
from gpuwizard.ssh import (Attempt, CommandTimeout, Completed, Connection, ConnectionLost, HostSpec, SshError,
                           connect)
from gpuwizard.steps import Step, Upload

T = TypeVar("T")


class Stopped(Exception):
    """Raised inside a host's flow when the run is being cancelled."""


@dataclass
class Result:
    status: str               # ok, failed, timeout, lost, cancelled, skipped, not_run (a broken barrier)
    exit_code: int | None = None
    message: str = ""
    final: bool = False       # retrying cannot help (no sudo, no password-less sudo)


def source(up: Upload) -> str:
    """Where an upload's content comes from: its local path, or ``$NAME`` for ``env``."""
    return up.local if up.env is None else f"${up.env}"


def upload_bytes(up: Upload) -> bytes:
    """The content to send: the environment variable's value (read now, kept in memory
    only), or the local file's bytes."""
    if up.env is not None:
        value = os.environ.get(up.env)
        if value is None:
            raise SshError(f"environment variable {up.env} is not set: export it and run again "
                           f"(its value is uploaded as {up.remote})")
        return value.encode("utf-8", "surrogateescape")
    with open(os.path.expanduser(up.local), "rb") as fh:
        return fh.read()


async def until_stopped(stop: asyncio.Event, aw: Awaitable[T]) -> T:
    """Await ``aw`` unless ``stop`` is set first (then raise Stopped)."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001 - we are abandoning it
        pass
    raise Stopped()


class HostRun:
    """Per-host state (the connection, secrets to mask, cached facts about the login)
    and the pipeline that runs this host's steps."""

    def __init__(self, spec: HostSpec, steps: Sequence[Step], sink: Sink, options: ExecOptions,
                 stop: asyncio.Event, stale: RemoteProc | None, coord: Coordinator | None = None):
        self.spec = spec
        self.steps = list(steps)
        self.sink = sink
        self.options = options
        self.stop = stop
        self.conn: Connection | None = None
        self.is_root: bool | None = None
        self.sudo_problem: str | None = None
        self.secrets: set[str] = set()
        self.secret_errors: dict[str, str] = {}
        self.short_secrets: dict[str, str] = {}  # upload source -> note: too short to mask
        self.running: RemoteProc | None = None  # remote process group of the step in flight (or left behind)
        self._stale = stale  # an earlier attempt's step: adopted at the first connect
        self.coord = coord if coord is not None else Coordinator({spec.name: self.steps}, options.ranks)
        self._gang: Sync | None = None  # the gang step in flight: its abort stops our run of it
        self._cause: Failure | None = None  # another node's failure that stopped this host
        self._launched = False  # the step's command started on the host in this attempt

    @property
    def name(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------ the pipeline

    async def run(self) -> bool:
        done = self.options.done.get(self.name, {})
        for i, step in enumerate(self.steps):
            done_fp = done.get(step.id)
            if done_fp is not None and done_fp == fingerprint(step):
                self.sink(ev.StepFinished(host=self.name, step=step.id, status="skipped",
                                          message="done in an earlier attempt of this run"))
                sync = self.coord.get(step)
                if sync is not None:  # done counts as reached (and, for a gang, as ended well)
                    sync.arrive(self.name)
                    sync.vote(self.name, True)
                    sync.end(self.name, None)
                continue
            if self.conn is None:  # connect at the first step with work to do
                try:
                    await self.connect()
                    if self._stale is not None and self.running is None:
                        self.running = self._stale  # stopped before anything runs
                    self._stale = None
                except Stopped:
                    return self._finish(i, "interrupted before connecting", connected=False)
                except SshError as exc:
                    return self._finish(i, str(exc), connected=False)
                except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
                    return self._finish(i, f"{self.name}: cannot connect: {type(exc).__name__}: {exc}",
                                        connected=False)
            try:
                result = await self._run_step(step)
            except Stopped:
                result = Result("cancelled", message="interrupted")
            if result.status not in ("ok", "skipped"):
                if result.status == "not_run" or self._cause is not None:
                    return self._finish(i + 1, f"{step.id}: {result.message}")
                why = f": {result.message}" if result.message and result.status != "cancelled" else ""
                return self._finish(i + 1, f"{step.id} {result.status}{why}",
                                    failure=Failure(self.name, self.coord.label(self.name), step.id,
                                                    result.exit_code, result.message))
        self.close()
        self.sink(ev.HostFinished(host=self.name, ok=True, message=f"{len(self.steps)} steps done"))
        return True

    def _finish(self, start: int, message: str, connected: bool = True, failure: Failure | None = None) -> bool:
        """The host stops here: the steps left are not run, and HostFinished carries the
        reason with its fix, which every front end shows (pane, summary, host log).
        Barriers it has not reached are released, naming the failure that stopped it
        (another node's, when a broken barrier or gang stopped this one)."""
        self.coord.leave(self.name, self._cause or failure or Failure(
            self.name, self.coord.label(self.name), self.steps[min(start, len(self.steps) - 1)].id, message=message))
        for step in self.steps[start:]:
            self.sink(ev.StepFinished(host=self.name, step=step.id, status="not_run"))
        self.close()
        self.sink(ev.HostFinished(host=self.name, ok=False, message=message, connected=connected))
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def connect(self) -> None:
        self.close()
        deadline = time.monotonic() + self.options.connect_timeout

        def attempt(a: Attempt) -> None:
            self.sink(ev.HostConnecting(host=self.name, attempt=a.n, message=a.message))

        self.conn = await until_stopped(self.stop, connect(self.spec, deadline=deadline, on_attempt=attempt,
                                                           keepalive=self.options.keepalive,
                                                           retry_auth=self.options.retry_auth))
        self.sink(ev.HostConnected(host=self.name))

    async def guard(self, aw: Awaitable[T]) -> T:
        """Await a remote operation unless the run is cancelled first."""
        return await until_stopped(self.stop, aw)

    def note(self, step: str, text: str) -> None:
        self.sink(ev.Output(host=self.name, step=step, stream=NOTE, data=f"[gpuwizard] {text}\n"))

    def set_running(self, rp: RemoteProc | None) -> None:
        """Track (and report through ``on_running``) the host's remote process group."""
        if rp is None and self.running is None:
            return
        self.running = rp
        cb = self.options.on_running
        if cb is not None:
            try:
                cb(self.name, rp.to_dict() if rp is not None else None)
            except Exception:  # noqa: BLE001 - a bookkeeping failure must not stop the run
                pass

    # ------------------------------------------------------------------ steps

    async def _run_step(self, step: Step) -> Result:
        t0 = time.monotonic()
        attempt = reconnects = failures = 0
        sync = self.coord.get(step)
        while True:
            attempt += 1
            self.sink(ev.StepStarted(host=self.name, step=step.id, title=step.title, attempt=attempt))
            try:
                if sync is not None and attempt == 1:
                    broken = await self._reach(sync, step)
                    if broken is not None:
                        self._cause = broken
                        return self._finished(step, t0, Result("not_run", message=broken.barrier_text()))
                    self._gang = sync if sync.gang else None
                self._launched = False
                result = await self._attempt(step)
                if result.status == "ok" and step.reboot:
                    result = await self._reboot(step)
            except ConnectionLost as exc:
                result = Result("lost", message=str(exc))
            except Stopped:
                self._cancelled(step, t0)
                raise
            except SshError as exc:
                result = Result("failed", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
                result = Result("failed", message=f"{type(exc).__name__}: {exc}")
            if result.status == "lost" and self._gang is not None and self._launched:
                # One rank cannot re-join a job the others are running: the step fails everywhere.
                # (Lost before its command started, e.g. while waiting at the barrier: it
                # reconnects and takes part, as any step does.)
                result = Result("failed", message=f"the connection to {self.name} dropped during this step "
                                                  f"({result.message})")
            if result.status == "lost":
                reconnects += 1
                if reconnects > self.options.max_reconnects:
                    result = Result("failed", message=f"the connection dropped {reconnects} times during this step")
                else:
                    self.note(step.id, f"connection lost during {step.id}; reconnecting to re-run it")
                    try:
                        await self.connect()  # _attempt stops the orphaned step before re-running it
                    except SshError as exc:
                        result = Result("failed", message=str(exc))
                    except Stopped:
                        self._cancelled(step, t0)
                        raise
                    else:
                        continue
            if (result.status in ("failed", "timeout") and failures < step.retries and not result.final
                    and self._gang is None):
                failures += 1
                self.note(step.id, f"{step.id} {result.status}; retry {failures} of {step.retries}")
                continue
            if self._gang is not None:
                result = await self._gang_end(step, t0, result)
            return self._finished(step, t0, result)

    def _finished(self, step: Step, t0: float, result: Result) -> Result:
        result.message = mask_all(result.message, self.secrets) if self.secrets else result.message
        self.sink(ev.StepFinished(host=self.name, step=step.id, status=result.status,
                                  exit_code=result.exit_code, seconds=round(time.monotonic() - t0, 3),
                                  message=result.message))
        return result

    async def _stop_orphan(self, step: Step) -> None:
        """Reconnect (briefly) to stop a gang step a dropped connection left running; the
        others were told first. What cannot be stopped now stays recorded
        (``on_running``) for the next attempt to stop."""
        try:
            await asyncio.wait_for(self.connect(), 30)
            await self._kill_stale(step.id)
        except (Stopped, asyncio.TimeoutError):
            pass
        except Exception:  # noqa: BLE001 - best effort: the host may be gone
            pass

    async def _reach(self, sync: Sync, step: Step) -> Failure | None:
        """Arrive at a barrier (or gang) step and wait for its other members; the
        failure that broke it, or None when everyone is here."""
        sync.arrive(self.name)
        if not sync.released.is_set():
            self.note(step.id, f"waiting for {self.coord.labels(sync.waiting_for())} to reach {step.id}")
            await self.guard(sync.released.wait())
        return sync.broken

    async def _gang_end(self, step: Step, t0: float, result: Result) -> Result:
        """This host's run of a gang step ended: report it, wait for the others when it
        went well, and say who failed first when one did (on every member)."""
        sync, self._gang = self._gang, None
        assert sync is not None
        if result.status in ("ok", "skipped"):
            sync.end(self.name, None)
            try:
                await self.guard(sync.settled.wait())
            except Stopped:
                self._cancelled(step, t0)
                raise
        else:
            sync.end(self.name, Failure(self.name, self.coord.label(self.name), step.id, result.exit_code,
                                        result.message))
            if self.running is not None:  # a dropped connection left this rank running there
                await self._stop_orphan(step)
        first = sync.failed
        if first is None:
            return result
        if first.host != self.name:
            self._cause = first
            code = result.exit_code if result.status == "failed" else None
            return Result("failed", code, first.gang_text(), final=True)
        return Result(result.status, result.exit_code, first.gang_text(), final=True)

    def _cancelled(self, step: Step, t0: float) -> None:
        """Report a step stopped by Ctrl-C or cancel (the caller re-raises)."""
        self.sink(ev.StepFinished(host=self.name, step=step.id, status="cancelled",
                                  seconds=round(time.monotonic() - t0, 3), message="interrupted"))

    async def _attempt(self, step: Step) -> Result:
        missing = [source(u) for u in step.uploads if source(u) in self.secret_errors]
        if missing:
            return Result("failed", message=self.secret_errors[missing[0]])
        for up in step.uploads:
            if source(up) in self.short_secrets:
                self.note(step.id, self.short_secrets.pop(source(up)))
        if self.conn is None or self.conn.is_closed():
            raise ConnectionLost("not connected")
        if self.running is not None:  # a copy of a step may still run there: stop it first
            await self._kill_stale(step.id)
        sudo = step.sudo and not await self._is_root()
        if sudo:
            problem = await self._sudo_problem()
            if problem:
                return Result("failed", message=problem, final=True)
        if step.uploads:
            await self._upload(step.uploads)
        passed = step.check is not None and await self._check(step, sudo) == 0
        if self._gang is not None:
            passed = await self._agree(step, passed)
        if passed:
            return Result("skipped", 0, "check passed")
        return await self._exec(step, sudo=sudo, timeout=step.timeout)

    async def _agree(self, step: Step, passed: bool) -> bool:
        """A gang step is skipped only where its check passes on every member (see
        :mod:`.gang`); False when one failed meanwhile (``_exec`` then says so)."""
        sync = self._gang
        assert sync is not None
        sync.vote(self.name, passed)
        if not sync.voted.is_set():
            waits = [asyncio.ensure_future(sync.voted.wait()), asyncio.ensure_future(sync.abort.wait())]
            try:
                await self.guard(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED))
            finally:
                for w in waits:
                    w.cancel()
        if sync.abort.is_set():
            return False
        ran = [h for h, ok in sync.votes.items() if not ok]
        if passed and ran:
            self.note(step.id, f"its check passed here but not on {self.coord.labels(ran)}: it runs on every node")
        return not ran

    async def _is_root(self) -> bool:
        if self.is_root is None:
            if self.spec.user is not None:
                self.is_root = self.spec.user == "root"
            else:
                assert self.conn is not None
                r = await self.guard(self.conn.run("id -u", timeout=30))
                self.is_root = r.stdout.strip() == "0"
        return self.is_root

    async def _sudo_problem(self) -> str:
        """Asked once per host: can the login user use ``sudo -n``? A missing sudo or one
        that wants a password is not fixed by retrying the step."""
        if self.sudo_problem is None:
            assert self.conn is not None
            r = await self.guard(self.conn.run(remote.SUDO_PROBE, timeout=30))
            self.sudo_problem = remote.sudo_problem(self.name, self.spec.user or "", r.exit_status, r.stderr)
        return self.sudo_problem

    async def _check(self, step: Step, sudo: bool) -> int | None:
        """Run the step's "already done" check; its output is not shown."""
        assert step.check is not None and self.conn is not None
        cmd = remote.wrap(step.check, sudo, report_pid=False)
        stdin = remote.env_stdin(step).decode("utf-8", "surrogateescape")
        try:
            r = await self.guard(self.conn.run(cmd, timeout=min(step.timeout, 600), stdin=stdin))
        except CommandTimeout:
            return None
        return r.exit_status

    async def _upload(self, uploads: Sequence[Upload]) -> None:
        assert self.conn is not None
        files = [(remote.sftp_path(up.remote), upload_bytes(up), up.mode) for up in uploads]
        try:
            await self.guard(self.conn.upload(files))
        except ConnectionLost:
            raise
        except SshError as exc:
            raise SshError(f"{self.name}: {exc}") from None

    async def _exec(self, step: Step, *, sudo: bool, timeout: float) -> Result:
        """Run one step's shell, streaming its output as events, within ``timeout``."""
        assert self.conn is not None
        abort = self._gang.abort if self._gang is not None else None
        if abort is not None and abort.is_set():  # another node failed before this one started
            return Result("failed", None, "not started: another node failed", final=True)
        token = remote.new_token()
        proc = await self.guard(self.conn.start(remote.wrap(step.run, sudo)))
        self._launched = True
        proc.feed_stdin(remote.env_stdin(step, token))
        pump = OutputPump(self.sink, self.name, step.id, self.secrets, step.progress, token, self.set_running)

        async def work() -> Completed:
            await pump.run(proc)
            return await proc.wait()

        task: asyncio.Future[Completed] = asyncio.ensure_future(work())
        stop = asyncio.ensure_future(self.stop.wait())
        aborted = asyncio.ensure_future(abort.wait()) if abort is not None else None
        try:
            done, _ = await asyncio.wait({task, stop} | ({aborted} if aborted else set()), timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if aborted is not None:
                aborted.cancel()
        if task in done:
            completed = task.result()  # ConnectionLost goes up: the step is re-run after reconnecting
            if completed.exit_status is None and completed.exit_signal is None:
                if self.conn.is_closed():
                    raise ConnectionLost("connection closed")
                return Result("failed", None, "the remote command ended without an exit status")
            self.set_running(None)
            if completed.exit_signal is not None:
                return Result("failed", None, f"killed by signal {completed.exit_signal}")
            code = completed.exit_status
            return Result("ok" if code == 0 else "failed", code, "" if code == 0 else f"exit code {code}")
        # timed out, cancelled, or a gang step another node failed: kill the remote processes, then stop reading
        if pump.pid is None and not task.done():  # started a moment ago: its marker is on its way
            marker = asyncio.ensure_future(pump.got_pid.wait())
            try:
                await asyncio.wait({marker, task}, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                marker.cancel()
        await self._kill(pump.pid, token, task)
        if task.done() and not task.cancelled() and task.exception() is None:
            self.set_running(None)  # it ended; otherwise it stays recorded for the next attempt
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - the command is being abandoned
            pass
        proc.close()
        if self.stop.is_set():
            raise Stopped()
        if abort is not None and abort.is_set():
            self.note(step.id, f"another node failed {step.id}; stopped it here")
            return Result("failed", None, "stopped: another node failed", final=True)
        self.note(step.id, f"{step.id} timed out after {timeout:g}s; stopped it")
        return Result("timeout", None, f"timed out after {timeout:g}s")

    async def _kill(self, pid: int | None, token: str, task: asyncio.Future[Completed]) -> None:
        if self.conn is not None:
            await kill.stop_step(self.conn, pid, token, task, self.options.kill_grace)

    async def kill_now(self) -> None:
        """TERM the step in flight (a second Ctrl-C's last try; see Executor.kill_now)."""
        rp, conn = self.running, self.conn
        if rp is not None and conn is not None and not conn.is_closed():
            await conn.run(remote.signal_cmd("TERM", rp.pid, rp.token))

    async def _kill_stale(self, step: str | None = None) -> None:
        """Stop a step that may still run on the host (after a dropped connection, or
        left by an earlier attempt of the run) before anything runs there, so two
        copies never race (see :func:`.kill.stop_stale`)."""
        rp = self.running
        if rp is None or self.conn is None:
            return
        stopped = await kill.stop_stale(self.conn, rp, self.options.kill_grace)
        self.set_running(None)
        if stopped and step is not None:
            what = f"{rp.step} " if rp.step else ""
            self.note(step, f"stopped {what}(process group {rp.pid}) still running on the host "
                            f"from an earlier attempt")

    async def _reboot(self, step: Step) -> Result:
        """Reboot after a step: send the command, wait for SSH to drop, then come back."""
        cmd = self.options.reboot_command
        if cmd.startswith("sudo -n ") and await self._is_root():
            cmd = cmd[len("sudo -n "):]
        self.note(step.id, "rebooting the host")
        conn = self.conn
        assert conn is not None
        try:
            done = await until_stopped(self.stop, conn.run(cmd, timeout=60))
            if done.exit_status not in (0, None) and not conn.is_closed():
                err = done.stderr.strip()[-300:]
                return Result("failed", done.exit_status,
                              f"the reboot command failed (exit {done.exit_status}): {err}")
        except (SshError, OSError):
            pass  # the connection dropping under the command is what a reboot looks like
        try:
            await until_stopped(self.stop, asyncio.wait_for(conn.wait_closed(), self.options.reboot_down_timeout))
        except asyncio.TimeoutError:
            return Result("failed", None, f"the host did not go down within {self.options.reboot_down_timeout:g}s "
                                          f"after the reboot command")
        self.conn = None
        self.note(step.id, "host went down; waiting for it to come back")
        try:
            await self.connect()
        except SshError as exc:
            return Result("failed", None, f"the host did not come back after the reboot: {exc}")
        return Result("ok", 0)
