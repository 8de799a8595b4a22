"""Headless renderers of the executor's events: plain lines, or JSON lines.

``gpuwizard run`` uses these when stdout is not a terminal (CI, ``| tee``) or with
``--headless``/``--json``. They never import Textual, and they render per chunk (one
``write`` per Output event), so a host printing a million lines costs a few joins,
not a million prints.

Plain format::

    [host] step | a line of output
    [host] step: ok (1.2s)
    [host] step: FAILED, exit code 3 (0.4s): message

and a table of hosts at the end.
"""

from __future__ import annotations

import json
import sys
from typing import IO

from gpuwizard import events as ev
from gpuwizard.cluster.nodes import host_label

SYMBOL = {"ok": "ok", "skipped": "skipped", "failed": "FAILED", "timeout": "TIMED OUT",
          "cancelled": "CANCELLED", "not_run": "not run"}


class LineRenderer:
    """``[host] step | line`` lines, a summary line per step and a final table."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out if out is not None else sys.stdout
        self._partial: dict[tuple[str, str, str], list[str]] = {}
        self._hosts: dict[str, dict[str, str]] = {}     # host -> step -> status
        self._host_msg: dict[str, str] = {}
        self._host_ok: dict[str, bool] = {}
        self._seconds: dict[str, float] = {}
        self._progress: dict[tuple[str, str], int] = {}
        self._order: list[str] = []
        self._ranks: dict[str, int] = {}  # a cluster's nodes: named "node 0 (head) HOST"

    def __call__(self, e: ev.Event) -> None:
        w = self.out.write
        if isinstance(e, ev.Output):
            self._output(e)
        elif isinstance(e, ev.RunStarted):
            self._order = list(e.hosts)
            self._ranks = dict(e.ranks)
            kind = "node" if e.ranks else "host"
            w(f"run {e.run_id}: {len(e.hosts)} {kind}(s), {len(e.steps)} step(s)\n")
        elif isinstance(e, ev.HostConnecting):
            self._host(e.host)
            if e.attempt == 1:
                w(f"[{self._label(e.host)}] connecting\n")
            elif e.attempt == 2 or e.attempt % 10 == 0:
                w(f"[{self._label(e.host)}] not reachable yet: {e.message or 'still trying'} (attempt {e.attempt})\n")
        elif isinstance(e, ev.HostConnected):
            w(f"[{self._label(e.host)}] connected\n")
        elif isinstance(e, ev.StepStarted):
            again = f" (attempt {e.attempt})" if e.attempt > 1 else ""
            w(f"[{self._label(e.host)}] {e.step}: started{again}\n")
        elif isinstance(e, ev.Progress):
            tenth = int(e.fraction * 10)
            key = (e.host, e.step)
            if self._progress.get(key) != tenth:
                self._progress[key] = tenth
                w(f"[{self._label(e.host)}] {e.step} | {e.fraction:.0%} {e.text}\n")
        elif isinstance(e, ev.StepFinished):
            self._flush_partials(e.host, e.step)
            self._host(e.host)[e.step] = e.status
            self._seconds[e.host] = self._seconds.get(e.host, 0.0) + e.seconds
            if e.status == "not_run":
                return
            words = SYMBOL.get(e.status, e.status)
            if e.status == "failed" and e.exit_code is not None:
                words += f", exit code {e.exit_code}"
            took = f" ({e.seconds:.1f}s)" if e.status not in ("skipped",) else ""
            msg = f": {e.message}" if e.message and e.status not in ("ok",) and not e.message.startswith("exit code") else ""
            w(f"[{self._label(e.host)}] {e.step}: {words}{took}{msg}\n")
        elif isinstance(e, ev.HostFinished):
            self._host_ok[e.host] = e.ok
            self._host_msg[e.host] = e.message
            if not e.ok:
                w(f"[{self._label(e.host)}] stopped: {e.message}\n")
        elif isinstance(e, ev.RunFinished):
            self._table(e)
        self._flush_if_idle(e)

    def _label(self, host: str) -> str:
        return host_label(host, self._ranks)

    def _host(self, host: str) -> dict[str, str]:
        if host not in self._hosts:
            self._hosts[host] = {}
            if host not in self._order:
                self._order.append(host)
        return self._hosts[host]

    def _output(self, e: ev.Output) -> None:
        """Prefix each complete line; an unfinished line waits, as a list of pieces, for
        its end. (Gluing each chunk onto the unfinished text made one 50 MB line without
        a newline quadratic: every chunk copied everything before it.)"""
        data = e.data
        if "\r" in data:  # progress redraws: one line per redraw is what a log can show
            data = data.replace("\r\n", "\n").replace("\r", "\n")
        key = (e.host, e.step, e.stream)
        cut = data.find("\n")
        if cut < 0:
            if data:
                self._partial.setdefault(key, []).append(data)
            return
        pieces = self._partial.pop(key, None)
        if pieces:
            pieces.append(data)
            data = "".join(pieces)
        lines = data.split("\n")
        tail = lines.pop()
        if tail:
            self._partial[key] = [tail]
        prefix = f"[{self._label(e.host)}] {e.step} | "
        self.out.write(prefix + ("\n" + prefix).join(lines) + "\n")

    def _flush_partials(self, host: str, step: str) -> None:
        for key in [k for k in self._partial if k[0] == host and k[1] == step]:
            self.out.write(f"[{self._label(host)}] {step} | {''.join(self._partial.pop(key))}\n")

    def _flush_if_idle(self, e: ev.Event) -> None:
        if not isinstance(e, (ev.Output, ev.Progress)):
            self.out.flush()

    def _table(self, e: ev.RunFinished) -> None:
        w = self.out.write
        if not self._order:  # it ended before any host was reached (provisioning, set-up)
            w("\n" + ("interrupted before any step ran\n" if e.interrupted else
                      "stopped before any step ran (the reason is above)\n"))
            self.out.flush()
            return
        rows = []
        for host in self._order:
            st = self._hosts.get(host, {})
            counts = {k: sum(1 for v in st.values() if v == k) for k in ("ok", "skipped", "failed", "not_run")}
            counts["failed"] += sum(1 for v in st.values() if v in ("timeout", "cancelled"))
            failing = ("failed", "timeout") if e.interrupted else ("failed", "timeout", "cancelled")
            bad = [s for s, v in st.items() if v in failing]
            ok = self._host_ok.get(host, False)
            result = "ok" if ok else ("interrupted" if e.interrupted and not bad else
                                      f"failed at {bad[0]}" if bad else "failed: " + self._host_msg.get(host, ""))
            rows.append((self._label(host), counts, self._seconds.get(host, 0.0), result))
        width = max([4] + [len(r[0]) for r in rows])
        w("\n" + f"{'HOST':<{width}}  {'OK':>4} {'SKIP':>4} {'FAIL':>4} {'NOT RUN':>7} {'SECONDS':>8}  RESULT\n")
        for host, c, secs, result in rows:
            w(f"{host:<{width}}  {c['ok']:>4} {c['skipped']:>4} {c['failed']:>4} {c['not_run']:>7} {secs:>8.1f}  {result}\n")
        who = "nodes" if self._ranks else "hosts"
        verdict = "interrupted" if e.interrupted else (f"all {who} ok" if e.ok else "some steps failed")
        w(f"\n{verdict} in {e.seconds:.1f}s\n")


class JsonRenderer:
    """One JSON object per event per line (the ``events.jsonl`` shape, Output included)."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out if out is not None else sys.stdout

    def __call__(self, e: ev.Event) -> None:
        self.out.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
        if not isinstance(e, ev.Output):
            self.out.flush()


class Fanout:
    """Sends each event to several sinks in order (run directory first: nothing is
    shown that is not also on disk)."""

    def __init__(self, *sinks: object):
        self.sinks = [s for s in sinks if s is not None]

    def __call__(self, e: ev.Event) -> None:
        for s in self.sinks:
            s(e)  # type: ignore[operator]
