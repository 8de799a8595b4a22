"""Events the executor emits; every front end is a consumer of this one stream.

Plain dataclasses with no behaviour, so the Textual run screen, the headless renderer
and the run directory writer adapt them without the core knowing any of them.
``to_dict``/``from_dict`` give the JSON shape written to ``events.jsonl`` and printed
by ``gpuwizard run --json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


def _now() -> float:
    return time.time()


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    ts: float = field(default_factory=_now, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event"] = self.kind
        return d


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    recipe: str
    hosts: list[str]
    steps: list[str]
    ranks: dict[str, int] = field(default_factory=dict)  # cluster: host -> node rank (0: the head)
    # host -> its step ids, when hosts run different steps (a cluster's `on:`); else empty
    host_steps: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class HostConnecting(Event):
    """An attempt to connect is starting. From the second attempt on, ``message`` says
    why the previous one failed and how long the executor keeps trying
    ("connection refused; retrying for 8m more"): show it, not a bare attempt count."""

    kind: ClassVar[str] = "host_connecting"
    host: str
    attempt: int = 1
    message: str = ""


@dataclass
class HostConnected(Event):
    kind: ClassVar[str] = "host_connected"
    host: str


@dataclass
class StepStarted(Event):
    kind: ClassVar[str] = "step_started"
    host: str
    step: str
    title: str = ""
    attempt: int = 1


@dataclass
class Output(Event):
    kind: ClassVar[str] = "output"
    host: str
    step: str
    stream: str
    data: str


@dataclass
class Progress(Event):
    kind: ClassVar[str] = "progress"
    host: str
    step: str
    fraction: float
    text: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None
    speed: float | None = None
    eta: float | None = None


@dataclass
class StepFinished(Event):
    """``status`` is one of ok, skipped (already done), failed, timeout, cancelled, not_run."""

    kind: ClassVar[str] = "step_finished"
    host: str
    step: str
    status: str
    exit_code: int | None = None
    seconds: float = 0.0
    message: str = ""


@dataclass
class HostFinished(Event):
    """A host is done. When it failed, ``message`` is the reason in full, with its fix
    (the ``ssh-keyscan`` line for an unknown key, "connection refused after N attempts
    over M s" ...): the run screen, the summary and ``gpuwizard logs`` show it.
    ``connected`` is False for a host that was never reached: then no Output event
    exists for it, and ``message`` is all there is to show (write it to the host's log)."""

    kind: ClassVar[str] = "host_finished"
    host: str
    ok: bool
    message: str = ""
    connected: bool = True


@dataclass
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    ok: bool
    seconds: float = 0.0
    interrupted: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, HostConnecting, HostConnected, StepStarted, Output, Progress,
                StepFinished, HostFinished, RunFinished)
}


def from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON shape (``gpuwizard logs``, resume)."""
    d = dict(d)
    cls = EVENT_TYPES[d.pop("event")]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
