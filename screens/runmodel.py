"""The run screen's model: executor events in, per-pane line batches and cell changes out.

No Textual here. :meth:`RunModel.feed` is the executor's sink; it may be called from
any thread and only appends to per-host buffers under a lock (cheap, never blocks on
the UI). The screen calls :meth:`RunModel.drain` on a 20-30 Hz timer and writes each
pane's new lines with one ``Log.write_lines`` call; that batching is what keeps key
presses responsive while four hosts stream (see STYLE.md's measurements).

Output is cleaned for display: ANSI escapes removed, ``\\r`` redraws (apt, pip,
rclone progress) collapsed to their last state. A pane's pending buffer is capped to
the pane's line cap, so a UI that falls behind drops old lines from the *display*
only; the run directory keeps everything.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from gpuwizard import events as ev
from gpuwizard.cluster.nodes import host_label

ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

STATUS_ICON = {"pending": "·", "running": "▶", "ok": "✓", "skipped": "↷", "failed": "✗", "timeout": "⏱",
               "cancelled": "⊘", "not_run": "-", "unreachable": "✗", "elsewhere": " "}
BAD = ("failed", "timeout", "unreachable")


def clean_line(line: str) -> str:
    """One display line: the last ``\\r``-separated state, without ANSI escapes."""
    if "\r" in line:
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    if "\x1b" in line or any(ord(c) < 32 and c != "\t" for c in line):
        line = ANSI_RE.sub("", line)
    return line.expandtabs(4)


@dataclass
class Cell:
    """One host x step: status, duration, progress."""

    status: str = "pending"
    seconds: float | None = None
    fraction: float | None = None
    text: str = ""
    message: str = ""
    started: float | None = None
    start_line: int = 0
    order: int = 0            # when it finished, in the run's order (the failure that came first)

    def render(self) -> str:
        icon = STATUS_ICON.get(self.status, "?")
        if self.status == "running":
            return f"{icon} {self.fraction * 100:3.0f}%" if self.fraction is not None else f"{icon} running"
        if self.status == "unreachable":
            return f"{icon} no connection"
        if self.seconds is not None and self.status not in ("pending", "not_run"):
            s = self.seconds
            dur = f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"
            return f"{icon} {dur}"
        return icon


@dataclass
class HostPane:
    """What the screen needs for one host's log pane."""

    host: str
    pending: deque[str]
    partial: str = ""
    enqueued: int = 0         # lines ever queued for the pane (absolute count)
    drained_upto: int = 0     # ``enqueued`` at the last drain: the pane's last line number
    dropped: int = 0          # lines dropped from the display because the UI fell behind
    step: str = ""
    fraction: float | None = None
    progress_text: str = ""
    finished: bool | None = None
    message: str = ""
    failure: str = ""         # why the host ran none of its steps (never connected), in full


@dataclass
class Drained:
    """What changed since the last drain."""

    lines: dict[str, list[str]] = field(default_factory=dict)
    cells: set[tuple[str, str]] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    structure: bool = False
    finished: bool = False


class RunModel:
    """Thread-safe state of a run, fed by executor events."""

    def __init__(self, hosts: Iterable[str] = (), steps: Iterable[str] = (), max_lines: int = 5000) -> None:
        self.max_lines = max_lines
        self.hosts: list[str] = []
        self.steps: list[str] = []
        self.titles: dict[str, str] = {}
        self.ranks: dict[str, int] = {}  # a cluster's nodes (RunStarted): shown as "node 0 (head) HOST"
        self._finished_steps = 0
        self.cells: dict[tuple[str, str], Cell] = {}
        self.panes: dict[str, HostPane] = {}
        self.run_id: str | None = None
        self.recipe: str | None = None
        self.finished: ev.RunFinished | None = None
        self.started_at = time.time()
        #: The latest line of provisioning (host "gcp"), for the status line while no host
        #: exists yet: "waiting for T4 in 3 zones: next try in 45 s (attempt 7, 14 min so far)".
        self.provisioning = ""
        self.events = 0
        self._lock = threading.Lock()
        self._changed = Drained()
        self.listeners: list[Callable[[ev.Event], None]] = []
        self._setup(list(hosts), list(steps))

    # -------------------------------------------------------------- structure

    def _setup(self, hosts: list[str], steps: list[str]) -> None:
        for h in hosts:
            if h not in self.panes:
                self.hosts.append(h)
                self.panes[h] = HostPane(h, deque(maxlen=self.max_lines))
                self._changed.structure = True
        for s in steps:
            if s not in self.steps:
                self.steps.append(s)
                self._changed.structure = True
        for h in self.hosts:
            for s in self.steps:
                self.cells.setdefault((h, s), Cell())

    def label(self, host: str, shown: str | None = None) -> str:
        """How the screen names ``host`` (``shown``: its shortened form): with its
        node rank in a cluster ("node 0 (head) HOST")."""
        return host_label(host, self.ranks).replace(host, shown if shown is not None else host)

    def _pane(self, host: str) -> HostPane:
        if host not in self.panes:
            self._setup([host], [])
        return self.panes[host]

    def _cell(self, host: str, step: str) -> Cell:
        if step not in self.steps or host not in self.panes:
            self._setup([host], [step])
        self._changed.cells.add((host, step))
        return self.cells[(host, step)]

    # -------------------------------------------------------------- the sink

    def feed(self, event: ev.Event) -> None:
        """The executor's sink: record ``event``. Cheap; safe from any thread."""
        with self._lock:
            self.events += 1
            self._feed(event)
        for fn in self.listeners:
            fn(event)

    __call__ = feed

    def _feed(self, e: ev.Event) -> None:
        if isinstance(e, ev.Output):
            if e.host == "gcp" and e.step == "provision":
                last = e.data.rstrip("\n").rsplit("\n", 1)[-1].strip()
                self.provisioning = last or self.provisioning
            self._output(e.host, e.data)
        elif isinstance(e, ev.Progress):
            c = self._cell(e.host, e.step)
            c.fraction = max(0.0, min(1.0, e.fraction))
            c.text = e.text
            p = self._pane(e.host)
            p.fraction, p.progress_text = c.fraction, e.text
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.StepStarted):
            c = self._cell(e.host, e.step)
            p = self._pane(e.host)
            self._flush_partial(p)
            c.status, c.started, c.fraction, c.seconds = "running", e.ts, None, None
            c.start_line = p.enqueued
            if e.title:
                self.titles.setdefault(e.step, e.title)
            p.step, p.fraction, p.progress_text = e.step, None, ""
            attempt = f" (attempt {e.attempt})" if e.attempt > 1 else ""
            self._line(p, f"── {e.step}: {e.title or e.step}{attempt}")
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.StepFinished):
            c = self._cell(e.host, e.step)
            p = self._pane(e.host)
            self._flush_partial(p)
            c.status, c.seconds, c.message = e.status, e.seconds, e.message
            self._finished_steps += 1
            c.order = self._finished_steps
            if e.status == "ok":
                c.fraction = None
            if e.status in BAD:
                code = f" (exit {e.exit_code})" if e.exit_code is not None else ""
                self._line(p, f"✗ {e.step} {e.status}{code}" + (f": {e.message}" if e.message else ""))
            elif e.status == "skipped":
                self._line(p, f"↷ {e.step}: already done" + (f" ({e.message})" if e.message else ""))
            p.fraction = None
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.RunStarted):
            self.run_id, self.recipe = e.run_id, e.recipe
            if e.ranks and e.ranks != self.ranks:
                self.ranks = dict(e.ranks)
                self._changed.structure = True
            self._setup(list(e.hosts), list(e.steps))
            for h, own in e.host_steps.items():  # steps another node runs (`on: head`): not pending here
                for s in self.steps:
                    if s not in own and (h, s) in self.cells:
                        self.cells[(h, s)].status = "elsewhere"
        elif isinstance(e, ev.HostConnecting):
            p = self._pane(e.host)
            p.message = f"connecting (attempt {e.attempt})" if e.attempt > 1 else "connecting"
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.HostConnected):
            p = self._pane(e.host)
            p.message = "connected"
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.HostFinished):
            p = self._pane(e.host)
            self._flush_partial(p)
            p.finished, p.message = e.ok, e.message or ("done" if e.ok else "failed")
            for s in self.steps:
                c = self.cells[(e.host, s)]
                if c.status == "running":
                    c.status = "cancelled"
                    self._changed.cells.add((e.host, s))
            if not e.ok:
                self._host_failed(e.host, e.message)
            self._changed.hosts.add(e.host)
        elif isinstance(e, ev.RunFinished):
            for p in self.panes.values():
                self._flush_partial(p)
            self.finished = e
            self._changed.finished = True

    def _host_failed(self, host: str, message: str) -> None:
        """A host that failed without a failed step never got to run one (it did not
        connect: host key, refused, auth): its reason goes into its pane, its first
        step's cell says "no connection", and :meth:`first_failure` names it."""
        cells = [self.cells[(host, s)] for s in self.steps]
        if any(c.status not in ("pending", "not_run", "skipped") for c in cells) or message.startswith("interrupted"):
            return  # it ran a step (whose cell says what happened), or the user stopped the run
        p = self.panes[host]
        p.failure = message or "the host did not run its steps"
        first = next((s for s, c in zip(self.steps, cells) if c.status in ("pending", "not_run")), None)
        if first is not None:
            c = self.cells[(host, first)]
            c.status, c.message, c.start_line = "unreachable", p.failure, p.enqueued
            self._changed.cells.add((host, first))
        self._line(p, f"✗ {host} ran no steps: {p.failure}")

    def _output(self, host: str, data: str) -> None:
        p = self._pane(host)
        if not data:
            return
        text = p.partial + data
        if "\n" not in text:
            p.partial = text if len(text) < 65536 else clean_line(text)[-4096:]
            return
        parts = text.split("\n")
        p.partial = parts.pop()
        q = p.pending
        before = len(q)
        # The deque drops the oldest display lines when the UI falls behind.
        q.extend(clean_line(x) if ("\r" in x or "\x1b" in x or "\t" in x) else x for x in parts)
        overflow = before + len(parts) - q.maxlen if q.maxlen is not None else 0
        p.enqueued += len(parts)
        if overflow > 0:
            p.dropped += overflow
        self._changed.hosts.add(host)

    def _flush_partial(self, p: HostPane) -> None:
        if p.partial:
            self._line(p, clean_line(p.partial))
            p.partial = ""

    def _line(self, p: HostPane, line: str) -> None:
        p.pending.append(line)
        p.enqueued += 1
        self._changed.hosts.add(p.host)

    # -------------------------------------------------------------- the screen side

    def drain(self) -> Drained:
        """Take everything new since the last call (the screen's timer calls this)."""
        with self._lock:
            out = self._changed
            self._changed = Drained()
            for h in out.hosts:
                p = self.panes[h]
                if p.pending:
                    lines = list(p.pending)
                    p.pending.clear()
                    out.lines[h] = lines
                p.drained_upto = p.enqueued
            return out

    # -------------------------------------------------------------- questions

    @property
    def running(self) -> bool:
        return self.finished is None

    def first_failure(self) -> tuple[str, str] | None:
        """The first step that failed, on the host where it failed first (a gang step
        fails on every node; the node that broke it reports first)."""
        for s in self.steps:
            bad = [h for h in self.hosts if self.cells[(h, s)].status in BAD]
            if bad:
                return (min(bad, key=lambda h: self.cells[(h, s)].order), s)
        return None

    def host_failures(self) -> dict[str, str]:
        """Hosts that ran none of their steps, with the reason (for the summary)."""
        return {h: p.failure for h, p in self.panes.items() if p.failure}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells.values():
            out[c.status] = out.get(c.status, 0) + 1
        return out


# ---------------------------------------------------------------------- synthetic source


def synthetic_source(hosts: list[str], steps: list[str], lines_per_step: int = 100, chunk_lines: int = 200,
                     fail: tuple[str, str] | None = None, ansi: bool = True, pause: float = 0.0,
                     fixed_ts: float | None = None) -> Callable[[Callable[[ev.Event], None], threading.Event], None]:
    """An event source that behaves like the executor (tests, benches, screenshots).

    Hosts stream interleaved, in chunks of ``chunk_lines`` lines (the executor reads 64
    KiB at a time); some lines carry colour escapes and ``\\r`` progress redraws.
    ``fixed_ts`` makes every event's timestamp (and so every duration) deterministic.
    """
    def run(sink: Callable[[ev.Event], None], cancel: threading.Event) -> None:
        kw = {"ts": fixed_ts} if fixed_ts is not None else {}
        sink(ev.RunStarted(run_id="synthetic", recipe="synthetic.yaml", hosts=list(hosts), steps=list(steps), **kw))
        for h in hosts:
            sink(ev.HostConnected(host=h, **kw))
        t0 = time.time()
        failed: set[str] = set()
        for s in steps:
            for h in hosts:
                if h not in failed:
                    sink(ev.StepStarted(host=h, step=s, title=f"{s} step", **kw))
            n = 0
            while n < lines_per_step:
                if cancel.is_set():
                    sink(ev.RunFinished(ok=False, seconds=time.time() - t0, interrupted=True, **kw))
                    return
                k = min(chunk_lines, lines_per_step - n)
                for h in hosts:
                    if h in failed:
                        continue
                    buf = []
                    for i in range(n, n + k):
                        if ansi and i % 50 == 7:
                            buf.append(f"\x1b[32m{h} {s} line {i}\x1b[0m")
                        elif ansi and i % 50 == 9:
                            buf.append(f"{h} {s} progress 10%\r{h} {s} progress 60%\r{h} {s} line {i}")
                        else:
                            buf.append(f"{h} {s} line {i}")
                    sink(ev.Output(host=h, step=s, stream="stdout", data="\n".join(buf) + "\n", **kw))
                    sink(ev.Progress(host=h, step=s, fraction=(n + k) / lines_per_step, text=f"{n + k}/{lines_per_step}", **kw))
                n += k
                if pause:
                    time.sleep(pause)
            for h in hosts:
                if h in failed:
                    continue
                bad = fail is not None and fail == (h, s)
                sink(ev.StepFinished(host=h, step=s, status="failed" if bad else "ok", exit_code=2 if bad else 0,
                                     seconds=1.5 + steps.index(s), message="synthetic failure" if bad else "", **kw))
                if bad:
                    failed.add(h)
                    for rest in steps[steps.index(s) + 1:]:
                        sink(ev.StepFinished(host=h, step=rest, status="not_run", **kw))
                    sink(ev.HostFinished(host=h, ok=False, message=f"{s} failed", **kw))
        for h in hosts:
            if h not in failed:
                sink(ev.HostFinished(host=h, ok=True, **kw))
        sink(ev.RunFinished(ok=not failed, seconds=time.time() - t0, **kw))
    return run
