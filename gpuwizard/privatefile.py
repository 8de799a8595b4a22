"""One way to replace a private file: the whole new text or the old file, never half.

Why one module: run state, the VM ledger, pinned host keys and the price cache were each
written by their own copy of "temp file, write, rename", and the copies disagreed on the
details that matter (a fixed ``.tmp`` name two writers share; a temporary file left behind
by a full disk; the mode the file gets before the rename). Here the temporary file is
unique (``mkstemp``), created 0600 whatever the umask, in the target's own folder (so
``os.replace`` is an atomic same-filesystem rename), and removed when anything fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``text`` (UTF-8), or leave it as it was. The folder must exist."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)  # 0600 from creation
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode != FILE_MODE:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
