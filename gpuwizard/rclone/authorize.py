"""``rclone authorize "drive"`` on this computer: the browser login of the Drive set-up.

A subprocess with a deadline and a cancel switch: rclone listens on 127.0.0.1:53682 for
Google's redirect, and a dialog closed mid-login must free that port at once. The login
link is read from rclone's stderr as soon as it is printed, the token from its stdout
(docs/facts/rclone-drive.md §2a).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from typing import Callable, Mapping

from gpuwizard.rclone.drive_form import DriveRemoteSpec, parse_token_text
from gpuwizard.rclone.errors import RcloneError
from gpuwizard.rclone.hints import explain_rclone_error

AUTH_PORT = 53682  # rclone's fixed OAuth loopback port (not configurable)
#: ``rclone authorize`` needs 1.50 (the form the set-up parses).
AUTHORIZE_MIN_VERSION = (1, 50, 0)


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



def find_local_rclone() -> str | None:
    """Path of a local rclone new enough for ``authorize``, else None."""
    path = shutil.which("rclone")
    if not path:
        return None
    ver = local_version(path)
    return path if ver and ver >= AUTHORIZE_MIN_VERSION else None
