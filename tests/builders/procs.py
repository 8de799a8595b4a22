"""Helpers for tests that watch processes a step started on the (local) sshd host.

One ``group_alive`` for every test: zombies are *not* alive. A container's init may
never reap the orphans a killed step leaves behind, and ``os.killpg(pgid, 0)``
succeeds on a group of zombies, so a check built on it says "still running" about a
step that was stopped.
"""

from __future__ import annotations

import os
import pathlib


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes in process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the group."""
    return bool(group_members(pgid))


def once_script(tmp: pathlib.Path, body: str) -> str:
    """A step that proves it never runs beside another copy of itself: it appends
    ``start PID 1`` to ``copies.log`` when the previous copy is still alive (else
    ``start PID 0``), then runs ``body``. The host is this machine, so the test reads
    the log and signals the pids directly."""
    pidf, log = tmp / "copy.pid", tmp / "copies.log"
    return (f'o=$(cat {pidf} 2>/dev/null || true); a=0; if [ -n "$o" ] && kill -0 "$o" 2>/dev/null; then a=1; fi; '
            f'echo $$ > {pidf}; echo "start $$ $a" >> {log}; {body}')
