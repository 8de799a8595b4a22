"""Progress parsers: turn a tool's progress output lines into Progress fields.

The executor feeds each complete output line of a step whose ``Step.progress`` names a
parser here; a dict result becomes a :class:`gpuwizard.events.Progress` event.
"""

from __future__ import annotations

from typing import Any


def parse(kind: str, line: str) -> dict[str, Any] | None:
    """Parse one line for parser ``kind``; None when the line carries no progress.

    The dict has ``fraction`` (0..1) and ``text``, and may have ``bytes_done``,
    ``bytes_total``, ``speed`` (bytes/s) and ``eta`` (seconds).
    """
    return None
