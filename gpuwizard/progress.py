"""Progress parsers: turn a tool's progress output lines into Progress fields.

The executor feeds each complete output line of a step whose ``Step.progress`` names a
parser here; a dict result becomes a :class:`gpuwizard.events.Progress` event.

rclone: the dataset steps run ``rclone ... --use-json-log --stats 1s``, so every second
rclone writes one JSON object whose ``stats`` key carries the same numbers as the rc
``core/stats`` call (docs/facts/rclone-drive.md §5). Lines are recognised by that key, never
by the level (1.60 logs stats at "info" or "warning"; newer versions use slog). Other
lines (per-file "Copied (new)", plain-text fatal errors, our own echo lines) are not
progress and give None. Parsers are stateless: one line in, one answer out.
"""

from __future__ import annotations

import json
from typing import Any, Callable


def _human(n: float) -> str:
    """Bytes as rclone shows them (binary units, 3 significant decimals)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _eta(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def parse_rclone(line: str) -> dict[str, Any] | None:
    """One rclone ``--use-json-log`` line -> progress fields, or None."""
    s = line.strip()
    if not s.startswith("{") or '"stats"' not in s:
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    stats = obj.get("stats") if isinstance(obj, dict) else None
    if not isinstance(stats, dict):
        return None
    done = _num(stats.get("bytes")) or 0.0
    total = _num(stats.get("totalBytes")) or 0.0
    transfers = int(_num(stats.get("transfers")) or 0)
    total_transfers = int(_num(stats.get("totalTransfers")) or 0)
    checks = int(_num(stats.get("checks")) or 0)
    total_checks = int(_num(stats.get("totalChecks")) or 0)
    if total > 0:
        fraction = done / total
    elif total_transfers == 0 and total_checks > 0 and checks >= total_checks:
        fraction = 1.0  # a resumed copy where every file was already there
    elif total_transfers > 0 and transfers >= total_transfers:
        fraction = 1.0  # only empty files
    else:
        fraction = 0.0
    fraction = min(max(fraction, 0.0), 1.0)
    speed = _num(stats.get("speed"))
    eta = _num(stats.get("eta"))
    parts = [f"{fraction * 100:.0f}%"]
    parts.append(f"{_human(done)} / {_human(total)}" if total else _human(done))
    if speed:
        parts.append(f"{_human(speed)}/s")
    if eta is not None and fraction < 1.0:
        parts.append(f"ETA {_eta(eta)}")
    if total_transfers > 1:
        parts.append(f"{transfers}/{total_transfers} files")
    if total_transfers == 0 and total_checks:
        parts.append(f"{checks}/{total_checks} checked")
    errors = int(_num(stats.get("errors")) or 0)
    if errors:
        last = str(stats.get("lastError") or "").strip()
        parts.append(f"{errors} error{'s' if errors > 1 else ''}" + (f": {last[:120]}" if last else ""))
    return {
        "fraction": fraction,
        "text": ", ".join(parts),
        "bytes_done": int(done),
        "bytes_total": int(total) if total else None,
        "speed": speed,
        "eta": eta,
    }


PARSERS: dict[str, Callable[[str], dict[str, Any] | None]] = {"rclone": parse_rclone}


def parse(kind: str, line: str) -> dict[str, Any] | None:
    """Parse one line for parser ``kind``; None when the line carries no progress.

    The dict has ``fraction`` (0..1) and ``text``, and may have ``bytes_done``,
    ``bytes_total``, ``speed`` (bytes/s) and ``eta`` (seconds). An unknown ``kind``
    gives None rather than an error: a newer recipe must not break an older executor.
    """
    fn = PARSERS.get(kind)
    if fn is None or not isinstance(line, str):
        return None
    try:
        return fn(line)
    except Exception:  # noqa: BLE001 - a parser bug must never fail a running step
        return None
