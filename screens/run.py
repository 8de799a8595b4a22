"""The run screen: hosts x steps with status, duration and progress; one log pane per host.

Shown after the wizard's eight steps (Review's "Run"), or alone by ``gpuwizard run`` on a
terminal (:mod:`screens.runapp`).

The screen never blocks on SSH: the event source (the executor, or a synthetic one in
tests) runs in a thread worker and feeds :class:`screens.runmodel.RunModel`, whose
``feed`` only appends to per-host buffers. A 25 Hz timer drains those buffers and writes
each pane's new lines with a single ``Log.write_lines`` call; panes keep at most
``max_lines`` lines in memory (the run directory keeps every line).

Why one piece of ~400 lines: the model and the panes are already their own modules
(:mod:`screens.runmodel`, :mod:`screens.panelog`); what is left is one screen's bindings
(follow, layout, jump to a failure, full log, ssh, leave), each acting on the same panes
and the same worker, so splitting it would split one key map across modules.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import threading
from typing import Any, Callable, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, ProgressBar, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from gpuwizard import events as ev
from gpuwizard import exit_codes, notify
from gpuwizard.autostop import settings as autostop_settings
from gpuwizard.cluster.nodes import rank_label
from gpuwizard.plan import describe_provision
from screens import runsource
from screens.dialogs import ChoiceScreen
from screens.fulllog import FullLogScreen
from screens.panelog import HostPaneWidget
from screens.runmodel import BAD, RunModel

Source = Callable[[Callable[[ev.Event], None], threading.Event], None]
FLUSH_HZ = 25
GRID_WHEN_HOSTS = 0  # start in tabs; `g` switches to a grid


class RunScreen(Screen[None]):
    """Runs a recipe (or any event source) and shows it as it happens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow", id="run.follow"),
        Binding("e", "jump_failed", "Failure", id="run.failed"),
        Binding("o", "open_log", "Full log", id="run.open"),
        Binding("g", "layout", "Grid", id="run.layout"),
        # Host switching works whatever has focus (priority), and leaves the arrows to the
        # step table and the log.
        Binding("]", "host(1)", "Next host", key_display="]", priority=True, id="run.next_host"),
        Binding("[", "host(-1)", "Prev host", key_display="[", priority=True, id="run.prev_host"),
        Binding("s", "ssh", "SSH", id="run.ssh"),
        Binding("q", "app.quit", "Quit", id="run.quit"),
        Binding("escape", "leave", "Back", show=False, id="run.back"),
    ]

    def __init__(self, source: Source, *, model: RunModel | None = None, title: str = "run",
                 recipe_path: str | None = None, hourly: float | None = None,
                 log_path: Callable[[str], str | None] | None = None, max_lines: int = 5000,
                 flush_hz: int = FLUSH_HZ, vms: bool = True, autostop: str = "") -> None:
        """``vms``: the hosts are VMs this run created (GCP target), which keep costing
        money when the user quits; ``False`` for ``target.ssh`` hosts. ``autostop``: the
        recipe's auto-stop setting in words (``settings.describe``), shown with the cost."""
        super().__init__(id="run")
        self.source = source
        self.model = model or RunModel(max_lines=max_lines)
        self.max_lines = max_lines
        self.run_title = title
        self.recipe_path = recipe_path
        self.hourly = hourly
        self.log_path = log_path
        self.flush_hz = flush_hz
        self.vms = vms
        self.autostop = autostop
        self.cancel = threading.Event()
        self.following = True
        self.grid = False
        self._hosts_shown: list[str] = []
        self._ranks_shown: dict[str, int] = {}
        self._steps_shown: list[str] = []
        self._done_notified = False
        self._backlog: dict[str, list[str]] = {}
        self._dirty_hosts: set[str] = set()

    @classmethod
    def for_recipe(cls, recipe: Any, path: str, factory: Any = None) -> "RunScreen":
        """The run screen for a saved recipe: the real executor unless a factory is given."""
        src = factory(recipe, path) if factory else runsource.executor_source(recipe, path)
        summary = describe_provision(recipe)  # the one price rule, boot disk included
        hourly = summary.hourly * summary.vms if summary is not None and summary.hourly is not None else None
        g = recipe.target.gcp
        return cls(src.run, title=f"run {os.path.basename(path)}", recipe_path=path, hourly=hourly,
                   log_path=getattr(src, "log_path", None), vms=g is not None,
                   autostop=autostop_settings.describe(recipe) if recipe.autostop is not None else "",
                   model=RunModel(getattr(src, "hosts", ()), getattr(src, "steps", ())))

    # -------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Static(f" gpuwizard  {self.run_title}", id="stepbar")
        with Horizontal(id="run-main"):
            with Vertical(id="run-left"):
                yield DataTable(id="grid", cursor_type="cell", zebra_stripes=True, fixed_columns=1)
                yield Static("", id="run-summary")
            with Vertical(id="run-right"):
                yield Tabs(id="host-tabs")
                yield Container(id="panes", classes="-tabs")
        yield Static("", id="run-status")
        yield Footer()

    def on_mount(self) -> None:
        owner = getattr(self.source, "__self__", None)   # an ExecutorSource's bound run()
        if owner is not None and hasattr(owner, "on_ready"):
            owner.on_ready = lambda message: self.app.call_from_thread(self.vm_ready, message)
        self._restructure()
        self.set_interval(1 / self.flush_hz, self._flush, name="run-flush")
        self.run_source()

    # -------------------------------------------------------------- the source

    def vm_ready(self, message: str) -> None:
        """A VM ``--wait`` waited for is up (maybe hours later): the bell, a toast that stays
        a minute, and a desktop notification where there is a desktop (gpuwizard.notify;
        its bell and escapes go to a throwaway stream: Textual owns the terminal)."""
        self.app.bell()
        self.notify(message, title="Your VM is up", timeout=60)
        notify.notify("gpuwizard: your VM is up", message, stream=io.StringIO())

    @work(thread=True, exclusive=True, exit_on_error=False, group="run", description="executor")
    def run_source(self) -> None:
        self.source(self.model.feed, self.cancel)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The executor thread's end, success or error, is handled here."""
        if event.worker.group != "run":
            return
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.model.feed(ev.RunFinished(ok=False, interrupted=True))
            self.query_one("#run-status", Static).update(f"[b $error]The run stopped:[/] {type(err).__name__}: {err}")
        elif event.state == WorkerState.SUCCESS and self.model.finished is None:
            self.model.feed(ev.RunFinished(ok=not self.model.first_failure()))

    # -------------------------------------------------------------- flushing

    def _restructure(self) -> None:
        """(Re)build the table and the panes for the hosts and steps known so far."""
        m = self.model
        table = self.query_one("#grid", DataTable)
        ranks_changed = m.ranks != self._ranks_shown
        if m.hosts != self._hosts_shown or m.steps != self._steps_shown or ranks_changed:
            table.clear(columns=True)
            table.add_column("Step", key="step")
            for h in m.hosts:
                table.add_column(rank_label(m.ranks[h]) if h in m.ranks else _short_host(h), key=h)
            for s in m.steps:
                table.add_row(s, *[m.cells[(h, s)].render() for h in m.hosts], key=s)
            self._steps_shown = list(m.steps)
        panes = self.query_one("#panes", Container)
        tabs = self.query_one("#host-tabs", Tabs)
        for i, h in enumerate(m.hosts):
            if h in self._hosts_shown:
                if ranks_changed:  # the nodes' ranks came after their tabs
                    tabs.query_one(f"#tab-{i}", Tab).label = m.label(h, _short_host(h))
                continue
            panes.mount(HostPaneWidget(h, i, self.max_lines))
            tabs.add_tab(Tab(m.label(h, _short_host(h)), id=f"tab-{i}"))
        self._ranks_shown = dict(m.ranks)
        if m.hosts and not self._hosts_shown:
            self.call_after_refresh(self._activate, 0)
        self._hosts_shown = list(m.hosts)

    def _pane(self, host: str) -> HostPaneWidget | None:
        try:
            return self.query_one(f"#pane-{self.model.hosts.index(host)}", HostPaneWidget)
        except Exception:  # noqa: BLE001 - not mounted yet
            return None

    def _log(self, host: str) -> Log | None:
        pane = self._pane(host)
        if pane is None:
            return None
        try:
            return pane.query_one(Log)
        except NoMatches:  # mounted, not composed yet
            return None

    def _flush(self) -> None:
        """Timer: move new lines into the panes (one ``write_lines`` per pane) and
        update the cells that changed. Runs 25 times a second; cheap when idle."""
        d = self.model.drain()
        m = self.model
        if d.structure:
            self._restructure()
        hosts_with_lines = set(d.lines) | set(self._backlog)
        for host in hosts_with_lines:
            lines = self._backlog.pop(host, []) + d.lines.get(host, [])
            log = self._log(host)
            if log is None:
                self._backlog[host] = lines[-self.max_lines:]
                continue
            log.write_lines(lines[-self.max_lines:], scroll_end=self.following)
        if d.cells and not d.structure:
            table = self.query_one("#grid", DataTable)
            for (h, s) in d.cells:
                try:
                    # widen as needed: a node's column is as narrow as "node 1" at first
                    table.update_cell(s, h, m.cells[(h, s)].render(), update_width=True)
                except Exception:  # noqa: BLE001 - row/column arriving with the next restructure
                    pass
        self._dirty_hosts |= d.hosts
        for host in list(self._dirty_hosts):
            pane = self._pane(host)
            if pane is None or self._log(host) is None:
                continue
            self._dirty_hosts.discard(host)
            p = m.panes[host]
            bar = pane.query_one(ProgressBar)
            if p.fraction is not None:
                bar.update(progress=p.fraction * 100)
            elif p.finished is not None:
                bar.update(progress=100)
            state = {None: "▶", True: "✓", False: "✗"}[p.finished]
            extra = f" · {p.progress_text}" if p.progress_text else ""
            dropped = f" · {p.dropped:,} lines only in the run directory" if p.dropped else ""
            what = "did not connect" if p.failure else (p.step or p.message)
            pane.query_one(".pane-head", Static).update(
                f"{state} {m.label(host)} · {what}{extra}{dropped}")
            reason = pane.query_one(".pane-reason", Static)
            if p.failure and not reason.display:
                reason.update(f"[b]{_esc(host)} ran no steps.[/b] {_esc(p.failure)}")
                reason.display = True
        if d.cells or d.finished or d.structure:
            self._summary()

    def _summary(self) -> None:
        m = self.model
        c = m.counts()
        parts = [f"{c.get(k, 0)} {k}" for k in ("ok", "running", "failed", "unreachable", "skipped", "pending")
                 if c.get(k)]
        unreachable = "".join(f"\n[b $error]✗ {_esc(h)}[/] did not connect: {_esc(why)}"
                              for h, why in m.host_failures().items())
        self.query_one("#run-summary", Static).update(
            f"{len(m.hosts)} {'nodes' if m.ranks else 'hosts'} x {len(m.steps)} steps\n" + ", ".join(parts)
            + unreachable)
        status = self.query_one("#run-status", Static)
        if m.finished is not None:
            f = m.finished
            stopped = self.cancel.is_set() and not f.ok
            fail = m.first_failure()
            if f.ok:
                status.update("[b $success]Run finished: every step ok.[/] Press q to quit.")
                verdict = "Run finished"
            elif stopped:
                status.update(f"[b $warning]Run stopped.[/] o opens the full log; {self._resume_hint()}")
                verdict = "Run stopped"
            else:
                where = ""
                if fail:
                    no_connection = m.cells[fail].status == "unreachable"
                    who = _esc(m.label(fail[0]))   # "node 1 HOST" in a cluster
                    where = f" ({who} did not connect)" if no_connection else f" ({fail[1]} on {who})"
                status.update(f"[b $error]Run failed{where}.[/] e jumps to it, o opens the full log; "
                              f"{self._resume_hint()}")
                verdict = "Run failed"
            if not self._done_notified:
                self._done_notified = True
                self.notify(verdict, severity="information" if f.ok else ("warning" if stopped else "error"))
        elif m.provisioning and not [h for h in m.hosts if h != "gcp"]:
            # no VM yet: what provisioning does now (the wait's countdown), whole, not cut by the pane
            status.update(f"provisioning: {_esc(m.provisioning)}")
        else:
            cost = f" · ${self.hourly:.2f}/h while the VMs run" if self.hourly else ""
            cost += f" · {self.autostop}" if self.autostop else ""
            status.update(f"running{cost} · {'following' if self.following else 'paused (f follows)'}")

    def _resume_hint(self) -> str:
        if not self.recipe_path:
            return ""
        return f"resume with `gpuwizard run {self.recipe_path} --resume`."

    # -------------------------------------------------------------- actions

    def _activate(self, index: int) -> None:
        tabs = self.query_one("#host-tabs", Tabs)
        tabs.active = f"tab-{index}"

    @on(Tabs.TabActivated, "#host-tabs")
    def _tab(self, event: Tabs.TabActivated) -> None:
        idx = int((event.tab.id or "tab-0").removeprefix("tab-"))
        for pane in self.query(HostPaneWidget):
            pane.set_class(pane.id == f"pane-{idx}", "-active")

    def _active_index(self) -> int:
        active = self.query_one("#host-tabs", Tabs).active or "tab-0"
        return int(active.removeprefix("tab-"))

    def action_host(self, delta: int) -> None:
        if self.model.hosts:
            self._activate((self._active_index() + delta) % len(self.model.hosts))

    def action_follow(self) -> None:
        self.following = not self.following
        for log in self.query(Log):
            log.auto_scroll = self.following
            if self.following:
                log.scroll_end(animate=False)
        self.notify("Following the logs" if self.following else "Paused: the logs keep filling; f follows again")
        self._summary()

    def action_layout(self) -> None:
        self.grid = not self.grid
        panes = self.query_one("#panes", Container)
        panes.set_class(self.grid, "-grid")
        panes.set_class(not self.grid, "-tabs")
        self.query_one("#host-tabs", Tabs).display = not self.grid

    def action_jump_failed(self) -> None:
        fail = self.model.first_failure()
        if fail is None:
            self.notify("No step has failed.")
            return
        host, step = fail
        i = self.model.hosts.index(host)
        if self.grid:
            self.action_layout()
        self._activate(i)
        table = self.query_one("#grid", DataTable)
        table.move_cursor(row=self.model.steps.index(step), column=i + 1)
        pane = self._pane(host)
        if pane is not None:
            log = pane.query_one(Log)
            p = self.model.panes[host]
            first_kept = p.drained_upto - log.line_count
            y = max(0, self.model.cells[(host, step)].start_line - first_kept)
            if self.following:
                self.action_follow()
            self.call_after_refresh(log.scroll_to, y=y, animate=False)
        msg = self.model.cells[(host, step)].message
        self.notify(f"{step} failed on {host}" + (f": {msg}" if msg else ""), severity="error")

    def action_open_log(self) -> None:
        if not self.model.hosts:
            return
        host = self.model.hosts[self._active_index()]
        path = self.log_path(host) if self.log_path else None
        if path and os.path.exists(path):
            failed = any(self.model.cells[(host, s)].status in BAD for s in self.model.steps)
            self.app.push_screen(FullLogScreen(path, host=host, at_failure=failed))
        else:
            self.notify("The full log is in the run directory once the run has written it "
                        "(`gpuwizard logs`).", severity="warning")

    def ssh_argv(self, host: str) -> list[str]:
        """``gpuwizard ssh RECIPE HOST`` (the run's pinned host keys), as this Python runs it."""
        return [sys.executable, "-m", "gpuwizard.cli", "ssh", self.recipe_path or "RECIPE", host]

    def action_ssh(self) -> None:
        """A shell on the selected host: the app steps aside (``App.suspend``) while
        ``gpuwizard ssh`` runs in the terminal, and comes back when the shell ends."""
        if not self.model.hosts:
            return
        host = self.model.hosts[self._active_index()]
        if not self.recipe_path:
            self.notify("This run has no recipe file to open a shell with.", severity="warning")
            return
        argv = self.ssh_argv(host)
        shown = " ".join(shlex.quote(a) for a in ["gpuwizard", *argv[3:]])
        try:
            with self.app.suspend():
                code = subprocess.call(argv)
        except SuspendNotSupported:
            self.notify(f"This terminal cannot hand over to a shell; run `{shown}` in another one.",
                        severity="warning")
            return
        if code:
            self.notify(f"`{shown}` exited with {code}.", severity="warning")

    def action_leave(self) -> None:
        if not self.model.running and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def confirm_quit(self) -> None:
        """Called by the App's quit: a running run asks what to do with the VMs."""
        if not self.model.running:
            fin = self.model.finished
            code = exit_codes.OK if (fin and fin.ok) else (
                exit_codes.INTERRUPTED if fin and fin.interrupted else exit_codes.FAILED)
            self.app.exit(result=code, return_code=code)
            return
        n = len(self.model.hosts)
        where = (f"{n} node{'s' if n != 1 else ''}" if self.model.ranks
                 else f"{n} host{'s' if n != 1 else ''}")
        if self.vms:
            cost = f" (about ${self.hourly:.2f}/h)" if self.hourly else ""
            q = f"The run is still going on {where}. Quit and leave the VMs running{cost}, or stop the run first?"
            leave = "Quit, leave VMs running"
        else:
            q = (f"The run is still going on {where}. If you quit now, the remote steps will be stopped; "
                 "the run can be resumed later.")
            leave = "Quit (stops the remote steps)"

        def answer(choice: str | None) -> None:
            if choice == "leave":
                self.app.exit_message = self.leave_message()  # type: ignore[attr-defined]
                self.cancel.set()
                self.app.exit(result=exit_codes.INTERRUPTED, return_code=exit_codes.INTERRUPTED)
            elif choice == "stop":
                self.cancel.set()
                self.notify("Stopping the run...")

        self.app.push_screen(ChoiceScreen(q, [("leave", leave), ("stop", "Stop the run"),
                                              ("stay", "Keep watching")]), answer)

    def leave_message(self) -> str:
        r = self.recipe_path or "RECIPE"
        if not self.vms:
            return f"The remote steps were stopped. Resume: gpuwizard run {r} --resume"
        return (f"The VMs keep running (and cost money). Resume: gpuwizard run {r} --resume\n"
                f"Delete them: gpuwizard down {r}")


def _esc(text: str) -> str:
    """``text`` shown literally in Textual markup (host names and error messages)."""
    return escape(text)


def _short_host(host: str) -> str:
    return host if len(host) <= 18 else host[:8] + "…" + host[-9:]
