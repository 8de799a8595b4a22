"""The full-log screen: a host's whole log from the run directory, however long.

Virtual, like toolong: :class:`screens.logindex.LogIndex` knows where each line starts
and :class:`LogView` draws only the rows on screen, reading them from the file as they
scroll into view, so a million-line log opens as fast as a short one and costs 8 bytes
a line. Step headers (status and exit code, from the run directory's byte-range index)
stand before each step's first line. It opens at the end, or at the failure when the
host has one; ``/`` searches (``n``/``N`` next/previous); a running step's new lines
appear as they are written (a one-second re-scan of what was appended).
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from screens.logindex import LogIndex

FOLLOW_S = 1.0


class LogView(ScrollView, can_focus=True):
    """Draws the rows of a :class:`LogIndex`; ``cursor`` marks the row found or jumped to."""

    DEFAULT_CSS = """
    LogView { background: $surface; }
    """

    cursor: reactive[int | None] = reactive(None)
    """The highlighted row (a search hit, the failure), or None."""

    def __init__(self, index: LogIndex | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.index = index

    def set_index(self, index: LogIndex) -> None:
        self.index = index
        self.sync_size()

    def sync_size(self) -> None:
        if self.index is not None:
            self.virtual_size = Size(self.index.width + 2, self.index.rows)
        self.refresh()

    def watch_cursor(self) -> None:
        self.refresh()

    def show_row(self, row: int, at_bottom: bool = False) -> None:
        """Scroll so ``row`` is on screen (centred, or at the bottom) and highlight it."""
        self.cursor = row
        h = max(1, self.scrollable_content_region.height)
        y = row - h + 1 if at_bottom else row - h // 2
        # force: right after the index arrives the scrollbars are not laid out yet, and
        # without it Textual ignores a scroll of a widget it thinks cannot scroll
        self.scroll_to(y=max(0, y), animate=False, immediate=True, force=True)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        base = self.rich_style
        if self.index is None or row >= self.index.rows:
            return Strip.blank(width, base)
        text = self.index.text(row)
        step = self.index.step_of_row(row)
        if step is not None:
            colour = "red" if step.bad else ("green" if step.status in ("ok", "skipped") else "yellow")
            style = base + Style(bold=True, color=colour)
        else:
            style = base
        if row == self.cursor:
            style = style + Style(reverse=True)
        line = text[scroll_x:scroll_x + width]
        return Strip([Segment(line.ljust(width), style)], width)


class FullLogScreen(Screen[None]):
    """One host's full log, virtual, with step headers, search and follow."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back", id="fulllog.back"),
        Binding("slash", "search", "Search", key_display="/", id="fulllog.search"),
        Binding("n", "next(1)", "Next match", id="fulllog.next"),
        Binding("N", "next(-1)", "Prev match", key_display="N", id="fulllog.prev"),
        Binding("e", "failure", "Failure", id="fulllog.failure"),
        Binding("G", "end", "End", key_display="G", id="fulllog.end"),
    ]

    def __init__(self, path: str, host: str | None = None, at_failure: bool = False) -> None:
        super().__init__(id="fulllog")
        self.path = path
        self.host = host
        self.at_failure = at_failure
        self.index: LogIndex | None = None
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield Static(f" {self.host or ''}  {self.path}", id="fulllog-head")
        yield LogView(id="fulllog-view")
        search = Input(placeholder="search (Enter finds, n/N next/previous, Escape closes)", id="fulllog-search")
        search.display = False
        yield search
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogView).focus()
        self.open_index()

    @work(thread=True, exclusive=True, exit_on_error=False, group="fulllog", description="index the full log")
    def open_index(self) -> LogIndex:
        """Scan the log for line starts off the UI thread (a million lines: well under a second)."""
        index = LogIndex(self.path, self.host)
        index.scan()
        return index

    @on(Worker.StateChanged)
    def _indexed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "fulllog":
            return
        if event.state == WorkerState.ERROR:
            self.notify(f"Cannot read {self.path}: {event.worker.error}", severity="error")
        elif event.state == WorkerState.SUCCESS:
            self.index = event.worker.result
            view = self.query_one(LogView)
            view.set_index(self.index)
            self._head()
            failure = self.index.failure_row() if self.at_failure else None
            self.call_after_refresh(self._open_at, failure)
            self.set_interval(FOLLOW_S, self._follow, name="fulllog-follow")

    def _open_at(self, failure: int | None) -> None:
        view = self.query_one(LogView)
        if failure is not None:
            view.show_row(failure, at_bottom=True)
        else:
            view.scroll_to(y=view.max_scroll_y, animate=False, immediate=True, force=True)

    def _head(self) -> None:
        if self.index is not None:
            bad = [r.header().strip("─ ").replace(" · attempt ", " #") for r in self.index.steps if r.bad]
            where = f" · {bad[0]}" if bad else ""
            self.query_one("#fulllog-head", Static).update(
                f" {self.host or ''} · {self.index.lines:,} lines · {len(self.index.steps)} steps{where}  {self.path}")

    def _follow(self) -> None:
        """Pick up lines a running step appended; stay at the end if the view was there."""
        if self.index is None:
            return
        view = self.query_one(LogView)
        at_end = view.is_vertical_scroll_end
        if self.index.scan():
            view.sync_size()
            self._head()
            if at_end and view.cursor is None:
                self.call_after_refresh(lambda: view.scroll_to(y=view.max_scroll_y, animate=False, immediate=True,
                                                               force=True))

    def on_unmount(self) -> None:
        if self.index is not None:
            self.index.close()

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        search = self.query_one("#fulllog-search", Input)
        if search.display:
            search.display = False
            self.query_one(LogView).focus()
            return
        self.app.pop_screen()

    def action_search(self) -> None:
        search = self.query_one("#fulllog-search", Input)
        search.display = True
        search.focus()

    @on(Input.Submitted, "#fulllog-search")
    def _submitted(self, event: Input.Submitted) -> None:
        self.needle = event.value
        event.input.display = False
        self.query_one(LogView).focus()
        # the view grows by the search box's rows at the next layout: count them now, as
        # the view's height decides whether the highlighted row is on screen (action_next)
        self.action_next(1, event.input.outer_size.height)

    def action_next(self, direction: int, pending_rows: int = 0) -> None:
        if self.index is None:
            return
        if not self.needle:
            self.action_search()
            return
        view = self.query_one(LogView)
        here = view.cursor
        top = int(view.scroll_offset.y)
        height = view.scrollable_content_region.height + pending_rows
        if here is not None and not top <= here < top + height:
            # the highlighted row was scrolled away (Home, PageUp): search from what the user
            # sees, as less does, not from a row they cannot see ("not found below this line")
            here = None
        if here is None:  # from the window: forward from its top, backward from its bottom
            here = top - 1 if direction > 0 else top + height
        row = self.index.find(self.needle, here, forward=direction > 0)
        if row is None:
            self.notify(f"{self.needle!r} not found {'below' if direction > 0 else 'above'} this line.",
                        severity="warning")
            return
        view.show_row(row)

    def action_failure(self) -> None:
        row = self.index.failure_row() if self.index is not None else None
        if row is None:
            self.notify("No step failed in this log.")
            return
        self.query_one(LogView).show_row(row, at_bottom=True)

    def action_end(self) -> None:
        view = self.query_one(LogView)
        view.cursor = None
        view.scroll_to(y=view.max_scroll_y, animate=False, immediate=True, force=True)
