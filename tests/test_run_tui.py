"""`gpuwizard run` in a real terminal opens the split-pane run screen.

tmux gives the command a TTY; the run goes to real sshd hosts; capture-pane shows the
hosts x steps table and the final state; `q` quits with exit code 0 and the run
directory is printed. A failing step shows the failure and quits with exit code 1.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

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
