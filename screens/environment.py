"""Screen 5, Environment: venv or conda, Python, PyTorch matching the CUDA choice, a repo.

The repository preset is the case gpuwizard was born from, ST-GCN, as
:func:`gpuwizard.presets.stgcn` defines it (the shipped stgcn-t4 recipe equals it).
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Select, Static, TextArea

from gpuwizard import presets
from gpuwizard.recipe import Env, Repo
from screens import choices
from screens.base import WizardScreen

REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class EnvironmentScreen(WizardScreen):
    """The Python environment the experiment runs in."""

    NAME = "environment"
    TITLE = "Environment"
    HELP = ("The PyTorch build must match the CUDA you chose and your GPU's generation; the list only offers "
            "wheels that do. Add the paper's repository and the commands that set it up.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "preset", "ST-GCN preset", id="env.preset"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Environment", classes="label")
                yield Select([("venv (fast, default)", "venv"), ("conda", "conda"), ("none: skip", "none")],
                             value="venv", allow_blank=False, id="manager")
            with Vertical(classes="field"):
                yield Static("Python", classes="label")
                yield Select([(p, p) for p in choices.PYTHONS], value="3.10", allow_blank=False, id="python")
            with Vertical(classes="field"):
                yield Static("PyTorch", classes="label")
                yield Select([("no PyTorch", "")], value="", allow_blank=False, id="torch")
        yield Static("", id="torch-note", classes="note")
        yield Static("Extra pip packages (space separated)", classes="label")
        yield Input(placeholder="e.g. numpy==1.26.4 opencv-python", id="packages")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Git repository", classes="label")
                yield Input(placeholder="https://github.com/owner/repo.git", id="repo-url")
            with Vertical(classes="field"):
                yield Static("Branch, tag or commit", classes="label")
                yield Input(placeholder="default branch", id="repo-ref")
        with Horizontal(classes="row", id="setup-row"):
            yield Static("Setup commands, one per line (run inside the clone, environment active)", classes="label")
            yield Button("ST-GCN preset (ctrl+t)", id="preset")
        yield TextArea(id="repo-setup", soft_wrap=False)

    # -------------------------------------------------------------- helpers

    def _fill_torch(self, want: str | None) -> None:
        opts = choices.torch_choices(self.draft)
        sel = self.query_one("#torch", Select)
        usable = [c for c in opts if c.enabled]
        values = [c.value or "" for c in usable]
        extra = [] if (want or "") in values else [(f"torch {want} (from the recipe)", want)]
        sel.set_options([(c.label, c.value or "") for c in usable] + extra)
        sel.value = want or ""
        self._torch_note()

    def _torch_note(self) -> None:
        torch = self.query_one("#torch", Select).value
        note = self.query_one("#torch-note", Static)
        if not torch or torch is Select.BLANK:
            note.update("No PyTorch: add what you need as packages or in the setup commands.")
            return
        idx, why = choices.torch_index_for(self.draft, str(torch))
        text = f"PyTorch {torch} wheels from https://download.pytorch.org/whl/{idx}" if idx else f"PyTorch {torch}"
        if why:
            text += f" ({why})"
        disabled = [c for c in choices.torch_choices(self.draft) if not c.enabled]
        if disabled:
            text += "\nNot offered: " + "; ".join(f"{c.value}: {c.reason}" for c in disabled[:2])
        note.update(text)

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        env = self.draft.env
        if env is None and self.wizard.source_path is None:
            env = choices.env_default(self.draft)
            self._proposed = True
        if env is None:
            self.query_one("#manager", Select).value = "none"
            self._fill_torch(None)
            return
        self.query_one("#manager", Select).value = env.manager
        py = self.query_one("#python", Select)
        if env.python not in choices.PYTHONS:
            py.set_options([(p, p) for p in choices.PYTHONS] + [(env.python, env.python)])
        py.value = env.python
        self._fill_torch(env.torch)
        self.query_one("#packages", Input).value = " ".join(env.packages)
        if env.repo is not None:
            self.query_one("#repo-url", Input).value = env.repo.url
            self.query_one("#repo-ref", Input).value = env.repo.ref or ""
            self.query_one("#repo-setup", TextArea).text = "\n".join(env.repo.setup)
        self._env = env

    def snapshot(self) -> Any:
        return (self.query_one("#manager", Select).value, self.query_one("#python", Select).value,
                self.query_one("#torch", Select).value, self.query_one("#packages", Input).value.split(),
                self.query_one("#repo-url", Input).value.strip(), self.query_one("#repo-ref", Input).value.strip(),
                [ln.strip() for ln in self.query_one("#repo-setup", TextArea).text.splitlines() if ln.strip()])

    def apply(self) -> None:
        manager, python, torch, packages, url, ref, setup = self.snapshot()
        if manager == "none":
            self.draft.env = None
            return
        old = self.draft.env or getattr(self, "_env", None) or Env()
        torch_v = torch or None
        # A new PyTorch choice lets the planner derive the wheel index from GPU and driver.
        idx = old.torch_index if torch_v == old.torch else None
        preset_torch, preset_index = getattr(self, "_preset_index", (None, None))
        if torch_v is not None and torch_v == preset_torch:
            idx = preset_index  # the preset's wheel matches the toolkit its extension compiles with
        repo = None
        if url:
            repo = Repo(url=url, ref=ref or None, dir=old.repo.dir if old.repo else None, setup=list(setup))
        self.draft.env = Env(manager=str(manager), python=str(python), path=old.path, torch=torch_v,
                             torch_index=idx, packages=list(packages), repo=repo)

    def problems(self) -> list[str]:
        manager, _py, _torch, packages, url, ref, setup = self.snapshot()
        if manager == "none":
            return []
        out = []
        if ref and not REF_RE.match(ref):
            out.append(f"{ref!r} is not a branch, tag or commit name")
        if (ref or setup) and not url:
            out.append("setup commands and a ref need a repository URL")
        if url and not re.match(r"^(https?://|git@|ssh://|/|~/)", url):
            out.append("the repository URL should start with https://, git@, ssh:// or a path")
        if not out:
            trial = copy.copy(self.draft)
            saved = self.draft.env
            try:
                self.apply()
                trial.env = self.draft.env
            finally:
                self.draft.env = saved
            errs, _warns = choices.stack_problems(trial, "env")
            out += errs
        return out

    def changed(self) -> None:
        self._torch_note()

    @on(TextArea.Changed)
    def _text_changed(self) -> None:
        if self._loaded:
            self.revalidate()

    @on(Button.Pressed, "#preset")
    def action_preset(self) -> None:
        """Fill in the original case, ST-GCN, from :func:`gpuwizard.presets.stgcn` for this
        GPU and CUDA: repository, pinned ref, set-up (arch flags patched), packages, and the
        PyTorch wheel that matches the CUDA toolkit the extension is compiled with."""
        try:
            p = choices.stgcn_preset(self.draft)
        except presets.PresetError as exc:
            self.notify(f"The ST-GCN preset does not fit this recipe: {exc}.", severity="warning")
            return
        env = p.env
        self.query_one("#manager", Select).value = env["manager"]
        self.query_one("#python", Select).value = env["python"]
        self._fill_torch(env["torch"])
        self._preset_index = (env["torch"], env["torch_index"])
        self.query_one("#packages", Input).value = " ".join(env["packages"])
        self.query_one("#repo-url", Input).value = env["repo"]["url"]
        self.query_one("#repo-ref", Input).value = env["repo"]["ref"] or ""
        self.query_one("#repo-setup", TextArea).text = "\n".join(env["repo"]["setup"])
        self.revalidate()
