"""The Google Drive remote set-up dialog, opened from the Dataset screen.

The Textual face of the same flow as ``gpuwizard rclone``: every question, check and
action comes from the UI-free core (:class:`gpuwizard.rclone.DriveRemoteSpec` and
:class:`gpuwizard.rclone.DriveSetup`), so the two front ends cannot disagree. This
module only lays the form out, builds a spec from the widgets, shows what
:meth:`DriveRemoteSpec.validate` says next to the field it is about, and runs the
blocking ``rclone authorize "drive"`` in a thread worker.

One piece though past 400 lines: it is one dialog whose four credential panels share
one spec, one validation pass and one worker handler; split, each part would reach back
into the others' widgets. The rules themselves are all in the core.

Secrets (token, client secret, service-account key) are written only by
:meth:`DriveSetup.save` (0600, under gpuwizard's config directory); the dialog returns
``(name, Remote)`` whose options name those files (``*_file``), never their contents.
"""

from __future__ import annotations

import threading

from pathlib import Path
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, ContentSwitcher, Input, RadioButton, RadioSet, Select, Static
from textual.worker import Worker, WorkerState

from gpuwizard import rclone as core
from gpuwizard.drive_scopes import DEFAULT_SCOPE
from gpuwizard.recipe import Remote
from gpuwizard.secretstore import SecretStoreError
from screens.widgets import Check

#: spec field (as :meth:`DriveRemoteSpec.validate` names it) -> id of the Static under
#: the widget that edits it. ``token`` and ``service_account_file`` share the
#: credential panel's line.
ERROR_TARGETS: dict[str, str] = {
    "name": "err-name",
    "scope": "err-scope",
    "client_id": "err-client_id",
    "client_secret": "err-client_secret",
    "root_folder_id": "err-root_folder_id",
    "team_drive": "err-team_drive",
    "shared_with_me": "err-shared_with_me",
    "auth": "err-auth",
    "token": "err-credential",
    "service_account_file": "err-credential",
}

#: How the footer line names a field whose message is shown inline.
FIELD_LABELS: dict[str, str] = {
    "name": "remote name", "scope": "access scope", "client_id": "client ID", "client_secret": "client secret",
    "root_folder_id": "root folder", "team_drive": "Shared Drive", "shared_with_me": "shared with me",
    "auth": "credential source", "token": "token", "service_account_file": "service-account key",
}

#: Seconds a browser login may take before rclone is stopped.
LOGIN_TIMEOUT_S = 300.0

_Key = tuple[str, str, str]  # (scope, client id, client secret) a local login was made for


class TokenInput(Input):
    """The pasted OAuth token: masked like a password, and a paste kept whole.

    A plain Input keeps only the first line of a paste, and the first line of
    ``rclone authorize``'s answer is "Paste the following into your remote machine --->",
    which holds no token. The lines are joined instead; the core
    (:func:`gpuwizard.rclone.parse_token_text`) finds the token between the markers.
    """

    def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # not Input's first-line-only paste as well
        event.stop()
        joined = " ".join(line.strip() for line in event.text.splitlines() if line.strip())
        if not joined:
            return
        if self.selection.is_empty:
            self.insert_text_at_cursor(joined)
        else:
            self.replace(joined, *self.selection)


class RcloneScreen(ModalScreen[tuple[str, Remote] | None]):
    """Set up a Google Drive remote; dismisses with ``(name, Remote)`` or None (cancel)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="rclone.cancel"),
        Binding("ctrl+s", "save", "Save remote", priority=True, id="rclone.save"),
    ]

    valid: reactive[bool] = reactive(False, bindings=True)
    """True when the core accepts the form; gates the Save button and ctrl+s."""

    class LoginUrl(Message):
        """rclone printed the login link (posted from the authorize worker's thread)."""

        def __init__(self, url: str) -> None:
            super().__init__()
            self.url = url

    def __init__(self, existing: list[str] | None = None, *, host: str = "USER@VM",
                 secrets_dir: Path | None = None) -> None:
        """``existing``: remote names already in the recipe (a new one must differ);
        ``host``: shown in the SSH-tunnel instructions; ``secrets_dir``: where
        :meth:`DriveSetup.save` writes (None: gpuwizard's config directory)."""
        super().__init__(id="rclone-dialog")
        self._login_cancel = threading.Event()
        self.existing = set(existing or [])
        self.host = host
        self.secrets_dir = secrets_dir
        self.rclone_path: str | None = None
        """The local rclone ``authorize`` can use; None until found (or when absent)."""
        self.login_url: str | None = None
        self._login: tuple[_Key, str] | None = None  # token from the local login, and what it was made for
        self._login_key: _Key | None = None  # what the running login was started with
        self._auth_touched = False
        self._mounted = False

    # -------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        name = "gdrive" if "gdrive" not in self.existing else "gdrive2"
        with Vertical(classes="dialog"):
            yield Static("[b]Google Drive remote[/b]  [dim]the token is saved 0600 on this computer; "
                         "the recipe names the file only[/dim]", id="rc-title")
            with VerticalScroll(id="rc-body"):
                with Horizontal(classes="row"):
                    with Vertical(classes="field"):
                        yield Static("Remote name", classes="label")
                        yield Input(name, id="rc-name")
                        yield self._err("name")
                    with Vertical(classes="field"):
                        yield Static("Access scope", classes="label")
                        yield Select([(label, k) for k, label in core.SCOPE_LABELS.items()], value=DEFAULT_SCOPE,
                                     allow_blank=False, id="rc-scope")
                        yield self._err("scope")
                yield Static(core.SCOPES[DEFAULT_SCOPE], id="rc-scope-help", classes="hint")

                yield Check("Use my own OAuth client ID (recommended)", value=False, id="rc-own-client")
                yield Static(core.CLIENT_ID_HELP, id="rc-client-help", classes="hint")
                with Horizontal(classes="row", id="rc-client"):
                    with Vertical(classes="field"):
                        yield Static("Client ID", classes="label")
                        yield Input(placeholder="123456789012-abc.apps.googleusercontent.com", id="rc-client-id")
                        yield self._err("client_id")
                    with Vertical(classes="field"):
                        yield Static("Client secret", classes="label")
                        yield Input(placeholder="GOCSPX-...", password=True, id="rc-client-secret")
                        yield self._err("client_secret")

                with Horizontal(classes="row"):
                    with Vertical(classes="field"):
                        yield Static("Root folder: link or ID (optional)", classes="label")
                        yield Input(placeholder="https://drive.google.com/drive/folders/...", id="rc-root")
                        yield self._err("root_folder_id")
                    with Vertical(classes="field"):
                        yield Static("Shared Drive ID (optional)", classes="label")
                        yield Input(placeholder="0A...", id="rc-team")
                        yield self._err("team_drive")
                yield Check("Start at 'Shared with me' instead of My Drive", value=False, id="rc-shared")
                yield self._err("shared_with_me")

                yield Static("Where does the credential come from?", classes="label")
                with RadioSet(id="rc-auth"):
                    yield RadioButton(core.AUTH_METHODS["local"] + " (looking for rclone...)", id="auth-local",
                                      disabled=True)
                    yield RadioButton(core.AUTH_METHODS["paste"], value=True, id="auth-paste")
                    yield RadioButton(core.AUTH_METHODS["service_account"], id="auth-service_account")
                    yield RadioButton(core.AUTH_METHODS["tunnel"], id="auth-tunnel")
                yield self._err("auth")
                with ContentSwitcher(initial="panel-paste", id="rc-panels"):
                    with Vertical(id="panel-local", classes="panel"):
                        yield Static("rclone opens a login page (or prints its link below); log in and allow "
                                     "access. rclone receives Google's answer on 127.0.0.1:53682.", classes="hint")
                        yield Button("Log in with the browser", id="rc-login", variant="success")
                        yield Static("", id="rc-login-url")
                        yield Static("", id="rc-login-status")
                    with Vertical(id="panel-paste", classes="panel"):
                        yield Static("", id="rc-paste-cmd", classes="hint")
                        yield Static("Token: paste rclone's whole answer, or the line between "
                                     "'Paste the following' and 'End paste'", classes="label")
                        with Horizontal(classes="row"):
                            yield TokenInput(placeholder='{"access_token": ...} (hidden as you paste)',
                                             password=True, id="rc-token")
                            yield Check("Show", value=False, id="rc-token-show")
                    with Vertical(id="panel-service_account", classes="panel"):
                        yield Static("Service-account JSON key file (IAM > Service accounts > Keys > Add key)",
                                     classes="label")
                        yield Input(placeholder="~/Downloads/project-123abc.json", id="rc-sa")
                        yield Static("", id="rc-sa-info", classes="hint")
                    with Vertical(id="panel-tunnel", classes="panel"):
                        yield Static("", id="rc-tunnel", classes="hint")
                yield Static("", id="err-credential", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Static("", id="rc-why")
                yield Button("Cancel (esc)", id="rc-cancel")
                yield Button("Save remote (ctrl+s)", id="rc-save", variant="primary", disabled=True)

    @staticmethod
    def _err(field: str) -> Static:
        return Static("", id=ERROR_TARGETS[field], classes="field-error")

    def on_mount(self) -> None:
        self.query_one("#rc-client", Horizontal).display = False
        self._mounted = True
        self.query_one("#rc-name", Input).focus()  # typing works at once
        self._refresh()
        self.find_rclone()

    # -------------------------------------------------------------- the spec

    def _auth(self) -> str:
        pressed = self.query_one("#rc-auth", RadioSet).pressed_button
        return (pressed.id or "auth-paste").removeprefix("auth-") if pressed else "paste"

    def _client(self) -> tuple[str, str]:
        if not self.query_one("#rc-own-client", Checkbox).value:
            return "", ""
        return (self.query_one("#rc-client-id", Input).value.strip(),
                self.query_one("#rc-client-secret", Input).value.strip())

    def _key(self) -> _Key:
        cid, secret = self._client()
        return (str(self.query_one("#rc-scope", Select).value), cid, secret)

    def spec(self) -> core.DriveRemoteSpec:
        """The form as the core's spec (the one thing validated and saved)."""
        cid, secret = self._client()
        auth = self._auth()
        token = ""
        if auth == "paste":
            token = self.query_one("#rc-token", TokenInput).value.strip()
        elif auth == "local" and self._login is not None and self._login[0] == self._key():
            token = self._login[1]
        return core.DriveRemoteSpec(
            name=self.query_one("#rc-name", Input).value.strip(),
            scope=str(self.query_one("#rc-scope", Select).value),
            client_id=cid, client_secret=secret,
            root_folder_id=self.query_one("#rc-root", Input).value.strip(),
            team_drive=self.query_one("#rc-team", Input).value.strip(),
            shared_with_me=self.query_one("#rc-shared", Checkbox).value,
            auth=auth, token=token,
            service_account_file=self.query_one("#rc-sa", Input).value.strip() if auth == "service_account" else "",
        )

    def problems(self) -> dict[str, str]:
        """The core's verdict, plus the one thing only the recipe knows: names in use."""
        spec = self.spec()
        out = spec.validate()
        if "name" not in out and spec.name in self.existing:
            out["name"] = f"this recipe already has a remote named {spec.name!r}"
        if spec.auth == "local" and self.rclone_path is None:
            out["auth"] = "rclone is not installed on this computer: paste a token or use the SSH tunnel"
        return out

    # -------------------------------------------------------------- rendering

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(RadioSet.Changed)
    def _refresh(self) -> None:
        """Re-validate and redraw every inline message from one :meth:`problems` call."""
        if not self._mounted:
            return
        spec = self.spec()
        probs = self.problems()
        shown: dict[str, str] = {}
        for field, target in ERROR_TARGETS.items():
            if field in probs and target not in shown:
                shown[target] = probs[field]
        for target in set(ERROR_TARGETS.values()):
            w = self.query_one(f"#{target}", Static)
            w.update(Text(shown.get(target, "")))  # messages quote user input: never markup
            w.display = target in shown
        self.query_one("#rc-scope-help", Static).update(core.SCOPES.get(spec.scope, ""))
        self.query_one("#rc-client", Horizontal).display = self.query_one("#rc-own-client", Checkbox).value
        self.query_one("#rc-panels", ContentSwitcher).current = f"panel-{spec.auth}"
        self.query_one("#rc-paste-cmd", Static).update(Text(
            "On a computer with a browser and rclone, run:\n    " + spec.authorize_command_text()))
        self._show_service_account(spec, probs)
        self._show_tunnel(spec, probs)
        self._show_login_state(spec)
        self.valid = not probs
        first = next(iter(probs.items()), None)
        self.query_one("#rc-why", Static).update(
            Text.assemble(("Cannot save yet: ", "bold"), f"{FIELD_LABELS.get(first[0], first[0])}: {first[1]}")
            if first else "[b $success]Ready to save.[/]")

    def _show_service_account(self, spec: core.DriveRemoteSpec, probs: dict[str, str]) -> None:
        info = self.query_one("#rc-sa-info", Static)
        if spec.auth != "service_account" or not spec.service_account_file or "service_account_file" in probs:
            info.update("")
            return
        try:
            email = core.read_service_account(spec.service_account_file)["client_email"]
        except core.RcloneError:
            info.update("")
            return
        info.update(Text.assemble("Share the dataset folder with ", (str(email), "bold"),
                                  " (Share > add that address as Viewer)."))

    def _show_tunnel(self, spec: core.DriveRemoteSpec, probs: dict[str, str]) -> None:
        if spec.auth != "tunnel":
            return
        text = self.query_one("#rc-tunnel", Static)
        if probs:
            text.update("Fix the fields above to see the commands.")
            return
        steps = core.DriveSetup(spec).tunnel_instructions(self.host)
        text.update(Text("No rclone or browser needed here: the VM runs rclone, your browser here logs in.\n"
                         + "\n".join(steps)))

    def _show_login_state(self, spec: core.DriveRemoteSpec) -> None:
        if spec.auth != "local" or self._login is None:
            return
        status = self.query_one("#rc-login-status", Static)
        if self._login[0] == self._key():
            status.update("[b $success]Logged in:[/] got a token (saved when you press Save).")
        else:
            status.update("[b $warning]The scope or client changed after the login:[/] log in again.")

    def watch_valid(self, valid: bool) -> None:
        try:
            self.query_one("#rc-save", Button).disabled = not valid
        except Exception:  # noqa: BLE001 - before compose
            return

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save" and not self.valid:
            return None  # dimmed in the footer
        return True

    # -------------------------------------------------------------- workers

    @work(thread=True, exclusive=True, exit_on_error=False, group="rclone-detect",
          description="look for a local rclone")
    def find_rclone(self) -> str | None:
        """``rclone version`` is a subprocess: keep it off the event loop."""
        return core.DriveSetup.local_rclone()

    @work(thread=True, exclusive=True, exit_on_error=False, group="rclone-authorize",
          description='rclone authorize "drive"')
    def authorize(self, spec: core.DriveRemoteSpec, rclone: str) -> str:
        """Blocks until the browser login finishes (or rclone gives up); the login link
        is posted as :class:`LoginUrl` as soon as rclone prints it."""
        # Closing the dialog sets the event: rclone stops at once and frees port 53682.
        return core.DriveSetup(spec, self.secrets_dir).authorize(
            rclone=rclone, on_url=lambda url: self.post_message(self.LoginUrl(url)), timeout=LOGIN_TIMEOUT_S,
            cancel=self._login_cancel)

    def on_unmount(self) -> None:
        self._login_cancel.set()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker result and error is handled here, in one place."""
        w = event.worker
        if w.group == "rclone-detect" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._rclone_found(w.result if event.state == WorkerState.SUCCESS else None)
        elif w.group == "rclone-authorize":
            status = self.query_one("#rc-login-status", Static)
            button = self.query_one("#rc-login", Button)
            if event.state == WorkerState.RUNNING:
                button.disabled = True
                status.update("Waiting for the login in the browser...")
                return
            button.disabled = False
            if event.state == WorkerState.SUCCESS and self._login_key is not None:
                self._login = (self._login_key, str(w.result))
            elif event.state == WorkerState.ERROR:
                err = w.error
                msg = str(err) if isinstance(err, core.RcloneError) else f"{type(err).__name__}: {err}"
                status.update(Text.assemble(("Login failed: ", "bold"), msg,
                                            "\nTry again, or paste a token instead."))
            self._refresh()

    def _rclone_found(self, path: str | None) -> None:
        self.rclone_path = path
        button = self.query_one("#auth-local", RadioButton)
        if path:
            button.label = core.AUTH_METHODS["local"]
            button.disabled = False
            if not self._auth_touched:
                button.value = True  # the easiest way when it is available
        else:
            button.label = core.AUTH_METHODS["local"] + " (rclone is not installed here)"
        self._refresh()

    @on(Checkbox.Changed, "#rc-token-show")
    def _reveal_token(self, event: Checkbox.Changed) -> None:
        """The token is masked unless the user asks to check what was pasted."""
        self.query_one("#rc-token", TokenInput).password = not event.value

    @on(RadioSet.Changed, "#rc-auth")
    def _auth_changed(self, event: RadioSet.Changed) -> None:
        if event.pressed.id != "auth-local":
            self._auth_touched = True
        if event.radio_set.has_focus:
            # The user chose: the panel the choice opens (the last thing in the body, under
            # the choices) was below the fold at 120x40, so the choice seemed to do nothing.
            # Bring it into view once laid out (not on the rclone look-up's own change at
            # open, which keeps the name field in view).
            self.query_one("#rc-body", VerticalScroll).scroll_end(animate=False)

    def on_rclone_screen_login_url(self, message: LoginUrl) -> None:
        self.login_url = message.url
        self.query_one("#rc-login-url", Static).update(Text.assemble(
            "If no browser opened, open this link here: ",
            (message.url, Style(link=message.url, underline=True, bold=True))))

    # -------------------------------------------------------------- actions

    @on(Button.Pressed, "#rc-login")
    def action_login(self) -> None:
        """Start ``rclone authorize "drive"`` with the scope and client chosen now."""
        if self.rclone_path is None:
            self.notify("rclone is not installed on this computer.", severity="warning")
            return
        self._login_key = self._key()
        self.login_url = None
        self.query_one("#rc-login-url", Static).update("")
        self.authorize(self.spec(), self.rclone_path)

    @on(Button.Pressed, "#rc-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#rc-save")
    def action_save(self) -> None:
        """Write the secrets through the core and return the recipe's remote."""
        probs = self.problems()
        if probs:
            field, msg = next(iter(probs.items()))
            self.notify(f"{field}: {msg}", severity="warning")
            return
        spec = self.spec()
        setup = core.DriveSetup(spec, self.secrets_dir)
        try:
            if spec.auth == "paste":
                setup.accept_token(spec.token)
            options: dict[str, Any] = setup.save()
        except (core.RcloneError, SecretStoreError, OSError) as exc:
            self.notify(f"Could not save the remote: {exc}", severity="error")
            return
        type_ = str(options.pop("type", "drive"))
        self.dismiss((spec.name, Remote(type=type_, options=options)))
