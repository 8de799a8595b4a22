"""The guided Drive set-up's questions: choices, validators and the spec they fill.

Both front ends (``gpuwizard rclone`` with questionary, the wizard's dialog) show these
choices and call these validators, so they cannot disagree. Each validator returns None
when the value is fine, else one sentence for the user. Pure: no subprocess, no file
written (reading a service-account key to check it is the one exception).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuwizard.drive_scopes import DEFAULT_SCOPE, DRIVE_SCOPES, OFFERED_SCOPES
from gpuwizard.rclone.errors import RcloneError, TokenError
from gpuwizard.sharelinks import ShareLinkError, parse_drive_link
from gpuwizard.shell import q

#: Scope -> what it allows (from the one table, :mod:`gpuwizard.drive_scopes`).
SCOPES: dict[str, str] = {k: v.text for k, v in DRIVE_SCOPES.items()}
#: Scope -> its short label, for the scopes the set-up offers (both front ends list these).
SCOPE_LABELS: dict[str, str] = {k: DRIVE_SCOPES[k].label for k in OFFERED_SCOPES}

CLIENT_ID_HELP = (
    "Your own OAuth client ID is recommended: without one rclone shares a client ID with every "
    "rclone user, whose quota is often exhausted (slow listings, 403 rate-limit errors). Create one in "
    "Google Cloud console > APIs & Services > Credentials > OAuth client ID (Desktop app), enable the "
    "Drive API, and publish the consent screen: a client left in 'Testing' issues tokens that expire "
    "after 7 days.")

AUTH_METHODS: dict[str, str] = {
    "local": "Log in with a browser on this machine (runs `rclone authorize \"drive\"` here)",
    "paste": "Paste a token from `rclone authorize \"drive\"` run on another computer",
    "service_account": "A service-account JSON key (no browser; share the folder with its e-mail)",
    "tunnel": "Log in through an SSH tunnel to the VM (no rclone needed here)",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")
_CLIENT_ID_RE = re.compile(r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$")
_FOLDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{10,200}$")
_TEAM_DRIVE_RE = re.compile(r"^0A[A-Za-z0-9_-]{8,60}$")

# ---------------------------------------------------------------------------- validators
# Each returns None when the value is fine, else one sentence for the user. questionary
# and Textual validators both call these.


def validate_remote_name(name: str) -> str | None:
    if not name:
        return "give the remote a name, e.g. gdrive"
    if not _NAME_RE.match(name):
        return ("use letters, digits, _ and - (no spaces or dots), starting with a letter or digit: "
                "the name becomes an environment variable on the VM")
    return None


def validate_client_id(value: str) -> str | None:
    if not value:
        return None
    if not _CLIENT_ID_RE.match(value.strip()):
        return "a client ID looks like 123456789012-abc123.apps.googleusercontent.com"
    return None


def validate_client_secret(value: str) -> str | None:
    v = value.strip()
    if not v:
        return None
    if len(v) < 10 or re.search(r"\s", v):
        return "a client secret is one word of 24 or more characters (GOCSPX-...)"
    return None


def folder_id_from(text: str) -> str:
    """A root folder given as an ID or a folder link -> the ID (raises RcloneError)."""
    t = text.strip()
    if not t:
        return ""
    if "/" in t or "?" in t:
        try:
            link = parse_drive_link(t)
        except ShareLinkError as exc:
            raise RcloneError(str(exc)) from None
        if link.kind == "file":
            raise RcloneError("that is a link to a file; the root folder must be a folder "
                              "(a file ID as root folder copies nothing)")
        return link.id
    if not _FOLDER_ID_RE.match(t):
        raise RcloneError(f"{t!r} is not a folder ID (10+ letters, digits, - and _) or a folder link")
    return t


def validate_root_folder(text: str) -> str | None:
    try:
        folder_id_from(text)
    except RcloneError as exc:
        return str(exc)
    return None


def validate_team_drive(value: str) -> str | None:
    v = value.strip()
    if v and not _TEAM_DRIVE_RE.match(v):
        return "a Shared Drive ID starts with 0A, e.g. 0ABCdefGHIjklMN9PVA (Drive URL .../drive/folders/0A...)"
    return None


def parse_token_text(text: str) -> str:
    """Whatever the user pasted -> the token JSON rclone stores, compact.

    Accepts the raw token JSON, the whole ``rclone authorize`` output (text between
    ``--->`` and ``<---End paste``), or the base64 blob that the 2-argument form prints
    (``base64(json({"token": "<token json>"}))``, unpadded). Raises TokenError.
    """
    t = (text or "").strip()
    if "--->" in t:
        t = t.split("--->", 1)[1]
        t = t.split("<---", 1)[0]
        t = t.strip()
    if not t:
        raise TokenError("nothing pasted: paste the line between 'Paste the following' and 'End paste'")
    if not t.startswith("{"):
        try:
            blob = json.loads(base64.b64decode(t + "=" * (-len(t) % 4), validate=True))
            t = blob["token"] if isinstance(blob, dict) else ""
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise TokenError("that is neither token JSON nor rclone's base64 answer: copy exactly the "
                             "line between 'Paste the following into your remote machine --->' and "
                             "'<---End paste'") from None
        if not isinstance(t, str):
            raise TokenError("the base64 answer holds no token")
    try:
        tok = json.loads(t)
    except ValueError:
        raise TokenError("the token is not valid JSON (was it cut off? it is one long line starting with "
                         '{"access_token"') from None
    if not isinstance(tok, dict) or not isinstance(tok.get("access_token"), str) or not tok["access_token"]:
        raise TokenError("the JSON has no access_token: it is not an rclone OAuth token")
    if not tok.get("refresh_token"):
        raise TokenError("the token has no refresh_token, so it would stop working within an hour: "
                         "run `rclone authorize \"drive\"` again")
    tok.setdefault("token_type", "Bearer")
    return json.dumps(tok, separators=(",", ":"))


def validate_token_text(text: str) -> str | None:
    try:
        parse_token_text(text)
    except TokenError as exc:
        return str(exc)
    return None


def read_service_account(path: str) -> dict[str, Any]:
    """Load and check a service-account key file; returns the parsed JSON."""
    p = Path(os.path.expanduser(path.strip()))
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RcloneError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise RcloneError(f"{path} is not JSON: download the key again (IAM > Service accounts > Keys > "
                          "Add key > JSON)") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise RcloneError(f"{path} is not a service-account key (its \"type\" is not \"service_account\")")
    for k in ("client_email", "private_key"):
        if not data.get(k):
            raise RcloneError(f"{path} has no {k}: download a new JSON key")
    return data


def validate_service_account_file(path: str) -> str | None:
    try:
        read_service_account(path)
    except RcloneError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------- the spec


@dataclass
class DriveRemoteSpec:
    """Everything the guided form asks for a Google Drive remote.

    ``client_secret`` and ``token`` are held in memory only until :meth:`DriveSetup.save`
    writes them to the secret store; the recipe names the files.
    """

    name: str = "gdrive"
    scope: str = DEFAULT_SCOPE
    client_id: str = ""
    client_secret: str = ""
    root_folder_id: str = ""
    team_drive: str = ""
    shared_with_me: bool = False
    auth: str = "local"  # one of AUTH_METHODS
    token: str = ""  # token JSON (auth local/paste)
    service_account_file: str = ""  # local path (auth service_account)

    def validate(self) -> dict[str, str]:
        """Field name -> problem; empty when the spec can be saved."""
        out: dict[str, str] = {}

        def put(k: str, msg: str | None) -> None:
            if msg:
                out[k] = msg

        put("name", validate_remote_name(self.name))
        if self.scope not in SCOPES:
            out["scope"] = f"unknown scope {self.scope!r}; use one of {', '.join(SCOPES)}"
        elif self.scope == "drive.metadata.readonly":
            out["scope"] = "drive.metadata.readonly cannot download file contents; use drive.readonly"
        put("client_id", validate_client_id(self.client_id))
        put("client_secret", validate_client_secret(self.client_secret))
        if bool(self.client_id.strip()) != bool(self.client_secret.strip()):
            out.setdefault("client_secret" if self.client_id else "client_id",
                           "give both the client ID and its secret, or neither")
        put("root_folder_id", validate_root_folder(self.root_folder_id))
        put("team_drive", validate_team_drive(self.team_drive))
        if self.team_drive and self.shared_with_me:
            out["shared_with_me"] = "shared-with-me and a Shared Drive exclude each other; pick one"
        if self.auth not in AUTH_METHODS:
            out["auth"] = f"unknown credential source {self.auth!r}"
        elif self.auth in ("local", "paste"):
            if not self.token:
                out["token"] = "no token yet: log in (or paste the token from rclone authorize)"
            else:
                put("token", validate_token_text(self.token))
        elif self.auth == "service_account":
            if not self.service_account_file:
                out["service_account_file"] = "choose the service account's JSON key file"
            else:
                put("service_account_file", validate_service_account_file(self.service_account_file))
        return out

    def authorize_env(self) -> dict[str, str]:
        """Environment for ``rclone authorize "drive"``: scope and own client through
        RCLONE_DRIVE_* variables, so the client secret is not on the command line."""
        env = {"RCLONE_DRIVE_SCOPE": self.scope, "RCLONE_CONFIG": os.devnull}
        if self.client_id:
            env["RCLONE_DRIVE_CLIENT_ID"] = self.client_id.strip()
        if self.client_secret:
            env["RCLONE_DRIVE_CLIENT_SECRET"] = self.client_secret.strip()
        return env

    def authorize_command_text(self) -> str:
        """The exact command a user runs on a computer with a browser (auth "paste")."""
        parts = [f"RCLONE_DRIVE_SCOPE={self.scope}"]
        if self.client_id:
            parts.append(f"RCLONE_DRIVE_CLIENT_ID={q(self.client_id.strip())}")
            parts.append('RCLONE_DRIVE_CLIENT_SECRET="<your client secret>"')
        return " ".join(parts) + ' rclone authorize "drive"'

    def plain_options(self) -> dict[str, Any]:
        """Non-secret drive options, as written into the recipe and onto the host."""
        opts: dict[str, Any] = {"scope": self.scope}
        if self.client_id:
            opts["client_id"] = self.client_id.strip()
        if self.root_folder_id:
            opts["root_folder_id"] = folder_id_from(self.root_folder_id)
        if self.team_drive:
            opts["team_drive"] = self.team_drive.strip()
        if self.shared_with_me:
            opts["shared_with_me"] = True
        return opts


