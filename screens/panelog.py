"""A host's pane on the run screen: a head line, a progress bar, the reason a host ran
nothing (wrapped, in full), and the live log: Textual's ``Log`` with a line cap that
keeps painting.

Why a subclass: Textual 8.2.8's ``Log.write_lines`` stops repainting once ``max_lines``
is reached. It asks for a repaint of the rows where the new lines were appended
(``refresh_lines(start_line, n)`` with ``start_line`` = the line count *before* the
write), then prunes the oldest lines, which moves every kept line up. At the cap the
line count, and so the virtual height and the scroll offset, no longer change: the
requested rows lie below the visible window, ``scroll_end`` is a no-op, and nothing
asks for the rows that did change. The widget's render cache keeps showing the lines
of the last write before the cap until something else (a resize, a scroll) repaints
it. apt/pip output passes 5,000 lines in every real run, so every real run looked hung.

:meth:`PaneLog.write_lines` repaints the visible window whenever a write pruned lines,
and a paused pane (``auto_scroll`` off) moves its scroll offset up by the pruned count,
so the lines the user is reading stay in place while the oldest ones drop out.

It also measures a batch's width on the UI thread: ``Log`` starts a thread worker per
``write_lines`` for that, and the run screen writes 25 batches a second per pane (100
thread starts a second with four hosts), where ``len`` of ASCII lines costs microseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, ProgressBar, Static

if TYPE_CHECKING:
    from typing_extensions import Self


class PaneLog(Log):
    """``Log`` whose line cap drops the oldest lines and keeps the newest painted."""

    _pruned = 0

    def _prune_max_lines(self) -> None:
        before = len(self._lines)
        super()._prune_max_lines()
        self._pruned += before - len(self._lines)

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        if lines:
            widest = max(len(line) if line.isascii() else cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> "Self":
        self._pruned = 0
        super().write_lines(lines, scroll_end)
        if self._pruned > 0:
            follow = self.auto_scroll if scroll_end is None else scroll_end
            if not follow and self.scroll_offset.y > 0:
                self.scroll_to(y=max(0, self.scroll_offset.y - self._pruned), animate=False, immediate=True)
            self.refresh()  # every kept line moved up: the whole window changed
        return self


class HostPaneWidget(Vertical):
    """One host: a head line, a progress bar and the (capped) log."""

    def __init__(self, host: str, index: int, max_lines: int) -> None:
        super().__init__(id=f"pane-{index}", classes="pane")
        self.host = host
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield Static(self.host, classes="pane-head")
        yield ProgressBar(total=100, show_eta=False, show_percentage=True)
        reason = Static("", classes="pane-reason")
        reason.display = False  # shown when the host ran none of its steps, with the reason in full
        yield reason
        yield PaneLog(max_lines=self.max_lines, highlight=False, auto_scroll=True)
