"""Screen 7, Steps: the user's own commands, run last (training, evaluation ...).

A list on the left, the selected step's editor on the right: name, a multi-line
command (a TextArea: real training commands are several lines), an optional timeout
and sudo. Ctrl+A adds, Ctrl+D removes, Alt+Up / Alt+Down reorder; the bindings have
priority so they work while the editor has focus. The ST-GCN preset offers the
training command of :func:`gpuwizard.presets.stgcn` (the one definition; the shipped
``stgcn-t4`` recipe equals it). Names, timeouts and commands are checked by the
recipe model's own rules (:func:`gpuwizard.recipe.structural_problems`).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from gpuwizard import presets
from gpuwizard import recipe as rc
from gpuwizard.recipe import UserStep
from screens import choices
from screens.base import WizardScreen
from screens.widgets import Check

_TIMEOUT = choices.field_meta(UserStep, "timeout")
TIMEOUT_MIN, TIMEOUT_MAX = _TIMEOUT["minimum"], _TIMEOUT["maximum"]
DEFAULT_TIMEOUT = UserStep().timeout
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_timeout(text: str) -> float | None:
    """``"90"``, ``"90s"``, ``"30m"``, ``"2h"`` -> seconds; blank -> the default; None if unreadable."""
    text = text.strip().lower()
    if not text:
        return DEFAULT_TIMEOUT
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def show_timeout(seconds: float) -> str:
    """The editor's text for a timeout: blank for the default, else the largest whole unit."""
    if seconds == DEFAULT_TIMEOUT:
        return ""
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}"


# Where a step runs in a cluster (UserStep.on); the control shows for cluster recipes only.
ON_CHOICES = [("Runs on every node", "all"), ("Runs on the head node (rank 0) only", "head"),
              ("Runs on the workers only", "workers")]


def _tags(s: UserStep) -> str:
    """What the list shows after a step's name: `` [root]``, `` [head]`` ..."""
    return (" [root]" if s.sudo else "") + (f" [{s.on}]" if s.on != "all" else "")


def _prompt(i: int, s: UserStep, first: str) -> Text:
    """A step's line in the list, as plain text: a str would be read as markup, and its
    ``[head]``, ``[root]`` (and a command's own brackets) would vanish as tags."""
    return Text(f"{i + 1}. {s.name or '(unnamed)'}{_tags(s)}: {first}")


def preset_steps(recipe: rc.Recipe) -> list[UserStep]:
    """The ST-GCN preset's own steps (smoke test, training) for the draft's stack, from
    :func:`gpuwizard.presets.stgcn`, the definition the shipped stgcn-t4 recipe equals."""
    return [UserStep(**s) for s in choices.stgcn_preset(recipe).steps]


class StepsScreen(WizardScreen):
    """Add, edit, remove and reorder the user's own steps."""

    NAME = "steps"
    TITLE = "Steps"
    HELP = ("Your own commands, run after the driver, environment and datasets are ready (inside the repository "
            "clone, environment active). Training goes here.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+a", "add", "Add step", priority=True, id="steps.add"),
        Binding("ctrl+d", "remove", "Remove step", priority=True, id="steps.remove"),
        # Not in the footer (it would overflow at 120 columns); F1 lists them.
        Binding("alt+up", "move(-1)", "Move step up", priority=True, show=False, id="steps.up"),
        Binding("alt+down", "move(1)", "Move step down", priority=True, show=False, id="steps.down"),
        Binding("ctrl+t", "preset", "ST-GCN preset", priority=True, id="steps.preset"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[UserStep] = []
        self.index: int | None = None
        self._filling = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="steps-cols"):
            with Vertical(classes="col", id="steps-left"):
                yield Static("Your steps, in run order", classes="label")
                yield OptionList(id="steps-list")
                with Horizontal(classes="row"):
                    yield Button("Add (ctrl+a)", id="step-add")
                    yield Button("Remove (ctrl+d)", id="step-remove")
                yield Button("ST-GCN preset (ctrl+t)", id="step-preset")
            with Vertical(classes="col", id="steps-right"):
                with Horizontal(classes="row"):
                    with Vertical(classes="field"):
                        yield Static("Name", classes="label")
                        yield Input(placeholder="train", id="step-name")
                    with Vertical(classes="field"):
                        yield Static(f"Timeout (blank: {show_timeout(DEFAULT_TIMEOUT) or '1h'}; 90s, 30m, 2h)",
                                     classes="label")
                        yield Input(placeholder="1h", id="step-timeout")
                yield Static("Command (bash; several lines are fine)", classes="label")
                yield TextArea(id="step-run", soft_wrap=True, language=None)
                yield Check("Run as root (sudo)", id="step-sudo")
                on = Select(ON_CHOICES, value="all", allow_blank=False, id="step-on")
                on.display = False  # a cluster recipe only (load shows it)
                yield on
        yield Static("", id="steps-note", classes="note")

    def focus_first(self) -> None:
        """The list when there are steps (arrows pick one), else Add."""
        self.set_focus(self.query_one("#steps-list" if self.steps else "#step-add"))

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        self.steps = [dataclasses.replace(s) for s in self.draft.steps]
        self.index = 0 if self.steps else None
        self.query_one("#step-on", Select).display = self.draft.cluster is not None
        self._render_list()
        self._fill_editor()

    def snapshot(self) -> Any:
        return tuple((s.name, s.run, s.timeout, s.sudo, s.on) for s in self.steps)

    def apply(self) -> None:
        self.draft.steps = [dataclasses.replace(s) for s in self.steps]

    def problems(self) -> list[str]:
        out = []
        if self.index is not None and parse_timeout(self.query_one("#step-timeout", Input).value) is None:
            out.append("timeout: a number of seconds, or with a unit: 90s, 30m, 2h")
        trial = copy.copy(self.draft)
        trial.steps = self.steps
        for p in rc.structural_problems(trial):
            if p.path.startswith("steps") and not p.warning:  # a warning (e.g. `on:` without cluster) blocks nothing
                out.append(self._where(p.path) + p.message)
        return out

    def _where(self, path: str) -> str:
        """``steps[1].name: `` -> ``step 2 (train) name: ``, as the list shows it."""
        m = re.match(r"steps\[(\d+)\]\.?(.*)", path)
        if not m:
            return f"{path}: "
        i = int(m.group(1))
        name = self.steps[i].name if i < len(self.steps) else ""
        return f"step {i + 1}{f' ({name})' if name else ''} {m.group(2) or ''}: ".replace(" :", ":")

    # -------------------------------------------------------------- rendering

    def _render_list(self) -> None:
        ol = self.query_one("#steps-list", OptionList)
        ol.clear_options()
        for i, s in enumerate(self.steps):
            first = s.run.strip().splitlines()[0] if s.run.strip() else "(no command yet)"
            ol.add_option(Option(_prompt(i, s, first), id=f"step:{i}"))
        if self.index is not None and self.steps:
            ol.highlighted = self.index
        editing = self.index is not None
        for wid in ("#step-name", "#step-timeout", "#step-run", "#step-sudo", "#step-on", "#step-remove"):
            self.query_one(wid).disabled = not editing
        note = self.query_one("#steps-note", Static)
        if self.steps:
            note.update(f"{len(self.steps)} step(s) of your own run after set-up, in this order.")
        else:
            note.update("No steps yet: the recipe would only set the machine up. Add your training command, "
                        "or take the ST-GCN preset's.")

    def _fill_editor(self) -> None:
        self._filling = True
        s = self.steps[self.index] if self.index is not None else UserStep()
        self.query_one("#step-name", Input).value = s.name
        self.query_one("#step-timeout", Input).value = show_timeout(s.timeout)
        self.query_one("#step-run", TextArea).load_text(s.run)
        self.query_one("#step-sudo", Check).value = s.sudo
        self.query_one("#step-on", Select).value = s.on
        self.call_after_refresh(self._filled)

    def _filled(self) -> None:
        self._filling = False

    def _edited(self) -> None:
        """Copy the editor into the selected step."""
        if self._filling or self.index is None:
            return
        timeout = parse_timeout(self.query_one("#step-timeout", Input).value)
        s = self.steps[self.index]
        # The editor's text without its outer blank lines; a step whose own text differs only
        # by those (a YAML block `run: |` ends with a newline) keeps it, so a late Changed
        # event from filling the editor does not count as an edit (and rewrite the file).
        run = self.query_one("#step-run", TextArea).text.strip("\n")
        name = self.query_one("#step-name", Input).value.strip()
        self.steps[self.index] = dataclasses.replace(
            s, name=s.name if name == s.name.strip() else name,
            run=s.run if run == s.run.strip("\n") else run,
            timeout=s.timeout if timeout is None else timeout,
            sudo=self.query_one("#step-sudo", Check).value,
            on=str(self.query_one("#step-on", Select).value) if self.draft.cluster is not None else s.on)
        ol = self.query_one("#steps-list", OptionList)
        s = self.steps[self.index]
        first = s.run.strip().splitlines()[0] if s.run.strip() else "(no command yet)"
        ol.replace_option_prompt_at_index(self.index, _prompt(self.index, s, first))

    def changed(self) -> None:
        self._edited()

    @on(TextArea.Changed, "#step-run")
    def _run_changed(self) -> None:
        if self._loaded:
            self._edited()
            self.revalidate()

    @on(OptionList.OptionHighlighted, "#steps-list")
    def _picked(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != self.index and event.option_index < len(self.steps):
            self.index = event.option_index
            self._fill_editor()

    # -------------------------------------------------------------- actions

    def _select(self, index: int | None, focus: str | None = None) -> None:
        self.index = index
        self._render_list()
        self._fill_editor()
        if focus:
            self.query_one(focus).focus()
        self.revalidate()

    def _free_name(self, base: str) -> str:
        names = {s.name for s in self.steps}
        if base not in names:
            return base
        return next(f"{base}-{i}" for i in range(2, 1000) if f"{base}-{i}" not in names)

    @on(Button.Pressed, "#step-add")
    def action_add(self) -> None:
        name = self._free_name("train" if not self.steps else f"step-{len(self.steps) + 1}")
        self.steps.append(UserStep(name=name, run=""))
        self._select(len(self.steps) - 1, focus="#step-run")

    @on(Button.Pressed, "#step-remove")
    def action_remove(self) -> None:
        if self.index is None:
            return
        del self.steps[self.index]
        self._select(min(self.index, len(self.steps) - 1) if self.steps else None)

    def action_move(self, delta: int) -> None:
        if self.index is None:
            return
        j = self.index + delta
        if not 0 <= j < len(self.steps):
            return
        self.steps[self.index], self.steps[j] = self.steps[j], self.steps[self.index]
        self._select(j)

    @on(Button.Pressed, "#step-preset")
    def action_preset(self) -> None:
        """Add the ST-GCN training step(s) the shipped recipe runs (those not already here)."""
        try:
            offered = preset_steps(self.draft)
        except presets.PresetError as exc:
            self.notify(f"The ST-GCN preset does not fit this recipe: {exc}.", severity="warning")
            return
        have = {s.name for s in self.steps} | {s.run for s in self.steps}
        added = [s for s in offered if s.name not in have and s.run not in have]
        self.steps.extend(added)
        if added:
            self._select(len(self.steps) - 1)
            self.notify(f"Added the ST-GCN preset's {', '.join(s.name for s in added)} step(s).")
        else:
            self.notify("The ST-GCN preset's steps are already here.")
