"""The Google Drive remote set-up dialog, opened from the Dataset screen.

A dialog typed by what it returns: ``(name, Remote)`` or None. The remote written into
the recipe names a token *file*; the token itself never enters the recipe. When the
UI-free core (:mod:`gpuwizard.rclone`) is present, its spec validation and secret
file store are used; without it the dialog still writes a valid remote and explains
how to obtain the token (``rclone authorize drive`` on a machine with a browser).
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static, TextArea

from gpuwizard.recipe import REMOTE_NAME_RE, Remote

SCOPES = [("read-only (recommended for datasets)", "drive.readonly"), ("full access", "drive"),
          ("files created by rclone only", "drive.file")]
DEFAULT_TOKEN_FILE = "~/.config/gpuwizard/{name}-token.json"


def _core() -> Any:
    try:
        from gpuwizard import rclone as core  # type: ignore[attr-defined]
    except ImportError:
        return None
    return core


class RcloneScreen(ModalScreen[tuple[str, Remote] | None]):
    """Set up a Google Drive remote: name, scope, where the OAuth token lives."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="rclone.cancel"),
        Binding("ctrl+s", "save", "Add remote", priority=True, id="rclone.save"),
    ]

    def __init__(self, existing: list[str] | None = None) -> None:
        super().__init__(id="rclone-dialog")
        self.existing = set(existing or [])

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static("[b]Google Drive remote[/b]")
            yield Static("rclone reads your Drive with an OAuth token. Get one on any computer with a browser: "
                         "run [b]rclone authorize drive[/b] and paste the JSON it prints below (it is saved to "
                         "the token file with mode 0600, never into the recipe).", classes="help")
            with Horizontal(classes="row"):
                with Vertical(classes="field"):
                    yield Static("Remote name", classes="label")
                    yield Input("gdrive" if "gdrive" not in self.existing else "gdrive2", id="rc-name")
                with Vertical(classes="field"):
                    yield Static("Access", classes="label")
                    yield Select(SCOPES, value="drive.readonly", allow_blank=False, id="rc-scope")
            yield Static("Token file (on this computer; uploaded to the host when the run starts)", classes="label")
            yield Input(DEFAULT_TOKEN_FILE.format(name="gdrive"), id="rc-token-file")
            yield Static("Token JSON from `rclone authorize drive` (optional now; needed before the run)",
                         classes="label")
            yield TextArea(id="rc-token")
            yield Static("Root folder id (optional: start in this folder)", classes="label")
            yield Input(placeholder="e.g. 1AbC... from a folder link", id="rc-root")
            yield Static("", id="rc-why", classes="note")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="rc-cancel")
                yield Button("Add remote (ctrl+s)", id="rc-save", variant="primary")

    def on_mount(self) -> None:
        self._check()

    def _problems(self) -> list[str]:
        name = self.query_one("#rc-name", Input).value.strip()
        out = []
        if not re.match(REMOTE_NAME_RE, name or "-"):
            out.append("the name: letters, digits, _ . - (e.g. gdrive)")
        elif name in self.existing:
            out.append(f"a remote named {name!r} already exists")
        if not self.query_one("#rc-token-file", Input).value.strip():
            out.append("a token file path is needed")
        token = self.query_one("#rc-token", TextArea).text.strip()
        if token and not (token.startswith("{") and "access_token" in token):
            out.append("the token should be the JSON printed by `rclone authorize drive` ({\"access_token\": ...})")
        root = self.query_one("#rc-root", Input).value.strip()
        if root and not re.match(r"^[A-Za-z0-9_-]{10,}$", root):
            out.append("a root folder id is the long id in a folder link")
        return out

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _check(self) -> None:
        probs = self._problems()
        self.query_one("#rc-save", Button).disabled = bool(probs)
        self.query_one("#rc-why", Static).update(("[b $warning]Cannot add yet:[/] " + probs[0]) if probs else
                                                 "Ready. The recipe will name the token file only.")

    @on(Input.Changed, "#rc-name")
    def _name_changed(self, event: Input.Changed) -> None:
        tf = self.query_one("#rc-token-file", Input)
        if re.fullmatch(r"~/\.config/gpuwizard/.*-token\.json", tf.value):
            tf.value = DEFAULT_TOKEN_FILE.format(name=event.value.strip() or "gdrive")

    @on(Button.Pressed, "#rc-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#rc-save")
    def action_save(self) -> None:
        probs = self._problems()
        if probs:
            self.notify(probs[0], severity="warning")
            return
        name = self.query_one("#rc-name", Input).value.strip()
        token_file = self.query_one("#rc-token-file", Input).value.strip()
        token = self.query_one("#rc-token", TextArea).text.strip()
        options: dict[str, Any] = {"scope": self.query_one("#rc-scope", Select).value, "token_file": token_file}
        root = self.query_one("#rc-root", Input).value.strip()
        if root:
            options["root_folder_id"] = root
        if token:
            try:
                self._store_token(token_file, token)
            except OSError as exc:
                self.notify(f"Could not write {token_file}: {exc.strerror}", severity="error")
                return
        self.dismiss((name, Remote(type="drive", options=options)))

    @staticmethod
    def _store_token(path: str, token: str) -> None:
        """Write the token with mode 0600 (through the core's secret store when present)."""
        core = _core()
        store = getattr(core, "write_secret_file", None) if core else None
        if callable(store):
            store(path, token)
            return
        full = os.path.expanduser(path)
        os.makedirs(os.path.dirname(full), mode=0o700, exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
