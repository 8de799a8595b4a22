"""`gpuwizard rclone` driven through a real pseudo-terminal (pexpect), as a user would.

Needs pexpect (test extra). Each test runs the real CLI in a pty with a throwaway HOME
and XDG_CONFIG_HOME, answers the prompts with keystrokes, and checks the files written
(0600), the printed recipe fragment, and Ctrl-C (exit 130, nothing written).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys

import pytest
import yaml

pexpect = pytest.importorskip("pexpect")

from gpuwizard import recipe as RR  # noqa: E402
from tests.fixtures.rclone_servers import RCLONE, FakeOAuth, browse_in_background  # noqa: E402

pytestmark = pytest.mark.timeout(60)
DOWN, ENTER, CTRL_C = "\x1b[B", "\r", "\x03"
FOLDER = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def spawn(tmp_path: pathlib.Path, extra_env: dict[str, str] | None = None, path: str | None = None):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "TERM": "xterm",
           "RCLONE_CONFIG": os.devnull, "PROMPT_TOOLKIT_NO_CPR": "1", "COLUMNS": "200", "LINES": "50", **(extra_env or {})}
    env.pop("DISPLAY", None)
    if path is not None:
        env["PATH"] = path
    child = pexpect.spawn(sys.executable, ["-m", "gpuwizard.cli", "rclone"], env=env, cwd=str(pathlib.Path.cwd()),
                          encoding="utf-8", timeout=20, dimensions=(50, 200))
    return child, home / ".config/gpuwizard/secrets"


def answer_common(child, name: str = "gdtest") -> None:
    child.expect("Remote name")
    child.send("\x7f" * 10 + name + ENTER)          # clear the default "gdrive"
    child.expect("Access scope")
    child.send(ENTER)                               # default drive.readonly
    child.expect("own OAuth client")
    child.send("n")
    child.expect("Root folder")
    child.send(f"https://drive.google.com/drive/folders/{FOLDER}?usp=sharing" + ENTER)
    child.expect("Shared Drive ID")
    child.send(ENTER)
    child.expect("Shared with me")
    child.send("n")
    child.expect("credential come from")


def token_json() -> str:
    return json.dumps({"access_token": "ya29.PTYTEST" + "x" * 30, "token_type": "Bearer",
                       "refresh_token": "1//0PTYTEST" + "y" * 30, "expiry": "2099-01-01T00:00:00Z"})


def fragment_of(text: str) -> dict:
    clean = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
    start = clean.index("rclone:\n")
    end = clean.index("and fetch a dataset")
    return yaml.safe_load(clean[start:end])


def test_paste_flow_writes_0600_secret_and_prints_fragment(tmp_path: pathlib.Path) -> None:
    child, secrets = spawn(tmp_path)
    answer_common(child)
    # choices: local (rclone is installed here), paste, service account, tunnel
    child.send(DOWN + ENTER)
    child.expect("rclone authorize")
    child.expect("Token:")
    child.send('{"access_token": "x"' + ENTER)      # broken paste: a clear error, the prompt stays
    child.expect("not valid JSON")
    child.send("\x7f" * 40 + token_json() + ENTER)
    child.expect("Save the secrets")
    typed = child.before  # what the terminal showed while the token was pasted
    child.send("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    tok = secrets / "gdtest.token.json"
    assert tok.stat().st_mode & 0o777 == 0o600
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert json.loads(tok.read_text())["refresh_token"].startswith("1//0PTYTEST")
    out = child.before
    assert "PTYTEST" not in typed + out  # the pasted token is masked as it is typed, and never echoed back
    frag = fragment_of(out)
    gd = frag["rclone"]["remotes"]["gdtest"]
    assert gd == {"type": "drive", "scope": "drive.readonly", "root_folder_id": FOLDER,
                  "token_file": "~/.config/gpuwizard/secrets/gdtest.token.json"}
    # the fragment is a valid recipe part
    RR.loads(RR.dumps(RR.Recipe(name="x", target=RR.Target(ssh=RR.SshTarget(hosts=["u@h"])))) +
             "rclone:\n  remotes:\n    gdtest:\n" + "".join(f"      {k}: {v}\n" for k, v in gd.items()))


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    child, secrets = spawn(tmp_path)
    child.expect("Remote name")
    child.send(ENTER)
    child.expect("Access scope")
    child.send(ENTER)
    child.expect("own OAuth client")
    child.send(CTRL_C)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "nothing was written" in child.before
    assert not secrets.exists() or not any(secrets.iterdir())


def test_service_account_flow(tmp_path: pathlib.Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "client_email": "loader@proj.iam.gserviceaccount.com",
                              "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}))
    nobin = tmp_path / "nobin"
    nobin.mkdir()
    child, secrets = spawn(tmp_path, path=str(nobin))  # no local rclone: no "local" choice
    answer_common(child, "gsa")
    child.send(DOWN + ENTER)                         # paste, service account, tunnel -> service account
    child.expect("JSON key file")
    child.send(str(sa) + ENTER)
    child.expect("loader@proj.iam.gserviceaccount.com")
    child.expect("Save the secrets")
    child.send("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    key = secrets / "gsa.service_account.json"
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_bytes() == sa.read_bytes()
    gd = fragment_of(child.before)["rclone"]["remotes"]["gsa"]
    assert gd["service_account_file"] == "~/.config/gpuwizard/secrets/gsa.service_account.json"


@pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed")
def test_local_rclone_authorize_flow(tmp_path: pathlib.Path, fake_oauth: FakeOAuth, rclone_auth_port: int) -> None:
    child, secrets = spawn(tmp_path, extra_env=fake_oauth.env())
    answer_common(child, "gdlocal")
    child.send(ENTER)                                # first choice: rclone on this machine
    child.expect(r"http://127\.0\.0\.1:53682/auth\?state=[A-Za-z0-9_-]+")
    browse_in_background(child.after)
    child.expect("Got a token")
    child.expect("Save the secrets")
    child.send("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    tok = json.loads((secrets / "gdlocal.token.json").read_text())
    assert tok["access_token"] == fake_oauth.access_token
    assert fake_oauth.access_token not in child.before
