"""What a run is told (ExecOptions) and what makes a finished step count as done.

Why a module of its own: the runner builds ExecOptions and the run directory computes
fingerprints without needing anything else of the executor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gpuwizard import events as ev
from gpuwizard.steps import Step

Sink = Callable[[ev.Event], None]
NOTE = "gpuwizard"  # Output.stream of the executor's own notes (reconnecting, rebooting ...)


def fingerprint(step: Step) -> str:
    """What makes a finished step still count as done: its shell, flags and env.
    A changed step gets a new fingerprint and re-runs on resume."""
    data = [step.run, step.check, step.sudo, step.reboot, sorted(step.env),
            [(u.local, u.remote, u.mode) + ((u.env,) if u.env else ()) for u in step.uploads]]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ExecOptions:
    """Knobs for a run; the defaults are the production ones."""

    run_id: str = ""
    recipe: str = ""
    connect_timeout: float = 600.0          # keep retrying a (re)connect this long
    reboot_command: str = "sudo -n systemctl reboot"
    reboot_down_timeout: float = 300.0      # how long a rebooting host may take to drop SSH
    max_reconnects: int = 5                 # re-runs of one step after lost connections
    keepalive: float = 15.0
    retry_auth: bool = False                # fresh VMs install our key late
    kill_grace: float = 3.0                 # TERM -> KILL on timeout / Ctrl-C
    done: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # resume: host -> step -> fingerprint
    # resume: host -> the remote process group an earlier attempt left running (stopped before a step runs)
    running: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # told (host, record) as soon as a step's remote process group is known, (host, None) once it ended
    on_running: Callable[[str, dict[str, Any] | None], None] | None = None
    emit_run_events: bool = True            # RunStarted / RunFinished
    # cluster: host name -> node rank; barrier/gang messages then say "node 1 (h1)"
    ranks: Mapping[str, int] = field(default_factory=dict)
