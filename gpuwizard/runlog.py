"""The run directory: everything a run did, written as it happens.

Layout of ``$XDG_STATE_HOME/gpuwizard/runs/<run-id>/`` (see :mod:`gpuwizard.locations`)::

    recipe.yaml              the recipe as run
    origin.json              run id, recipe path and name, start time: written once at
                             creation and never again, so a torn state.json can be rebuilt
    events.jsonl             every event but Output, one JSON object a line
    hosts/<host>.log         the host's full output (stdout+stderr as they came, and
                             the executor's notes), secrets masked
    hosts/<host>.index.jsonl byte ranges of each step attempt in that log
    state.json               run status and, per host, finished step ids -> fingerprint
    done.jsonl               finished steps appended as they finish (merged into
                             state.json's view on open: one small append per step
                             instead of rewriting the whole state)
    running.jsonl            each host's remote process group of the step in flight,
                             appended when it starts and (``null``) when it ends: a
                             hard exit leaves the step running on the host, and the
                             next attempt stops it before running anything there
    lock                     flock'ed while a process runs this directory

The directory is 0700 and every file 0600: logs hold whatever the steps printed.

Why Output is not in events.jsonl: it is the bulk of a run (a million lines for some
steps) and already lives, complete, in the host logs; storing it twice halves
throughput. The index lets ``logs --step`` cut a step out of a log without reading it.

:class:`RunDir` is a sink (``rundir(event)``): one of the three consumers of the
executor's event stream. Writes go straight to disk so an interrupted run (even
``kill -9``) leaves everything up to that moment behind, and nothing is held in memory.
A write that fails (a full disk) does not raise into the executor: the first failure is
kept in :attr:`RunDir.fault` and handed to ``on_fault``, so the runner can stop the
remote steps and say which path is full, and the files stay as they were (resumable).

Why one module of ~470 lines: it is the writer and the reader of one on-disk format, and
the two must change together (every repair the reader makes mirrors a write the writer
can be cut off in). ``gpuwizard logs`` (:mod:`gpuwizard.logs`) only reads through it.

Reading is defensive: a run directory damaged by a crash, a full disk or a hand edit is
repaired where that is safe (torn journal lines, wrong types) and otherwise reported by
path (:class:`DamagedRun`); it never stops other runs from being listed or started.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
import secrets
import sys
import time
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

from gpuwizard import events as ev
from gpuwizard import locations
from gpuwizard.executor import fingerprint
from gpuwizard.privatefile import write_atomic
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step

STATE_VERSION = 1
DIR_MODE, FILE_MODE = 0o700, 0o600


class DamagedRun(ValueError):
    """A run directory that cannot be read back; the message names its path."""


def runs_home() -> pathlib.Path:
    """Where run directories live (:func:`gpuwizard.locations.runs_dir`)."""
    return locations.runs_dir()


def new_run_id(recipe_name: str) -> str:
    """Sortable by time, readable, unique: ``20250101-120000-name-1a2b``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", recipe_name)[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def host_file(host: str) -> str:
    """A file name for a host label (``user@1.2.3.4:22`` -> ``user@1.2.3.4_22``)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", host) or "host"


def _private(path: str, flags: int) -> int:
    """``open()``'s opener: new files are created 0600, whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Replace ``path`` with ``text`` or leave it as it was: a failed write (a full disk)
    removes its temporary file instead of leaving a zero-byte one behind."""
    write_atomic(path, text, mode=FILE_MODE)


def _open_append(path: pathlib.Path, binary: bool = False) -> IO[Any]:
    """Open a journal for appending, line-buffered; a last line torn by a crash is ended
    first, so the next record is not glued onto it."""
    torn = False
    try:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    except OSError:
        pass  # missing or empty
    if binary:
        fh_b = open(path, "ab", buffering=0, opener=_private)
        if torn:
            fh_b.write(b"\n")
        return fh_b
    fh_t = open(path, "a", encoding="utf-8", buffering=1, opener=_private)
    if torn:
        fh_t.write("\n")
    return fh_t


def json_lines(path: pathlib.Path) -> Iterator[Any]:
    """Each parseable JSON line of a journal; torn or non-UTF-8 lines are skipped."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    yield json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError is one
                    continue
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _clean_state(state: Any, origin: Mapping[str, Any], where: pathlib.Path) -> dict[str, Any]:
    """A state dict with the types the code relies on; raises DamagedRun if nothing can be saved."""
    if not isinstance(state, dict):
        if not origin:
            raise DamagedRun(f"{where}: state.json holds {type(state).__name__}, not a run's state")
        state = {}
    for key in ("run_id", "recipe_name", "recipe_path", "started"):
        if key in origin and not state.get(key):
            state[key] = origin[key]
    if not isinstance(state.get("run_id"), str) or not state["run_id"]:
        state["run_id"] = where.name
    state.setdefault("status", "running")
    state["attempts"] = _as_int(state.get("attempts"))
    if not isinstance(state.get("started"), (int, float)):
        state["started"] = 0
    hosts = state.get("hosts")
    hosts = {str(h): v for h, v in hosts.items() if isinstance(v, dict)} if isinstance(hosts, dict) else {}
    for name, hs in hosts.items():
        if not isinstance(hs.get("done"), dict):
            hs["done"] = {}
        hs.setdefault("file", host_file(name))
        hs.setdefault("status", "pending")
    state["hosts"] = hosts
    return state


class RunDir:
    """One run's directory; call it with events to record them.

    Create with :meth:`create`, reopen an earlier one with :meth:`open` (resume, logs).
    ``set_plan`` tells it each host's steps so finished steps are recorded with their
    fingerprint; ``done()`` gives them back for the executor's ``ExecOptions.done``.
    """

    def __init__(self, path: pathlib.Path, state: dict[str, Any]):
        self.path = path
        self.state = state
        self.repaired: list[str] = []            # what :meth:`open` fixed, for a warning
        self.fault: OSError | None = None        # the first write that failed
        self.on_fault: Callable[[OSError], None] | None = None
        self._events: IO[str] | None = None
        self._logs: dict[str, IO[bytes]] = {}
        self._index: dict[str, IO[str]] = {}
        self._open_step: dict[str, tuple[str, int, int]] = {}
        self._stepped: set[str] = set()           # hosts that started a step in this attempt
        self._fingerprints: dict[str, dict[str, str]] = {}
        self._lock_fd: int | None = None
        self._held: list[Callable[[], None]] = []
        self._journal: IO[str] | None = None
        self._running: IO[str] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def run_id(self) -> str:
        return str(self.state["run_id"])

    @classmethod
    def create(cls, recipe_path: str | None, recipe_text: str, recipe_name: str,
               base: str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None) -> "RunDir":
        run_id = new_run_id(recipe_name)
        p = pathlib.Path(path) if path else (pathlib.Path(base) if base else runs_home()) / run_id
        p.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        p.mkdir(exist_ok=bool(path), mode=DIR_MODE)
        os.chmod(p, DIR_MODE)  # an existing --run-dir folder, too
        (p / "hosts").mkdir(exist_ok=True, mode=DIR_MODE)
        now = time.time()
        origin = {"run_id": run_id, "recipe_name": recipe_name,
                  "recipe_path": os.path.abspath(recipe_path) if recipe_path else None, "started": now}
        _write_atomic(p / "recipe.yaml", recipe_text)
        _write_atomic(p / "origin.json", json.dumps(origin))
        state = {"version": STATE_VERSION, **origin, "status": "running", "updated": now, "attempts": 0, "hosts": {}}
        rd = cls(p, state)
        rd.lock()
        rd.save_state()
        return rd

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
        """Read a run directory back, repairing what a crash can leave (a torn or
        non-UTF-8 journal line, a truncated state.json when origin.json survives, fields
        of the wrong type). Raises :class:`DamagedRun` when it is not a run any more."""
        p = pathlib.Path(path)
        repaired: list[str] = []
        origin: dict[str, Any] = {}
        for o in json_lines(p / "origin.json"):
            origin = o if isinstance(o, dict) else {}
        try:
            state: Any = json.loads((p / "state.json").read_bytes().decode("utf-8"))
        except (ValueError, OSError) as exc:
            if not origin:
                why = exc.strerror if isinstance(exc, OSError) else f"unreadable ({exc})"
                raise DamagedRun(f"{p / 'state.json'}: {why}") from None
            state = None
            repaired.append("state.json was missing or unreadable; rebuilt from origin.json and done.jsonl")
        state = _clean_state(state, origin, p)
        for d in json_lines(p / "done.jsonl"):
            if not (isinstance(d, dict) and isinstance(d.get("host"), str) and isinstance(d.get("step"), str)):
                continue
            hs = state["hosts"].setdefault(d["host"], {"file": host_file(d["host"]), "done": {}, "status": "pending"})
            hs["done"][d["step"]] = d.get("fp")
        rd = cls(p, state)
        rd.repaired = repaired
        return rd

    def lock(self) -> bool:
        """Hold the directory's lock while running: a locked run is live, not resumable."""
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def is_locked(self) -> bool:
        try:
            fd = os.open(self.path / "lock", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def hold(self, release: Callable[[], None]) -> None:
        """Release ``release`` (another lock) when this directory is closed."""
        self._held.append(release)

    def begin_attempt(self) -> None:
        """Mark the start of a (re)run in this directory."""
        self.state["attempts"] = _as_int(self.state.get("attempts")) + 1
        self.state["status"] = "running"
        self.save_state()

    def close(self) -> None:
        for fh in [self._events, self._journal, self._running, *self._logs.values(), *self._index.values()]:
            if fh is not None:
                try:
                    fh.close()
                except OSError as exc:  # the last buffered bytes of a full disk
                    self._failed(exc)
        self._events = self._journal = self._running = None
        self._logs.clear()
        self._index.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        while self._held:
            self._held.pop()()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def set_plan(self, plan: Mapping[str, Sequence[Step]]) -> None:
        self._fingerprints = {h: {s.id: fingerprint(s) for s in steps} for h, steps in plan.items()}
        for h, steps in plan.items():
            hs = self._host_state(h)
            hs["steps"] = [s.id for s in steps]
        self.save_state()

    def record_hosts(self, hosts: Sequence[HostSpec]) -> None:
        """How each host was reached, for ``gpuwizard ssh`` (no secret: a key's path, not the key)."""
        for h in hosts:
            self._host_state(h.name)["ssh"] = {"address": h.address, "port": h.port, "user": h.user,
                                               "identity": h.identity, "known_hosts": h.known_hosts}
        self.save_state()

    def done(self) -> dict[str, dict[str, str]]:
        """Per host: finished step id -> fingerprint (for ``ExecOptions.done``)."""
        return {h: dict(v.get("done", {})) for h, v in self.state.get("hosts", {}).items()}

    def record_running(self, host: str, proc: Mapping[str, Any] | None) -> None:
        """``ExecOptions.on_running``: the host's step now runs as remote process group
        ``proc`` (None: it ended). One line appended, on disk at once (line-buffered),
        so even ``os._exit`` or ``kill -9`` leaves it behind."""
        try:
            if self._running is None:
                self._running = _open_append(self.path / "running.jsonl")
            self._running.write(json.dumps({"host": host, "proc": proc}) + "\n")
        except OSError as exc:
            self._failed(exc)

    def running(self) -> dict[str, dict[str, Any]]:
        """Per host: the remote process group last recorded as running and never
        recorded as ended (for ``ExecOptions.running``)."""
        last: dict[str, Any] = {}
        for d in json_lines(self.path / "running.jsonl"):
            if isinstance(d, dict) and "host" in d:
                last[str(d["host"])] = d.get("proc")
        return {h: dict(p) for h, p in last.items() if isinstance(p, dict)}

    def _host_state(self, host: str) -> dict[str, Any]:
        hosts = self.state.setdefault("hosts", {})
        return hosts.setdefault(host, {"file": host_file(host), "done": {}, "status": "pending"})

    def save_state(self) -> None:
        self.state["updated"] = time.time()
        try:
            _write_atomic(self.path / "state.json", json.dumps(self.state, indent=1, sort_keys=True))
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        """A write failed: keep the first failure and tell the runner (once)."""
        if self.fault is None:
            self.fault = exc
            if self.on_fault is not None:
                self.on_fault(exc)

    # ------------------------------------------------------------------ the sink

    def __call__(self, event: ev.Event) -> None:
        try:
            self._record(event)
        except OSError as exc:
            self._failed(exc)

    def _record(self, event: ev.Event) -> None:
        if isinstance(event, ev.Output):
            self._log(event.host).write(event.data.encode("utf-8", "replace"))
            return
        if self._events is None:
            self._events = _open_append(self.path / "events.jsonl")
        self._events.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        if isinstance(event, ev.StepStarted):
            log = self._log(event.host)
            prev = self._open_step.pop(event.host, None)
            if prev is not None:  # a retry or a re-run after a lost connection
                self._write_index(event.host, prev, log.tell(), "retried")
            self._open_step[event.host] = (event.step, event.attempt, log.tell())
            self._stepped.add(event.host)
        elif isinstance(event, ev.StepFinished):
            self._step_finished(event)
        elif isinstance(event, ev.HostFinished):
            hs = self._host_state(event.host)
            hs["status"] = "ok" if event.ok else "failed"
            if event.message:
                hs["message"] = event.message
            if not event.ok and event.message and event.host not in self._stepped:
                # A host that never ran a step (never connected): its log says why.
                self._log(event.host).write(f"[gpuwizard] {event.message}\n".encode("utf-8", "replace"))
            self.save_state()
        elif isinstance(event, ev.RunStarted) and event.ranks:
            self.state["ranks"] = dict(event.ranks)  # `logs` names a cluster's nodes by rank
            self.save_state()
        elif isinstance(event, ev.RunFinished):
            self.state["status"] = "ok" if event.ok else ("interrupted" if event.interrupted else "failed")
            self.state["seconds"] = event.seconds
            self.save_state()

    def _step_finished(self, e: ev.StepFinished) -> None:
        opened = self._open_step.pop(e.host, None)
        if opened and opened[0] == e.step:
            self._write_index(e.host, opened, self._log(e.host).tell(), e.status)
        if e.status in ("ok", "skipped"):
            fp = self._fingerprints.get(e.host, {}).get(e.step)
            if fp is not None:
                self._host_state(e.host)["done"][e.step] = fp
                if self._journal is None:
                    self._journal = _open_append(self.path / "done.jsonl")
                self._journal.write(json.dumps({"host": e.host, "step": e.step, "fp": fp}) + "\n")

    def _write_index(self, host: str, opened: tuple[str, int, int], end: int, status: str) -> None:
        idx = self._index.get(host)
        if idx is None:
            idx = self._index[host] = _open_append(self.path / "hosts" / f"{host_file(host)}.index.jsonl")
        step, attempt, start = opened
        idx.write(json.dumps({"step": step, "attempt": attempt, "start": start, "end": end, "status": status}) + "\n")

    def _log(self, host: str) -> IO[bytes]:
        fh = self._logs.get(host)
        if fh is None:
            self._host_state(host)
            path = self.host_log_path(host)
            if path.is_dir():  # not a log: keep it aside, start a real one
                aside = path.with_name(f"{path.name}.damaged-{secrets.token_hex(2)}")
                path.rename(aside)
                print(f"gpuwizard: {path} was a directory; moved it to {aside}", file=sys.stderr)
            # unbuffered: every chunk is on disk the moment it arrives
            fh = self._logs[host] = _open_append(path, binary=True)
        return fh

    def host_log_path(self, host: str) -> pathlib.Path:
        return self.path / "hosts" / f"{host_file(host)}.log"


# ---------------------------------------------------------------------- finding runs


def list_runs(base: str | os.PathLike[str] | None = None, *, warn: bool = True) -> list[RunDir]:
    """Every readable run, oldest first; a damaged one is named on stderr and skipped."""
    root = pathlib.Path(base) if base else runs_home()
    out = []
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        entries = []
    for p in entries:
        if not (p / "state.json").exists() and not (p / "origin.json").exists():
            continue
        try:
            out.append(RunDir.open(p))
        except DamagedRun as exc:
            if warn:
                print(f"gpuwizard: skipping a damaged run directory: {exc}", file=sys.stderr)
    return sorted(out, key=lambda r: r.state.get("started", 0))


def find_resumable(recipe_path: str, base: str | os.PathLike[str] | None = None,
                   include_failed: bool = False) -> RunDir | None:
    """The newest run of this recipe file that was interrupted (or crashed) and is not
    running now; with ``include_failed`` also one whose steps failed."""
    want = os.path.abspath(recipe_path)
    ok_status = {"interrupted", "running"} | ({"failed"} if include_failed else set())
    for rd in reversed(list_runs(base)):
        if rd.state.get("recipe_path") != want:
            continue
        if rd.state.get("status") in ok_status and not rd.is_locked():
            return rd
        return None  # only the newest run of a recipe is a candidate
    return None
