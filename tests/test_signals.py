"""The shell that signals a remote step's process group works in every sh, dash included.

dash (Debian's and Ubuntu's /bin/sh, and the login shell of some users) rejects
``kill -KILL -- -PGID``; a fallback to the group leader alone would leave the step's
children running beside the next attempt. Run for real against a local process group.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from gpuwizard.executor.remote import signal_cmd
from tests.builders.procs import group_members as _alive

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_whole_group_is_signalled(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    # a leader that ignores TERM with a child that ignores it too, like `trap '' TERM; cmd; ...`
    leader = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60; echo never"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(_alive(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_alive(leader.pid)) == 2
        subprocess.run([shell, "-c", signal_cmd("TERM", leader.pid)], check=True)
        time.sleep(0.2)
        assert len(_alive(leader.pid)) == 2  # TERM is ignored by both
        subprocess.run([shell, "-c", signal_cmd("KILL", leader.pid)], check=True)
        deadline = time.monotonic() + 5
        while _alive(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(leader.pid) == []  # the child too, not only the leader
    finally:
        leader.kill()
        leader.wait()


def _recipe(path: pathlib.Path, host, run: str) -> pathlib.Path:
    data = {"version": 1, "name": "signals-test", "target": {"ssh": {"hosts": [host.host_string]}},
            "ssh": {"identity": host.client_key, "known_hosts": host.known_hosts, "connect_timeout": 10},
            "steps": [{"name": "wait", "run": run}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.timeout(60)
def test_three_quick_ctrl_cs_exit_130(sshd_host, tmp_path: pathlib.Path) -> None:
    r = _recipe(tmp_path / "r.yaml", sshd_host, "echo waiting; trap '' TERM; sleep 20")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", "run", str(r), "--headless"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "waiting" in line:
            break
    for _ in range(3):  # as fast as a person hammering the key
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err


def test_a_ctrl_c_while_reporting_the_interrupt_still_exits_130(monkeypatch) -> None:
    # the second and third presses land while gpuwizard prints "interrupted": they must
    # not turn exit 130 into "killed by SIGINT" (Python re-raises an uncaught Ctrl-C as SIGINT)
    from gpuwizard import cli

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    class PressingStderr:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> int:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, mid-message
            self.text += s
            return len(s)

        def flush(self) -> None:
            pass

    err = PressingStderr()
    monkeypatch.setattr(cli, "_resolve", lambda _handler: interrupted)
    monkeypatch.setattr(sys, "stderr", err)
    try:
        code = cli.main(["validate", "nothing.yaml"])
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C during the interrupt message escaped main(): the process dies by SIGINT")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert code == 130 and "interrupted" in err.text


def test_after_an_interrupted_run_returns_130_a_late_ctrl_c_is_ignored(monkeypatch) -> None:
    """Review: a second Ctrl-C ~0.3 s after the first (the run already saved and returning
    130) ended the process by SIGINT (-2) about one time in eight: it landed while the
    interpreter shut down, when Python has put SIGINT back to the default action. An
    ignored SIGINT stays ignored through shutdown."""
    from gpuwizard import cli

    monkeypatch.setattr(cli, "_resolve", lambda _handler: lambda _args: 130)
    try:
        assert cli.main(["validate", "nothing.yaml"]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
