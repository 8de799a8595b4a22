"""What ``gpuwizard status`` and the run screen say about a VM's auto-stop, from the state the
agent publishes (guest attribute ``gpuwizard/autostop`` on Compute Engine, or its state file)."""

from __future__ import annotations

import json
import time
from typing import Any

from gpuwizard.autostop.settings import format_duration

#: An agent that has not written for this long is not trusted to still be running.
STALE_S = 300.0


def parse(text: str | None) -> dict[str, Any] | None:
    """The agent's state JSON, or None when absent or unreadable."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def describe(state: dict[str, Any] | None, now: float | None = None) -> str:
    """One short phrase: ``stops in 12m (idle)``, ``kept awake: 1 SSH connection(s)``, ``off``."""
    now = time.time() if now is None else now
    if state is None:
        return "no auto-stop agent"
    if state.get("stopped_at"):
        return f"stopped itself: {state.get('why', '')}".rstrip(": ")
    updated = state.get("updated")
    if isinstance(updated, (int, float)) and now - updated > STALE_S:
        return f"agent silent for {format_duration(now - updated)}"
    if state.get("enabled") is False:
        return "auto-stop off"
    why = str(state.get("why", ""))
    stops_at = state.get("stops_at")
    left = f"stops in {format_duration(max(0, stops_at - now))}" if isinstance(stops_at, (int, float)) else ""
    if why.startswith("kept awake: "):
        return f"{why[len('kept awake: '):]} (else {left})" if left else why
    if left:
        idle = state.get("idle_for")
        return f"idle {format_duration(idle)}, {left}" if isinstance(idle, (int, float)) and idle >= 60 else left
    return why or "auto-stop on"
