"""The executor: hosts x steps over SSH -> one ordered stream of events.

Hosts run concurrently, steps in order on each host, over one connection per host
that every step reuses. Everything the user sees or that is written down comes out of
the ``sink`` callable as :mod:`gpuwizard.events` dataclasses; the executor knows
nothing about screens, terminals or files.

Why the remote wrapper: OpenSSH ignores "signal" channel requests for sessions without
a pty, and closing a channel does not stop the command. sshd puts each session's
command in its own session/process group, so the wrapper prints its PID (the group id)
as the first line on stderr and ``exec``s the step; a timeout or Ctrl-C kills the whole
group over a second channel of the same connection.

Why the group id is also handed to ``ExecOptions.on_running`` (the run directory writes
it down): a hard exit (a second Ctrl-C, a crash) leaves the step running on the host,
and only that record lets the next attempt of the run stop it (``ExecOptions.running``)
before the step runs again, so two copies never race. The marker also carries the
process's start time and the host's boot id: a pid alone may have been reused, and the
start time survives the ``exec`` of the step's last command (bash execs it), which the
command line does not.

Why read 64 KiB chunks, not lines: per-line handling costs 10-40x at log rates such as
pip or apt output; consumers split lines themselves where they need to.

asyncssh is imported inside methods so the module imports in no time.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence, TypeVar

from gpuwizard import events as ev
from gpuwizard.secrets import Masker, mask_all, values_from_file_text
from gpuwizard.ssh import HostSpec, SshError, connect
from gpuwizard.steps import Step, Upload

if TYPE_CHECKING:  # pragma: no cover
    pass

Sink = Callable[[ev.Event], None]
T = TypeVar("T")

CHUNK = 65536
NOTE = "gpuwizard"  # Output.stream of the executor's own notes (reconnecting, rebooting ...)
PID_MARK = b"\x1egwpid:"  # precedes the remote process group id on the step's stderr


def fingerprint(step: Step) -> str:
    """What makes a finished step still count as done: its shell, flags and env.
    A changed step gets a new fingerprint and re-runs on resume."""
    data = [step.run, step.check, step.sudo, step.reboot, sorted(step.env),
            [(u.local, u.remote, u.mode) + ((u.env,) if u.env else ()) for u in step.uploads]]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ExecOptions:
    """Knobs for a run; the defaults are the production ones."""

    run_id: str = ""
    recipe: str = ""
    connect_timeout: float = 600.0          # keep retrying a (re)connect this long
    reboot_command: str = "sudo -n systemctl reboot"
    reboot_down_timeout: float = 300.0      # how long a rebooting host may take to drop SSH
    max_reconnects: int = 5                 # re-runs of one step after lost connections
    keepalive: float = 15.0
    retry_auth: bool = False                # fresh VMs install our key late
    kill_grace: float = 3.0                 # TERM -> KILL on timeout / Ctrl-C
    done: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # resume: host -> step -> fingerprint
    # resume: host -> the remote process group an earlier attempt left running (stopped before a step runs)
    running: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # told (host, record) as soon as a step's remote process group is known, (host, None) once it ended
    on_running: Callable[[str, dict[str, Any] | None], None] | None = None
    emit_run_events: bool = True            # RunStarted / RunFinished


class _Stopped(Exception):
    """Raised inside a host's flow when the run is being cancelled."""


class _Lost(Exception):
    """The connection dropped; the step is re-run after reconnecting."""


@dataclass(frozen=True)
class RemoteProc:
    """A step's remote process group: its id, and what tells it from a later process
    with the same pid (the pid's start time in clock ticks, the host's boot id)."""

    pid: int
    start: str = ""
    boot: str = ""
    step: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "boot": self.boot, "step": self.step}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RemoteProc | None:
        try:
            pid = int(d["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        start, boot = str(d.get("start") or ""), str(d.get("boot") or "")
        if pid <= 1 or (start and not start.isdigit()) or not re.fullmatch(r"[0-9a-fA-F-]*", boot):
            return None  # never a shell-unsafe value in the kill command
        return cls(pid, start, boot, str(d.get("step") or ""))

    @classmethod
    def parse(cls, marker: bytes, step: str) -> RemoteProc | None:
        """``PID[:START[:BOOT]]`` from the wrapper's marker line."""
        parts = marker.decode("ascii", "replace").strip().split(":")
        return cls.from_dict({"pid": parts[0], "start": parts[1] if len(parts) > 1 else "",
                              "boot": parts[2] if len(parts) > 2 else "", "step": step})


@dataclass
class _Result:
    status: str               # ok, failed, timeout, lost, cancelled
    exit_code: int | None = None
    message: str = ""


class _Host:
    """Per-host state: the connection, secrets to mask, cached facts about the login."""

    def __init__(self, spec: HostSpec, steps: Sequence[Step]):
        self.spec = spec
        self.steps = list(steps)
        self.conn: Any = None
        self.is_root: bool | None = None
        self.secrets: set[str] = set()
        self.secret_errors: dict[str, str] = {}
        self.running: RemoteProc | None = None  # remote process group of the step in flight (or left behind)


class Executor:
    """Runs ``steps`` on every host of ``hosts`` and reports through ``sink``.

    ``steps`` is one list for all hosts, or a mapping ``host name -> list``.
    ``await run()`` returns True when every host finished every step. ``cancel()``
    (call it on the loop's thread, e.g. from ``loop.add_signal_handler``) stops
    cleanly: remote processes are killed, running steps end as ``cancelled``, later
    ones as ``not_run``, and ``run()`` returns False with ``interrupted`` set.
    """

    def __init__(self, hosts: Sequence[HostSpec], steps: Sequence[Step] | Mapping[str, Sequence[Step]],
                 sink: Sink, options: ExecOptions | None = None):
        self.options = options or ExecOptions()
        self.sink = sink
        per_host = steps if isinstance(steps, Mapping) else {h.name: steps for h in hosts}
        self.hosts = [_Host(h, per_host.get(h.name, ())) for h in hosts]
        self.interrupted = False
        self._stop: asyncio.Event | None = None
        self._stale = dict(self.options.running)  # host -> record, consumed at the host's first connect

    # ------------------------------------------------------------------ public

    async def run(self) -> bool:
        self._stop = asyncio.Event()
        if self.interrupted:
            self._stop.set()
        t0 = time.monotonic()
        if self.options.emit_run_events:
            all_steps: list[str] = []
            for h in self.hosts:
                all_steps += [s.id for s in h.steps if s.id not in all_steps]
            self.sink(ev.RunStarted(run_id=self.options.run_id, recipe=self.options.recipe,
                                    hosts=[h.spec.name for h in self.hosts], steps=all_steps))
        for h in self.hosts:
            self._load_secrets(h)
        results = await asyncio.gather(*(self._run_host(h) for h in self.hosts))
        ok = all(results) and not self.interrupted
        if self.options.emit_run_events:
            self.sink(ev.RunFinished(ok=ok, seconds=round(time.monotonic() - t0, 3), interrupted=self.interrupted))
        return ok

    def cancel(self) -> None:
        """Stop the run cleanly (idempotent)."""
        self.interrupted = True
        if self._stop is not None:
            self._stop.set()

    async def kill_now(self, timeout: float = 2.0) -> None:
        """Last resort before a hard exit (a second Ctrl-C): send TERM to every remote
        step's process group at once over the open connections, waiting at most
        ``timeout`` seconds in all. Best effort: what does not stop stays recorded
        (``on_running``) for the next attempt to stop."""
        jobs = []
        for h in self.hosts:
            rp, conn = h.running, h.conn
            if rp is None or conn is None or conn.is_closed():
                continue
            cmd = _signal_cmd("TERM", rp.pid)
            jobs.append(asyncio.ensure_future(conn.run(cmd, check=False)))
        if not jobs:
            return
        _, pending = await asyncio.wait(jobs, timeout=timeout)
        for job in pending:
            job.cancel()
        for job in jobs:
            if job.done() and not job.cancelled():
                job.exception()  # retrieved: a host that is gone is not worth a warning

    # ------------------------------------------------------------------ per host

    def _load_secrets(self, h: _Host) -> None:
        for step in h.steps:
            for up in step.uploads:
                if up.env is not None:
                    # Checked for every upload, secret or not: an unset variable fails its step.
                    value = os.environ.get(up.env)
                    if value is None:
                        h.secret_errors[_source(up)] = (f"environment variable {up.env} is not set: export it "
                                                         f"and run again (its value is uploaded as {up.remote})")
                    elif up.secret:
                        h.secrets |= values_from_file_text(value)
                    continue
                if not up.secret:
                    continue
                try:
                    with open(os.path.expanduser(up.local), encoding="utf-8", errors="replace") as fh:
                        h.secrets |= values_from_file_text(fh.read())
                except OSError as exc:
                    h.secret_errors[up.local] = f"cannot read {up.local} to upload: {exc.strerror or exc}"

    async def _run_host(self, h: _Host) -> bool:
        name = h.spec.name
        done = self.options.done.get(name, {})
        for i, step in enumerate(h.steps):
            done_fp = done.get(step.id)
            if done_fp is not None and done_fp == fingerprint(step):
                self.sink(ev.StepFinished(host=name, step=step.id, status="skipped",
                                          message="done in an earlier attempt of this run"))
                continue
            if h.conn is None:  # connect at the first step with work to do
                try:
                    await self._connect(h)
                    stale = RemoteProc.from_dict(self._stale.pop(name, None) or {})
                    if stale is not None and h.running is None:
                        h.running = stale  # an earlier attempt's step: stopped before anything runs
                except _Stopped:
                    return self._finish_host(h, i, "not_run", "interrupted before connecting")
                except SshError as exc:
                    return self._finish_host(h, i, "not_run", str(exc))
                except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
                    return self._finish_host(h, i, "not_run", f"{name}: cannot connect: {type(exc).__name__}: {exc}")
            try:
                result = await self._run_step(h, step)
            except _Stopped:
                result = _Result("cancelled", message="interrupted")
            if result.status not in ("ok", "skipped"):
                why = f": {result.message}" if result.message and result.status != "cancelled" else ""
                return self._finish_host(h, i + 1, "not_run", f"{step.id} {result.status}{why}")
        self._close(h)
        self.sink(ev.HostFinished(host=name, ok=True, message=f"{len(h.steps)} steps done"))
        return True

    def _finish_host(self, h: _Host, start: int, status: str, message: str) -> bool:
        for step in h.steps[start:]:
            self.sink(ev.StepFinished(host=h.spec.name, step=step.id, status=status))
        self._close(h)
        self.sink(ev.HostFinished(host=h.spec.name, ok=False, message=message))
        return False

    def _close(self, h: _Host) -> None:
        if h.conn is not None:
            h.conn.close()
            h.conn = None

    async def _connect(self, h: _Host) -> None:
        self._close(h)
        deadline = time.monotonic() + self.options.connect_timeout

        def attempt(n: int) -> None:
            self.sink(ev.HostConnecting(host=h.spec.name, attempt=n))

        h.conn = await self._until_stopped(connect(h.spec, deadline=deadline, on_attempt=attempt,
                                                   keepalive=self.options.keepalive,
                                                   retry_auth=self.options.retry_auth))
        self.sink(ev.HostConnected(host=h.spec.name))

    async def _until_stopped(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the run is cancelled first (then raise _Stopped)."""
        assert self._stop is not None
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - we are abandoning it
            pass
        raise _Stopped()

    def _note(self, h: _Host, step: str, text: str) -> None:
        self.sink(ev.Output(host=h.spec.name, step=step, stream=NOTE, data=f"[gpuwizard] {text}\n"))

    def _set_running(self, h: _Host, rp: RemoteProc | None) -> None:
        """Track (and report through ``on_running``) the host's remote process group."""
        if rp is None and h.running is None:
            return
        h.running = rp
        cb = self.options.on_running
        if cb is not None:
            try:
                cb(h.spec.name, rp.to_dict() if rp is not None else None)
            except Exception:  # noqa: BLE001 - a bookkeeping failure must not stop the run
                pass

    # ------------------------------------------------------------------ steps

    async def _run_step(self, h: _Host, step: Step) -> _Result:
        name = h.spec.name
        t0 = time.monotonic()
        attempt = 0
        reconnects = 0
        failures = 0
        while True:
            attempt += 1
            self.sink(ev.StepStarted(host=name, step=step.id, title=step.title, attempt=attempt))
            try:
                result = await self._attempt(h, step)
                if result.status == "ok" and step.reboot:
                    result = await self._reboot(h, step)
            except _Lost as exc:
                result = _Result("lost", message=str(exc))
            except _Stopped:
                self._cancelled(name, step, t0)
                raise
            except SshError as exc:
                result = _Result("failed", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
                result = _Result("failed", message=f"{type(exc).__name__}: {exc}")
            if result.status == "lost":
                reconnects += 1
                if reconnects > self.options.max_reconnects:
                    result = _Result("failed", message=f"the connection dropped {reconnects} times during this step")
                else:
                    self._note(h, step.id, f"connection lost during {step.id}; reconnecting to re-run it")
                    try:
                        await self._connect(h)  # _attempt stops the orphaned step before re-running it
                    except SshError as exc:
                        result = _Result("failed", message=str(exc))
                    except _Stopped:
                        self._cancelled(name, step, t0)
                        raise
                    else:
                        continue
            if result.status in ("failed", "timeout") and failures < step.retries:
                failures += 1
                self._note(h, step.id, f"{step.id} {result.status}; retry {failures} of {step.retries}")
                continue
            result.message = mask_all(result.message, h.secrets) if h.secrets else result.message
            self.sink(ev.StepFinished(host=name, step=step.id, status=result.status, exit_code=result.exit_code,
                                      seconds=round(time.monotonic() - t0, 3), message=result.message))
            return result

    async def _attempt(self, h: _Host, step: Step) -> _Result:
        missing = [_source(u) for u in step.uploads if _source(u) in h.secret_errors]
        if missing:
            return _Result("failed", message=h.secret_errors[missing[0]])
        if h.conn is None or h.conn.is_closed():
            raise _Lost("not connected")
        if h.running is not None:  # a copy of a step may still run there: stop it first
            await self._kill_stale(h, step.id)
        sudo = step.sudo and not await self._is_root(h)
        if step.uploads:
            await self._upload(h, step.uploads)
        if step.check:
            code = await self._check(h, step, sudo)
            if code == 0:
                return _Result("skipped", 0, "already done (check passed)")
        return await self._exec(h, step, _script(step), sudo=sudo, timeout=step.timeout)

    async def _is_root(self, h: _Host) -> bool:
        if h.is_root is None:
            if h.spec.user is not None:
                h.is_root = h.spec.user == "root"
            else:
                r = await self._guard(h.conn.run("id -u", check=False, timeout=30))
                h.is_root = (r.stdout or "").strip() == "0"
        return h.is_root

    async def _guard(self, aw: Awaitable[T]) -> T:
        """Await a remote operation, turning a dropped connection into _Lost."""
        import asyncssh

        try:
            return await self._until_stopped(aw)
        except (asyncssh.ConnectionLost, asyncssh.ChannelOpenError, asyncssh.DisconnectError,
                ConnectionError, BrokenPipeError) as exc:
            raise _Lost(str(exc) or type(exc).__name__) from None

    async def _check(self, h: _Host, step: Step, sudo: bool) -> int | None:
        """Run the step's "already done" check; its output is not shown."""
        import asyncssh

        assert step.check is not None
        cmd = _wrap(_env_prelude(step) + step.check, sudo, report_pid=False)
        try:
            r = await self._guard(h.conn.run(cmd, check=False, timeout=min(step.timeout, 600), stdin=asyncssh.DEVNULL))
        except asyncssh.TimeoutError:
            return None
        return r.exit_status

    async def _upload(self, h: _Host, uploads: Sequence[Upload]) -> None:
        """SFTP each file: written to a temporary name with its mode, then renamed,
        so the content never sits on disk readable by others, even for a moment."""
        import asyncssh

        async def go() -> None:
            async with h.conn.start_sftp_client() as sftp:
                for up in uploads:
                    remote = _sftp_path(up.remote)
                    parent = os.path.dirname(remote)
                    if parent and parent not in (".", "/"):
                        await sftp.makedirs(parent, exist_ok=True)
                    tmp = f"{remote}.gwtmp{os.getpid()}"
                    data = _upload_bytes(up)
                    async with sftp.open(tmp, "wb", attrs=asyncssh.SFTPAttrs(permissions=up.mode)) as f:
                        await f.write(data)
                    await sftp.chmod(tmp, up.mode)
                    await sftp.posix_rename(tmp, remote)

        try:
            await self._guard(go())
        except asyncssh.SFTPError as exc:
            raise SshError(f"{h.spec.name}: uploading to {uploads[0].remote} failed: {exc.reason}") from None

    async def _exec(self, h: _Host, step: Step, script: str, *, sudo: bool, timeout: float) -> _Result:
        """Run one step's shell, streaming its output as events, within ``timeout``."""
        import asyncssh

        name = h.spec.name
        proc = await self._guard(h.conn.create_process(_wrap(script, sudo), encoding=None))
        proc.stdin.write_eof()
        pid: list[int] = []
        got_pid = asyncio.Event()
        sink = self.sink
        parse = _progress_parser(step.progress)

        async def pump(stream: str, reader: Any) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            masker = Masker(h.secrets)
            lines = _LineSplitter() if parse else None
            head = stream == "stderr"
            buf = b""
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if head:  # the wrapper's marker line on stderr carries the process group id
                    buf += data
                    at = buf.find(PID_MARK)
                    nl = buf.find(b"\n", at) if at >= 0 else -1
                    if nl < 0:
                        if at < 0 and len(buf) > CHUNK:  # no marker coming: pass through
                            head, data = False, buf
                            got_pid.set()
                        else:
                            continue
                    else:
                        head = False
                        rp = RemoteProc.parse(buf[at + len(PID_MARK):nl], step.id)
                        if rp is not None:
                            pid.append(rp.pid)
                            self._set_running(h, rp)
                        got_pid.set()
                        data = buf[:at] + buf[nl + 1:]
                        if not data:
                            continue
                text = masker.feed(decoder.decode(data))
                if text:
                    sink(ev.Output(host=name, step=step.id, stream=stream, data=text))
                    if lines is not None:
                        for line in lines.feed(text):
                            _emit_progress(sink, name, step.id, parse, line)
            text = masker.feed(decoder.decode(b"", final=True)) + masker.flush()
            if text:
                sink(ev.Output(host=name, step=step.id, stream=stream, data=text))
            if lines is not None:
                for line in lines.feed(text) + lines.flush():
                    _emit_progress(sink, name, step.id, parse, line)
            if stream == "stderr":
                got_pid.set()  # no marker came

        async def work() -> Any:
            await asyncio.gather(pump("stdout", proc.stdout), pump("stderr", proc.stderr))
            return await proc.wait()

        task = asyncio.ensure_future(work())
        assert self._stop is not None
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task in done:
            try:
                completed = task.result()
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
                raise _Lost(str(exc)) from None
            if completed.exit_status is None and completed.exit_signal is None:
                if h.conn.is_closed():
                    raise _Lost("connection closed")
                return _Result("failed", None, "the remote command ended without an exit status")
            self._set_running(h, None)
            if completed.exit_signal is not None:
                return _Result("failed", None, f"killed by signal {completed.exit_signal[0]}")
            code = completed.exit_status
            return _Result("ok" if code == 0 else "failed", code, "" if code == 0 else f"exit code {code}")
        # timed out or cancelled: kill the remote process group, then stop reading
        if not pid and not task.done():  # started a moment ago: its marker is on its way
            marker = asyncio.ensure_future(got_pid.wait())
            try:
                await asyncio.wait({marker, task}, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                marker.cancel()
        await self._kill(h, pid[0] if pid else None, task)
        if task.done() and not task.cancelled() and task.exception() is None:
            self._set_running(h, None)  # it ended; otherwise it stays recorded for the next attempt
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - the command is being abandoned
            pass
        proc.close()
        if self._stop.is_set():
            raise _Stopped()
        self._note(h, step.id, f"{step.id} timed out after {timeout:g}s; stopped it")
        return _Result("timeout", None, f"timed out after {timeout:g}s")

    async def _kill(self, h: _Host, pid: int | None, task: asyncio.Future[Any]) -> None:
        """TERM the remote process group, KILL it if it lingers past the grace period."""
        if pid is None or h.conn is None or h.conn.is_closed():
            return
        grace = self.options.kill_grace
        for sig in ("TERM", "KILL"):
            cmd = _signal_cmd(sig, pid)
            try:
                await asyncio.wait_for(h.conn.run(cmd, check=False), 10)
            except Exception:  # noqa: BLE001 - best effort: the host may be gone
                return
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
                return
            except BaseException:  # noqa: BLE001 - still running (or failed): escalate
                if task.done():
                    return

    async def _kill_stale(self, h: _Host, step: str | None = None) -> None:
        """Stop a step that may still run on the host (after a dropped connection, or
        left by an earlier attempt of the run) before anything runs there, so two
        copies never race: TERM its process group, KILL it after the grace period, and
        wait until it is gone. The pid is trusted only while it is the same process:
        same start time and boot id (a rebooted or busy host reuses pids), or, for a
        record without them, still our wrapper's bash. A group whose leader exited is
        still ours: its id cannot be reused while the group exists."""
        rp = h.running
        if rp is None or h.conn is None:
            return
        grace = self.options.kill_grace
        cmd = "sh -c " + shlex.quote(_stale_kill_script(rp, int(grace * 10)))
        try:
            r = await asyncio.wait_for(h.conn.run(cmd, check=False), grace + 15)
        except Exception as exc:  # noqa: BLE001 - best effort; the step goes ahead unless the connection went
            if h.conn is None or h.conn.is_closed():
                raise _Lost(str(exc) or type(exc).__name__) from None  # tried again after reconnecting
            self._set_running(h, None)
            return
        self._set_running(h, None)
        if "stopped" in (r.stdout or "") and step is not None:
            what = f"{rp.step} " if rp.step else ""
            self._note(h, step, f"stopped {what}(process group {rp.pid}) still running on the host "
                                f"from an earlier attempt")

    def _cancelled(self, host: str, step: Step, t0: float) -> None:
        """Report a step stopped by Ctrl-C or cancel (the caller re-raises)."""
        self.sink(ev.StepFinished(host=host, step=step.id, status="cancelled",
                                  seconds=round(time.monotonic() - t0, 3), message="interrupted"))

    async def _reboot(self, h: _Host, step: Step) -> _Result:
        """Reboot after a step: send the command, wait for SSH to drop, then come back."""
        import asyncssh

        cmd = self.options.reboot_command
        if cmd.startswith("sudo -n ") and await self._is_root(h):
            cmd = cmd[len("sudo -n "):]
        self._note(h, step.id, "rebooting the host")
        conn = h.conn
        try:
            proc = await conn.create_process(cmd, stdin=asyncssh.DEVNULL)
            done = await self._until_stopped(asyncio.wait_for(proc.wait(), 60))
            if done.exit_status not in (0, None) and not conn.is_closed():
                err = (done.stderr or "").strip()[-300:]
                return _Result("failed", done.exit_status,
                               f"the reboot command failed (exit {done.exit_status}): {err}")
        except (asyncssh.Error, OSError, asyncio.TimeoutError):
            pass  # the connection dropping under the command is what a reboot looks like
        try:
            await self._until_stopped(asyncio.wait_for(conn.wait_closed(), self.options.reboot_down_timeout))
        except asyncio.TimeoutError:
            return _Result("failed", None, f"the host did not go down within {self.options.reboot_down_timeout:g}s "
                                           f"after the reboot command")
        h.conn = None
        self._note(h, step.id, "host went down; waiting for it to come back")
        try:
            await self._connect(h)
        except SshError as exc:
            return _Result("failed", None, f"the host did not come back after the reboot: {exc}")
        return _Result("ok", 0)


# ---------------------------------------------------------------------- helpers


def _source(up: Upload) -> str:
    """Where an upload's content comes from: its local path, or ``$NAME`` for ``env``."""
    return up.local if up.env is None else f"${up.env}"


def _upload_bytes(up: Upload) -> bytes:
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


def _env_prelude(step: Step) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in step.env)


def _script(step: Step) -> str:
    return _env_prelude(step) + step.run


def _wrap(script: str, sudo: bool, report_pid: bool = True) -> str:
    """The command line sent to sshd (run by the login shell).

    ``echo $$ >&2; exec ...`` reports the process group id (sshd makes each session's
    command a session leader) before becoming the step, so no extra process stays
    around. ``sudo -n`` never prompts: a missing sudo right fails at once.
    ``--norc``: bash sources bashrc files when it thinks sshd started it, and
    Debian's /etc/bash.bashrc fails under ``-u``; steps must not depend on them anyway.
    """
    inner = f"bash --norc --noprofile -euo pipefail -c {shlex.quote(script)}"
    if sudo:
        inner = f"sudo -n -- {inner}"
    return f"{_PID_PRELUDE}; exec {inner}" if report_pid else f"exec {inner}"


# Builtins only (no fork): the login shell's pid, its start time (field 22 of
# /proc/PID/stat; a login shell's name has no spaces) and the boot id, on one line.
_PID_PRELUDE = ("{ read -r x x x x x x x x x x x x x x x x x x x x x gws x </proc/$$/stat; "
                "read -r gwb </proc/sys/kernel/random/boot_id; } 2>/dev/null; "
                "printf '\\036gwpid:%d:%s:%s\\n' $$ \"$gws\" \"$gwb\" >&2")


_OURS = "'bash --norc --noprofile -euo pipefail -c '*|'sudo -n -- bash --norc --noprofile -euo pipefail -c '*"


def _signal_cmd(sig: str, pid: int) -> str:
    """Shell that signals remote process group ``pid`` (its leader alone as a fallback).

    ``kill -s SIG -- -PGID`` is the form every shell's kill takes (dash, Debian's sh,
    rejects ``kill -SIG -- -PGID``). A ``sudo`` step's processes belong to root: when
    the login user may not signal them, ``sudo -n kill`` does (GCE login users have
    passwordless sudo; elsewhere it fails quietly)."""
    return (f"{{ kill -s {sig} -- -{pid} || sudo -n kill -s {sig} -- -{pid} || kill -s {sig} {pid} "
            f"|| sudo -n kill -s {sig} {pid}; }} 2>/dev/null; true")


def _stale_kill_script(rp: RemoteProc, grace_ticks: int) -> str:
    """A POSIX sh script (run as ``sh -c``) that stops ``rp``'s process group if it
    is still the process we started, then prints ``stopped``; see ``_kill_stale``.
    Signals go as ``kill -s SIG -- -PGID``: dash (Debian's and Ubuntu's sh) rejects
    ``kill -SIG -- -PGID`` and would then signal the leader alone.
    Root processes of a ``sudo`` step are signalled through ``sudo -n`` where the
    login user may use it."""
    p = rp.pid
    if rp.start:
        same = f'[ "${{20}}" = {rp.start} ]'
    else:
        same = (f"case \"$(tr '\\0' ' ' </proc/{p}/cmdline 2>/dev/null)\" in {_OURS}) true;; *) false;; esac")
    boot = (f'read -r b </proc/sys/kernel/random/boot_id 2>/dev/null; [ "$b" = {rp.boot} ] || exit 0\n'
            if rp.boot else "")
    return f"""{boot}if s=$(cat /proc/{p}/stat 2>/dev/null) && [ -n "$s" ]; then
  s=${{s##*) }}; set -- $s
  {same} || exit 0
elif [ -z "{rp.boot}" ] || ! kill -s 0 -- -{p} 2>/dev/null; then
  exit 0
fi
k=; [ "$(id -u)" = 0 ] || {{ sudo -n true 2>/dev/null && k="sudo -n"; }}
$k kill -s TERM -- -{p} 2>/dev/null || $k kill -TERM {p} 2>/dev/null
i=0; while {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null && [ $i -lt {grace_ticks} ]; do sleep 0.1; i=$((i+1)); done
if {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null; then
  $k kill -s KILL -- -{p} 2>/dev/null || $k kill -KILL {p} 2>/dev/null
  i=0; while {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
echo stopped
"""


def _sftp_path(remote: str) -> str:
    """SFTP paths are relative to the login user's home, which is what ``~`` means."""
    if remote == "~":
        return "."
    if remote.startswith("~/"):
        return remote[2:]
    return remote


class _LineSplitter:
    """Splits a text stream into lines on \\n and \\r (progress bars redraw with \\r)."""

    _SPLIT = re.compile(r"\r\n|\r|\n")

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, text: str) -> list[str]:
        parts = self._SPLIT.split(self._rest + text)
        self._rest = parts.pop()
        return [p for p in parts if p]

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, ""
        return [rest] if rest else []


def _progress_parser(kind: str | None) -> Callable[[str], dict[str, Any] | None] | None:
    if not kind:
        return None
    from gpuwizard import progress

    return lambda line: progress.parse(kind, line)


def _emit_progress(sink: Sink, host: str, step: str, parse: Callable[[str], dict[str, Any] | None], line: str) -> None:
    try:
        d = parse(line)
    except Exception:  # noqa: BLE001 - a parser bug must not stop the step
        return
    if not d:
        return
    names = {"fraction", "text", "bytes_done", "bytes_total", "speed", "eta"}
    kw = {k: v for k, v in d.items() if k in names}
    kw.setdefault("fraction", 0.0)
    sink(ev.Progress(host=host, step=step, **kw))
