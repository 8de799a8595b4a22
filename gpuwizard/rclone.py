"""rclone remotes and dataset downloads: the UI-free core both front ends call.

Three jobs, each replacing a part of the original procedure (docs/facts/rclone-drive.md):

* **Guided Drive set-up** (:class:`DriveRemoteSpec`, :class:`DriveSetup`): the twenty
  prompts of ``rclone config`` become one form with validation; the credential comes
  from ``rclone authorize "drive"`` run locally, a pasted token, a service-account key,
  or a browser login tunnelled over SSH. Secrets go to the local secret store (0600)
  and the recipe names them by path.
* **Host configuration** (:func:`steps`): ``rclone config create NAME TYPE ...
  --non-interactive`` with every answer up front, and the returned JSON ``State``
  checked, because rclone exits 0 even when it stopped to ask a question.
* **Dataset steps**: ``rclone copy``/``backend copyid`` with ``--use-json-log --stats 1s``
  so :mod:`gpuwizard.progress` turns the stats into Progress events; verify, extract,
  mark done.

Secrets never reach a command line (``ps`` shows every argv, and the executor runs each
step as ``bash -c SCRIPT``): secret files are uploaded 0600 over SFTP and each step
reads them on the host into ``RCLONE_CONFIG_<NAME>_<KEY>`` environment variables with
the bash builtin ``$(<file)``, which starts no process. Environment variables are only
readable by the same user (``/proc/PID/environ`` is 0400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from gpuwizard.shell import q, qpath
from gpuwizard.sharelinks import DriveLink, ShareLinkError, is_drive_link, parse_drive_link
from gpuwizard.steps import Step, Upload

if TYPE_CHECKING:  # pragma: no cover
    from gpuwizard.recipe import Dataset, Recipe, Remote

MIN_VERSION = (1, 56, 0)  # config --non-interactive/--state (1.56), copyid (1.54), resource_key (1.59 nice-to-have)
DEFAULT_VERSION = "1.68.2"  # installed when the host's rclone is missing or older than MIN_VERSION
HOST_SECRETS = "~/.config/gpuwizard/secrets"  # on the host; SFTP paths are relative to home
AUTH_PORT = 53682  # rclone's fixed OAuth loopback port

# ---------------------------------------------------------------------------- form data

SCOPES: dict[str, str] = {
    "drive.readonly": "Read all your files, change nothing. Right for downloading datasets (recommended).",
    "drive": "Full access: read, write and delete all files. Only if the VM must upload results.",
    "drive.file": "Only files rclone itself created. It cannot see a dataset shared with you.",
    "drive.appfolder": "A private app folder only. It cannot see your files.",
    "drive.metadata.readonly": "File names and sizes only, no contents: useless for downloads.",
}

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


class RcloneError(Exception):
    """A problem in what was asked of rclone; the message says what to do."""


class TokenError(RcloneError):
    """Pasted or captured text is not a usable rclone OAuth token."""


class ConfigIncomplete(RcloneError):
    """``rclone config create --non-interactive`` stopped to ask a question."""

    def __init__(self, state: str, option: str, help: str, error: str = ""):
        self.state, self.option, self.help, self.error = state, option, help, error
        what = f"rclone stopped to ask for {option!r}" if option else f"rclone stopped in state {state!r}"
        hint = _OPTION_HINTS.get(option, "")
        super().__init__(f"the remote is incomplete: {what}" + (f" ({error})" if error else "") + (f"; {hint}" if hint else ""))


_OPTION_HINTS = {
    "config_is_local": "no credential was given: add token_file or service_account_file to the remote",
    "config_token": "no OAuth token was given: run `gpuwizard rclone` to get one",
    "config_refresh_token": "pass config_refresh_token=false with a token",
    "config_change_team_drive": "pass config_change_team_drive=false (or team_drive=ID)",
}


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
    scope: str = "drive.readonly"
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


class DriveSetup:
    """The guided flow's actions on a :class:`DriveRemoteSpec`; both front ends call these.

    Nothing here prompts or prints: results and errors are values and exceptions.
    """

    def __init__(self, spec: DriveRemoteSpec | None = None, secrets_dir: Path | None = None):
        self.spec = spec or DriveRemoteSpec()
        self.secrets_dir = secrets_dir

    @staticmethod
    def local_rclone() -> str | None:
        """Path of a local rclone new enough for ``authorize``, else None."""
        path = shutil.which("rclone")
        if not path:
            return None
        ver = local_version(path)
        return path if ver and ver >= (1, 50, 0) else None

    def authorize(self, *, rclone: str = "rclone", on_url: Callable[[str], None] | None = None,
                  open_browser: bool | None = None, timeout: float = 600.0,
                  cancel: threading.Event | None = None) -> str:
        """Run ``rclone authorize "drive"`` here and return the token JSON (also stored
        on the spec). ``on_url`` gets the login URL as soon as rclone prints it;
        ``cancel`` stops the login."""
        tok = authorize_local(self.spec, rclone=rclone, on_url=on_url, open_browser=open_browser, timeout=timeout,
                              cancel=cancel)
        self.spec.token = tok
        return tok

    def accept_token(self, text: str) -> str:
        self.spec.token = parse_token_text(text)
        return self.spec.token

    def secret_names(self) -> dict[str, str]:
        """Secret file names in the store, by what they hold."""
        n = self.spec.name
        return {"token": f"{n}.token.json", "client_secret": f"{n}.client_secret",
                "service_account": f"{n}.service_account.json"}

    def save(self) -> dict[str, Any]:
        """Validate, write the secrets (0600, atomically) and return the recipe's remote
        options: plain options plus ``*_file`` paths. Raises RcloneError on problems.
        Secrets are written only after every check passed, so a refused form writes nothing."""
        from gpuwizard import secretstore

        problems = self.spec.validate()
        if problems:
            raise RcloneError("; ".join(f"{k}: {v}" for k, v in problems.items()))
        s = self.spec
        names = self.secret_names()
        opts: dict[str, Any] = {"type": "drive", **s.plain_options()}
        planned: list[tuple[str, str | bytes]] = []
        if s.client_secret:
            planned.append(("client_secret", s.client_secret.strip()))
        if s.auth in ("local", "paste"):
            planned.append(("token", parse_token_text(s.token)))
        elif s.auth == "service_account":
            read_service_account(s.service_account_file)
            planned.append(("service_account", Path(os.path.expanduser(s.service_account_file)).read_bytes()))
        written: list[Path] = []
        try:
            for what, data in planned:
                written.append(secretstore.write_secret(names[what], data, self.secrets_dir))
        except BaseException:
            for p in written:  # all or nothing
                p.unlink(missing_ok=True)
            raise
        for (what, _), path in zip(planned, written):
            key = {"client_secret": "client_secret_file", "token": "token_file",
                   "service_account": "service_account_file"}[what]
            opts[key] = secretstore.display_path(path)
        return opts

    def recipe_fragment(self, options: Mapping[str, Any]) -> str:
        """The YAML to paste under a recipe (``rclone.remotes.NAME``)."""
        import yaml

        return yaml.safe_dump({"rclone": {"remotes": {self.spec.name: dict(options)}}},
                              sort_keys=False, default_flow_style=False)

    def tunnel_instructions(self, host: str = "USER@VM") -> list[str]:
        """What to do for auth "tunnel": rclone on the VM receives Google's redirect."""
        s = self.spec
        args = [f"{k}={v if not isinstance(v, bool) else str(v).lower()}" for k, v in s.plain_options().items()]
        cmd = ["rclone", "config", "create", s.name, "drive", *args, "config_is_local=true",
               "config_change_team_drive=false", "--non-interactive"]
        return [
            f"1. Open a tunnel from this computer: ssh -L {AUTH_PORT}:localhost:{AUTH_PORT} {host}",
            f"   (on GCE: gcloud compute ssh VM --zone ZONE -- -L {AUTH_PORT}:localhost:{AUTH_PORT})",
            "2. In that SSH session run:",
            "   " + " ".join(q(a) for a in cmd),
            f"3. Open the http://127.0.0.1:{AUTH_PORT}/auth?state=... link it prints in your browser here and log in.",
            "   Google sends the browser back to 127.0.0.1:53682, which the tunnel carries to the VM.",
            "4. The command prints {\"State\": \"\"} when the remote is ready. gpuwizard's recipe step for this",
            "   remote then finds the token there and leaves it alone.",
        ]


# ---------------------------------------------------------------------------- local rclone


def local_version(rclone: str = "rclone") -> tuple[int, int, int] | None:
    """``rclone version`` of a local binary as a tuple, or None."""
    try:
        out = subprocess.run([rclone, "version"], capture_output=True, text=True, timeout=20,
                             env={**os.environ, "RCLONE_CONFIG": os.devnull}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(out)


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"rclone v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


_URL_RE = re.compile(r"https?://(?:127\.0\.0\.1|localhost):\d+/auth\?state=[A-Za-z0-9_-]+")


def authorize_local(spec: DriveRemoteSpec, *, rclone: str = "rclone", on_url: Callable[[str], None] | None = None,
                    open_browser: bool | None = None, timeout: float = 600.0,
                    extra_env: Mapping[str, str] | None = None, cancel: threading.Event | None = None) -> str:
    """Run ``rclone authorize "drive"`` and return the token JSON.

    Scope and client go through the environment (never argv). rclone listens on
    127.0.0.1:53682 for Google's redirect; we read its stderr for the login URL and its
    stdout for the token between the "Paste the following" markers. Setting ``cancel``
    (a dialog closed mid-login) stops rclone at once, freeing the port.
    """
    if open_browser is None:
        open_browser = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.uname().sysname == "Darwin"
    argv = [rclone, "authorize", "drive"]
    if not open_browser:
        argv.append("--auth-no-open-browser")
    env = {**os.environ, **spec.authorize_env(), **(extra_env or {})}
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    except OSError as exc:
        raise RcloneError(f"cannot run {rclone}: {exc.strerror}") from None
    err_lines: list[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        seen = False
        for line in proc.stderr:
            err_lines.append(line)
            m = _URL_RE.search(line)
            if m and not seen and on_url is not None:
                seen = True
                on_url(m.group(0))

    out_chunks: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    readers = [threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)]
    for t in readers:
        t.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    proc.kill()
                    proc.wait()
                    raise RcloneError("login cancelled") from None
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise RcloneError(f"no login within {int(timeout)} s; start again when you are ready") from None
    except BaseException:  # Ctrl-C: do not leave rclone listening on 53682
        proc.kill()
        proc.wait()
        raise
    for t in readers:
        t.join(timeout=5)
    out = "".join(out_chunks)
    if proc.returncode != 0:
        tail = "".join(err_lines[-5:]).strip()
        hint = explain_rclone_error(tail)
        raise RcloneError(f"rclone authorize failed: {tail or 'exit ' + str(proc.returncode)}"
                          + (f"\n{hint}" if hint else ""))
    return parse_token_text(out)


# ---------------------------------------------------------------------------- config create


def config_create_args(name: str, type_: str, options: Mapping[str, Any], *, rclone: str = "rclone",
                       non_interactive: bool = True) -> list[str]:
    """argv for ``rclone config create`` with every answer given up front.

    Refuses secret keys: a value on a command line is visible to every user via ``ps``;
    pass those as ``RCLONE_CONFIG_<NAME>_<KEY>`` environment variables instead. Drive
    gets ``config_refresh_token=false`` and ``config_change_team_drive=false`` unless
    given, so a complete answer set finishes with ``State == ""`` in one call.
    """
    from gpuwizard.recipe import SECRET_KEYS

    bad = sorted(k for k in options if k in SECRET_KEYS)
    if bad:
        raise RcloneError(f"{', '.join(bad)} would be visible in the process list; pass it in the environment")
    opts = {k: _opt_str(v) for k, v in options.items()}
    if type_ == "drive":
        opts.setdefault("config_refresh_token", "false")
        opts.setdefault("config_change_team_drive", "false")
    argv = [rclone, "config", "create", name, type_, *(f"{k}={v}" for k, v in opts.items())]
    if non_interactive:
        argv.append("--non-interactive")
    return argv


def _opt_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def check_config_state(json_text: str) -> dict[str, Any]:
    """Parse ``config create --non-interactive`` output; raise ConfigIncomplete unless
    rclone finished (``State == ""`` and no ``Error``). rclone exits 0 either way."""
    try:
        data = json.loads(json_text)
    except ValueError:
        raise RcloneError("rclone config create printed no JSON state (is this rclone older than 1.56?)") from None
    if not isinstance(data, dict) or "State" not in data:
        raise RcloneError("rclone config create printed no JSON state (is this rclone older than 1.56?)")
    option = data.get("Option") or {}
    state, error = str(data.get("State") or ""), str(data.get("Error") or "")
    if state or error:
        raise ConfigIncomplete(state, str(option.get("Name", "")), str(option.get("Help", "")), error)
    return data


# ---------------------------------------------------------------------------- errors

#: (regex on rclone output, what happened and what to do). Also compiled into each
#: dataset step as grep checks, so the hint is in the host's log too.
ERROR_HINTS: list[tuple[str, str]] = [
    (r"downloadQuotaExceeded|download quota for this file has been exceeded",
     "Google's per-file download quota is used up (popular shared files hit it). Wait about 24 hours, "
     "ask the owner to re-upload it, or copy it into your own Drive (rclone backend copyid REMOTE: ID "
     "REMOTE:copy/) and download your copy."),
    (r"cannotDownloadAbusiveFile",
     "Google flagged the file as possible malware or spam. If you trust it, add acknowledge_abuse: true "
     "to the remote."),
    (r"userRateLimitExceeded|rateLimitExceeded|Rate Limit Exceeded|Error 429|too many requests",
     "Google Drive is rate-limiting this client. Use your own client_id (run `gpuwizard rclone`), and "
     "re-run: the copy resumes where it stopped."),
    (r"invalid_grant|Token has been expired or revoked|token expired|oauth2: token expired",
     "The Drive login expired or was revoked (a client left in 'Testing' mode expires every 7 days). "
     "Run `gpuwizard rclone` again for a new token, then re-run this step."),
    (r"unauthorized_client",
     "The service account may not impersonate that user: set up domain-wide delegation, or share the "
     "folder with the service account's e-mail and use root_folder_id."),
    (r"can't copy directory",
     "The link is a folder, not a file: use the folder link (…/drive/folders/ID)."),
    (r"insufficientFilePermissions|insufficient permissions|The user does not have sufficient permissions|"
     r"Error 403: Forbidden|forbidden",
     "This Google account (or service account) may not read the file: ask the owner to share it with you, "
     "or use a link shared as 'Anyone with the link'."),
    (r"notFound|File not found|directory not found|object not found|error 404|not found",
     "Nothing was found at that path or ID. Check the link or path; a file shared with you needs "
     "shared_with_me: true or its link, and old links need their resourcekey."),
    (r"didn't find section in config file|NewFs: didn't find section",
     "The remote is not configured on this host: run its rclone.remote step first."),
    (r"illegal base64|Couldn't decode response",
     "The pasted answer came from a different rclone version: paste the raw token JSON instead."),
    (r"no space left on device",
     "The VM's disk is full: grow the boot disk (target.gcp.disk_gb) or copy to a bigger disk."),
    (r"certificate signed by unknown authority|x509:",
     "TLS certificate check failed: the VM's clock or CA certificates may be wrong (apt-get install ca-certificates)."),
]
_HINT_RES = [(re.compile(p, re.I), msg) for p, msg in ERROR_HINTS]


def explain_rclone_error(text: str) -> str | None:
    """One plain explanation (what happened, what to do) for rclone output, or None."""
    if not text:
        return None
    for rx, msg in _HINT_RES:
        if rx.search(text):
            return msg
    return None


def _hint_shell(log: str) -> str:
    """Bash that prints the first matching hint for the rclone log file ``$log``."""
    lines = []
    for i, (pattern, msg) in enumerate(ERROR_HINTS):
        kw = "if" if i == 0 else "elif"
        lines.append(f"{kw} grep -Eqi -- {q(pattern)} {log}; then echo {q('gpuwizard: ' + msg)} >&2")
    lines.append("fi")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- host steps


@dataclass(frozen=True)
class _SecretOpt:
    """A remote option whose value must come from a secret file on the host."""

    key: str             # the rclone option (token, client_secret, pass ...)
    local: str           # local file to upload ("$NAME" for env)
    remote: str          # host path (~/...)
    as_path: bool = False  # the option takes the file's path (service_account_file, key_file)
    obscure: bool = False  # rclone wants the value obscured (pass, password)
    env: str | None = None  # the local environment variable holding the value (KEY_env)


# rclone options whose *value* is a path to a key file; the file is uploaded and the
# option given the host path.
NATIVE_FILE_OPTIONS = {"service_account_file", "key_file"}
# rclone options of type password: stored obscured (`rclone obscure -` reads stdin).
OBSCURED_KEYS = {"pass", "password", "password2"}


def _env_name(remote: str, key: str) -> str:
    return f"RCLONE_CONFIG_{remote.upper()}_{key.upper()}"


def _split_options(name: str, remote: "Remote") -> tuple[dict[str, Any], list[_SecretOpt], list[str]]:
    """(plain options, secret options, problems) for one recipe remote.

    Pure: reads no environment variable and writes no file (``gpuwizard plan`` calls it).
    """
    from gpuwizard.recipe import SECRET_KEYS

    plain: dict[str, Any] = {}
    secrets: list[_SecretOpt] = []
    problems: list[str] = []
    for key, value in remote.options.items():
        if key in NATIVE_FILE_OPTIONS:
            base = key[: -len("_file")]
            secrets.append(_SecretOpt(key, str(value), f"{HOST_SECRETS}/{name}.{base}", as_path=True))
        elif key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            base = key[: -len("_file")]
            secrets.append(_SecretOpt(base, str(value), f"{HOST_SECRETS}/{name}.{base}", obscure=base in OBSCURED_KEYS))
        elif key.endswith("_env") and key[: -len("_env")] in SECRET_KEYS:
            base = key[: -len("_env")]
            var = str(value)
            # The executor reads the variable when the run starts and uploads its value
            # from memory like every other secret (SFTP 0600, masked in logs, never on a
            # command line); it is never written to the local disk. Unset -> that step fails.
            secrets.append(_SecretOpt(base, f"${var}", f"{HOST_SECRETS}/{name}.{base}",
                                      obscure=base in OBSCURED_KEYS, env=var))
        else:
            plain[key] = value
    if secrets and not re.match(r"^[A-Za-z0-9_]+$", name):
        problems.append(f"rclone.remotes.{name}: a remote with secret files needs a name of letters, digits "
                        "and _ only (it becomes an environment variable on the host)")
    return plain, secrets, problems


def _secret_prelude(name: str, secrets: Iterable[_SecretOpt]) -> str:
    """Bash exporting each secret from its host file; builtins only, so no argv holds it."""
    out = []
    for s in secrets:
        if s.as_path:
            continue
        path = qpath(s.remote)
        var = _env_name(name, s.key)
        out.append(f"test -r {path} || {{ echo {q(f'gpuwizard: {s.remote} is missing on this host: run the rclone.remote.{name} step')} >&2; exit 2; }}")
        if s.obscure:
            out.append(f"{var}=$(rclone obscure - < {path}); export {var}")
        else:
            out.append(f"{var}=$(<{path}); export {var}")
    return "\n".join(out) + ("\n" if out else "")


def _uploads(secrets: Iterable[_SecretOpt]) -> tuple[Upload, ...]:
    return tuple(Upload(local=s.local, remote=s.remote, mode=0o600, secret=True, env=s.env) for s in secrets)


def install_step(recipe: "Recipe") -> Step:
    """Ensure rclone >= 1.56 on the host; install the pinned official release if not.

    Not ``Step.sudo``: the executor would run the cheap version check under sudo too,
    and a host whose rclone is new enough needs no root at all. The install part
    uses ``sudo -n`` itself when the login user is not root.
    """
    version = (recipe.rclone.version if recipe.rclone and recipe.rclone.version else None) or DEFAULT_VERSION
    minimum = ".".join(map(str, MIN_VERSION))
    have = ("gw_v=$(rclone version 2>/dev/null | sed -n '1s/^rclone v\\([0-9][0-9.]*\\).*/\\1/p')\n")
    check = (have + f'[ -n "$gw_v" ] && [ "$(printf \'%s\\n\' {minimum} "$gw_v" | sort -V | head -n 1)" = {minimum} ]\n')
    run = f"""\
{have}echo "rclone on this host: ${{gw_v:-none}}; need >= {minimum}; installing v{version} from downloads.rclone.org"
case "$(uname -m)" in
  x86_64|amd64) gw_arch=amd64 ;;
  aarch64|arm64) gw_arch=arm64 ;;
  armv7l) gw_arch=arm-v7 ;;
  *) echo "gpuwizard: no rclone build for $(uname -m)" >&2; exit 1 ;;
esac
gw_sudo=""
[ "$(id -u)" = 0 ] || gw_sudo="sudo -n"
if ! command -v unzip >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  $gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip curl ca-certificates
fi
gw_tmp=$(mktemp -d)
trap 'rm -rf "$gw_tmp"' EXIT
gw_zip=rclone-v{version}-linux-$gw_arch.zip
curl -fsSL --retry 3 -o "$gw_tmp/$gw_zip" https://downloads.rclone.org/v{version}/$gw_zip
curl -fsSL --retry 3 -o "$gw_tmp/SHA256SUMS" https://downloads.rclone.org/v{version}/SHA256SUMS
(cd "$gw_tmp" && grep " $gw_zip\\$" SHA256SUMS | sha256sum -c -)
unzip -q -o "$gw_tmp/$gw_zip" -d "$gw_tmp"
$gw_sudo install -m 0755 "$gw_tmp/rclone-v{version}-linux-$gw_arch/rclone" /usr/local/bin/rclone
hash -r
rclone version | awk 'NR == 1'
"""
    return Step(id="rclone.install", title=f"rclone >= {minimum}", run=run, check=check, sudo=False,
                timeout=600, retries=2, phase="data")


def remote_step(name: str, remote: "Remote") -> Step:
    """``rclone config create NAME TYPE ... --non-interactive`` + the State check."""
    plain, secrets, problems = _split_options(name, remote)
    if problems:
        return _failing_step(f"rclone.remote.{name}", f"rclone remote {name}", problems)
    words = ["rclone", "config", "create", q(name), q(remote.type)]
    words += [q(f"{k}={_opt_str(v)}") for k, v in plain.items()]
    for s in secrets:
        if s.as_path:
            words.append(q(f"{s.key}=") + qpath(s.remote))
    tunnel = remote.type == "drive" and not secrets and not any(
        k in plain for k in ("env_auth", "config_token", "config_is_local"))
    if remote.type == "drive":
        if tunnel:
            words.append("config_is_local=true")
        if "config_refresh_token" not in plain:
            words.append("config_refresh_token=false")
        if "config_change_team_drive" not in plain:
            words.append("config_change_team_drive=false")
    words.append("--non-interactive")
    check = None
    pre = ""
    if tunnel:
        # The token lives only in the host's rclone config; never replace a working one.
        check = f"rclone config show {q(name)} 2>/dev/null | grep '^token = .' >/dev/null\n"
        msg = (f"gpuwizard: remote {name} logs in through an SSH tunnel. From your computer run: "
               f"ssh -L {AUTH_PORT}:localhost:{AUTH_PORT} THIS-HOST, then open the "
               f"http://127.0.0.1:{AUTH_PORT}/auth link printed below in your browser.")
        pre = f"echo {q(msg)}\n"
    run = (_secret_prelude(name, secrets) + pre + "umask 077\n"
           + f"gw_out=$({' '.join(words)})\n"
           + _state_check_shell(name))
    return Step(id=f"rclone.remote.{name}", title=f"rclone remote {name} ({remote.type})", run=run,
                check=check, uploads=_uploads(secrets), timeout=900 if tunnel else 120, phase="data")


# rclone exits 0 even when it stopped to ask a question: the JSON State must be "".
# Only State/Name/Error are printed: the Help text can embed `rclone authorize` blobs.
_JSON_FIELD = r"""sed -n 's/^[[:space:]]*"%s":[[:space:]]*"\(.*\)",\{0,1\}[[:space:]]*$/\1/p' | awk 'NR == 1'"""


def _state_check_shell(name: str) -> str:
    """Bash that fails unless ``$gw_out`` (config create's JSON) says State "" and no Error."""
    label = q(name)
    return (
        f"gw_state=$(printf '%s\\n' \"$gw_out\" | {_JSON_FIELD % 'State'})\n"
        f"gw_err=$(printf '%s\\n' \"$gw_out\" | {_JSON_FIELD % 'Error'})\n"
        f"gw_ask=$(printf '%s\\n' \"$gw_out\" | {_JSON_FIELD % 'Name'})\n"
        "if ! printf '%s\\n' \"$gw_out\" | grep '\"State\"' >/dev/null; then\n"
        "  echo 'gpuwizard: rclone config create printed no JSON state; rclone 1.56 or newer is needed' >&2; exit 1\n"
        "fi\n"
        'if [ -n "$gw_state" ] || [ -n "$gw_err" ]; then\n'
        f"  echo \"gpuwizard: remote \"{label}\" is incomplete: rclone stopped to ask for '${{gw_ask:-?}}' "
        "(state '$gw_state') $gw_err\" >&2\n"
        "  echo 'gpuwizard: give that answer in the recipe (for drive: token_file or service_account_file)' >&2\n"
        "  exit 1\n"
        "fi\n"
        f"rclone listremotes | grep -Fx -- {q(name + ':')} >/dev/null || {{ echo \"gpuwizard: remote \"{label}\" was not saved\" >&2; exit 1; }}\n"
        f"echo \"rclone remote \"{label}\" configured\"\n"
    )


def _failing_step(id_: str, title: str, problems: list[str]) -> Step:
    msg = "; ".join(problems)
    return Step(id=id_, title=title, run=f"echo {q('gpuwizard: ' + msg)} >&2\nexit 2\n", phase="data")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:40].strip("-") or "data"


RCLONE_FLAGS = "--use-json-log --stats 1s --stats-log-level NOTICE -v"
# --check-first: list and compare everything before transferring, so totalBytes is known
# when the first byte moves and the progress fraction only grows.
COPY_FLAGS = RCLONE_FLAGS + " --check-first"

# gw_extract returns 100 for "not an archive: copy it as it is", a status no extractor
# uses (unzip's 3 means a damaged zip, which must fail the step, never be copied as done);
# unzip's 1 means warnings only, and the files are there.
# The destination may lie outside the login user's home (/data, /mnt/disks/...): make it
# with sudo -n for the login user when plain mkdir may not, so the copy runs unprivileged.
_MAKE_DEST = r"""if ! mkdir -p "$gw_dest/.gpuwizard" 2>/dev/null; then
  if sudo -n install -d -o "$(id -u)" -g "$(id -g)" -- "$gw_dest" 2>/dev/null; then
    mkdir -p "$gw_dest/.gpuwizard"
  else
    echo "gpuwizard: cannot create $gw_dest as $(id -un), and sudo -n is not allowed: choose a folder under ~ or create it for $(id -un) first" >&2
    exit 1
  fi
fi
mkdir -p "$gw_stage"
"""

_EXTRACT = r"""gw_extract() {
  mkdir -p "$2"
  case "$1" in
    *.zip|*.ZIP)
      if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" -d "$2" || [ $? -eq 1 ]
      else
        python3 -m zipfile -e "$1" "$2"
      fi ;;
    *.tar|*.tar.gz|*.tgz|*.tar.bz2|*.tbz2|*.tbz|*.tar.xz|*.txz|*.tar.zst) tar -xf "$1" -C "$2" ;;
    *) return 100 ;;
  esac
}
"""


def dataset_step(index: int, ds: "Dataset", recipe: "Recipe", step_id: str) -> Step:
    """One dataset: copy (resumable) -> verify -> extract -> done marker."""
    remotes = recipe.rclone.remotes if recipe.rclone else {}
    src = ds.from_
    uploads: tuple[Upload, ...] = ()
    prelude = ""
    verify_src: str | None = None  # the rclone source `rclone check` compares against
    if is_drive_link(src):
        try:
            link = parse_drive_link(src)
        except ShareLinkError as exc:
            return _failing_step(step_id, f"dataset {src}", [f"datasets[{index}].from: {exc}"])
        rname = ds.remote or ""
        if rname not in remotes:
            return _failing_step(step_id, f"dataset {src}", [f"datasets[{index}].remote: name a drive remote for this link"])
        copy = _drive_link_copy(rname, link)
        if link.kind == "folder":
            verify_src = link.connection_string(rname)
        title = f"{link.kind} {link.id[:12]}… via {rname}"
    elif src.startswith(("http://", "https://")):
        base, _, fname = src.rpartition("/")
        if not fname or "?" in src or "#" in src:
            return _failing_step(step_id, f"dataset {src}", [f"datasets[{index}].from: a web URL must end in a file "
                                                            "name, without ?query; or define an http remote"])
        rname = ""
        spec = f":http:{fname}"
        copy = f"rclone copy --http-url {q(base + '/')} {q(spec)} \"$gw_stage\" {COPY_FLAGS}"
        verify_src = None
        title = fname
    else:
        rname = src.split(":", 1)[0]
        copy = f"rclone copy {q(src)} \"$gw_stage\" {COPY_FLAGS}"
        verify_src = src
        title = src
    if rname and rname in remotes:
        _plain, secrets, problems = _split_options(rname, remotes[rname])
        if problems:
            return _failing_step(step_id, f"dataset {title}", problems)
        prelude = _secret_prelude(rname, secrets)
        uploads = _uploads(secrets)
    key = hashlib.sha256(json.dumps([src, ds.to, ds.remote, ds.unzip]).encode()).hexdigest()[:12]
    stage_line = f'gw_stage="$gw_dest/.gpuwizard/stage-{key}"' if ds.unzip else 'gw_stage="$gw_dest"'
    run = [prelude.rstrip("\n"),
           f"gw_dest={qpath(ds.to)}",
           'gw_dest="${gw_dest%/}"; gw_dest="${gw_dest:-/}"',
           stage_line,
           _MAKE_DEST,
           f'gw_log="$gw_dest/.gpuwizard/{key}.log"',
           "gw_rc=0",
           f'{copy} 2>&1 | tee "$gw_log" || gw_rc=$?']
    if is_drive_link(src) and parse_drive_link(src).kind == "unknown":
        link = parse_drive_link(src)
        run.append(f"""if [ "$gw_rc" -ne 0 ] && grep -q "can't copy directory" "$gw_log"; then
  echo "gpuwizard: the link is a folder; copying the folder"
  gw_rc=0
  rclone copy {q(link.connection_string(rname))} "$gw_stage" {COPY_FLAGS} 2>&1 | tee "$gw_log" || gw_rc=$?
  gw_folder=1
fi""")
    run.append('if [ "$gw_rc" -ne 0 ]; then\n' + _indent(_hint_shell('"$gw_log"'))
               + '  echo "gpuwizard: rclone exited with $gw_rc; re-run the step to resume (finished files are skipped)" >&2\n'
               + '  exit "$gw_rc"\nfi')
    if ds.checksum and verify_src is not None:
        run.append(f'echo "gpuwizard: verifying sizes and hashes against the source"\n'
                   f'rclone check {q(verify_src)} "$gw_stage" --one-way 2>&1 | tail -n 5')
    if ds.unzip:
        run.append(_EXTRACT + r"""gw_n=0
while IFS= read -r -d '' gw_f; do
  gw_rel=${gw_f#"$gw_stage"/}
  gw_dir=$(dirname -- "$gw_rel")
  if gw_extract "$gw_f" "$gw_dest/$gw_dir"; then
    echo "gpuwizard: extracted $gw_rel"; gw_n=$((gw_n + 1))
  elif [ $? -eq 100 ]; then
    mkdir -p "$gw_dest/$gw_dir"; ln -f -- "$gw_f" "$gw_dest/$gw_rel" 2>/dev/null || cp -f -- "$gw_f" "$gw_dest/$gw_rel"
  else
    echo "gpuwizard: could not extract $gw_rel (damaged or unsupported archive)" >&2; exit 1
  fi
done < <(find "$gw_stage" -type f ! -name '*.partial' -print0)
echo "gpuwizard: $gw_n archive(s) extracted into $gw_dest"
# everything is in place: the staged download would only double the disk the dataset takes
rm -rf -- "$gw_stage" """)
    run.append(f'printf "%s\\n" {q(src)} > "$gw_dest/.gpuwizard/{key}.done"\necho "gpuwizard: dataset ready in $gw_dest"')
    check = f'gw_dest={qpath(ds.to)}\ngw_dest="${{gw_dest%/}}"\ntest -f "$gw_dest/.gpuwizard/{key}.done"\n'
    return Step(id=step_id, title=f"dataset {title} -> {ds.to}", run="\n".join(x for x in run if x) + "\n",
                check=check, uploads=uploads, progress="rclone", timeout=6 * 3600, retries=1, phase="data")


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


def _drive_link_copy(remote: str, link: DriveLink) -> str:
    if link.kind == "folder":
        return f"rclone copy {q(link.connection_string(remote))} \"$gw_stage\" {COPY_FLAGS}"
    rk = f" --drive-resource-key {q(link.resource_key)}" if link.resource_key else ""
    # copyid: "the path should end with a / to copy the file as named into this directory"
    return f"rclone backend copyid {q(remote + ':')} {q(link.id)} \"$gw_stage/\"{rk} {RCLONE_FLAGS}"


def dataset_ids(recipe: "Recipe") -> list[str]:
    """Stable, unique step ids: dataset.<slug of the source's last part>."""
    ids: list[str] = []
    for ds in recipe.datasets:
        src = ds.from_
        if is_drive_link(src):
            try:
                base = parse_drive_link(src).id[:12]
            except ShareLinkError:
                base = "link"
        else:
            base = src.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1] or src.split(":", 1)[0]
        sid = f"dataset.{_slug(base)}"
        n = 2
        while sid in ids:
            sid = f"dataset.{_slug(base)}-{n}"
            n += 1
        ids.append(sid)
    return ids


def steps(recipe: "Recipe") -> list[Step]:
    """rclone.install, one rclone.remote.NAME per remote, one dataset.<slug> per dataset."""
    remotes = recipe.rclone.remotes if recipe.rclone else {}
    if not remotes and not recipe.datasets:
        return []
    out = [install_step(recipe)]
    out += [remote_step(name, rem) for name, rem in remotes.items()]
    out += [dataset_step(i, ds, recipe, sid) for i, (ds, sid) in enumerate(zip(recipe.datasets, dataset_ids(recipe)))]
    return out
