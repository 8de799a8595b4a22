"""The executor: hosts x steps over SSH -> one ordered stream of events.

Hosts run concurrently, steps in order on each host, over one connection per host
that every step reuses. Everything the user sees or that is written down comes out of
the ``sink`` callable as :mod:`gpuwizard.events` dataclasses; the executor knows
nothing about screens, terminals or files. What happens on one host lives in
:mod:`.host`; the shell it sends in :mod:`.remote`; output handling in :mod:`.stream`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Mapping, Sequence

from gpuwizard import events as ev
from gpuwizard.executor.gang import Coordinator
from gpuwizard.executor.host import HostRun, source
from gpuwizard.executor.options import ExecOptions, Sink
from gpuwizard.executor.procs import RemoteProc
from gpuwizard.masking import MIN_SECRET, too_short, values_from_file_text
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step


class Executor:
    """Runs ``steps`` on every host of ``hosts`` and reports through ``sink``.

    ``steps`` is one list for all hosts, or a mapping ``host name -> list``. Steps
    marked ``barrier`` or ``gang`` are taken together by the hosts that hold them
    (:mod:`.gang`).
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
        self.interrupted = False
        self._stop = asyncio.Event()
        coord = Coordinator({h.name: per_host.get(h.name, ()) for h in hosts}, self.options.ranks)
        self.hosts = [HostRun(h, per_host.get(h.name, ()), sink, self.options, self._stop,
                              RemoteProc.from_dict(self.options.running.get(h.name) or {}), coord)
                      for h in hosts]

    async def run(self) -> bool:
        if self.interrupted:
            self._stop.set()
        t0 = time.monotonic()
        if self.options.emit_run_events:
            all_steps: list[str] = []
            for h in self.hosts:
                all_steps += [s.id for s in h.steps if s.id not in all_steps]
            own = {h.name: [s.id for s in h.steps] for h in self.hosts}
            self.sink(ev.RunStarted(run_id=self.options.run_id, recipe=self.options.recipe,
                                    hosts=[h.name for h in self.hosts], steps=all_steps,
                                    ranks=dict(self.options.ranks),
                                    host_steps=own if any(v != all_steps for v in own.values()) else {}))
        for h in self.hosts:
            _load_secrets(h)
        results = await asyncio.gather(*(h.run() for h in self.hosts))
        ok = all(results) and not self.interrupted
        if self.options.emit_run_events:
            self.sink(ev.RunFinished(ok=ok, seconds=round(time.monotonic() - t0, 3), interrupted=self.interrupted))
        return ok

    def cancel(self) -> None:
        """Stop the run cleanly (idempotent)."""
        self.interrupted = True
        self._stop.set()

    async def kill_now(self, timeout: float = 2.0) -> None:
        """Last resort before a hard exit (a second Ctrl-C): send TERM to every remote
        step's processes at once over the open connections, waiting at most
        ``timeout`` seconds in all. Best effort: what does not stop stays recorded
        (``on_running``) for the next attempt to stop."""
        jobs = [asyncio.ensure_future(h.kill_now()) for h in self.hosts if h.running is not None]
        if not jobs:
            return
        _, pending = await asyncio.wait(jobs, timeout=timeout)
        for job in pending:
            job.cancel()
        for job in jobs:
            if job.done() and not job.cancelled():
                job.exception()  # retrieved: a host that is gone is not worth a warning


def _load_secrets(h: HostRun) -> None:
    """Learn the values to mask from every secret upload; note the problems now so the
    step that needs the upload fails with them (and only that step)."""
    for step in h.steps:
        for up in step.uploads:
            found: set[str] = set()
            if up.env is not None:
                # Checked for every upload, secret or not: an unset variable fails its step.
                value = os.environ.get(up.env)
                if value is None:
                    h.secret_errors[source(up)] = (f"environment variable {up.env} is not set: export it "
                                                   f"and run again (its value is uploaded as {up.remote})")
                elif up.secret:
                    found = values_from_file_text(value)
            elif up.secret:
                try:
                    with open(os.path.expanduser(up.local), encoding="utf-8", errors="replace") as fh:
                        found = values_from_file_text(fh.read())
                except OSError as exc:
                    h.secret_errors[up.local] = f"cannot read {up.local} to upload: {exc.strerror or exc}"
            h.secrets |= found
            if too_short(found):
                h.short_secrets[source(up)] = (f"the secret in {source(up)} is shorter than {MIN_SECRET} "
                                               f"characters, so it cannot be masked and may show in this log; "
                                               f"use a longer one")
