"""Small dialogs, each typed by what it returns."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question. Returns True for yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "no", "No", id="confirm.no"),
        Binding("y", "yes", "Yes", id="confirm.yes"),
        Binding("n", "no", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.no} (n)", id="no")
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with several answers (buttons); returns the chosen id or None (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, question: str, answers: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question, self.answers = question, answers

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question)
            with Horizontal(classes="buttons"):
                for i, (ident, label) in enumerate(self.answers):
                    yield Button(label, id=f"ans-{ident}", variant="primary" if i == 0 else "default")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("ans-"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """F1 / ?: what the current screen is for, and its keys. Any of escape, F1, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("f1", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, title: str, text: str, keys: list[tuple[str, str]]) -> None:
        super().__init__(id="help-dialog")
        self.title_text, self.text, self.keys = title, text, keys

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.keys), default=0)
        lines = "\n".join(f"  {k:<{width}}  {d}" for k, d in self.keys)
        with Vertical(classes="dialog"):
            yield Static(f"[b]Help: {self.title_text}[/b]")
            yield Static(self.text or "", markup=False)
            yield Static("[b]Keys[/b]\n" + lines + "\n  ctrl+p      every command (jump to any screen)\n"
                         "  ctrl+q      quit (asks first when there are unsaved changes)")
            with Horizontal(classes="buttons"):
                yield Button("Close (esc)", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
