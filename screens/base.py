"""What every wizard screen shares: the step bar, Next/Back gating, the "why" line.

A screen reads the Recipe draft in :meth:`WizardScreen.load` (on mount), reports what
stops it from being valid in :meth:`WizardScreen.problems`, and writes the draft back in
:meth:`WizardScreen.apply` when the user leaves it. ``apply`` only runs when the user
changed something or the screen proposed values the draft did not have, so walking an
existing recipe with Next and saving it rewrites nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, ScrollableContainer, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, OptionList, RadioSet, Select, SelectionList, Static, Switch

from textual.widget import Widget

from screens import WIZARD_STEPS
from screens.dialogs import HelpScreen

if TYPE_CHECKING:
    from gpuwizard.recipe import Recipe
    from screens.app import WizardApp


#: Short titles for a narrow terminal (80 columns cannot hold every full title).
SHORT_TITLES: dict[str, str] = {"quota": "Quota", "environment": "Env", "dataset": "Data"}


def step_bar_text(current: str, skipped: frozenset[str], width: int) -> str:
    """The step bar's markup for ``width`` columns: full titles when they fit, else short
    titles, else numbers for every step but the current one; never a step left out."""
    def short(name: str, title: str) -> str:
        return SHORT_TITLES.get(name, title)

    def build(cur_title: Any, other_title: Any, pad: str, brand: str) -> tuple[str, int]:
        parts, plain = [], []
        for i, (name, title) in enumerate(WIZARD_STEPS, 1):
            label = (cur_title if name == current else other_title)(name, title)
            text = f"{pad}{i}{' ' + label if label else ''}{pad}"
            plain.append(text)
            if name == current:
                parts.append(f"[reverse b]{text}[/]")
            elif name in skipped:
                parts.append(f"[dim strike]{text}[/]")
            else:
                parts.append(f"[dim]{text}[/]")
        return brand + "›".join(parts), len(brand) + len("›".join(plain))

    def full(name: str, title: str) -> str:
        return title

    def none(name: str, title: str) -> str:
        return ""

    tries = [(full, full, " ", " gpuwizard  "), (full, short, " ", " "), (short, short, " ", " "),
             (short, short, "", " "), (short, none, " ", " "), (short, none, "", "")]
    markup = ""
    for cur_title, other_title, pad, brand in tries:
        markup, length = build(cur_title, other_title, pad, brand)
        if length <= width:
            return markup
    return markup


class StepBar(Static):
    """The breadcrumb at the top: every step, the current one highlighted, steps that do
    not apply to this recipe (Zone, Machine for existing hosts) struck through. It
    shortens its titles to fit the terminal instead of losing steps off the edge."""

    def __init__(self, current: str, skipped: frozenset[str] = frozenset()) -> None:
        self.current = current
        self.skipped = skipped
        super().__init__(step_bar_text(current, skipped, 10_000), id="stepbar", markup=True)

    def on_resize(self) -> None:
        self.update(step_bar_text(self.current, self.skipped, self.size.width))

    def show_skipped(self, skipped: frozenset[str]) -> None:
        """Redraw when the first screen switches the target."""
        self.skipped = skipped
        self.update(step_bar_text(self.current, skipped, self.size.width or 10_000))


def _is_container(widget: Widget) -> bool:
    """Layout containers (a scrolling body, rows) take focus only to scroll: not a control."""
    return isinstance(widget, ScrollableContainer) and type(widget).__module__ == "textual.containers"


class WizardScreen(Screen[None]):
    """Base class of the seven wizard screens."""

    NAME: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    AUTO_FOCUS = "Select, Input, DataTable, OptionList, TextArea, Checkbox, Button"
    """Textual's compose-time focus: a control, never the scrolling body ("*" would pick it)."""
    FOCUS: ClassVar[str] = ""
    """The control focused when the screen opens (a selector); default: the first focusable
    control of the body, so arrows and typing work before any Tab."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "next", "Next", priority=True, id="wizard.next"),
        Binding("ctrl+b", "back", "Back", priority=True, id="wizard.back"),
        Binding("f1", "help", "Help", priority=True, id="wizard.help"),
        Binding("question_mark", "help", "Help", show=False, id="wizard.help2"),
    ]

    valid: reactive[bool] = reactive(False, bindings=True)
    """True when the screen's answers are complete and consistent; gates Next."""

    reason: reactive[str] = reactive("")
    """Why Next is disabled (the first problem), shown above the footer."""

    def __init__(self) -> None:
        super().__init__(id=f"screen-{self.NAME}")
        self._initial: Any = None
        self._proposed = False
        self._loaded = False

    # -------------------------------------------------------------- layout

    @property
    def wizard(self) -> "WizardApp":
        return self.app  # type: ignore[return-value]

    @property
    def draft(self) -> "Recipe":
        return self.wizard.draft

    def compose(self) -> ComposeResult:
        skipped = getattr(self.app, "skipped_steps", frozenset)()
        yield StepBar(self.NAME, skipped)
        if self.HELP:
            yield Static(self.HELP, classes="help")
        with VerticalScroll(id="body"):
            yield from self.compose_body()
        with Horizontal(id="nav"):
            yield Static("", id="why")
            yield Button("Back", id="back", variant="default", disabled=self.NAME == WIZARD_STEPS[0][0])
            yield Button("Next", id="next", variant="primary")
        yield Footer()

    def compose_body(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def on_mount(self) -> None:
        self.load()
        self._initial = self.snapshot()
        self._loaded = True
        self.revalidate()
        self.focus_first()
        self.call_after_refresh(self.wizard.mark_painted)
        self.after_mount()

    def focus_first(self) -> None:
        """Focus :attr:`FOCUS`, else the first focusable control in the body (not the
        scrolling body itself, which would swallow arrows and typing)."""
        target: Widget | None = None
        if self.FOCUS:
            found = self.query(self.FOCUS)
            target = next((w for w in found if w.focusable), None)
        if target is None:
            body = self.query_one("#body")
            target = next((w for w in body.query("*") if w.focusable and not _is_container(w)), None)
        if target is not None:
            self.set_focus(target)  # now, not via call_later: a key typed right after the paint lands here

    def after_mount(self) -> None:
        """Hook run once after load; screens start live-data workers here (after first paint)."""

    # -------------------------------------------------------------- the contract

    def load(self) -> None:
        """Fill the widgets from the draft. Set ``self._proposed`` when values were proposed."""

    def snapshot(self) -> Any:
        """The widgets' values, compared on leave to decide whether to write the draft."""
        return None

    def apply(self) -> None:
        """Write the widgets' values into the draft."""

    def problems(self) -> list[str]:
        """What keeps this screen from being valid, in plain words; empty when valid."""
        return []

    def changed(self) -> None:
        """Called after any input changed, before revalidation (live costs etc.)."""

    # -------------------------------------------------------------- machinery

    def commit(self) -> None:
        """Write back to the draft when something changed (or values were proposed)."""
        if not self._loaded:
            return
        if self._proposed or self.snapshot() != self._initial:
            self.apply()
            self.wizard.dirty = True
            self._initial = self.snapshot()
            self._proposed = False
            self.wizard.repropose()

    def revalidate(self) -> None:
        if not self._loaded:
            return
        probs = self.problems()
        self.valid = not probs
        self.reason = probs[0] if probs else ""

    def watch_reason(self, reason: str) -> None:
        try:
            why = self.query_one("#why", Static)
        except Exception:  # noqa: BLE001 - before compose
            return
        why.update(f"[b $warning]Next is disabled:[/] {reason}" if reason else "")

    def watch_valid(self, valid: bool) -> None:
        try:
            self.query_one("#next", Button).disabled = not valid
        except Exception:  # noqa: BLE001
            return

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next" and not self.valid:
            return None  # shown dimmed in the footer
        if action == "back" and self.NAME == WIZARD_STEPS[0][0]:
            return None
        return True

    def action_next(self) -> None:
        if not self.valid:
            self.notify(self.reason or "This screen is not complete yet.", severity="warning")
            return
        self.commit()
        self.wizard.go_next(self.NAME)

    def action_back(self) -> None:
        self.commit()
        self.wizard.go_back(self.NAME)

    def action_help(self) -> None:
        """F1 / ?: what this screen is for and the keys it adds (not every widget's
        cursor keys, which would bury them)."""
        keys = [(self.app.get_key_display(b), b.description) for b in self.screen_bindings()]
        self.app.push_screen(HelpScreen(f"{self.TITLE}", self.HELP, keys))

    def screen_bindings(self) -> list[Binding]:
        """The wizard's and this screen's own bindings, each action once."""
        seen: dict[str, Binding] = {}
        for cls in reversed(type(self).__mro__):
            if not issubclass(cls, WizardScreen):
                continue  # Textual's own Screen keys (tab, copy) are everywhere; not this screen's
            for b in cls.__dict__.get("BINDINGS", ()):
                if isinstance(b, Binding) and b.description and b.action not in seen:
                    seen[b.action] = b
        return list(seen.values())

    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(Switch.Changed)
    @on(RadioSet.Changed)
    @on(SelectionList.SelectedChanged)
    @on(OptionList.OptionHighlighted)
    def _any_changed(self) -> None:
        if not self._loaded:
            return
        self.changed()
        self.revalidate()
