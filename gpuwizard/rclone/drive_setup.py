"""The guided flow's actions on a :class:`DriveRemoteSpec`; both front ends call these.

Nothing here prompts or prints: results and errors are values and exceptions. Secrets
go to the local secret store (0600, :mod:`gpuwizard.secretstore`) only after every check
passed, and the recipe names them by path.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from gpuwizard import secretstore
from gpuwizard.rclone.authorize import AUTH_PORT, authorize_local, find_local_rclone
from gpuwizard.rclone.drive_form import DriveRemoteSpec, parse_token_text, read_service_account
from gpuwizard.rclone.errors import RcloneError
from gpuwizard.rclone.options import create_argv
from gpuwizard.shell import q


class DriveSetup:
    """The guided flow's actions on a :class:`DriveRemoteSpec`; both front ends call these."""

    def __init__(self, spec: DriveRemoteSpec | None = None, secrets_dir: Path | None = None):
        self.spec = spec or DriveRemoteSpec()
        self.secrets_dir = secrets_dir

    @staticmethod
    def local_rclone() -> str | None:
        """Path of a local rclone new enough for ``authorize``, else None."""
        return find_local_rclone()

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
        return yaml.safe_dump({"rclone": {"remotes": {self.spec.name: dict(options)}}},
                              sort_keys=False, default_flow_style=False)

    def tunnel_instructions(self, host: str = "USER@VM") -> list[str]:
        """What to do for auth "tunnel": rclone on the VM receives Google's redirect."""
        s = self.spec
        cmd = create_argv(s.name, "drive", s.plain_options(), tunnel=True)
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
