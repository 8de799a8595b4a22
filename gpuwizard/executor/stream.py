"""A step's output: bytes from the host -> masked, decoded Output and Progress events.

Why read 64 KiB chunks, not lines: per-line handling costs 10-40x at log rates such as
pip or apt output; consumers split lines themselves where they need to (the progress
parsers here split only when the step asks for progress).

Why one Masker for both streams: a person reads stdout and stderr interleaved, so a
secret printed half on each must be masked too (see :mod:`gpuwizard.masking`).

The wrapper's marker line (the process group id, see :mod:`.remote`) is taken off the
front of stderr here and handed to ``on_proc``; it never reaches the events.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from typing import Any, Callable

from gpuwizard import events as ev
from gpuwizard import progress
from gpuwizard.executor.options import Sink
from gpuwizard.executor.procs import RemoteProc
from gpuwizard.executor.remote import PID_MARK
from gpuwizard.masking import Masker
from gpuwizard.ssh import Process

CHUNK = 65536
Parser = Callable[[str], "dict[str, Any] | None"]


class LineSplitter:
    """Splits a text stream into lines on \\n and \\r (progress bars redraw with \\r)."""

    _SPLIT = re.compile(r"\r\n|\r|\n")

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, text: str) -> list[str]:
        parts = self._SPLIT.split(self._rest + text)
        self._rest = parts.pop()
        return [p for p in parts if p]

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, ""
        return [rest] if rest else []


def progress_parser(kind: str | None) -> Parser | None:
    if not kind:
        return None
    return lambda line: progress.parse(kind, line)


class OutputPump:
    """Reads both streams of one step's process until they end, emitting events.

    ``got_pid`` is set once the marker arrived (or cannot come any more), so a
    timeout that fires a moment after the start can wait for the group id to kill.
    """

    def __init__(self, sink: Sink, host: str, step: str, secrets: set[str], progress_kind: str | None,
                 token: str, on_proc: Callable[[RemoteProc], None]):
        self.sink, self.host, self.step = sink, host, step
        self.token = token
        self.on_proc = on_proc
        self.masker = Masker(secrets)
        self.parse = progress_parser(progress_kind)
        self.lines = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self.pid: int | None = None
        self.got_pid = asyncio.Event()

    async def run(self, proc: Process) -> None:
        await asyncio.gather(self._pump(proc, "stdout"), self._pump(proc, "stderr"))
        self._emit(self.masker.flush_streams())
        if self.parse is not None:
            for s, lines in self.lines.items():
                for line in lines.flush():
                    self._progress(line)

    async def _pump(self, proc: Process, stream: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        head = stream == "stderr"
        buf = b""
        try:
            while True:
                data = await proc.read(stream, CHUNK)
                if not data:
                    break
                if head:  # the wrapper's marker line on stderr carries the process group id
                    buf += data
                    data, head = self._take_marker(buf)
                    if head or not data:
                        continue
                self._emit(self.masker.feed_stream(stream, decoder.decode(data)))
            self._emit(self.masker.feed_stream(stream, decoder.decode(b"", final=True)))
        finally:
            if stream == "stderr":
                self.got_pid.set()  # no marker came

    def _take_marker(self, buf: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, still waiting for the marker)."""
        at = buf.find(PID_MARK)
        nl = buf.find(b"\n", at) if at >= 0 else -1
        if nl < 0:
            if at < 0 and len(buf) > CHUNK:  # no marker coming: pass through
                self.got_pid.set()
                return buf, False
            return b"", True
        rp = RemoteProc.parse(buf[at + len(PID_MARK):nl], self.step, self.token)
        if rp is not None:
            self.pid = rp.pid
            self.on_proc(rp)
        self.got_pid.set()
        return buf[:at] + buf[nl + 1:], False

    def _emit(self, segments: list[tuple[str, str]]) -> None:
        for stream, text in segments:
            if not text:
                continue
            self.sink(ev.Output(host=self.host, step=self.step, stream=stream, data=text))
            if self.parse is not None:
                for line in self.lines[stream].feed(text):
                    self._progress(line)

    def _progress(self, line: str) -> None:
        assert self.parse is not None
        try:
            d = self.parse(line)
        except Exception:  # noqa: BLE001 - a parser bug must not stop the step
            return
        if not d:
            return
        names = {"fraction", "text", "bytes_done", "bytes_total", "speed", "eta"}
        kw = {k: v for k, v in d.items() if k in names}
        kw.setdefault("fraction", 0.0)
        self.sink(ev.Progress(host=self.host, step=self.step, **kw))
