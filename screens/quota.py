"""Screen 1, Project & quota: where the recipe runs, then (for a new Compute Engine VM)
the project, the GPU, on-demand or spot, and the quota; (for existing machines) the SSH
hosts and how to log in to them.

The catalog fills the GPU list instantly; the ADC project and the live quota load in
thread workers after the first paint. Offline (no credentials) the screen says so and
the wizard carries on with the catalog. Zero quota is explained with the console link
and exactly what to ask for. From Cloud Quotas (issue 15) it also shows the GPU-family
quota regions.list omits, the project's quota requests with their states, and a
"Request more quota" dialog (:mod:`screens.quota_request`) that files them. For existing hosts (``target.ssh``) the Zone and Machine
screens have nothing to ask, and Next/Back pass over them (:meth:`WizardApp.skipped_steps`).

The module is one piece (under 500 lines) because both targets are answered on
one screen, switching in place and keeping the other target's answers: splitting the
SSH and Compute Engine halves would split that one state across modules.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Select, Static, TextArea
from textual.worker import Worker, WorkerState

from gpuwizard import catalog
from gpuwizard import recipe as rc
from gpuwizard.gcp import quota_view as QV
from gpuwizard.recipe import GcpTarget, Gpu, Recipe, Ssh, SshTarget, Target
from screens import choices, live
from screens.base import StepBar, WizardScreen
from screens.quota_request import RequestQuotaScreen

PROJECT_RE = re.compile(r"^[a-z][-a-z0-9:.]{4,62}[a-z0-9]$")


def _meta(cls: type, name: str) -> dict[str, Any]:
    """A recipe-model field's constraints: the screen checks what the loader checks,
    read from the model rather than copied."""
    return dict(next(f.metadata for f in dataclasses.fields(cls) if f.name == name))


#: ``[user@]host[:port]``, exactly as the recipe loader checks target.ssh.hosts.
HOST_RE = re.compile(_meta(SshTarget, "hosts")["item_pattern"])
USER_RE = re.compile(_meta(Ssh, "user")["pattern"])
PORT_MIN, PORT_MAX = _meta(Ssh, "port")["minimum"], _meta(Ssh, "port")["maximum"]

TARGETS = [("A new Compute Engine VM (Google Cloud)", "gcp"), ("Machines I already have (SSH)", "ssh")]


class QuotaScreen(WizardScreen):
    """Project, GPU type and count, on-demand or spot; global and regional GPU quota."""

    NAME = "quota"
    TITLE = "Project & quota"
    HELP = ("Choose where the recipe runs. For a new VM pick the Google Cloud project, the GPU and how you pay "
            "for it; quota is what Google lets the project use (a new project has none), so check it first.")

    _live_kind: str = "gcp"  # the target live data was last loaded for

    def compose_body(self) -> ComposeResult:
        gpus = [c for c in choices.gpu_choices() if c.enabled]
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Run on", classes="label")
                yield Select(TARGETS, value="gcp", allow_blank=False, id="target")
            yield Static("", classes="field")
        with Vertical(id="ssh-fields"):
            yield from self._compose_ssh()
        with Vertical(id="gcp-fields"):
            yield from self._compose_gcp(gpus)

    def _compose_ssh(self) -> ComposeResult:
        yield Static("Hosts, one per line: [user@]host[:port]", classes="label", markup=False)
        yield TextArea(id="ssh-hosts")
        yield Static("", id="err-hosts", classes="field-error")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Login user (optional; user@ in a host line wins)", classes="label")
                yield Input(placeholder="ubuntu", id="ssh-user")
                yield Static("", id="err-user", classes="field-error")
            with Vertical(classes="field"):
                yield Static("Port (default 22; host:port wins)", classes="label")
                yield Input(placeholder="22", type="integer", id="ssh-port")
                yield Static("", id="err-port", classes="field-error")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Private key (default: ssh-agent, ~/.ssh/id_*)", classes="label")
                yield Input(placeholder="~/.ssh/id_ed25519", id="ssh-identity")
                yield Static("", id="note-identity", classes="hint")
            with Vertical(classes="field"):
                yield Static("known_hosts (verifies host keys)", classes="label")
                yield Input(placeholder="~/.ssh/known_hosts", id="ssh-known-hosts")
                yield Static("", id="note-known-hosts", classes="hint")
        yield Static("Zone and Machine do not apply to machines you already have: Next goes straight to Driver.",
                     classes="note")

    def _compose_gcp(self, gpus: list[choices.Choice]) -> ComposeResult:
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
        with Vertical(id="cloud-quota"):
            yield Static("", id="family-note", classes="note", markup=False)
            yield Static("", id="requests-note", classes="note", markup=False)
            yield Button("Request more quota", id="request-quota")

    # -------------------------------------------------------------- load / store

    def _kind(self) -> str:
        """"gcp" or "ssh": the target chosen on this screen (the draft follows on leave)."""
        return str(self.query_one("#target", Select).value)

    def load(self) -> None:
        self._cloud: dict[tuple[str, str, bool], QV.CloudView] = {}
        self._filed = ""  # what "Request more quota" filed last
        self._cloud_loading: tuple[str, str, bool] | None = None  # the key the Cloud Quotas worker reads
        self._cloud_worker: Worker | None = None
        self.query_one("#cloud-quota", Vertical).display = False
        table = self.query_one("#quota-table", DataTable)
        table.add_columns("Scope", "Metric", "Limit", "Usage", "Free")
        t = self.draft.target
        kind = "ssh" if t.gcp is None and t.ssh is not None else "gcp"
        self.query_one("#target", Select).value = kind
        self._live_kind = kind
        ssh_t = t.ssh or self.wizard.target_stash.get("ssh") or SshTarget()
        self._load_ssh(ssh_t, self.draft.ssh)
        g = t.gcp or self.wizard.target_stash.get("gcp") or GcpTarget()
        self._load_gcp(g)
        if kind == "ssh":
            self._proposed = False  # hidden Compute Engine widgets propose nothing for this recipe
        self._show_target(kind)

    def _load_ssh(self, target: SshTarget, ssh: Ssh) -> None:
        self.query_one("#ssh-hosts", TextArea).load_text("\n".join(target.hosts))
        self.query_one("#ssh-user", Input).value = ssh.user or ""
        self.query_one("#ssh-port", Input).value = str(ssh.port) if ssh.port != 22 else ""
        self.query_one("#ssh-identity", Input).value = ssh.identity or ""
        self.query_one("#ssh-known-hosts", Input).value = ssh.known_hosts or ""

    def _load_gcp(self, g: GcpTarget) -> None:
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

    def _gcp_values(self) -> tuple[Any, ...]:
        return (self.query_one("#project", Input).value.strip(), self.query_one("#gpu", Select).value,
                self.query_one("#count", Select).value, self.query_one("#spot", Select).value)

    def _hosts(self) -> list[str]:
        return [h.strip() for h in self.query_one("#ssh-hosts", TextArea).text.splitlines() if h.strip()]

    def _ssh_values(self) -> tuple[Any, ...]:
        return (tuple(self._hosts()), self.query_one("#ssh-user", Input).value.strip(),
                self.query_one("#ssh-port", Input).value.strip(), self.query_one("#ssh-identity", Input).value.strip(),
                self.query_one("#ssh-known-hosts", Input).value.strip())

    def snapshot(self) -> Any:
        return (self._kind(), self._gcp_values(), self._ssh_values())

    def apply(self) -> None:
        if self._kind() == "ssh":
            self._apply_ssh()
        else:
            self._apply_gcp()

    def _apply_ssh(self) -> None:
        t = self.draft.target
        if t.gcp is not None:  # keep the VM answers, including any made before the switch
            self._write_gcp(t.gcp)
            self.wizard.target_stash["gcp"] = t.gcp
        hosts, user, port, identity, known_hosts = self._ssh_values()
        if t.ssh is None:
            self.draft.target = t = Target(ssh=SshTarget())
        t.gcp = None
        t.ssh.hosts = list(hosts)
        s = self.draft.ssh
        s.user = user or None
        s.port = int(port) if port else 22
        s.identity = identity or None
        s.known_hosts = known_hosts or None

    def _apply_gcp(self) -> None:
        t = self.draft.target
        if t.gcp is None:
            if t.ssh is not None:
                self.wizard.target_stash["ssh"] = copy.deepcopy(t.ssh)
            self.draft.target = t = Target(gcp=self.wizard.target_stash.pop("gcp", None) or GcpTarget())
        assert t.gcp is not None
        self._write_gcp(t.gcp)

    def _write_gcp(self, g: GcpTarget) -> None:
        project, gpu, count, spot = self._gcp_values()
        g.project = project or None
        if g.gpu is None or g.gpu.type != gpu or g.gpu.count != count:
            g.gpu = Gpu(type=str(gpu), count=int(count))
        g.spot = bool(spot)

    def _ssh_problems(self) -> dict[str, str]:
        """Field -> message, with the recipe loader's own rules (patterns and limits read
        from the model, list rules from :func:`gpuwizard.recipe.structural_problems`)."""
        hosts, user, port, _identity, _known = self._ssh_values()
        out: dict[str, str] = {}
        bad = [h for h in hosts if not HOST_RE.match(h)]
        limits = [(h, msg) for h in hosts if not bad and (msg := rc.host_problem(h))]
        if bad:
            out["hosts"] = (f"{bad[0]!r} is not a host: write [user@]host[:port], e.g. ubuntu@203.0.113.7 "
                            "or gpu-box:2222")
        elif limits:  # the loader's own port and DNS-length rule (values.host_problem)
            out["hosts"] = f"{limits[0][0][:40]!r}: {limits[0][1]}"
        else:
            trial = Recipe(target=Target(ssh=SshTarget(hosts=list(hosts))))
            for p in rc.structural_problems(trial):
                if p.path.startswith("target"):
                    out.setdefault("hosts", p.message)
        if user and not USER_RE.match(user):
            out["user"] = f"{user!r} is not a Linux user name: lower-case letters, digits, _ and -"
        if port and not (port.isdigit() and PORT_MIN <= int(port) <= PORT_MAX):
            out["port"] = f"a port is {PORT_MIN}-{PORT_MAX} (got {port})"
        return out

    def problems(self) -> list[str]:
        if self._kind() == "ssh":
            return list(self._ssh_problems().values())
        project, gpu, count, _spot = self._gcp_values()
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

    def _show_target(self, kind: str) -> None:
        """Show the fields of the chosen target, strike the skipped steps in the bar, and
        redraw the SSH fields' inline messages."""
        self.query_one("#ssh-fields", Vertical).display = kind == "ssh"
        self.query_one("#gcp-fields", Vertical).display = kind == "gcp"
        self.query_one(StepBar).show_skipped(frozenset({"zone", "machine"}) if kind == "ssh" else frozenset())
        probs = self._ssh_problems() if kind == "ssh" else {}
        for field in ("hosts", "user", "port"):
            w = self.query_one(f"#err-{field}", Static)
            w.update(Text(probs.get(field, "")))
            w.display = field in probs
        for wid, note in (("ssh-identity", "note-identity"), ("ssh-known-hosts", "note-known-hosts")):
            path = self.query_one(f"#{wid}", Input).value.strip()
            missing = bool(path) and not os.path.exists(os.path.expanduser(path))
            self.query_one(f"#{note}", Static).update(Text("not found on this computer" if missing else ""))

    @on(TextArea.Changed, "#ssh-hosts")
    def _hosts_changed(self) -> None:
        self._any_changed()

    @on(Select.Changed, "#target")
    def _target_changed(self) -> None:
        """Live quota only matters for Compute Engine: load it when the user switches to it."""
        kind = self._kind()
        if self._loaded and kind == "gcp" and self._live_kind != "gcp":
            self.call_after_refresh(self.refresh_live)
        self._live_kind = kind

    def changed(self) -> None:
        self._show_target(self._kind())
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
        if self._kind() != "gcp":
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
        if self.wizard.live.project.online and project and key not in self._cloud and key != self._cloud_loading:
            self._cloud_loading = key     # a second refresh while it runs must not read everything again
            self._cloud_worker = self.fetch_cloud(project, gpu, spot)
        self._show_cloud()
        if key in self.wizard.live.quota:
            self._show_quota()
            return
        if self.wizard.live.project.online and project:
            self.query_one("#quota-note", Static).update(f"Loading live {gpu} quota for {project}...")
            if key in self._cloud:    # else the Cloud Quotas worker's report fills the table (one read)
                self.fetch_quota(project, gpu, spot)
        else:
            self._show_quota()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-project", description="ADC project")
    def fetch_project(self) -> live.ProjectInfo:
        return live.load_project()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-quota", description="GPU quota")
    def fetch_quota(self, project: str, gpu: str, spot: bool) -> live.QuotaView:
        return live.load_quota(project, gpu, spot, online=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-cloud", description="Cloud Quotas")
    def fetch_cloud(self, project: str, gpu: str, spot: bool) -> QV.CloudView:
        return QV.load_cloud(project, gpu, spot)

    def _cloud_key(self) -> tuple[str, str, bool]:
        return (self._project() or "", str(self.query_one("#gpu", Select).value),
                bool(self.query_one("#spot", Select).value))

    def _show_cloud(self) -> None:
        """The GPU-family quota, the project's requests and "Request more" (once loaded)."""
        view = self._cloud.get(self._cloud_key())
        box = self.query_one("#cloud-quota", Vertical)
        box.display = view is not None and self._kind() == "gcp"
        if view is None:
            return
        fam = view.family_text()
        lines = view.requests_lines()
        self.query_one("#family-note", Static).update(fam or view.note)
        text = "\n".join(t for t in (self._filed, ("Quota requests:\n  " + "\n  ".join(lines)) if lines else
                                     ("" if not fam else view.note)) if t)
        req = self.query_one("#requests-note", Static)
        req.update(text)
        req.display = bool(text)
        self.query_one("#family-note", Static).set_class(view.family_zero(), "-warning")
        self.query_one("#request-quota", Button).disabled = view.report is None

    @on(Button.Pressed, "#request-quota")
    def _request_more(self) -> None:
        view = self._cloud.get(self._cloud_key())
        if view is None:
            return
        count = self.query_one("#count", Select).value
        zones = self.draft.target.gcp.zones if self.draft.target.gcp else []
        region = catalog.region_of(zones[0]) if zones else None

        def done(result: str | None) -> None:
            if result:
                self._filed = result
                self._cloud.pop(self._cloud_key(), None)
                self.call_after_refresh(self.refresh_live)

        self.app.push_screen(RequestQuotaScreen(view, int(count) if isinstance(count, int) else 1, region), done)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker result and error is handled here, in one place."""
        w = event.worker
        if w.group == "gcp-cloud":
            if w is self._cloud_worker and event.state in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                            WorkerState.CANCELLED):
                self._cloud_loading = None
            if event.state == WorkerState.SUCCESS:
                view: QV.CloudView = w.result
                self._cloud[(view.project or "", view.gpu, view.spot)] = view
                self._show_cloud()
                if view.report is not None:
                    self.wizard.live.quota[(view.project, view.gpu, view.spot)] = \
                        live.quota_view_of(view.report, view.project, view.gpu, view.spot)
                    self._show_quota()
                else:   # no report (Cloud Quotas not asked, or the read failed): the plain quota read says why
                    self.fetch_quota(view.project or "", view.gpu, view.spot)
            elif event.state == WorkerState.ERROR:
                self.fetch_quota(*self._cloud_key())
            return
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
        text, warn = live.quota_note(view, project, gpu, spot, int(count) if isinstance(count, int) else 1)
        note.update(text)
        note.set_class(warn, "-warning")
