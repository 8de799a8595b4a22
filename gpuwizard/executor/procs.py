"""A step's remote processes, as recorded so that a later attempt can stop them.

Why the record: a hard exit (a second Ctrl-C, a crash) leaves the step running on the
host, and only this record (written to the run directory through
``ExecOptions.on_running``) lets the next attempt stop it before the step runs again,
so two copies never race. The pid alone may have been reused: the record also carries
the process's start time and the host's boot id (the start time survives the ``exec``
of the step's last command, which the command line does not), and the step's token,
an environment variable every process of the step inherits, which finds the ones that
left the process group (``setsid``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

_TOKEN = re.compile(r"[0-9a-f]{0,32}")


@dataclass(frozen=True)
class RemoteProc:
    """A step's remote process group: its id, what tells it from a later process with
    the same pid (the pid's start time in clock ticks, the host's boot id), and the
    step's token (``GPUWIZARD_STEP_TOKEN`` in every process of the step)."""

    pid: int
    start: str = ""
    boot: str = ""
    step: str = ""
    token: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "start": self.start, "boot": self.boot, "step": self.step}
        if self.token:
            d["token"] = self.token
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RemoteProc | None:
        try:
            pid = int(d["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        start, boot, token = str(d.get("start") or ""), str(d.get("boot") or ""), str(d.get("token") or "")
        if (pid <= 1 or (start and not start.isdigit()) or not re.fullmatch(r"[0-9a-fA-F-]*", boot)
                or not _TOKEN.fullmatch(token)):
            return None  # never a shell-unsafe value in the kill command
        return cls(pid, start, boot, str(d.get("step") or ""), token)

    @classmethod
    def parse(cls, marker: bytes, step: str, token: str = "") -> RemoteProc | None:
        """``PID[:START[:BOOT]]`` from the wrapper's marker line."""
        parts = marker.decode("ascii", "replace").strip().split(":")
        return cls.from_dict({"pid": parts[0], "start": parts[1] if len(parts) > 1 else "",
                              "boot": parts[2] if len(parts) > 2 else "", "step": step, "token": token})
