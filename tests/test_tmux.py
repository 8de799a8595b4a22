"""The seed case walked as a person walks it, in a real terminal.

tmux starts ``gpuwizard`` (120x40, offline: the catalog answers), and send-keys fills
every screen with keys only: no Tab before the first keystroke works, because every
screen opens with a control focused. The training step is typed into the Steps screen,
the recipe is saved to a typed path, Ctrl+Q with unsaved changes asks first, and
``gpuwizard validate`` accepts the result. A second walk checks 80x24.

Waits poll capture-pane for a marker with a deadline (never a fixed sleep); the screen
is then looked at once, as a person glances at it after the output ended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from gpuwizard import recipe as rc
from gpuwizard.presets import STGCN_DATA, STGCN_TRAIN
from tests.builders.wizard import Tmux

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

#: The shape ``rclone authorize "drive"`` prints (fake values).
TOKEN = '{"access_token":"ya29.x","token_type":"Bearer","refresh_token":"1//x","expiry":"2030-01-01T00:00:00Z"}'
TOKEN_PLACEHOLDER = '{"access_token": ...} (hidden as you paste)'
DATA_TO = "~/mmskeleton/"
EVAL = "python mmskl.py configs/recognition/st_gcn_aaai18/kinetics-skeleton/test.yaml"


def _env(tmp_path, width: int, height: int) -> dict[str, str]:
    """The wizard's environment: offline, HOME and XDG in ``tmp_path`` (secrets land there),
    and ``tmp_path/bin`` first on PATH (where a test puts its stand-in rclone)."""
    path = os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", os.defpath)])
    return {"PATH": path, "PYTHONPATH": ROOT, "TERM": "xterm-256color", "GPUWIZARD_OFFLINE": "1", "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / ".config"), "COLUMNS": str(width), "LINES": str(height)}


def test_seed_case_walked_with_keys_only_to_a_valid_recipe(tmp_path) -> None:
    out = tmp_path / "runs" / "stgcn.yaml"
    out.parent.mkdir()
    # rclone is "installed here" on every machine, so the dialog always offers the browser
    # login first and the walk must choose the paste option (only `rclone version` is run).
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "rclone"
    fake.write_text("#!/bin/sh\necho 'rclone v1.68.0'\n")
    fake.chmod(0o755)
    t = Tmux(str(tmp_path))
    try:
        t.start(f"{sys.executable} -m gpuwizard.cli", _env(tmp_path, 120, 40))
        screen = t.wait_for("Offline")
        assert "1 Project & quota" in screen and "T4" in screen
        t.keys("C-n")
        t.wait_for("Failover order: us-")  # filled in on load, when the table has focus
        t.keys("a")  # the Zone table has focus: best first, no Tab needed
        t.keys("C-n")
        screen = t.wait_for("Machine type")
        assert "/h per VM (n1-standard-4 + 1 x T4" in screen
        t.keys("C-n")
        t.wait_for("Kernel modules")
        t.keys("C-n")
        t.wait_for("Git repository")
        t.keys("C-t")  # the ST-GCN repository preset
        t.wait_for("mmskeleton")
        t.keys("C-n")
        t.wait_for("REMOTE:path")  # Dataset: none yet, and the data is on Google Drive
        t.keys("C-r")  # set up the Drive remote
        t.wait_for("Paste a token from")  # the credential choices are drawn...
        t.wait_gone("(looking f")  # ...and the look-up found rclone here: the browser login is chosen
        choices = t.styled_line("Log in through an SSH tunnel")  # the last choice: the highlight never is here
        t.keys(*["Tab"] * 6)  # past name, scope, own client, root folder, Shared Drive, shared with me
        t.wait_restyled("Log in through an SSH tunnel", choices)  # the choices lit up: they have the focus
        t.keys("Down", "Enter")  # the choices: from the browser login to "Paste a token ... another computer"
        t.wait_for("Token: paste rclone's whole answer")  # the paste choice's panel, scrolled into view
        field = t.styled_line(TOKEN_PLACEHOLDER)
        t.keys("Tab")  # into the token field: it lights up (empty, it shows no cursor)
        t.wait_restyled(TOKEN_PLACEHOLDER, field)  # a paste goes where the focus is when it arrives
        t.paste(TOKEN)  # what rclone authorize printed on the other computer
        screen = t.wait_for("Ready to save.")
        assert "•••" in screen and "ya29" not in screen and "1//x" not in screen, screen  # hidden as pasted
        t.keys("C-s")
        t.wait_for("rclone remotes: gdrive (drive, drive.readonly)")  # and the source field has the focus
        t.type(STGCN_DATA)
        t.wait_cursor_in("From: REMOTE:path")  # typed there (the empty field shows the same as placeholder)
        t.keys("Tab")
        t.wait_cursor_in("To (on the host)")
        t.type(DATA_TO)  # the preset's place: the zip unpacks to data/ inside the clone (replaces ~/data/)
        t.wait_for(f"▊  {DATA_TO}  ")
        row = t.styled_line("unzip / untar")  # the remote (Drive links only) and unzip share a line
        t.keys("Tab")  # to the remote: it lights up
        t.wait_restyled("unzip / untar", row)
        row = t.styled_line("unzip / untar")
        t.keys("Tab")  # to "unzip / untar": it lights up, the remote goes dim
        t.wait_restyled("unzip / untar", row)
        t.keys("Space")
        t.wait_for("✔▌ unzip / untar")
        t.keys("C-a")
        screen = t.wait_for(f"{DATA_TO}  yes")  # the table's row: To, Unzip
        rows = [ln.split() for ln in screen.splitlines() if f"{DATA_TO}  yes" in ln]
        assert rows == [[STGCN_DATA, DATA_TO, "yes"]], screen  # no Remote: a REMOTE:path names its own
        t.keys("C-n")
        t.wait_for("Your steps, in run order")
        t.keys("C-t")  # the preset's steps: its smoke test and the training command
        t.wait_for("2. train: python mmskl.py")
        t.keys("C-a")  # and one of my own; the command editor has focus
        t.wait_for("empty command")
        t.type(EVAL)
        t.wait_for("3 step(s) of your own run")
        t.wait_for("kinetics-skeleton/test.yaml")  # all of it typed, in the editor (the list may keep
        # step 3 scrolled out of view under load: the wrapped preset steps fill it)
        t.keys("C-n")
        t.wait_for("1. autostop")  # the plan (auto-stop first: the wizard proposes it) is filled in when the screen has loaded (and focused Name)
        t.keys("Tab")  # from the recipe name to "Save to" (Textual selects its text)
        t.wait_cursor_in("Save to")
        t.type(str(out))
        t.wait_for("/runs/stgcn.yaml")
        t.keys("C-q")  # unsaved changes: asked, not thrown away
        t.wait_for("unsaved changes")
        t.keys("Escape")
        t.wait_gone("unsaved changes")
        t.keys("C-s")
        t.wait_for("Saved")  # the notification (its long path wraps onto the next line)
        t.keys("C-q")  # saved: quits at once
        t.wait_for(f"Next: gpuwizard validate {out}", joined=True)
        screen = t.look(joined=True)  # once, after the output ended
        assert f"Saved {out}. Next: gpuwizard validate {out} && gpuwizard run {out}" in screen
    finally:
        t.kill()
    saved = rc.load(str(out))
    assert saved.env.repo.url.endswith("mmskeleton.git")
    assert [(s.name, s.run) for s in saved.steps] == [("smoke", saved.steps[0].run), ("train", STGCN_TRAIN),
                                                      ("step-3", EVAL)]
    assert [(d.from_, d.to, d.unzip, d.remote) for d in saved.datasets] == [(STGCN_DATA, DATA_TO, True, None)]
    remote = saved.rclone.remotes["gdrive"]
    token_file = "~/.config/gpuwizard/secrets/gdrive.token.json"  # ~ is HOME: tmp_path
    assert remote.type == "drive" and remote.options == {"scope": "drive.readonly", "token_file": token_file}
    text = out.read_text()
    assert "ya29" not in text and "1//x" not in text and "access_token" not in text  # the file is named, not copied
    secret = tmp_path / ".config" / "gpuwizard" / "secrets" / "gdrive.token.json"
    assert os.stat(secret).st_mode & 0o777 == 0o600
    assert json.loads(secret.read_text()) == json.loads(TOKEN)
    res = subprocess.run([sys.executable, "-m", "gpuwizard.cli", "validate", str(out)], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, **_env(tmp_path, 120, 40)})
    assert res.returncode == 0, res.stdout + res.stderr


def test_80x24_shows_every_step_and_walks(tmp_path) -> None:
    t = Tmux(str(tmp_path), 80, 24)
    try:
        t.start(f"{sys.executable} -m gpuwizard.cli", _env(tmp_path, 80, 24))
        screen = t.wait_for("GPUs per VM")
        bar = screen.splitlines()[0]
        assert "1 Quota" in bar and "8 Review" in bar, bar
        t.keys("C-n")
        bar = t.wait_for("2 Zone").splitlines()[0]
        assert all(f"{i} " in bar for i in range(1, 9)), bar
        t.keys("F1")
        t.wait_for("Help: Zone")
        t.keys("Escape")
        t.wait_gone("Help: Zone")
        t.keys("C-q")
        t.wait_for("unsaved changes")
        t.keys("Escape")
    finally:
        t.kill()
