"""``gpuwizard rclone``: the guided Drive set-up in a plain terminal (questionary).

Why a plain-terminal flow beside the Textual screen: it works over SSH and in any
terminal, with no full-screen UI. It asks the same questions as the Dataset screen's
rclone dialog and validates with the same functions (:mod:`gpuwizard.rclone`), so the
two front ends cannot disagree.

Nothing is written until the last confirmation: Ctrl-C at any prompt exits 130 with no
file touched, and :meth:`DriveSetup.save` writes each secret atomically (0600).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import questionary
from questionary import Choice

from gpuwizard import exit_codes
from gpuwizard import rclone as R



def _v(fn: Callable[[str], str | None]) -> Callable[[str], bool | str]:
    """Adapt a core validator (None = fine) to questionary's (True = fine)."""
    return lambda text: fn(text) or True


def _say(text: str = "") -> None:
    print(text, flush=True)


def _ask(question: Any) -> Any:
    """``unsafe_ask`` raises KeyboardInterrupt on Ctrl-C (``ask`` would swallow it)."""
    return question.unsafe_ask()


def run_flow(setup: R.DriveSetup) -> dict[str, Any]:
    """Ask every question, fill ``setup.spec``; returns the saved recipe options."""
    s = setup.spec
    _say("Google Drive remote for gpuwizard. Secrets are stored under ~/.config/gpuwizard/secrets (0600); "
         "the recipe only names the files.\n")
    s.name = _ask(questionary.text("Remote name:", default=s.name, validate=_v(R.validate_remote_name))).strip()
    s.scope = _ask(questionary.select(
        "Access scope:", default=s.scope,
        choices=[Choice(title=f"{k:<24} {R.SCOPES[k]}", value=k) for k in R.SCOPE_LABELS]))
    _say(R.CLIENT_ID_HELP)
    if _ask(questionary.confirm("Use your own OAuth client ID? (recommended)", default=False)):
        s.client_id = _ask(questionary.text("Client ID:", validate=_v(
            lambda t: "enter the client ID" if not t.strip() else R.validate_client_id(t)))).strip()
        s.client_secret = _ask(questionary.password("Client secret:", validate=_v(
            lambda t: "enter the client secret" if not t.strip() else R.validate_client_secret(t)))).strip()
    s.root_folder_id = _ask(questionary.text(
        "Root folder (a folder link or ID; empty for the whole drive):", validate=_v(R.validate_root_folder))).strip()
    s.team_drive = _ask(questionary.text("Shared Drive ID (empty if none):", validate=_v(R.validate_team_drive))).strip()
    if not s.team_drive:
        s.shared_with_me = bool(_ask(questionary.confirm(
            "Start at 'Shared with me' instead of My Drive?", default=False)))
    local = setup.local_rclone()
    methods = [m for m in R.AUTH_METHODS if m != "local" or local]
    s.auth = _ask(questionary.select("Where does the credential come from?",
                                     choices=[Choice(title=R.AUTH_METHODS[m], value=m) for m in methods]))
    if s.auth == "local":
        _say("\nStarting `rclone authorize \"drive\"`. Log in with the browser; waiting for Google's answer "
             "(Ctrl-C to stop).")
        try:
            setup.authorize(rclone=local or "rclone", on_url=lambda url: _say(f"Open this link to log in: {url}"))
        except R.RcloneError as exc:
            _say(f"gpuwizard: {exc}")
            _say("You can paste a token instead:")
            s.auth = "paste"
        else:
            _say("Got a token.")
    if s.auth == "paste":
        _say("\nOn a computer with a browser and rclone, run:\n\n    " + s.authorize_command_text()
             + "\n\nthen paste the line between 'Paste the following' and 'End paste'.")
        # Masked like the client secret: a token in the terminal's scrollback is a credential left behind.
        setup.accept_token(_ask(questionary.password("Token:", validate=_v(R.validate_token_text))))
    elif s.auth == "service_account":
        s.service_account_file = _ask(questionary.path(
            "Service-account JSON key file:", validate=_v(R.validate_service_account_file))).strip()
        email = R.read_service_account(s.service_account_file)["client_email"]
        _say(f"Share the dataset folder with {email} (Share > add that address as Viewer).")
    problems = s.validate()
    if problems:
        for k, v in problems.items():
            _say(f"gpuwizard: {k}: {v}")
        raise R.RcloneError("the answers are incomplete")
    if not _ask(questionary.confirm("Save the secrets and print the recipe fragment?", default=True)):
        raise KeyboardInterrupt
    return setup.save()


def cmd_rclone(args: argparse.Namespace | None = None) -> int:
    """Entry point of ``gpuwizard rclone``."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("gpuwizard: `gpuwizard rclone` asks questions, so it needs a terminal; run it in one "
              "(over SSH too), or write the remote into the recipe by hand.", file=sys.stderr)
        return exit_codes.USAGE
    setup = R.DriveSetup()
    try:
        options = run_flow(setup)
    except KeyboardInterrupt:
        print("\ngpuwizard: cancelled; nothing was written.", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except (R.RcloneError, OSError) as exc:
        print(f"gpuwizard: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    files = [v for k, v in options.items() if k.endswith("_file")]
    if files:
        _say("\nWrote " + ", ".join(files) + " (mode 0600).")
    _say("\nAdd this to your recipe:\n")
    _say(setup.recipe_fragment(options))
    _say("and fetch a dataset with, for example:\n")
    _say(f"datasets:\n  - {{from: \"https://drive.google.com/file/d/FILE_ID/view\", remote: {setup.spec.name}, "
         "to: \"~/data/\", unzip: true}\n")
    if setup.spec.auth == "tunnel":
        _say("Logging in through the VM (do this once the VM is up, or let `gpuwizard run` do steps 2-4):")
        for line in setup.tunnel_instructions():
            _say(line)
    return exit_codes.OK
