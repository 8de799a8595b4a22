"""Builders for cluster tests: the sshd fixture's hosts as the nodes of one cluster
(rank = their order), the executor run over them, and readers of its events.

Several sshd daemons on 127.0.0.1 with distinct ports are the nodes: they share this
machine's file system, so a test can watch what each node's step did through files
under its ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Callable, Mapping, Sequence

from gpuwizard import events as ev
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step


def node_name(rank: int) -> str:
    return f"n{rank}"


def node_specs(hosts: Sequence[Any]) -> list[HostSpec]:
    """One HostSpec per sshd host, named ``n0``, ``n1`` ... in rank order."""
    return [HostSpec(name=node_name(i), address=h.address, port=h.port, user=h.user, identity=h.client_key,
                     known_hosts=h.known_hosts) for i, h in enumerate(hosts)]


def run_nodes(hosts: Sequence[Any], plan: Sequence[Step] | Mapping[str, Sequence[Step]],
              watch: Callable[[ev.Event, Executor], None] | None = None,
              **opts: Any) -> tuple[bool, list[ev.Event], Executor]:
    """Run ``plan`` on the nodes (rank = position); ``watch`` sees every event as it
    comes (to react to one: touch a file, cancel)."""
    events: list[ev.Event] = []
    opts.setdefault("connect_timeout", 15)
    opts.setdefault("kill_grace", 1.0)
    specs = node_specs(hosts)
    opts.setdefault("ranks", {s.name: i for i, s in enumerate(specs)})
    ex: Executor

    def sink(e: ev.Event) -> None:
        events.append(e)
        if watch is not None:
            watch(e, ex)

    ex = Executor(specs, plan, sink, ExecOptions(**opts))
    return asyncio.run(ex.run()), events, ex


def finished(events: Sequence[ev.Event], host: str | None = None) -> list[tuple[str, str]]:
    return [(e.step, e.status) for e in events
            if isinstance(e, ev.StepFinished) and (host is None or e.host == host)]


def step_result(events: Sequence[ev.Event], host: str, step: str) -> ev.StepFinished:
    return next(e for e in events if isinstance(e, ev.StepFinished) and e.host == host and e.step == step)


def host_message(events: Sequence[ev.Event], host: str) -> str:
    return next(e.message for e in events if isinstance(e, ev.HostFinished) and e.host == host)


def output(events: Sequence[ev.Event], host: str, step: str | None = None, stream: str = "stdout") -> str:
    return "".join(e.data for e in events if isinstance(e, ev.Output) and e.host == host
                   and e.stream == stream and (step is None or e.step == step))


def separate_homes(hosts: Sequence[Any], root: pathlib.Path) -> list[pathlib.Path]:
    """Give each node its own HOME (``root/node0`` ...) through sshd's ``SetEnv``, so
    what a step writes under ``~`` (the torchrun helper, datasets) stays in the test's
    directory and differs per node, as on real machines. Restarts each daemon."""
    homes = []
    for i, h in enumerate(hosts):
        home = root / f"node{i}"
        home.mkdir(parents=True, exist_ok=True)
        homes.append(home)
        h.config.write_text(h.config.read_text() + f"SetEnv HOME={home}\n")
        h.stop()
        h.start()
    return homes
