"""Event sources for the run screen: the real executor, run in the screen's worker thread.

No Textual here. A source is an object with ``run(sink, cancel)`` (blocking; called in
a thread worker), plus ``hosts``/``steps`` when known up front and ``log_path(host)``
for the full per-host log in the run directory. The executor runs on its own asyncio
loop in that thread, so SSH never shares the UI's loop; events go to the run directory
first (:class:`gpuwizard.headless.Fanout`), then to the screen's model.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Callable, Sequence

from gpuwizard import events as ev
from gpuwizard import runner
from gpuwizard.headless import Fanout
from gpuwizard.runrequest import RunRequest

Sink = Callable[[ev.Event], None]


class ExecutorSource:
    """Runs a saved recipe with :class:`gpuwizard.executor.Executor` (provisioning first
    for ``target.gcp``), writing the run directory like ``gpuwizard run`` does."""

    def __init__(self, recipe: Any, path: str, *, hosts: Sequence[Any] | None = None, steps: Sequence[Any] | None = None,
                 run_dir: str | None = None, resume: bool = False, options: dict[str, Any] | None = None,
                 request: RunRequest | None = None) -> None:
        """``hosts``: HostSpecs to use instead of resolving the recipe's (tests);
        ``steps``: Steps instead of the planner's; ``options``: ExecOptions overrides;
        ``request``: what ``gpuwizard run`` was asked (its flags), when it started us
        (otherwise one is made from ``path``, ``run_dir`` and ``resume``)."""
        self.recipe = recipe
        self.path = path
        self.request = request or RunRequest(recipe=path, run_dir=run_dir, resume=resume, fresh=not resume)
        self._hosts = list(hosts) if hosts is not None else None
        self._steps = list(steps) if steps is not None else None
        self.run_dir = run_dir
        self.resume = resume
        self.options = options or {}
        self.rd: Any = None
        self.hosts: list[str] = [h.name for h in self._hosts] if self._hosts else list(recipe.hosts)
        self.steps: list[str] = []
        self.ok: bool | None = None
        self.exit_code: int | None = None
        self.outcome: Any = None
        self.accept_new_host_key = self.request.accept_new_host_key
        #: Called (on this source's thread) with a sentence when a VM ``--wait`` waited for is up;
        #: the run screen sets it to ring the bell and raise a notification.
        self.on_ready: Callable[[str], None] | None = None

    def log_path(self, host: str) -> str | None:
        """The host's full log in the run directory (every line, unlike the capped pane)."""
        if self.rd is None:
            return None
        return str(self.rd.host_log_path(host))

    def run(self, sink: Sink, cancel: threading.Event) -> None:
        steps = self._steps if self._steps is not None else runner.build_steps(self.recipe)
        self.steps = [s.id for s in steps]
        with open(self.path, encoding="utf-8") as fh:
            text = fh.read()
        self.rd, _resumed = runner.open_run_dir(self.request, self.recipe, text)
        fan = Fanout(self.rd, sink)
        try:
            self.ok = asyncio.run(self._go(fan, steps, cancel))
        finally:
            self.rd.close()

    async def _go(self, sink: Sink, steps: list[Any], cancel: threading.Event) -> bool:
        stop = asyncio.Event()

        async def watch_cancel() -> None:
            while not cancel.is_set():
                await asyncio.sleep(0.1)
            stop.set()

        watcher = asyncio.ensure_future(watch_cancel())
        try:
            outcome = await runner.execute(self.recipe, steps, self.rd, sink, hosts=self._hosts,
                                           accept_new_host_key=self.accept_new_host_key, cancel=stop,
                                           wait=runner.wait_policy(self.request, self.recipe, on_ready=self.on_ready),
                                           **self.options)
        finally:
            watcher.cancel()
        self.outcome = outcome
        return outcome.ok


def executor_source(recipe: Any, path: str) -> ExecutorSource:
    """The default source of the run screen for a saved recipe."""
    return ExecutorSource(recipe, os.path.abspath(path))
