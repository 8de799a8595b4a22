"""`gpuwizard run` in a real terminal opens the split-pane run screen.

tmux gives the command a TTY; the run goes to real sshd hosts; capture-pane shows the
hosts x steps table and the final state; `q` quits with exit code 0 and the run
directory is printed. A failing step shows the failure and quits with exit code 1.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import time

import pytest

from tests.builders.wizard import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def recipe_for(hosts, factory, run2: str) -> str:
    return f"""version: 1
name: tuirun
target:
  ssh:
    hosts: [{", ".join(h.host_string for h in hosts)}]
ssh:
  identity: {factory.client_key}
  known_hosts: {factory.known_hosts}
steps:
  - name: count
    run: "for i in $(seq 1 30); do echo line-$i; done"
  - name: second
    run: "{run2}"
"""


@pytest.mark.parametrize("run2, code, text", [("echo fine", 0, "every step ok"), ("exit 4", 1, "Run failed")])
def test_run_on_a_terminal_uses_the_run_screen(sshd_factory, tmp_path: pathlib.Path, run2: str, code: int,
                                               text: str) -> None:
    hosts = sshd_factory.start(2, user="gwtest")
    r = tmp_path / "r.yaml"
    r.write_text(recipe_for(hosts, sshd_factory, run2))
    t = Tmux(str(tmp_path))
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color", "PATH": os.environ["PATH"]}
    # `env -u CI`: under CI=true gpuwizard prints plain lines even on a terminal, and CI sets it
    t.start(f"env -u CI sh -c '{sys.executable} -m gpuwizard.cli run {r}; echo EXIT=$?; sleep 60'", env)
    try:
        screen = t.wait_for(text, timeout=40)
        assert "user.count" in screen and "user.second" in screen
        assert "2 hosts x 2 steps" in screen
        t.keys("q")
        screen = t.wait_for(f"EXIT={code}", timeout=20)
        assert "run directory" in screen
    finally:
        t.run("kill-server")
    runs = list((tmp_path / "state" / "gpuwizard" / "runs").iterdir())
    logs = list((runs[0] / "hosts").glob("*.log"))
    assert len(logs) == 2 and all("line-30" in p.read_text() for p in logs)


def test_terminal_run_honours_delete_on_failure(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    from tests.builders.gcp import point_fake_at, write_recipe

    point_fake_at(fake_compute, sshd_host)
    r = tmp_path / "e2e.yaml"
    write_recipe(r, sshd_host, "exit 3")
    t = Tmux(str(tmp_path))
    keep = ("GPUWIZARD_COMPUTE_ENDPOINT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG", "XDG_CONFIG_HOME",
            "NO_GCE_CHECK", "GCE_METADATA_HOST", "GCE_METADATA_IP", "PATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({"XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color"})
    t.start(f"env -u CI sh -c '{sys.executable} -m gpuwizard.cli run {r} --delete-on-failure; echo EXIT=$?; "
            "sleep 60'", env)
    try:
        t.wait_for("Run failed", timeout=60)
        t.keys("q")
        screen = t.wait_for("EXIT=1", timeout=30)
        assert "deleted 1 VM(s) of this run" in screen.replace("\n", "")
    finally:
        t.run("kill-server")
    assert [i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"] == []


def test_a_long_step_stays_painted_and_a_host_with_a_wrong_key_says_why(sshd_factory, tmp_path: pathlib.Path) -> None:
    """Issue 11: a step prints 20,000 lines (four times the pane's cap), a few lines apart
    in time (each its own flush, like apt's), then a marker; the marker is on screen 2 s
    after it was printed (before the fix the pane froze at the first write past its cap). The screen is looked at once, at that
    moment, as a person glances at it: polling capture-pane in a tight loop hid the
    frozen pane. The second host's known_hosts entry holds another host's key: its pane,
    the table and the summary say why it ran nothing, with the fix."""
    good, bad = sshd_factory.start(2)
    known = tmp_path / "known_hosts"
    wrong_key = good.host_key_line.split(" ", 1)[1]
    known.write_text(f"{good.host_key_line}\n[{bad.address}]:{bad.port} {wrong_key}\n")
    printed = tmp_path / "printed"
    r = tmp_path / "long.yaml"
    r.write_text(f"""version: 1
name: longrun
target:
  ssh:
    hosts: [{good.host_string}, {bad.host_string}]
ssh:
  identity: {sshd_factory.client_key}
  known_hosts: {known}
steps:
  - name: stream
    run: "seq -f 'line %.0f of the stream' 1 20000; for i in 1 2 3; do echo tick-$i; sleep 0.3; done; echo MARKER-AFTER-20000; touch {printed}; sleep 4"
""")
    t = Tmux(str(tmp_path))
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color", "PATH": os.environ["PATH"]}
    t.start(f"env -u CI sh -c '{sys.executable} -m gpuwizard.cli run {r}; echo EXIT=$?; sleep 60'", env)
    try:
        deadline = time.monotonic() + 60
        while not printed.exists():  # the host's side: a file, not the terminal
            assert time.monotonic() < deadline, t.capture()
            time.sleep(0.1)
        time.sleep(2.0)  # the 2 s the issue allows; then one look
        screen = t.capture()
        assert "MARKER-AFTER-20000" in screen, screen
        assert "tick-3" in screen and "line 20000 of the stream" in screen, screen
        summary = " ".join(" ".join(ln.split("▕")[0] for ln in screen.splitlines()).split())  # the left column
        assert "1 unreachable" in summary and f"{bad.host_string} did not connect:" in summary  # beside the table
        t.keys("]")  # the second host's pane
        screen = t.wait_for("ssh-keygen -R", timeout=10)
        pane = " ".join(" ".join(ln.split("▕", 1)[1].replace("█", " ") for ln in screen.splitlines() if "▕" in ln).split())
        assert "did not connect" in pane and "ran no steps." in pane and "the host key does not match the one in" in pane
        assert f"ssh-keygen -R '[127.0.0.1]:{bad.port}' -f" in pane, screen  # the fix, whole
        screen = t.wait_for("Run failed", timeout=30)
        assert f"Run failed ({bad.host_string}" in screen, screen  # (at 80 columns a toast covers the rest)
        t.keys("[", "s")  # a shell on the good host: the app steps aside for `gpuwizard ssh`
        deadline = time.monotonic() + 20
        while not re.search(r"[#$] *$", t.capture().rstrip()) or "palette" in t.capture():  # a prompt, app away
            assert time.monotonic() < deadline, t.capture()
            time.sleep(0.1)
        shell = tmp_path / "shell-ran"
        t.keys("-l", f"echo SSH-$((6*7)) > {shell}; exit")
        t.keys("Enter")
        t.wait_for("Run failed", timeout=20)  # the shell ended: the run screen is back
        assert shell.read_text() == "SSH-42\n"
        t.keys("q")
        t.wait_for("EXIT=1", timeout=20)
    finally:
        t.run("kill-server")
