"""Secret files on the user's machine: tokens and keys the recipe names by path.

Why a store: a recipe is meant to be committed and shared, so it never holds a
credential (recipe.py refuses them). The wizard writes each secret to
``$XDG_CONFIG_HOME/gpuwizard/secrets/`` (default ``~/.config/gpuwizard/secrets/``; where
exactly is :func:`gpuwizard.locations.secrets_dir`'s to say) and
the recipe says ``token_file: ~/.config/gpuwizard/secrets/gdrive.token.json``.

Every write is atomic and private: the temporary file is created 0600 in the target
directory (so ``os.replace`` is a same-filesystem rename) and there is no moment at
which a half-written or group-readable secret exists under the final name. Ctrl-C
mid-write leaves the old file, or nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from gpuwizard.locations import secrets_dir

DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class SecretStoreError(Exception):
    """A secret could not be stored; the message says where and why."""


def display_path(path: Path | str) -> str:
    """``~/...`` when under the home directory: recipes stay portable between users."""
    p = str(path)
    home = str(Path.home())
    if p == home:
        return "~"
    if p.startswith(home.rstrip("/") + "/"):
        return "~/" + p[len(home.rstrip("/")) + 1:]
    return p


def ensure_dir(path: Path | None = None) -> Path:
    """Create the secrets directory 0700 (and tighten it if it exists looser)."""
    d = path or secrets_dir()
    d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = d.stat()
    if st.st_mode & 0o077:
        os.chmod(d, DIR_MODE)
    return d


def _plain_dir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return d


def write_secret(name: str, data: str | bytes, directory: Path | None = None) -> Path:
    """Write ``data`` to ``<secrets dir>/<name>`` atomically with mode 0600; return the path."""
    if not _NAME_RE.match(name):
        raise SecretStoreError(f"{name!r} is not a valid secret file name (letters, digits, . _ -)")
    d = ensure_dir(directory) if directory is None or directory == secrets_dir() else _plain_dir(directory)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    old_umask = os.umask(0o077)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=".tmp")
    finally:
        os.umask(old_umask)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, d / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return d / name


def check_private(path: str | Path) -> str | None:
    """None when ``path`` is a regular file only its owner can read; else what is wrong."""
    p = Path(os.path.expanduser(str(path)))
    try:
        st = p.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if st.st_mode & 0o077:
        return f"{path} is readable by others (mode {st.st_mode & 0o777:o}); run: chmod 600 {path}"
    return None
