"""The run directory: everything a run did, written as it happens, and ``gpuwizard logs``.

Layout of ``$XDG_STATE_HOME/gpuwizard/runs/<run-id>/`` (default ``~/.local/state``)::

    recipe.yaml              the recipe as run
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

Why Output is not in events.jsonl: it is the bulk of a run (a million lines for some
steps) and already lives, complete, in the host logs; storing it twice halves
throughput. The index lets ``logs --step`` cut a step out of a log without reading it.

:class:`RunDir` is a sink (``rundir(event)``): one of the three consumers of the
executor's event stream. Writes go straight to disk so an interrupted run (even
``kill -9``) leaves everything up to that moment behind, and nothing is held in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import secrets
import sys
import time
from typing import IO, Any, Iterator, Mapping, Sequence

from gpuwizard import events as ev
from gpuwizard.steps import Step

STATE_VERSION = 1


def runs_home() -> pathlib.Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return pathlib.Path(base) / "gpuwizard" / "runs"


def new_run_id(recipe_name: str) -> str:
    """Sortable by time, readable, unique: ``20250101-120000-name-1a2b``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", recipe_name)[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def host_file(host: str) -> str:
    """A file name for a host label (``user@1.2.3.4:22`` -> ``user@1.2.3.4_22``)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", host) or "host"


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunDir:
    """One run's directory; call it with events to record them.

    Create with :meth:`create`, reopen an earlier one with :meth:`open` (resume, logs).
    ``set_plan`` tells it each host's steps so finished steps are recorded with their
    fingerprint; ``done()`` gives them back for the executor's ``ExecOptions.done``.
    """

    def __init__(self, path: pathlib.Path, state: dict[str, Any]):
        self.path = path
        self.state = state
        self._events: IO[str] | None = None
        self._logs: dict[str, IO[bytes]] = {}
        self._index: dict[str, IO[str]] = {}
        self._open_step: dict[str, tuple[str, int, int]] = {}
        self._fingerprints: dict[str, dict[str, str]] = {}
        self._lock_fd: int | None = None
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
        p.mkdir(parents=True, exist_ok=bool(path))
        (p / "hosts").mkdir(exist_ok=True)
        (p / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
        state = {"version": STATE_VERSION, "run_id": run_id, "recipe_name": recipe_name,
                 "recipe_path": os.path.abspath(recipe_path) if recipe_path else None,
                 "status": "running", "started": time.time(), "updated": time.time(),
                 "attempts": 0, "hosts": {}}
        rd = cls(p, state)
        rd.lock()
        rd.save_state()
        return rd

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
        p = pathlib.Path(path)
        state = json.loads((p / "state.json").read_text(encoding="utf-8"))
        journal = p / "done.jsonl"
        if journal.exists():
            for line in journal.read_text(encoding="utf-8").splitlines():
                try:
                    d = json.loads(line)
                    hosts = state.setdefault("hosts", {})
                    hs = hosts.setdefault(d["host"], {"file": host_file(d["host"]), "done": {}, "status": "pending"})
                    hs.setdefault("done", {})[d["step"]] = d["fp"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash
        return cls(p, state)

    def lock(self) -> bool:
        """Hold the directory's lock while running: a locked run is live, not resumable."""
        import fcntl

        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def is_locked(self) -> bool:
        import fcntl

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

    def begin_attempt(self) -> None:
        """Mark the start of a (re)run in this directory."""
        self.state["attempts"] = int(self.state.get("attempts", 0)) + 1
        self.state["status"] = "running"
        self.save_state()

    def close(self) -> None:
        for fh in [self._events, self._journal, self._running, *self._logs.values(), *self._index.values()]:
            if fh is not None:
                fh.close()
        self._events = self._journal = self._running = None
        self._logs.clear()
        self._index.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def set_plan(self, plan: Mapping[str, Sequence[Step]]) -> None:
        from gpuwizard.executor import fingerprint

        self._fingerprints = {h: {s.id: fingerprint(s) for s in steps} for h, steps in plan.items()}
        for h, steps in plan.items():
            hs = self._host_state(h)
            hs["steps"] = [s.id for s in steps]
        self.save_state()

    def done(self) -> dict[str, dict[str, str]]:
        """Per host: finished step id -> fingerprint (for ``ExecOptions.done``)."""
        return {h: dict(v.get("done", {})) for h, v in self.state.get("hosts", {}).items()}

    def record_running(self, host: str, proc: Mapping[str, Any] | None) -> None:
        """``ExecOptions.on_running``: the host's step now runs as remote process group
        ``proc`` (None: it ended). One line appended, on disk at once (line-buffered),
        so even ``os._exit`` or ``kill -9`` leaves it behind."""
        if self._running is None:
            path = self.path / "running.jsonl"
            torn = False
            try:
                with open(path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    torn = fh.read(1) != b"\n"  # a line cut short by a crash: do not glue onto it
            except OSError:
                pass  # missing or empty
            self._running = open(path, "a", encoding="utf-8", buffering=1)
            if torn:
                self._running.write("\n")
        self._running.write(json.dumps({"host": host, "proc": proc}) + "\n")

    def running(self) -> dict[str, dict[str, Any]]:
        """Per host: the remote process group last recorded as running and never
        recorded as ended (for ``ExecOptions.running``)."""
        last: dict[str, Any] = {}
        try:
            with open(self.path / "running.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    try:
                        d = json.loads(line)
                        last[str(d["host"])] = d["proc"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash
        except OSError:
            return {}
        return {h: dict(p) for h, p in last.items() if isinstance(p, dict)}

    def _host_state(self, host: str) -> dict[str, Any]:
        hosts = self.state.setdefault("hosts", {})
        return hosts.setdefault(host, {"file": host_file(host), "done": {}, "status": "pending"})

    def save_state(self) -> None:
        self.state["updated"] = time.time()
        _write_atomic(self.path / "state.json", json.dumps(self.state, indent=1, sort_keys=True))

    # ------------------------------------------------------------------ the sink

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Output):
            self._log(event.host).write(event.data.encode("utf-8", "replace"))
            return
        if self._events is None:
            self._events = open(self.path / "events.jsonl", "a", encoding="utf-8", buffering=1)
        self._events.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        if isinstance(event, ev.StepStarted):
            log = self._log(event.host)
            prev = self._open_step.pop(event.host, None)
            if prev is not None:  # a retry or a re-run after a lost connection
                self._write_index(event.host, prev, log.tell(), "retried")
            self._open_step[event.host] = (event.step, event.attempt, log.tell())
        elif isinstance(event, ev.StepFinished):
            self._step_finished(event)
        elif isinstance(event, ev.HostFinished):
            self._host_state(event.host)["status"] = "ok" if event.ok else "failed"
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
                    self._journal = open(self.path / "done.jsonl", "a", encoding="utf-8", buffering=1)
                self._journal.write(json.dumps({"host": e.host, "step": e.step, "fp": fp}) + "\n")

    def _write_index(self, host: str, opened: tuple[str, int, int], end: int, status: str) -> None:
        idx = self._index.get(host)
        if idx is None:
            idx = self._index[host] = open(self.path / "hosts" / f"{host_file(host)}.index.jsonl", "a",
                                           encoding="utf-8", buffering=1)
        step, attempt, start = opened
        idx.write(json.dumps({"step": step, "attempt": attempt, "start": start, "end": end, "status": status}) + "\n")

    def _log(self, host: str) -> IO[bytes]:
        fh = self._logs.get(host)
        if fh is None:
            self._host_state(host)
            # unbuffered: every chunk is on disk the moment it arrives
            fh = self._logs[host] = open(self.path / "hosts" / f"{host_file(host)}.log", "ab", buffering=0)
        return fh

    def host_log_path(self, host: str) -> pathlib.Path:
        return self.path / "hosts" / f"{host_file(host)}.log"


# ---------------------------------------------------------------------- finding runs


def list_runs(base: str | os.PathLike[str] | None = None) -> list[RunDir]:
    """Every readable run, oldest first."""
    root = pathlib.Path(base) if base else runs_home()
    out = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if (p / "state.json").is_file():
                try:
                    out.append(RunDir.open(p))
                except (OSError, ValueError):
                    continue
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


# ---------------------------------------------------------------------- gpuwizard logs


def _resolve_run(arg: str | None, base: str | os.PathLike[str] | None = None) -> RunDir:
    from gpuwizard.errors import UsageError

    if arg and os.path.isdir(arg) and os.path.isfile(os.path.join(arg, "state.json")):
        return RunDir.open(arg)
    runs = list_runs(base)
    if not runs:
        raise UsageError(f"no runs yet in {runs_home()}; start one with `gpuwizard run RECIPE`")
    if not arg:
        return runs[-1]
    matches = [r for r in runs if r.run_id == arg] or [r for r in runs if r.run_id.startswith(arg) or arg in r.run_id]
    if len(matches) != 1:
        hint = "several runs match" if matches else "no run matches"
        raise UsageError(f"{hint} {arg!r}; see `gpuwizard logs --list`")
    return matches[0]


def _copy_range(path: pathlib.Path, start: int, end: int | None, out: IO[bytes]) -> None:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            data = fh.read(1 << 16 if left is None else min(1 << 16, left))
            if not data:
                break
            out.write(data)
            if left is not None:
                left -= len(data)


def _index(rd: RunDir, host: str) -> Iterator[dict[str, Any]]:
    p = rd.path / "hosts" / f"{host_file(host)}.index.jsonl"
    if p.exists():
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def cmd_logs(args: argparse.Namespace) -> int:
    """``gpuwizard logs [RUN] [--host H] [--step S] [--list]``."""
    from gpuwizard.errors import UsageError

    out = sys.stdout
    if getattr(args, "list", False):
        runs = list_runs()
        if not runs:
            print(f"no runs yet in {runs_home()}")
            return 0
        print(f"{'RUN':<44} {'STATUS':<12} {'HOSTS':>5}  RECIPE")
        for r in runs:
            print(f"{r.run_id:<44} {r.state.get('status', '?'):<12} {len(r.state.get('hosts', {})):>5}  "
                  f"{r.state.get('recipe_path') or r.state.get('recipe_name', '')}")
        return 0
    rd = _resolve_run(getattr(args, "run", None))
    hosts = list(rd.state.get("hosts", {}))
    want_host = getattr(args, "host", None)
    if want_host:
        picked = [h for h in hosts if h == want_host] or [h for h in hosts if want_host in h]
        if not picked:
            raise UsageError(f"run {rd.run_id} has no host {want_host!r}; it has: {', '.join(hosts)}")
        hosts = picked
    step = getattr(args, "step", None)
    out.flush()
    binary = out.buffer if hasattr(out, "buffer") else None
    for host in hosts:
        log = rd.host_log_path(host)
        if len(hosts) > 1:
            out.write(f"==> {host} <==\n")
            out.flush()
        if not log.exists():
            continue
        index = [r for r in _index(rd, host) if step is None or r.get("step") == step]
        if step is not None and not index:
            continue
        # A whole log shows each step's output under a header saying which step, which
        # attempt and how it ended (a log without an index, from a run cut short before
        # its first step ended, is shown as it is); `--step` prints the raw output alone,
        # ready to redirect into a file.
        ranges: list[tuple[str | None, int, int | None]] = [
            (None if step else f"--- {r.get('step')} (attempt {r.get('attempt', 1)}, {r.get('status', '?')}) ---",
             r["start"], r["end"])
            for r in index] or [(None, 0, None)]
        for header, start, end in ranges:
            if header:
                out.write(header + "\n")
                out.flush()
            if binary is not None:
                _copy_range(log, start, end, binary)
                binary.flush()
            else:
                with open(log, "rb") as fh:
                    fh.seek(start)
                    data = fh.read() if end is None else fh.read(end - start)
                out.write(data.decode("utf-8", "replace"))
    return 0
