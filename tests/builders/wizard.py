"""Builders for the wizard's tests: the hand-written ST-GCN recipe every wizard test edits,
and a tmux driver for tests that look at a real terminal as a person does.

Shared by tests/test_wizard_flow.py, tests/test_snapshots.py, tests/test_tmux.py and
tests/test_run_tui.py, so no test module imports another.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

EDITED = """\
# A recipe written by hand: comments, key order and quoting must survive an unchanged save.
version: 1
name: stgcn-t4   # the VM name prefix
description: ST-GCN on one T4, data from Google Drive
target:
  gcp:
    zones: [us-central1-a, us-central1-b, us-west1-b]
    machine_type: n1-standard-8
    gpu: {type: nvidia-tesla-t4, count: 1}
    spot: true
    image: ubuntu-2204-lts
    disk_gb: 150
driver: {branch: "580", cuda: "12.8", cudnn: "9", tensorrt: false}
env:
  manager: venv
  python: "3.10"
  torch: "2.9"
  repo:
    url: https://github.com/open-mmlab/mmskeleton.git
    setup:
      - pip install -r requirements.txt
      - python setup.py develop
rclone:
  remotes:
    gdrive: {type: drive, scope: drive.readonly, token_file: ~/.config/gpuwizard/gdrive.json}
datasets:
  - {from: "gdrive:st-gcn-processed-data.zip", to: "~/data/", unzip: true}
steps:
  - {name: smoke, run: "nvidia-smi && python -c 'import torch; print(torch.cuda.is_available())'"}
"""


class Tmux:
    """One detached tmux session on a private socket (safe under pytest-xdist).

    ``wait_for`` polls ``capture-pane`` for a text with a deadline (a condition, never a
    fixed sleep); ``look`` captures once, as a person glances at the screen after the
    output ended (a tight capture loop can hide painting bugs).
    """

    def __init__(self, tmp: str, width: int = 120, height: int = 40) -> None:
        self.socket = os.path.join(tmp, "tmux.sock")
        self.name = f"gw-{uuid.uuid4().hex[:6]}"
        self.width, self.height = width, height

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-f", os.devnull, "-S", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v!r}" for k, v in env.items())
        self.run("new-session", "-d", "-s", self.name, "-x", str(self.width), "-y", str(self.height),
                 f"env {exports} {command}")
        self.run("set-option", "-t", self.name, "remain-on-exit", "on")

    def capture(self, joined: bool = False) -> str:
        """The screen's text; ``joined``: lines the terminal wrapped are joined back
        (for plain output after the app quit, e.g. the printed "Saved ..." line)."""
        return self.run("capture-pane", "-p", *(["-J"] if joined else []), "-t", self.name)

    look = capture

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        """Type ``text`` literally (no key-name lookup: "Enter" stays five letters)."""
        self.run("send-keys", "-t", self.name, "-l", text)

    def paste(self, text: str) -> None:
        """Paste ``text`` as a terminal paste does (bracketed, when the app asked for it),
        so the app gets one paste event, not keystrokes."""
        self.run("set-buffer", "-b", "walk", "--", text)
        self.run("paste-buffer", "-p", "-d", "-b", "walk", "-t", self.name)

    def styled_line(self, text: str) -> str:
        """The screen line holding ``text``, with its colours (escape sequences): what
        tells a focused field from the others when it shows no cursor (an empty field
        shows its placeholder, and no cursor)."""
        raw = self.run("capture-pane", "-p", "-e", "-t", self.name)
        return next((ln for ln in raw.splitlines() if text in re.sub(r"\x1b\[[0-9;]*m", "", ln)), "")

    def wait_restyled(self, text: str, before: str, timeout: float = 30.0) -> None:
        """Wait until the line holding ``text`` is drawn differently from ``before`` (its
        look before a Tab): the field lit up, so the focus has arrived."""
        deadline = time.monotonic() + timeout
        now = before
        while time.monotonic() < deadline:
            now = self.styled_line(text)
            if now and now != before:
                return
            time.sleep(0.05)
        raise AssertionError(f"the line with {text!r} did not change: {now!r}\n{self.capture()}")

    def wait_for(self, text: str, timeout: float = 30.0, joined: bool = False) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture(joined)
            if text in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not appear; the screen was:\n{screen}")

    def wait_gone(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if text not in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not go away; the screen was:\n{screen}")

    def cursor(self) -> tuple[int, int]:
        """Where the terminal cursor is (Textual puts it in the focused text field)."""
        x, y = self.run("display-message", "-p", "-t", self.name, "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def wait_cursor_in(self, label: str, timeout: float = 30.0) -> None:
        """Wait until the cursor is in the text field under ``label`` (a one-line Input:
        label, top border, text), as a person watches the cursor before typing. Keys sent
        in one burst reach the app as one read, so typing before focus moved would land
        in the previous field."""
        deadline = time.monotonic() + timeout
        where: tuple[int, int] = (-1, -1)
        while time.monotonic() < deadline:
            lines = self.capture().splitlines()
            at = next(((ln.index(label), y) for y, ln in enumerate(lines) if label in ln), None)
            where = self.cursor()
            if at is not None and where[1] == at[1] + 2 and at[0] <= where[0]:
                return
            time.sleep(0.05)
        raise AssertionError(f"the cursor did not move into {label!r} (it is at {where}):\n{self.capture()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)
