"""Screen 1, Project & quota: the project, the GPU, on-demand or spot, and the quota.

The catalog fills the GPU list instantly; the ADC project and the live quota load in
thread workers after the first paint. Offline (no credentials) the screen says so and
the wizard carries on with the catalog. Zero quota is explained with the console link
and exactly what to ask for.
"""

from __future__ import annotations

import re
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import Worker, WorkerState

from gpuwizard import catalog
from gpuwizard.recipe import Gpu
from screens import choices, live
from screens.base import WizardScreen

PROJECT_RE = re.compile(r"^[a-z][-a-z0-9:.]{4,62}[a-z0-9]$")


class QuotaScreen(WizardScreen):
    """Project, GPU type and count, on-demand or spot; global and regional GPU quota."""

    NAME = "quota"
    TITLE = "Project & quota"
    HELP = ("Pick the Google Cloud project, the GPU and how you pay for it. Quota is what Google lets the "
            "project use: a new project has none, so check it here before anything else.")

    def compose_body(self) -> ComposeResult:
        gpus = [c for c in choices.gpu_choices() if c.enabled]
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Project", classes="label")
                yield Input(placeholder="project id (from your gcloud login)", id="project")
            with Vertical(classes="field"):
                yield Static("Pricing", classes="label")
                yield Select([("On-demand", False), ("Spot: ~60% cheaper, can be stopped any time", True)],
                             value=False, allow_blank=False, id="spot")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("GPU", classes="label")
                yield Select([(c.label, c.value) for c in gpus], value=gpus[0].value, allow_blank=False, id="gpu")
            with Vertical(classes="field"):
                yield Static("GPUs per VM", classes="label")
                yield Select([("1", 1)], value=1, allow_blank=False, id="count")
        yield Static("", id="gpu-info", classes="note")
        yield Static("GPU quota", classes="label")
        yield DataTable(id="quota-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="quota-note", classes="note")

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        table = self.query_one("#quota-table", DataTable)
        table.add_columns("Scope", "Metric", "Limit", "Usage", "Free")
        g = self.draft.target.gcp
        if g is None:
            self.query_one("#quota-note", Static).update(
                "This recipe runs on existing hosts (target.ssh): no project or quota needed.")
            return
        proj = self.query_one("#project", Input)
        proj.value = g.project or ""
        info = self.wizard.live.project
        if info and info.project:
            proj.placeholder = f"{info.project} (from your gcloud login)"
        gpu = g.gpu.type if g.gpu else "nvidia-tesla-t4"
        sel = self.query_one("#gpu", Select)
        if catalog.gpu(gpu) is None:
            self._proposed = True
            gpu = "nvidia-tesla-t4"
        sel.value = gpu
        self._fill_counts(gpu, g.gpu.count if g.gpu else 1)
        self.query_one("#spot", Select).value = bool(g.spot)
        self._show_gpu_info()
        self._show_quota()

    def snapshot(self) -> Any:
        return (self.query_one("#project", Input).value.strip(), self.query_one("#gpu", Select).value,
                self.query_one("#count", Select).value, self.query_one("#spot", Select).value)

    def apply(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            return
        project, gpu, count, spot = self.snapshot()
        g.project = project or None
        if g.gpu is None or g.gpu.type != gpu or g.gpu.count != count:
            g.gpu = Gpu(type=str(gpu), count=int(count))
        g.spot = bool(spot)

    def problems(self) -> list[str]:
        if self.draft.target.gcp is None:
            return []
        project, gpu, count, _spot = self.snapshot()
        out = []
        if project and not PROJECT_RE.match(project):
            out.append(f"{project!r} is not a project id: 6-30 lower-case letters, digits and dashes")
        g = catalog.gpu(str(gpu)) if gpu is not Select.BLANK else None
        if g is None:
            out.append("choose a GPU")
        elif count not in g.counts:
            out.append(f"{g.label} takes {', '.join(map(str, g.counts))} GPUs per VM (got {count})")
        return out

    # -------------------------------------------------------------- behaviour

    def _fill_counts(self, gpu: str, want: int) -> None:
        g = catalog.gpu(gpu)
        counts = list(g.counts) if g else [1]
        sel = self.query_one("#count", Select)
        sel.set_options([(str(c), c) for c in counts])
        if want not in counts:
            self._proposed = True
            want = counts[0]
        sel.value = want

    def changed(self) -> None:
        gpu = self.query_one("#gpu", Select).value
        count = self.query_one("#count", Select).value
        g = catalog.gpu(str(gpu))
        if g is not None and count not in g.counts:
            self._fill_counts(str(gpu), int(count) if isinstance(count, int) else 1)
        self._show_gpu_info()
        self._show_quota()

    @on(Select.Changed, "#gpu, #spot")
    @on(Input.Submitted, "#project")
    def _refetch(self) -> None:
        self.call_after_refresh(self.refresh_live)

    def after_mount(self) -> None:
        # Live data after the first paint: the catalog answers instantly meanwhile.
        self.call_after_refresh(self.refresh_live)

    def _show_gpu_info(self) -> None:
        gpu = str(self.query_one("#gpu", Select).value)
        count = self.query_one("#count", Select).value
        g = catalog.gpu(gpu)
        if g is None:
            return
        text = (f"[b]{g.label}[/b] ({g.name}): {g.memory_gb} GB, {g.arch.title()}, compute capability {g.cc}. "
                f"{choices.machine_limits_text(gpu, int(count) if isinstance(count, int) else 1)}")
        if g.notes:
            text += f"\n{g.notes}"
        self.query_one("#gpu-info", Static).update(text)

    def _project(self) -> str | None:
        value = self.query_one("#project", Input).value.strip()
        if value:
            return value
        info = self.wizard.live.project
        return info.project if info else None

    def refresh_live(self) -> None:
        """Start (or restart) the workers that fetch the ADC project and the quota."""
        if self.draft.target.gcp is None:
            return
        if not self.wizard.live_enabled:
            self._show_quota()
            return
        if self.wizard.live.project is None:
            self.query_one("#quota-note", Static).update("Looking for your Google Cloud credentials...")
            self.fetch_project()
            return
        project = self._project()
        gpu = str(self.query_one("#gpu", Select).value)
        spot = bool(self.query_one("#spot", Select).value)
        key = (project, gpu, spot)
        if key in self.wizard.live.quota:
            self._show_quota()
            return
        if self.wizard.live.project.online and project:
            self.query_one("#quota-note", Static).update(f"Loading live {gpu} quota for {project}...")
            self.fetch_quota(project, gpu, spot)
        else:
            self._show_quota()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-project", description="ADC project")
    def fetch_project(self) -> live.ProjectInfo:
        return live.load_project()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-quota", description="GPU quota")
    def fetch_quota(self, project: str, gpu: str, spot: bool) -> live.QuotaView:
        return live.load_quota(project, gpu, spot, online=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker result and error is handled here, in one place."""
        w = event.worker
        if event.state == WorkerState.ERROR:
            self.query_one("#quota-note", Static).update(
                f"Could not load live data ({type(w.error).__name__}: {w.error}). Continuing with the catalog.")
            self.query_one("#quota-note", Static).set_class(True, "-warning")
            return
        if event.state != WorkerState.SUCCESS:
            return
        if w.group == "gcp-project":
            info: live.ProjectInfo = w.result
            self.wizard.live.project = info
            if info.project:
                self.query_one("#project", Input).placeholder = f"{info.project} (from your gcloud login)"
            self.refresh_live() if info.online else self._show_quota()
        elif w.group == "gcp-quota":
            view: live.QuotaView = w.result
            self.wizard.live.quota[(view.project, view.gpu, view.spot)] = view
            self._show_quota()

    def _show_quota(self) -> None:
        table = self.query_one("#quota-table", DataTable)
        note = self.query_one("#quota-note", Static)
        table.clear()
        gpu = str(self.query_one("#gpu", Select).value)
        spot = bool(self.query_one("#spot", Select).value)
        count = self.query_one("#count", Select).value
        project = self._project()
        info = self.wizard.live.project
        view = self.wizard.live.quota.get((project, gpu, spot))
        note.set_class(False, "-warning")
        if not self.wizard.live_enabled or (info is not None and not info.online):
            table.add_row("-", live.quota_metric(gpu, spot), "?", "?", "?")
            note.update((info.message if info and info.message else live.offline_reason()) + "\n"
                        + live.quota_link(project, gpu, spot))
            return
        if view is None:
            table.add_row("-", live.quota_metric(gpu, spot), "...", "...", "...")
            return
        for r in view.rows:
            table.add_row(r.scope, r.metric, f"{r.limit:g}", f"{r.usage:g}", f"{r.free:g}")
        if not view.online:
            note.update(view.message)
        elif view.zero:
            note.set_class(True, "-warning")
            note.update(live.zero_quota_advice(project, gpu, spot, int(count) if isinstance(count, int) else 1))
        else:
            best = max((r for r in view.rows if r.scope != "global"), key=lambda r: r.free, default=None)
            note.update(f"Quota looks fine: {view.global_free if view.global_free is not None else '?'} GPUs free "
                        f"across regions" + (f"; most in {best.scope} ({best.free:g})." if best else "."))
