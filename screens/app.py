"""The wizard App: one Recipe draft, eight screens editing it, and the run screen.

``gpuwizard`` / ``gpuwizard new`` call :func:`cmd_new`; ``gpuwizard edit RECIPE`` calls
:func:`cmd_edit`. Screens are imported when first shown, so the first paint only pays
for Textual and the first screen; live Google Cloud data loads in thread workers after
that paint (``google.cloud`` is never imported at App import).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any, Callable, ClassVar, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen

from gpuwizard import recipe as rc
from gpuwizard.recipe import Autostop, GcpTarget, Recipe, RecipeError, Target
from gpuwizard.shipped import resolve
from screens import WIZARD_STEPS, choices
from screens.dialogs import ChoiceScreen
from screens.live import LiveState

#: screen name -> "module:Class", imported on first use.
SCREEN_CLASSES: dict[str, str] = {
    "quota": "screens.quota:QuotaScreen",
    "zone": "screens.zone:ZoneScreen",
    "machine": "screens.machine:MachineScreen",
    "driver": "screens.driver:DriverScreen",
    "environment": "screens.environment:EnvironmentScreen",
    "dataset": "screens.dataset:DatasetScreen",
    "steps": "screens.steps:StepsScreen",
    "review": "screens.review:ReviewScreen",
}
STEP_NAMES = [n for n, _ in WIZARD_STEPS]
#: Screens with nothing to ask when the recipe runs on existing hosts (target.ssh).
SSH_SKIPPED: frozenset[str] = frozenset({"zone", "machine"})


def new_draft() -> Recipe:
    """An empty draft: a Compute Engine target with catalog defaults and no zones yet, and
    auto-stop on (30 minutes idle, stop): nothing bills while nobody uses it."""
    return Recipe(target=Target(gcp=GcpTarget()), autostop=Autostop())


def screen_class(name: str) -> type[Screen[Any]]:
    module, _, cls = SCREEN_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class WizardApp(App[int]):
    """The gpuwizard wizard. ``draft`` is the one shared state every screen edits."""

    TITLE = "gpuwizard"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
    ]

    def __init__(self, draft: Recipe | None = None, *, path: str | None = None, source_path: str | None = None,
                 start: str = "quota", live: bool = True, run_source: Any = None) -> None:
        """``path``: where Review saves; ``source_path``: the file being edited (if any);
        ``live``: False keeps every look-up on the catalog (tests, snapshots);
        ``run_source``: a factory for the run screen's event source (tests)."""
        super().__init__()
        self.draft: Recipe = draft if draft is not None else new_draft()
        """The Recipe being edited; screens read it on mount and write it on leave."""
        self.path: str | None = path
        self.source_path: str | None = source_path
        self.start = start if start in SCREEN_CLASSES else "quota"
        self.live_enabled = live and os.environ.get("GPUWIZARD_OFFLINE") != "1"
        self.live = LiveState()
        """Live GCP results kept across screen visits."""
        self.dirty = False
        self.saved_path: str | None = None
        self.exit_message: str | None = None
        self.run_source = run_source
        self.first_paint: float | None = None
        self.target_stash: dict[str, Any] = {}
        """The target the user switched away from ("gcp" / "ssh" -> GcpTarget / SshTarget),
        so switching back on the first screen restores its answers."""

    # ---------------------------------------------------------------- start

    def on_mount(self) -> None:
        self.push_screen(screen_class(self.start)())

    def mark_painted(self) -> None:
        """Called once the first wizard screen has painted (bench/tui.py reads the mark)."""
        if self.first_paint is not None:
            return
        self.first_paint = time.perf_counter()
        hook = os.environ.get("GPUWIZARD_PAINT_MARK")
        if hook:  # bench/tui.py: write the paint time and whether google.cloud was imported
            with open(hook, "w", encoding="utf-8") as fh:
                fh.write(f"{time.time()} {int('google.cloud' in sys.modules or 'google.cloud.compute_v1' in sys.modules)}\n")

    # ---------------------------------------------------------------- navigation

    def goto(self, name: str) -> None:
        """Show wizard screen ``name`` (state lives in the draft, so screens are rebuilt)."""
        cur = self.screen
        commit = getattr(cur, "commit", None)
        if callable(commit):
            commit()
        self.switch_screen(screen_class(name)())

    def repropose(self) -> None:
        """After a screen wrote the draft: re-propose what its change broke downstream (a
        new GPU that cannot use the chosen driver branch or kernel modules) and say what
        changed, so no later screen is a dead end (:func:`screens.choices.repropose`)."""
        changes = choices.repropose(self.draft)
        if changes:
            self.notify("Changed to fit your new choice: " + "; ".join(changes) + ".", title="Re-proposed",
                        timeout=10)

    def skipped_steps(self) -> frozenset[str]:
        """Steps Next/Back pass over for this draft: the Compute Engine screens (zone,
        machine) when it runs on existing hosts."""
        t = self.draft.target
        return SSH_SKIPPED if t.gcp is None and t.ssh is not None else frozenset()

    def _step(self, current: str, delta: int) -> None:
        skip = self.skipped_steps()
        i = STEP_NAMES.index(current) + delta
        while 0 <= i < len(STEP_NAMES) and STEP_NAMES[i] in skip:
            i += delta
        if 0 <= i < len(STEP_NAMES):
            self.switch_screen(screen_class(STEP_NAMES[i])())

    def go_next(self, current: str) -> None:
        self._step(current, +1)

    def go_back(self, current: str) -> None:
        self._step(current, -1)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for i, (name, title) in enumerate(WIZARD_STEPS, 1):
            yield SystemCommand(f"Go to {i} {title}", f"Open the {title} screen of the wizard",
                                self._goto_cb(name))

    def _goto_cb(self, name: str) -> Callable[[], None]:
        def cb() -> None:
            if getattr(self.screen, "NAME", None) in SCREEN_CLASSES:
                self.goto(name)
        return cb

    # ---------------------------------------------------------------- quitting

    async def action_quit(self) -> None:
        """Ctrl+Q. The run screen asks its own question; a wizard with unsaved changes asks
        save / discard / cancel instead of throwing the draft away."""
        confirm = getattr(self.screen, "confirm_quit", None)
        if callable(confirm):
            confirm()
            return
        if isinstance(self.screen, ModalScreen):
            return  # a dialog is open: answer it first
        commit = getattr(self.screen, "commit", None)
        if callable(commit):
            commit()  # the current screen's edits count as changes too
        if not self.dirty:
            self.exit(0)
            return
        self.push_screen(ChoiceScreen("The recipe has unsaved changes. Save it before quitting?",
                                      [("save", "Save..."), ("discard", "Quit without saving"),
                                       ("cancel", "Keep editing")]), self._quit_answer)

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "discard":
            self.exit(0)
        elif answer == "save":
            self.goto("review")  # Review saves (path, overwrite question); quit again from there


# -------------------------------------------------------------------- CLI entry points


def _run_app(app: WizardApp) -> int:
    code = app.run()
    if app.exit_message:
        print(app.exit_message)
    elif app.saved_path:
        print(f"Saved {app.saved_path}. Next: gpuwizard validate {app.saved_path} && gpuwizard run {app.saved_path}")
    return int(code or 0)


def cmd_new(args: argparse.Namespace) -> int:
    """``gpuwizard`` / ``gpuwizard new [-o PATH] [--from RECIPE]``: the wizard on an empty
    draft, or on a copy of a shipped recipe (saved to a new file, never over the template)."""
    template = getattr(args, "template", None)
    if not template:
        return _run_app(WizardApp(path=getattr(args, "output", None)))
    path = resolve(template)
    try:
        draft = rc.load(path)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    out = getattr(args, "output", None) or os.path.basename(path)
    draft.source = _mark_as_copy(draft.source or "", os.path.basename(path))
    return _run_app(WizardApp(draft, path=out))


def _mark_as_copy(text: str, template: str) -> str:
    """Say in the copy's header that its notes describe the template: once the user
    changes the GPU or the image, prose about "one T4 on Ubuntu 22.04" would mislead."""
    note = (f"# Started from gpuwizard's recipe {template}; the notes below describe that recipe, "
            "not necessarily this one.\n")
    lines = text.splitlines(keepends=True)
    at = 1 if lines and lines[0].startswith("# yaml-language-server:") else 0
    return "".join(lines[:at]) + note + "".join(lines[at:])


def cmd_edit(args: argparse.Namespace) -> int:
    """``gpuwizard edit RECIPE [--screen NAME]``: the wizard on a saved recipe."""
    screen = getattr(args, "screen", None) or "quota"
    if screen not in SCREEN_CLASSES:
        print(f"gpuwizard: no screen {screen!r}; choose one of {', '.join(STEP_NAMES)}", file=sys.stderr)
        return 2
    try:
        draft = rc.load(args.recipe)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    return _run_app(WizardApp(draft, path=args.recipe, source_path=args.recipe, start=screen))
