"""The "Request more quota" dialog of the Project & quota screen.

The same planning, preview and filing as ``gpuwizard quota request``
(:mod:`gpuwizard.gcp.quota_view`): region, email and justification in, the exact
requests shown as they are typed, then "File" asks once more (the requests go to
Google with the email address) and files them in a thread worker. Returns a line
saying what was filed, or None when cancelled.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static
from textual.worker import Worker, WorkerState

from gpuwizard import catalog
from gpuwizard.gcp import quota_request as QR
from gpuwizard.gcp import quota_view as QV
from gpuwizard.gcp.errors import GcpError
from screens.dialogs import ConfirmScreen


class RequestQuotaScreen(ModalScreen[str | None]):
    """Region, email, justification -> preview -> confirm -> file."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="quota-request.cancel")]

    def __init__(self, view: QV.CloudView, count: int, region: str | None = None) -> None:
        super().__init__()
        self.view = view
        self.count = count
        regions = QV.regions_for(view.gpu) or ["us-central1"]
        self.regions = regions
        self.start_region = region if region in regions else regions[0]
        self.asks: list[QR.Ask] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quota-request"):
            g = catalog.gpu(self.view.gpu)
            yield Static(f"Request more quota for {self.count} x {g.label if g else self.view.gpu}"
                         + (" (Spot)" if self.view.spot else ""), classes="label")
            yield Select([(r, r) for r in self.regions], value=self.start_region, allow_blank=False, id="qr-region")
            yield Input(placeholder="your email (Google writes to it if it needs more)", id="qr-email")
            yield Input(placeholder="what the GPUs are for, in a sentence", id="qr-justification")
            # the preview scrolls in what is left, so the error and the buttons stay on an 80x24 screen
            with VerticalScroll(id="qr-preview-box"):   # focusable: the keys scroll a long preview
                yield Static("", id="qr-preview", markup=False)
            yield Static("", id="qr-error", classes="field-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="qr-cancel")
                yield Button("File", id="qr-file", variant="warning")

    #: Rows of the dialog that are not the preview: border and padding 4, title 1, region 3,
    #: email 3, justification 3, error 1, buttons 4.
    FIXED_ROWS = 19

    def on_mount(self) -> None:
        self._update()
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The preview gets what the dialog (at most 90% of the screen) leaves, at least 2
        rows, and scrolls beyond that, so the buttons are on screen at 80x24."""
        rows = max(2, int(self.app.size.height * 0.9) - self.FIXED_ROWS)
        self.query_one("#qr-preview-box").styles.max_height = rows

    def _values(self) -> tuple[str, str, str]:
        return (str(self.query_one("#qr-region", Select).value), self.query_one("#qr-email", Input).value.strip(),
                self.query_one("#qr-justification", Input).value.strip())

    @on(Input.Changed)
    @on(Select.Changed)
    def _update(self) -> None:
        region, email, why = self._values()
        self.asks = QV.plan_for(self.view, region, self.count)
        button = self.query_one("#qr-file", Button)
        if not self.asks:
            text = ("Nothing to request: the quota already allows this in " + region + "."
                    if self.view.report is not None else "Quota could not be read: " + self.view.note)
            button.disabled = True
        else:
            text = "\n".join(QR.preview(self.view.project or "?", self.asks, email or "(your email)",
                                        why or "(your justification)"))
            button.disabled = False
            button.label = f"File {len(self.asks)} request(s)"
        self.query_one("#qr-preview", Static).update(Text(text))

    @on(Button.Pressed, "#qr-file")
    def _file_pressed(self) -> None:
        region, email, why = self._values()
        try:
            QR.check_inputs(region, self.count, email, why)
        except GcpError as exc:
            self.query_one("#qr-error", Static).update(Text(str(exc)))
            return
        self.query_one("#qr-error", Static).update("")
        question = "\n".join(QR.preview(self.view.project or "?", self.asks, email, why)) + \
            "\n\nFile these with Google?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.file(list(self.asks), email, why)

        self.app.push_screen(ConfirmScreen(question, yes="File", no="Back"), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="quota-file", description="filing quota requests")
    def file(self, asks: list[QR.Ask], email: str, why: str) -> list[dict]:
        return QV.file_for(self.view, asks, email, why)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "quota-file":
            return
        if event.state == WorkerState.ERROR:
            self.query_one("#qr-error", Static).update(Text(str(event.worker.error)))
        elif event.state == WorkerState.SUCCESS:
            done = event.worker.result or []
            states = ", ".join(f"{p.get('quotaId')} -> {(p.get('quotaConfig') or {}).get('preferredValue')} "
                               f"({QR.state(p)[0]})" for p in done)
            self.dismiss(f"Filed {len(done)} request(s): {states}.")

    @on(Button.Pressed, "#qr-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
