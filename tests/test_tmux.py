"""A smoke run in a real terminal: tmux starts ``gpuwizard``, send-keys walks every
screen, capture-pane checks what a user would see, and the recipe is saved and valid.

Waits poll capture-pane for the expected text (a condition with a deadline), never a
fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One detached tmux session on a private socket."""

    def __init__(self, tmp: str) -> None:
        self.socket = os.path.join(tmp, "tmux.sock")
        self.name = f"gw-{uuid.uuid4().hex[:6]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-f", os.devnull, "-S", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v!r}" for k, v in env.items())
        self.run("new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", f"env {exports} {command}")
        self.run("set-option", "-t", self.name, "remain-on-exit", "on")

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if text in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not appear; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def test_gpuwizard_in_tmux_walks_to_a_saved_recipe(tmp_path) -> None:
    out = tmp_path / "smoke.yaml"
    t = Tmux(str(tmp_path))
    env = {"PYTHONPATH": ROOT, "TERM": "xterm-256color", "GPUWIZARD_OFFLINE": "1", "HOME": str(tmp_path),
           "COLUMNS": "120", "LINES": "40"}
    try:
        t.start(f"{sys.executable} -m gpuwizard.cli new -o {out}", env)
        screen = t.wait_for("Project & quota")
        assert "Offline" in t.wait_for("Offline")
        assert "T4" in screen
        t.keys("C-n")
        t.wait_for("Failover order")
        t.keys("C-n")
        t.wait_for("Machine type")
        assert "/h" in t.capture()
        t.keys("C-n")
        t.wait_for("Driver branch")
        t.keys("C-n")
        t.wait_for("Git repository")
        t.keys("C-t")
        t.wait_for("mmskeleton")
        t.keys("C-n")
        t.wait_for("REMOTE:path")
        t.keys("C-n")
        t.wait_for("Save to")
        t.keys("C-s")
        t.wait_for("Saved")
        t.keys("C-q")
        t.wait_for(f"Saved {out}")
    finally:
        t.kill()
    from gpuwizard import recipe as rc

    saved = rc.load(str(out))
    assert saved.env.repo.url.endswith("mmskeleton.git")
    from gpuwizard.cli import main

    assert main(["validate", str(out)]) == 0
