"""A host's full log as rows you can seek to, without holding the log in memory.

No Textual here (the full-log screen draws it; tests and the bench use it directly).
The approach is toolong's (``log_lines.py``): scan the file once for line starts and
keep only their byte offsets (8 bytes a line: a million-line log costs 8 MB, not the
hundreds its text would), read a line with ``os.pread`` when it is drawn, and keep a
small LRU of decoded lines. A running step's log grows: :meth:`LogIndex.scan` picks up
where it stopped.

The run directory (:mod:`gpuwizard.runlog`) writes, beside ``hosts/<host>.log``, the
byte range of every step attempt in ``hosts/<host>.index.jsonl``, and each step's exit
code in ``events.jsonl``. Those become header rows ("── user.train · attempt 1 ·
failed, exit 2"), placed before the step's first line, so the view shows where each step
starts and how it ended, and "open at the failure" is a byte offset away.
"""

from __future__ import annotations

import bisect
import json
import os
import pathlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Iterator

from screens.runmodel import BAD, clean_line

CHUNK = 1 << 20  # read 1 MiB at a time when scanning and searching


@dataclass(frozen=True)
class StepRange:
    """One step attempt's bytes in the host log, and how it ended."""

    step: str
    attempt: int
    start: int
    end: int
    status: str
    exit_code: int | None = None

    @property
    def bad(self) -> bool:
        return self.status in BAD

    def header(self) -> str:
        code = f", exit {self.exit_code}" if self.exit_code is not None else ""
        return f"── {self.step} · attempt {self.attempt} · {self.status}{code} ──"


def _json_lines(path: pathlib.Path) -> Iterator[dict]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue  # a torn last line while the run writes it
                if isinstance(d, dict):
                    yield d
    except OSError:
        return


def read_steps(log_path: str | os.PathLike[str], host: str | None = None) -> list[StepRange]:
    """The step ranges the run directory recorded for the log at ``log_path``
    (``<run>/hosts/<file>.log``), with exit codes from ``<run>/events.jsonl``."""
    log = pathlib.Path(log_path)
    index = log.with_name(log.name[: -len(".log")] + ".index.jsonl") if log.name.endswith(".log") else None
    if index is None or not index.exists():
        return []
    codes: dict[str, list[int | None]] = {}
    if host is not None:
        for d in _json_lines(log.parent.parent / "events.jsonl"):
            if d.get("event") == "step_finished" and d.get("host") == host:
                codes.setdefault(str(d.get("step")), []).append(d.get("exit_code"))
    out: list[StepRange] = []
    for d in _json_lines(index):
        try:
            step, status = str(d["step"]), str(d.get("status", "?"))
            code = codes.get(step, []).pop(0) if status != "retried" and codes.get(step) else None
            out.append(StepRange(step, int(d.get("attempt", 1)), int(d["start"]), int(d["end"]), status,
                                 code if isinstance(code, int) else None))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(out, key=lambda r: r.start)


class LogIndex:
    """Rows of a log file: its lines, with a header row before each recorded step."""

    def __init__(self, path: str | os.PathLike[str], host: str | None = None) -> None:
        self.path = str(path)
        self.host = host
        self.starts = array("Q", [0])  # byte offset where each line starts (+ one past the last newline)
        self.size = 0                  # bytes scanned
        self.width = 0                 # the longest line seen, in bytes (the view's scroll width)
        self.steps: list[StepRange] = []
        self._header_lines: list[int] = []  # line number each header stands before
        self._header_rows: list[int] = []   # row of each header
        self._fd = os.open(self.path, os.O_RDONLY)
        self._line = lru_cache(maxsize=4096)(self._read_line)

    def close(self) -> None:
        os.close(self._fd)

    # ------------------------------------------------------------------ scanning

    def scan(self) -> bool:
        """Index what was appended since the last scan (and re-read the step ranges);
        True if anything changed."""
        grew = False
        while True:
            data = os.pread(self._fd, CHUNK, self.size)
            if not data:
                break
            grew = True
            parts = data.split(b"\n")
            tail = parts.pop()  # bytes after the last newline: an unfinished line (or b"")
            if parts:
                base = self.size
                self.starts.extend(base + n for n in accumulate(len(p) + 1 for p in parts))
                self.width = max(self.width, max(map(len, parts)))
            self.width = max(self.width, len(tail))
            self.size += len(data)
        if grew:
            self._line.cache_clear()  # the last, unfinished line may have grown
        steps = read_steps(self.path, self.host)
        if steps != self.steps:
            self.steps = steps
            self._header_lines = [self.line_at(r.start) for r in steps]
            self._header_rows = [ln + i for i, ln in enumerate(self._header_lines)]
            grew = True
        return grew

    @property
    def lines(self) -> int:
        """Lines in the file, an unfinished last line included."""
        return len(self.starts) - 1 + (1 if self.size > self.starts[-1] else 0)

    @property
    def rows(self) -> int:
        return self.lines + len(self.steps)

    def line_at(self, offset: int) -> int:
        """The line holding byte ``offset``."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)

    # ------------------------------------------------------------------ rows

    def row_of_line(self, line: int) -> int:
        return line + bisect.bisect_right(self._header_lines, line)

    def line_of_row(self, row: int) -> int | None:
        """The line shown at ``row``, or None when the row is a step header."""
        k = bisect.bisect_right(self._header_rows, row)
        if k and self._header_rows[k - 1] == row:
            return None
        return row - k

    def step_of_row(self, row: int) -> StepRange | None:
        """The step whose header is at ``row``."""
        k = bisect.bisect_right(self._header_rows, row)
        return self.steps[k - 1] if k and self._header_rows[k - 1] == row else None

    def text(self, row: int) -> str:
        """What ``row`` shows: a header, or the line cleaned for display."""
        step = self.step_of_row(row)
        if step is not None:
            return step.header()
        line = self.line_of_row(row)
        return "" if line is None or line >= self.lines else self._line(line)

    def _read_line(self, line: int) -> str:
        start = self.starts[line]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else self.size
        data = os.pread(self._fd, max(0, end - start), start)
        return clean_line(data.decode("utf-8", "replace"))

    def failure_row(self) -> int | None:
        """The row of the first failed step's last line (where its error usually is),
        or of its header when it printed nothing."""
        for k, r in enumerate(self.steps):
            if r.bad:
                return self.row_of_line(self.line_at(r.end - 1)) if r.end > r.start else self._header_rows[k]
        return None

    # ------------------------------------------------------------------ search

    def find(self, needle: str, row: int, forward: bool = True) -> int | None:
        """The row of the next (``forward``) or previous line containing ``needle``,
        ignoring case, counted from ``row`` (-1: before the first row; ``rows``: after
        the last); None if there is none. Reads the file in
        1 MiB chunks from that point, never the whole of it at once."""
        want = needle.lower().encode("utf-8")
        if not want or self.size == 0:
            return None
        if row < 0:  # before the first row: line 0 is "after" it
            line, after = 0, 0
        elif row >= self.rows:  # past the last row
            line = after = len(self.starts)
        elif (line := self.line_of_row(row)) is None:  # a header: its step's first line is "after" it
            k = bisect.bisect_right(self._header_rows, row) - 1
            line, after = self._header_lines[k], self._header_lines[k]
        else:
            after = line + 1
        if forward:
            pos = self.starts[after] if after < len(self.starts) else self.size
            while pos < self.size:
                data = os.pread(self._fd, CHUNK + len(want) - 1, pos).lower()
                hit = data.find(want)
                if hit >= 0:
                    return self.row_of_line(self.line_at(pos + hit))
                pos += CHUNK
            return None
        end = self.starts[line] if line < len(self.starts) else self.size
        while end > 0:
            begin = max(0, end - CHUNK)
            data = os.pread(self._fd, end - begin, begin).lower()
            hit = data.rfind(want)
            if hit >= 0:
                return self.row_of_line(self.line_at(begin + hit))
            end = begin + len(want) - 1 if begin > 0 else 0
        return None
