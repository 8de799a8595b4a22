"""Builders for tests of ``gpuwizard run`` / ``logs`` / ``ssh``: a recipe for the sshd
fixture's hosts, the CLI as a subprocess with its own state directory, the runs it made."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def write_recipe(path: pathlib.Path, hosts: Any, steps: list[dict], name: str = "runner-test",
                 **ssh: Any) -> pathlib.Path:
    """A recipe running ``steps`` on the sshd fixture's ``hosts``."""
    h0 = hosts[0]
    data = {"version": 1, "name": name,
            "target": {"ssh": {"hosts": [h.host_string for h in hosts]}},
            "ssh": {"identity": h0.client_key, "known_hosts": h0.known_hosts, "connect_timeout": 10, **ssh},
            "steps": steps}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def env(tmp_path: pathlib.Path, state: pathlib.Path | None = None) -> dict[str, str]:
    """The environment of a gpuwizard child: state (default ``tmp_path/state``) and HOME
    under ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    e = dict(os.environ, XDG_STATE_HOME=str(state or tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"),
             HOME=str(home), PYTHONPATH=str(ROOT), CI="1")
    e.pop("GPUWIZARD_DEBUG", None)
    return e


def gw(tmp_path: pathlib.Path, *args: str, state: pathlib.Path | None = None,
       **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``gpuwizard ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "gpuwizard.cli", *args], capture_output=True, text=True,
                          env=env(tmp_path, state), cwd=tmp_path, timeout=50, **kw)


def gw_start(tmp_path: pathlib.Path, *args: str, state: pathlib.Path | None = None) -> subprocess.Popen[str]:
    """Start ``gpuwizard ARGS`` in the background, output piped."""
    return subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(tmp_path, state), cwd=tmp_path)


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """stdout up to and including the first line containing ``marker`` (the child's own
    progress is the condition; the test's timeout is the deadline)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never came; stdout: {''.join(seen)}; stderr: {proc.stderr.read() if proc.stderr else ''}")


def runs(tmp_path: pathlib.Path) -> list[pathlib.Path]:
    """The run directories the children made, oldest first by name."""
    d = tmp_path / "state" / "gpuwizard" / "runs"
    return sorted(d.iterdir()) if d.exists() else []


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the group. Zombies count as gone: a
    container's init may never reap the orphans a killed step leaves behind."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def pids_running(pattern: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``pattern``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if pattern in cmd and state != "Z":
            out.append(int(entry))
    return out
