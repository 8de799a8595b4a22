"""Screen 8, Review: the recipe as highlighted YAML, the plan, the cost; save and run.

Saving an edited recipe that did not change writes its original bytes back
(:func:`gpuwizard.recipe.dumps`); overwriting any other existing file asks first.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, ClassVar

from rich.syntax import Syntax
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from gpuwizard import plan, validate
from gpuwizard import recipe as rc
from screens import choices
from screens.base import WizardScreen
from screens.dialogs import ConfirmScreen
from screens.run import RunScreen
from screens.widgets import Check


def plan_lines(recipe: rc.Recipe) -> list[str]:
    """The planned steps, one line each; a plain sentence when the planner cannot answer
    (an incomplete draft is normal here, so the reason is shown, not raised)."""
    try:
        steps = plan.build(recipe)
    except Exception as exc:  # noqa: BLE001 - show, do not crash the review
        return [f"(cannot plan yet: {exc})"]
    return [f"{i:>2}. {s.id:<18} {s.title}" for i, s in enumerate(steps, 1)]


def recipe_problems(recipe: rc.Recipe) -> list[str]:
    """The errors ``gpuwizard validate`` reports: structural problems, then the catalog
    cross-checks (warnings are not errors and do not block saving)."""
    out = [f"{p.path}: {p.message}" if p.path else p.message for p in rc.structural_problems(recipe)
           if not p.warning]
    for p in validate.validate(recipe):
        line = f"{p.path}: {p.message}" if p.path else p.message
        if not p.warning and line not in out:
            out.append(line)
    return out


def recipe_warnings(recipe: rc.Recipe) -> list[str]:
    """What ``gpuwizard validate`` warns about: shown on Review, never blocking a save."""
    found = [*rc.structural_problems(recipe), *validate.validate(recipe)]  # the cluster checks warn too
    return [f"{p.path}: {p.message}" if p.path else p.message for p in found if p.warning]


class ReviewScreen(WizardScreen):
    """The whole recipe, its plan and cost; Save and Run now."""

    NAME = "review"
    TITLE = "Review"
    FOCUS = "#name"
    HELP = "Check the recipe, then save it. `gpuwizard run FILE` replays it any time, headless too."
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True, id="review.save"),
        Binding("ctrl+r", "run_now", "Run now", priority=True, id="review.run"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="review-cols"):
            with Vertical(classes="col"):
                yield Static("Recipe", classes="label")
                yield Static("", id="yaml")
            with Vertical(classes="col"):
                with Horizontal(classes="row"):
                    with Vertical(classes="field"):
                        yield Static("Recipe name", classes="label")
                        yield Input(id="name")
                    with Vertical(classes="field"):
                        yield Static("Save to", classes="label")
                        yield Input(id="path")
                yield Static("", id="cost", classes="cost")
                yield Static("Plan", classes="label")
                yield Static("", id="plan")
                yield Static("", id="problems", classes="note")
                yield Check("Run it even though none of my own steps are in it", id="run-anyway")
                with Horizontal(classes="row"):
                    yield Button("Save (ctrl+s)", id="save", variant="success")
                    yield Button("Run now (ctrl+r)", id="run-now", variant="warning")

    def load(self) -> None:
        self.query_one("#name", Input).value = self.draft.name
        path = self.wizard.path or f"{self.draft.name}.yaml"
        self.query_one("#path", Input).value = path
        self._path_auto = self.wizard.path is None
        """True while "Save to" follows the recipe name; a keystroke in it ends that."""
        self.query_one("#run-anyway", Check).display = not self.draft.steps
        self._refresh_view()

    @on(Input.Changed, "#path")
    def _path_typed(self, event: Input.Changed) -> None:
        if self._loaded and event.value != f"{self.snapshot()}.yaml":
            self._path_auto = False

    def runs_nothing_of_yours(self) -> bool:
        """True when the plan has none of the user's own steps (only set-up) and the user
        has not said that is what they want."""
        return not self.draft.steps and not self.query_one("#run-anyway", Check).value

    @on(Check.Changed, "#run-anyway")
    def _run_anyway(self) -> None:
        self.watch_valid(self.valid)
        self.refresh_bindings()

    def snapshot(self) -> Any:
        return self.query_one("#name", Input).value.strip()

    def apply(self) -> None:
        self.draft.name = self.snapshot()

    def _trial(self) -> rc.Recipe:
        r = copy.copy(self.draft)
        r.name = self.snapshot() or r.name
        return r

    def problems(self) -> list[str]:
        name = self.snapshot()
        out = []
        if not re.match(rc.NAME_RE, name):
            out.append("recipe name: lower-case letters, digits and dashes, starting with a letter")
        if not self.query_one("#path", Input).value.strip():
            out.append("choose where to save the recipe")
        out += recipe_problems(self._trial())
        return out

    def changed(self) -> None:
        if getattr(self, "_path_auto", False):
            name = self.snapshot()
            p = self.query_one("#path", Input)
            if re.match(rc.NAME_RE, name) and p.value != f"{name}.yaml":
                p.value = f"{name}.yaml"
        self._refresh_view()

    def _refresh_view(self) -> None:
        trial = self._trial()
        text = rc.dumps(trial)
        self.query_one("#yaml", Static).update(Syntax(text, "yaml", theme="ansi_dark", background_color="default",
                                                      word_wrap=True))
        self.query_one("#plan", Static).update("\n".join(plan_lines(trial)))
        self.query_one("#cost", Static).update(choices.cost_text(trial))
        probs = recipe_problems(trial)
        p = self.query_one("#problems", Static)
        p.set_class(bool(probs), "-error")
        text = "\n".join(f"• {x}" for x in probs) if probs else "No problems found."
        text += "".join(f"\n• warning: {w}" for w in recipe_warnings(trial))
        if not trial.steps:
            text += ("\nThe plan has none of your own steps, only set-up: Run now stays off until you add "
                     "one on the Steps screen or tick the box below.")
        p.update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("save", "run_now", "next") and not self.valid:
            return None
        if action == "run_now" and self._loaded and self.runs_nothing_of_yours():
            return None
        return super().check_action(action, parameters)

    def watch_valid(self, valid: bool) -> None:
        super().watch_valid(valid)
        try:
            self.query_one("#save", Button).disabled = not valid
            self.query_one("#run-now", Button).disabled = not valid or self.runs_nothing_of_yours()
        except Exception:  # noqa: BLE001 - before compose
            pass

    # -------------------------------------------------------------- saving

    def action_next(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#save")
    def action_save(self, then_run: bool = False) -> None:
        if not self.valid:
            self.notify(self.reason, severity="warning")
            return
        self.commit()
        path = os.path.expanduser(self.query_one("#path", Input).value.strip())
        if (problem := self._path_problem(path)) is not None:
            self.notify(problem, severity="error")
            return
        same_file = self.wizard.source_path is not None and os.path.exists(path) and \
            os.path.samefile(path, self.wizard.source_path)
        if os.path.exists(path) and not same_file:
            def answer(ok: bool | None) -> None:
                if ok:
                    self._write(path, then_run)
            self.app.push_screen(ConfirmScreen(f"{path} exists. Overwrite it?", yes="Overwrite", no="Keep it"), answer)
            return
        self._write(path, then_run)

    @staticmethod
    def _path_problem(path: str) -> str | None:
        """Why ``path`` cannot be saved to, said before asking to overwrite anything."""
        if not path or os.path.isdir(path):
            return f"Save to {path or '(empty)'} is not a file name: type a path ending in .yaml"
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"Could not save {path}: the folder {folder} does not exist; create it or type another path"
        return None

    def _write(self, path: str, then_run: bool) -> None:
        try:
            rc.save(self.draft, path)
        except OSError as exc:
            self.notify(f"Could not save {path}: {exc.strerror}", severity="error")
            return
        text = rc.dumps(self.draft)
        self.draft.source = text
        self.draft.pristine = rc.to_data(self.draft)
        self.wizard.saved_path = path
        self.wizard.path = path
        self.wizard.dirty = False
        self.notify(f"Saved {path}")
        if then_run:
            self._run(path)

    @on(Button.Pressed, "#run-now")
    def action_run_now(self) -> None:
        if self.runs_nothing_of_yours():
            self.notify("The plan has none of your own steps: add them on the Steps screen, or tick "
                        "\"Run it even though none of my own steps are in it\".", severity="warning")
            return
        self.action_save(then_run=True)

    def _run(self, path: str) -> None:
        self.app.push_screen(RunScreen.for_recipe(self.draft, path, self.wizard.run_source))
