"""Plain aligned text tables for the CLI (no dependency: they must print in a pipe, too)."""

from __future__ import annotations

from typing import Any, Iterable


def table(headers: list[str], rows: Iterable[Iterable[Any]], *, rule: bool = True) -> str:
    """Columns padded to their widest cell, two spaces apart, trailing blanks stripped;
    ``rule``: a line of dashes under the headers. ``None`` cells print empty."""
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells if i < len(r)]) for i, h in enumerate(headers)]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    head = [line(headers)] + ([line(["-" * w for w in widths])] if rule else [])
    return "\n".join(head + [line(r) for r in cells])
