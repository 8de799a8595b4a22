"""``gpuwizard logs``: a past (or running) run's output, read from its run directory.

Reads only what :mod:`gpuwizard.runlog` wrote: each host's log, cut into steps by its
byte-range index, so ``--step`` never reads a whole log. ``-f`` follows a run that is
still going (its directory is locked while a process runs it) and returns when it ends.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from typing import IO, Any, Iterator

from gpuwizard.cluster.nodes import host_label
from gpuwizard.errors import UsageError
from gpuwizard.runlog import DamagedRun, RunDir, host_file, json_lines, list_runs, runs_home

#: How often ``logs -f`` looks for new output (the run writes unbuffered, so this is the delay).
FOLLOW_POLL_S = 0.2


def resolve_run(arg: str | None, base: str | os.PathLike[str] | None = None) -> RunDir:
    """A run by id, unique part of an id, or directory; the latest without ``arg``."""
    if arg and os.path.isdir(arg) and (os.path.isfile(os.path.join(arg, "state.json"))
                                       or os.path.isfile(os.path.join(arg, "origin.json"))):
        try:
            return RunDir.open(arg)
        except DamagedRun as exc:
            raise UsageError(f"cannot read that run: {exc}") from None
    runs = list_runs(base)
    if not runs:
        raise UsageError(f"no runs yet in {runs_home()}; start one with `gpuwizard run RECIPE`")
    if not arg:
        return runs[-1]
    matches = [r for r in runs if r.run_id == arg] or [r for r in runs if r.run_id.startswith(arg) or arg in r.run_id]
    if len(matches) != 1:
        hint = "several runs match" if matches else "no run matches"
        raise UsageError(f"{hint} {arg!r}; see `gpuwizard logs --list`")
    return matches[0]


def _copy_range(path: pathlib.Path, start: int, end: int | None, out: IO[bytes]) -> int:
    """Copy bytes ``start:end`` of ``path`` to ``out``; returns where it stopped."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            data = fh.read(1 << 16 if left is None else min(1 << 16, left))
            if not data:
                break
            out.write(data)
            if left is not None:
                left -= len(data)
        return fh.tell()


def _index(rd: RunDir, host: str) -> Iterator[dict[str, Any]]:
    for r in json_lines(rd.path / "hosts" / f"{host_file(host)}.index.jsonl"):
        if isinstance(r, dict) and isinstance(r.get("start"), int) and isinstance(r.get("end"), int):
            yield r


def step_names(rd: RunDir) -> list[str]:
    """Every step id the run planned or ran, in order."""
    names: dict[str, None] = {}
    for host, hs in rd.state.get("hosts", {}).items():
        for s in hs.get("steps", []) if isinstance(hs.get("steps"), list) else []:
            names[str(s)] = None
        for r in _index(rd, host):
            names[str(r.get("step"))] = None
    return list(names)


def _list(out: IO[str]) -> int:
    runs = list_runs()
    if not runs:
        print(f"no runs yet in {runs_home()}", file=out)
        return 0
    print(f"{'RUN':<44} {'STATUS':<12} {'HOSTS':>5}  RECIPE", file=out)
    for r in runs:
        print(f"{r.run_id:<44} {str(r.state.get('status', '?')):<12} {len(r.state.get('hosts', {})):>5}  "
              f"{r.state.get('recipe_path') or r.state.get('recipe_name', '')}", file=out)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """``gpuwizard logs [RUN] [--host H] [--step S] [--list] [-f]``."""
    out = sys.stdout
    if getattr(args, "list", False):
        return _list(out)
    rd = resolve_run(getattr(args, "run", None))
    ranks = _ranks(rd)
    hosts = sorted(rd.state.get("hosts", {}), key=lambda h: (ranks.get(h, len(ranks)), h))
    want_host = getattr(args, "host", None)
    if want_host:
        picked = ([h for h in hosts if h == want_host or (h in ranks and want_host == f"node {ranks[h]}")]
                  or [h for h in hosts if want_host in h])
        if not picked:
            raise UsageError(f"run {rd.run_id} has no host {want_host!r}; it has: {', '.join(hosts) or 'none'}")
        hosts = picked
    step = getattr(args, "step", None)
    if step is not None and step not in step_names(rd):
        raise UsageError(f"run {rd.run_id} has no step {step!r}; its steps: {', '.join(step_names(rd)) or 'none'}")
    out.flush()
    binary = out.buffer if hasattr(out, "buffer") else _TextSink(out)
    ends = {host: _show(rd, host, step, out, binary, header=len(hosts) > 1) for host in hosts}
    if getattr(args, "follow", False):
        _follow(rd, hosts if want_host else None, ends, out, binary)
    return 0


def _ranks(rd: RunDir) -> dict[str, int]:
    """A cluster run's host -> rank (empty for other runs): nodes are shown in rank order,
    as ``node 0 (head) HOST``, and ``--host "node 1"`` picks one."""
    raw = rd.state.get("ranks")
    return {str(h): int(r) for h, r in raw.items() if isinstance(r, int)} if isinstance(raw, dict) else {}


class _TextSink:
    """A bytes ``write`` onto a text stream (captured stdout in tests)."""

    def __init__(self, out: IO[str]):
        self.out = out

    def write(self, data: bytes) -> int:
        self.out.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _show(rd: RunDir, host: str, step: str | None, out: IO[str], binary: Any, header: bool) -> int:
    """Print one host's log (or one step of it); returns the log offset shown up to."""
    log = rd.host_log_path(host)
    if header:
        out.write(f"==> {host_label(host, _ranks(rd))} <==\n")
        out.flush()
    if not log.is_file():
        msg = rd.state.get("hosts", {}).get(host, {}).get("message")
        if msg and step is None:
            out.write(f"[gpuwizard] {msg}\n")
        return 0
    index = [r for r in _index(rd, host) if step is None or r.get("step") == step]
    if step is not None and not index:
        return log.stat().st_size
    # A whole log shows each step's output under a header saying which step, which
    # attempt and how it ended, then whatever came after the last indexed step (a step
    # in flight, the reason a host stopped); `--step` prints the raw output alone,
    # ready to redirect into a file.
    ranges: list[tuple[str | None, int, int | None]] = [
        (None if step else f"--- {r.get('step')} (attempt {r.get('attempt', 1)}, {r.get('status', '?')}) ---",
         r["start"], r["end"])
        for r in index]
    if step is None:
        ranges.append((None, max((r["end"] for r in index), default=0), None))
    end = 0
    for head, start, stop in ranges:
        if head:
            out.write(head + "\n")
            out.flush()
        end = _copy_range(log, start, stop, binary)
        binary.flush()
    return end if step is None else log.stat().st_size


def _follow(rd: RunDir, only: list[str] | None, ends: dict[str, int], out: IO[str], binary: Any) -> None:
    """Print what the run writes from now on, until the process running it lets go of
    its lock (the run ended, however it ended). Hosts that appear later (VMs created
    after ``logs -f`` started) are picked up from the state on each look."""
    last_host = list(ends)[-1] if ends else None
    while True:
        live = rd.is_locked()
        try:
            hosts = only or list(RunDir.open(rd.path).state.get("hosts", {}))
        except DamagedRun:
            hosts = list(ends)
        for host in hosts:
            log = rd.host_log_path(host)
            try:
                size = log.stat().st_size
            except OSError:
                continue
            start = ends.get(host, 0)
            if size > start:
                if len(hosts) > 1 and host != last_host:
                    out.write(f"==> {host_label(host, _ranks(rd))} <==\n")
                    out.flush()
                    last_host = host
                ends[host] = _copy_range(log, start, size, binary)
                binary.flush()
        if not live:
            return
        time.sleep(FOLLOW_POLL_S)
