"""The fault harness's parts (issue 13): recipes whose steps report themselves from the
host's side, and the audit of what a run under faults left behind.

Why the host's side: what gpuwizard *says* it ran is exactly what a fault can corrupt. Each
audited step is wrapped in a bash prelude/epilogue that appends to a per-host file on the
(local) sshd host:

    start STEP PID PGID STARTTIME   when the step's shell begins
    end STEP PID                    when its body succeeded
    overlap STEP OTHERPID           when it began while another copy of STEP still lived

PID, PGID and STARTTIME (``/proc/PID/stat`` fields 1, 5 and 22) identify the step's shell
and its process group beyond PID reuse. The audit then reads that file, the run
directories' journals, ``/proc`` and (for GCP cases) the fake Compute server's instances
against what ``gpuwizard status`` reports. A case "survives" when every check holds.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml

from tests.builders.runs import env

# The prelude reads its own /proc/$$/stat (fields after the ")" of the command name:
# [0] state, [2] pgrp, [19] starttime) and looks for a live earlier copy of the step
# with no "end" line (same pid *and* start time: a reused pid is another process).
_PRELUDE = r"""A={audit}; S={step}
read -r _st < /proc/$$/stat; _f=(${{_st##*) }})
while read -r _k _s _p _g _t; do
  if [ "$_k" = start ] && [ "$_s" = "$S" ] && ! grep -qx "end $S $_p" "$A"; then
    if [ -r "/proc/$_p/stat" ]; then
      read -r _o < "/proc/$_p/stat" || true; _of=(${{_o##*) }})
      if [ "${{_of[0]}}" != Z ] && [ "${{_of[19]}}" = "$_t" ]; then echo "overlap $S $_p" >> "$A"; fi
    fi
  fi
done < <(cat "$A" 2>/dev/null)
echo "start $S $$ ${{_f[2]}} ${{_f[19]}}" >> "$A"
"""


def audited(step: str, body: str, audit: pathlib.Path) -> str:
    """``body`` wrapped so that the host records the step's start, end and overlaps."""
    return _PRELUDE.format(audit=audit, step=step) + f"{body}\necho \"end {step} $$\" >> \"$A\"\n"


def hold_first_attempt(marker: str, seconds: float = 30.0) -> str:
    """A body whose first attempt (any host sharing ``marker``'s directory: one per host)
    says ``waiting`` and holds for ``seconds`` (long enough to be hit by a fault); later
    attempts finish at once. ``mkdir`` makes "first" atomic."""
    return (f"if mkdir {marker} 2>/dev/null; then echo waiting; end=$((SECONDS+{int(seconds)})); "
            f"while [ $SECONDS -lt $end ]; do sleep 0.1; done; else echo again; fi")


def audit_path(tmp_path: pathlib.Path, host: Any) -> pathlib.Path:
    return tmp_path / f"audit-{host.port}"


def ssh_recipe(path: pathlib.Path, hosts: list[Any], steps: list[dict[str, Any]], *, name: str = "harness",
               **ssh: Any) -> pathlib.Path:
    """A target.ssh recipe on the sshd fixture's ``hosts``; each step's ``run`` is audited
    into ``audit-PORT`` beside the recipe (the hosts are local, so one tmp_path holds all).
    A step's body may name ``{marker}``: a per-host directory path for :func:`hold_first_attempt`."""
    h0 = hosts[0]
    out = []
    for st in steps:
        st = dict(st)
        # One body for every host, so the host picks its own audit file by its sshd port.
        body = st["run"].replace("{marker}", f"{path.parent}/hold-$GW_PORT-{st['name']}")
        st["run"] = ("GW_PORT=$(echo \"$SSH_CONNECTION\" | cut -d' ' -f4)\n"
                     + audited(st["name"], body, pathlib.Path(f"{path.parent}/audit-$GW_PORT")))
        out.append(st)
    data = {"version": 1, "name": name, "target": {"ssh": {"hosts": [h.host_string for h in hosts]}},
            "ssh": {"identity": h0.client_key, "known_hosts": h0.known_hosts, "connect_timeout": 10, **ssh},
            "steps": out}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def gcp_recipe(path: pathlib.Path, host: Any, steps: list[dict[str, Any]], *, name: str = "harness",
               zones: tuple[str, ...] = ("us-central1-a", "us-central1-b")) -> pathlib.Path:
    """A target.gcp recipe whose VM is the sshd ``host`` (tests/builders/gcp.py: point_fake_at)."""
    out = []
    for st in steps:
        st = dict(st)
        body = st["run"].replace("{marker}", f"{path.parent}/hold-{host.port}-{st['name']}")
        st["run"] = audited(st["name"], body, audit_path(path.parent, host))
        out.append(st)
    data = {"version": 1, "name": name,
            "target": {"gcp": {"zones": list(zones), "machine_type": "n1-standard-4",
                               "gpu": {"type": "nvidia-tesla-t4", "count": 1}}},
            "ssh": {"user": host.user, "port": host.port, "identity": host.client_key, "connect_timeout": 10},
            "steps": out}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


#: Fast Compute budgets for the CLI children (the fake answers in milliseconds).
FAST_GCP = {"GPUWIZARD_GCP_RETRY_BASE": "0.02", "GPUWIZARD_HOSTKEY_POLL": "0.05",
            "GPUWIZARD_HOSTKEY_TIMEOUT": "10", "GPUWIZARD_GCP_STATE_POLL": "0.05",
            "GPUWIZARD_GCP_READ_BUDGET": "10"}


def cli_env(tmp_path: pathlib.Path) -> dict[str, str]:
    return dict(env(tmp_path), **FAST_GCP)


def start(tmp_path: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    """``python -m gpuwizard.cli ARGS`` in the background, output piped, stdin closed."""
    return subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=cli_env(tmp_path), cwd=tmp_path)


def cli(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m gpuwizard.cli ARGS`` to completion (the test's timeout is the deadline)."""
    return subprocess.run([sys.executable, "-m", "gpuwizard.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=cli_env(tmp_path), cwd=tmp_path, timeout=90)


def read_until_all(proc: subprocess.Popen[str], markers: Iterable[str]) -> str:
    """stdout until every marker has appeared in some line (the child's progress is the
    condition; the test's timeout is the deadline)."""
    assert proc.stdout is not None
    want = set(markers)
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        want = {m for m in want if m not in line}
        if not want:
            return "".join(seen)
    raise AssertionError(f"{sorted(want)} never came; stdout: {''.join(seen)}")


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------------- the audit


@dataclass
class StepRecord:
    pid: int
    pgid: int
    starttime: str
    ended: bool = False


@dataclass
class Audit:
    """What one case left behind, and the checks over it (``problems`` empty: survived)."""

    case: str
    starts: dict[str, dict[str, int]] = field(default_factory=dict)   # host -> step -> starts
    ends: dict[str, dict[str, int]] = field(default_factory=dict)     # host -> step -> ends
    overlaps: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    journal_errors: list[str] = field(default_factory=list)
    journal_lines: int = 0
    vms_left: list[str] = field(default_factory=list)
    vms_reported: list[str] | None = None
    checked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what happened (for the report), not checks
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems

    def need(self, ok: bool, what: str, detail: str = "") -> None:
        """Record a check: ``what`` is its name in the report, ``detail`` says what failed."""
        if what not in self.checked:
            self.checked.append(what)
        if not ok:
            self.problems.append(f"{what}: {detail}" if detail else what)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int, starttime: str) -> bool:
    f = _stat(pid)
    return f is not None and f[0] != "Z" and f[19] == starttime


def _group_alive(pgid: int, since: str) -> list[int]:
    """Live processes of group ``pgid`` started at or after jiffy ``since``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := _stat(int(entry))) is not None:
            if int(f[2]) == pgid and f[0] != "Z" and int(f[19]) >= int(since):
                out.append(int(entry))
    return out


def read_audit(path: pathlib.Path) -> tuple[dict[str, list[StepRecord]], list[str]]:
    """The host file: per step its attempts in order, and the overlap lines."""
    steps: dict[str, list[StepRecord]] = {}
    overlaps: list[str] = []
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        w = line.split()
        if w[:1] == ["start"] and len(w) == 5:
            steps.setdefault(w[1], []).append(StepRecord(int(w[2]), int(w[3]), w[4]))
        elif w[:1] == ["end"] and len(w) == 3:
            for rec in steps.get(w[1], []):
                if rec.pid == int(w[2]):
                    rec.ended = True
        elif w[:1] == ["overlap"]:
            overlaps.append(line)
    return steps, overlaps


def check_hosts(audit: Audit, audits: dict[str, pathlib.Path], expected: list[str],
                orphan_grace: float = 10.0) -> None:
    """Per host: every expected step ended exactly once, none ran twice at once, and no
    step's process group outlives gpuwizard (after ``orphan_grace`` s for signals to land)."""
    for host, path in audits.items():
        steps, overlaps = read_audit(path)
        audit.starts[host] = {s: len(r) for s, r in steps.items()}
        audit.ends[host] = {s: sum(x.ended for x in r) for s, r in steps.items()}
        audit.overlaps += [f"{host}: {o}" for o in overlaps]
        wrong = {s: audit.ends[host].get(s, 0) for s in expected if audit.ends[host].get(s, 0) != 1}
        audit.need(not wrong, "each step ended exactly once per host", f"{host} ends {wrong}")
        audit.need(not overlaps, "no overlapping copies", "; ".join(overlaps))
        records = [r for rs in steps.values() for r in rs]

        def left() -> list[str]:
            return [f"{host}: pgid {r.pgid} ({pids})" for r in records
                    if (pids := _group_alive(r.pgid, r.starttime)) or _alive(r.pid, r.starttime)]
        wait_until(lambda: not left(), orphan_grace)
        audit.orphans += left()
        audit.notes.append(f"{host.rsplit(':', 1)[-1]} attempts {audit.starts[host]}")
    audit.need(not audit.orphans, "no orphaned remote processes", "; ".join(audit.orphans))


def check_journals(audit: Audit, state: pathlib.Path) -> None:
    """Every line of every run directory's JSON-lines journals parses (a torn last line too
    counts: a resume must have repaired it)."""
    runs = state / "gpuwizard" / "runs"
    for run in sorted(runs.iterdir()) if runs.exists() else []:
        for j in [run / "events.jsonl", run / "running.jsonl", run / "done.jsonl", *run.glob("hosts/*.jsonl")]:
            if not j.exists():
                continue
            data = j.read_bytes()
            if data and not data.endswith(b"\n"):
                audit.journal_errors.append(f"{j}: last line has no newline")
            for n, line in enumerate(data.splitlines(), 1):
                if not line.strip():
                    continue
                audit.journal_lines += 1
                try:
                    json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    audit.journal_errors.append(f"{j}:{n}: {exc}")
    audit.need(audit.journal_lines > 0 and not audit.journal_errors, "journals parse",
               "; ".join(audit.journal_errors[:3]) or "no journal lines at all")


def check_vms(audit: Audit, fake: Any, recipe_name: str, tmp_path: pathlib.Path, recipe: pathlib.Path,
              closing: str) -> None:
    """VMs left on the (fake) Compute server versus what gpuwizard reports: the names
    `gpuwizard status` lists, and a closing line that says they are still running."""
    audit.vms_left = sorted(i["name"] for i in fake.state()["instances"]
                            if i["labels"].get("gpuwizard-recipe") == recipe_name)
    p = cli(tmp_path, "status", str(recipe))
    audit.vms_reported = sorted(ln.split()[0] for ln in p.stdout.splitlines()
                                if ln.startswith(f"{recipe_name}-"))
    audit.need(p.returncode == 0 and audit.vms_reported == audit.vms_left, "VMs left == VMs `status` lists",
               f"left {audit.vms_left}, status rc {p.returncode}: {p.stdout}{p.stderr}")
    if audit.vms_left:
        audit.need("still running" in closing and f"gpuwizard down {recipe}" in closing,
                   "closing lines say the VM runs and how to delete it", closing[-400:])


def table(audits: list[Audit]) -> str:
    """The summary table: case, survived, what was checked (and what failed)."""
    rows = [("CASE", "SURVIVED", "CHECKED")]
    for a in audits:
        rows.append((a.case, "yes" if a.survived else "NO", "; ".join(a.checked)
                     + (f"  [{'; '.join(a.notes)}]" if a.notes else "")
                     + ("" if a.survived else "  FAILED: " + " | ".join(a.problems))))
    w0 = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{w0}}  {r[1]:<8}  {r[2]}" for r in rows)
