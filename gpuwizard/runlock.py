"""One active run per recipe file: a lock held for the run's whole life.

Two runs of one recipe at once run every step twice, overlapping (and, for a GCP
target, create two VMs); two ``--resume`` at once would both pick the same run. The
lock is ``fcntl.flock`` on ``$XDG_STATE_HOME/gpuwizard/locks/<sha256 of the recipe's
real path>.lock``: the kernel drops it when the holding process ends, however it
ends, so a stale lock cannot exist and needs no clean-up. The file says who holds it
(pid, run directory) so the refusal can name the other run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib

from gpuwizard import locations
from gpuwizard.errors import UsageError


def lock_path(recipe_path: str) -> pathlib.Path:
    """The lock file of one recipe file: by its real path, so a symlink to the recipe (or
    ``./x/../r.yaml``) is the same recipe, not a second run of it."""
    key = hashlib.sha256(os.path.realpath(recipe_path).encode()).hexdigest()[:32]
    return locations.state_dir() / "locks" / f"{key}.lock"


class RecipeBusy(UsageError):
    """Another process runs this recipe now."""


class RecipeLock:
    """Held while one process runs a recipe; :meth:`release` (or process exit) frees it."""

    def __init__(self, recipe_path: str):
        self.recipe_path = recipe_path
        self.path = lock_path(recipe_path)
        self._fd: int | None = None

    def acquire(self) -> "RecipeLock":
        """Take the lock or raise :class:`RecipeBusy` naming the holder's pid and run directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            where = f" (pid {holder.get('pid', '?')}, run directory {holder.get('run_dir') or 'not made yet'})"
            raise RecipeBusy(f"{self.recipe_path} is being run by another gpuwizard process{where}; "
                             "wait for it to end (`gpuwizard logs -f` follows it) or stop it first") from None
        self._fd = fd
        self.note(None)
        return self

    def note(self, run_dir: str | None) -> None:
        """Record who holds the lock (shown to a process that is refused)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "run_dir": run_dir}).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass  # a full disk: the lock itself still holds; only the message is poorer

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
