"""The Drive set-up dialog (screens/rclone.py) driven by Pilot, against the same core as
``gpuwizard rclone``: secrets land 0600 in a throwaway config directory, the draft names
the files, and the recipe never holds a token.

The local-login test runs the real ``rclone authorize "drive"`` against the fake OAuth
server (tests/fixtures/rclone_servers.py); the browser is played when the dialog posts
the login link (a message hook), and the test waits on the worker, never on sleeps.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

from textual import events
from textual.widgets import Button, Checkbox, Input, Static

from gpuwizard import rclone as R
from gpuwizard import recipe as rc
from screens.app import WizardApp
from screens.rclone import RcloneScreen
from tests.fixtures.rclone_servers import RCLONE, FakeOAuth, play_browser

SIZE = (120, 40)
FOLDER = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.fixture
def home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A throwaway HOME and XDG_CONFIG_HOME: the secret store lands under it."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    monkeypatch.setenv("GPUWIZARD_OFFLINE", "1")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return h


def token_json(access: str = "ya29.TUITEST" + "x" * 30, refresh: str = "1//0TUITEST" + "y" * 30) -> str:
    return json.dumps({"access_token": access, "token_type": "Bearer", "refresh_token": refresh,
                       "expiry": "2099-01-01T00:00:00Z"})


async def _settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _open(pilot) -> RcloneScreen:
    await _settle(pilot)
    await pilot.press("ctrl+r")
    await _settle(pilot)  # the local-rclone look-up has finished
    scr = pilot.app.screen
    assert isinstance(scr, RcloneScreen)
    return scr


async def _choose(pilot, scr: RcloneScreen, auth: str) -> None:
    scr.query_one(f"#auth-{auth}").value = True
    await pilot.pause()
    assert scr.spec().auth == auth


def _inline(scr: RcloneScreen, target: str) -> str:
    w = scr.query_one(f"#{target}", Static)
    return str(w.render()) if w.display else ""


def _painted(widget: object) -> str:
    """The text the widget paints (what a person sees), not its value."""
    return "".join(seg.text for strip in widget.render_lines(widget.region.reset_offset) for seg in strip)  # type: ignore[attr-defined]


def _recipe_text(app: WizardApp) -> str:
    text = rc.dumps(app.draft)
    rc.loads(text, "draft.yaml")  # the loader refuses recipes that carry secrets
    return text


async def test_paste_token_writes_0600_file_named_by_the_draft(home: pathlib.Path) -> None:
    app = WizardApp(live=False, start="dataset")
    async with app.run_test(size=SIZE) as pilot:
        scr = await _open(pilot)
        await _choose(pilot, scr, "paste")
        scr.query_one("#rc-root").value = f"https://drive.google.com/drive/folders/{FOLDER}?usp=sharing"
        tok = scr.query_one("#rc-token", Input)
        tok.focus()
        # the whole `rclone authorize` answer, pasted as a user does: three lines
        tok.post_message(events.Paste("Paste the following into your remote machine --->\n"
                                      + token_json() + "\n<---End paste\n"))
        await pilot.pause()
        assert "TUITEST" in tok.value and scr.spec().token  # the whole answer arrived, not its first line
        assert "End paste" not in _painted(tok) and "•" in _painted(tok)  # masked on screen
        scr.query_one("#rc-token-show", Checkbox).value = True  # the way to check what was pasted
        await pilot.pause()
        assert "End paste" in _painted(tok)
        scr.query_one("#rc-token-show", Checkbox).value = False
        await pilot.pause()
        assert "End paste" not in _painted(tok)
        assert scr.valid and not scr.query_one("#rc-save", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen.NAME == "dataset"
        assert "gdrive (drive, drive.readonly)" in str(app.screen.query_one("#remotes").render())
    secret = home / ".config/gpuwizard/secrets/gdrive.token.json"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert json.loads(secret.read_text())["refresh_token"].startswith("1//0TUITEST")
    gd = app.draft.rclone.remotes["gdrive"]
    assert gd.type == "drive"
    assert gd.options == {"scope": "drive.readonly", "root_folder_id": FOLDER,
                          "token_file": "~/.config/gpuwizard/secrets/gdrive.token.json"}
    text = _recipe_text(app)
    assert "TUITEST" not in text and "access_token" not in text


async def test_choosing_a_credential_by_keys_brings_its_panel_into_view(home: pathlib.Path) -> None:
    """At 120x40 the panels sit below the choices, out of view: a choice made with the
    keys scrolls its panel in (the tmux walk saw the paste choice change nothing)."""
    app = WizardApp(live=False, start="dataset")
    async with app.run_test(size=SIZE) as pilot:
        scr = await _open(pilot)
        body = scr.query_one("#rc-body")
        assert body.scroll_y == 0  # opened at the top: the name field in view
        scr.query_one("#rc-auth").focus()
        await pilot.pause()
        await pilot.press("down", "enter")  # the next choice, whichever was on
        await _settle(pilot)
        panel = scr.query_one(f"#panel-{scr.spec().auth}")
        assert body.scroll_y > 0
        assert body.region.contains_region(panel.region), (panel.region, body.region)


async def test_service_account_flow(home: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "client_email": "loader@proj.iam.gserviceaccount.com",
                              "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}))
    app = WizardApp(live=False, start="dataset")
    async with app.run_test(size=SIZE) as pilot:
        scr = await _open(pilot)
        scr.query_one("#rc-name").value = "gsa"
        await _choose(pilot, scr, "service_account")
        assert "choose the service account" in _inline(scr, "err-credential")
        scr.query_one("#rc-sa").value = str(tmp_path / "missing.json")
        await pilot.pause()
        assert _inline(scr, "err-credential") == R.validate_service_account_file(str(tmp_path / "missing.json"))
        assert scr.check_action("save", ()) is None
        scr.query_one("#rc-sa").value = str(sa)
        await pilot.pause()
        assert _inline(scr, "err-credential") == ""
        assert "loader@proj.iam.gserviceaccount.com" in str(scr.query_one("#rc-sa-info").render())
        await pilot.click("#rc-save")
        await pilot.pause()
        assert app.screen.NAME == "dataset"
    key = home / ".config/gpuwizard/secrets/gsa.service_account.json"
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_bytes() == sa.read_bytes()
    opts = app.draft.rclone.remotes["gsa"].options
    assert opts["service_account_file"] == "~/.config/gpuwizard/secrets/gsa.service_account.json"
    assert "PRIVATE KEY" not in _recipe_text(app)


async def test_invalid_token_shows_core_message_and_save_stays_disabled(home: pathlib.Path) -> None:
    app = WizardApp(live=False, start="dataset")
    async with app.run_test(size=SIZE) as pilot:
        scr = await _open(pilot)
        await _choose(pilot, scr, "paste")
        bad = '{"access_token": "x"'
        scr.query_one("#rc-token").value = bad
        await pilot.pause()
        assert _inline(scr, "err-credential") == R.validate_token_text(bad)
        assert not scr.valid and scr.query_one("#rc-save", Button).disabled
        assert scr.check_action("save", ()) is None  # dimmed in the footer
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is scr
        no_refresh = json.dumps({"access_token": "ya29." + "z" * 30})
        scr.query_one("#rc-token").value = no_refresh
        await pilot.pause()
        assert _inline(scr, "err-credential") == R.validate_token_text(no_refresh)
        assert scr.query_one("#rc-save", Button).disabled
    assert not (home / ".config/gpuwizard/secrets").exists()
    assert app.draft.rclone is None or not app.draft.rclone.remotes


async def test_every_field_shows_the_core_message_inline(home: pathlib.Path) -> None:
    """Each core complaint appears under its own field; the name must also be new."""
    app = WizardApp(rc.loads(
        "version: 1\nname: x\ntarget:\n  ssh:\n    hosts: [ubuntu@203.0.113.7]\n"
        "rclone:\n  remotes:\n    gdrive: {type: drive, scope: drive.readonly, token_file: ~/t.json}\n"),
        live=False, start="dataset")
    async with app.run_test(size=SIZE) as pilot:
        scr = await _open(pilot)
        assert scr.query_one("#rc-name").value == "gdrive2"
        scr.query_one("#rc-name").value = "gdrive"
        scr.query_one("#rc-own-client").value = True
        scr.query_one("#rc-client-id").value = "not-a-client"
        scr.query_one("#rc-root").value = "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOpQrStUv/view"
        scr.query_one("#rc-team").value = "nope"
        await pilot.pause()
        assert "already has a remote named 'gdrive'" in _inline(scr, "err-name")
        assert _inline(scr, "err-client_id") == R.validate_client_id("not-a-client")
        assert _inline(scr, "err-client_secret") == "give both the client ID and its secret, or neither"
        assert _inline(scr, "err-root_folder_id") == R.validate_root_folder(
            "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOpQrStUv/view")
        assert _inline(scr, "err-team_drive") == R.validate_team_drive("nope")
        scr.query_one("#rc-team").value = "0ABCdefGHIjklMN9PVA"
        scr.query_one("#rc-shared").value = True
        await pilot.pause()
        assert "exclude each other" in _inline(scr, "err-shared_with_me")
        # The SSH tunnel: no credential here; the instructions name the recipe's host.
        scr.query_one("#rc-name").value = "gd"
        scr.query_one("#rc-own-client").value = False
        scr.query_one("#rc-root").value = FOLDER
        scr.query_one("#rc-shared").value = False
        await _choose(pilot, scr, "tunnel")
        assert scr.valid, scr.problems()
        steps = str(scr.query_one("#rc-tunnel").render())
        assert "ssh -L 53682:localhost:53682 ubuntu@203.0.113.7" in steps and "config_is_local=true" in steps
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.draft.rclone.remotes["gd"].options == {"scope": "drive.readonly", "root_folder_id": FOLDER,
                                                       "team_drive": "0ABCdefGHIjklMN9PVA"}


@pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed")
async def test_local_authorize_through_fake_oauth(home: pathlib.Path, fake_oauth: FakeOAuth,
                                                  monkeypatch: pytest.MonkeyPatch, rclone_auth_port: int) -> None:
    for k, v in fake_oauth.env().items():
        monkeypatch.setenv(k, v)
    browsers: list[threading.Thread] = []

    def hook(message: object) -> None:
        """Play the browser as soon as the dialog shows rclone's login link."""
        if isinstance(message, RcloneScreen.LoginUrl):
            t = threading.Thread(target=play_browser, args=(message.url,), kwargs={"quiet": True}, daemon=True)
            t.start()
            browsers.append(t)

    app = WizardApp(live=False, start="dataset")
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        scr = await _open(pilot)
        assert scr.rclone_path is not None and scr.spec().auth == "local"  # the default when rclone is here
        assert "no token yet" in _inline(scr, "err-credential")
        scr.query_one("#rc-name").value = "gdlocal"
        await pilot.pause()
        scr.query_one("#rc-login").scroll_visible(animate=False)
        await pilot.pause()
        assert await pilot.click("#rc-login")
        await _settle(pilot)  # the authorize worker has finished
        assert browsers and scr.login_url and scr.login_url.startswith("http://127.0.0.1:53682/auth?state=")
        assert "Logged in" in str(scr.query_one("#rc-login-status").render())
        assert scr.valid, scr.problems()
        # A scope changed after the login needs a new login.
        scr.query_one("#rc-scope").value = "drive"
        await pilot.pause()
        assert not scr.valid and "log in again" in str(scr.query_one("#rc-login-status").render())
        scr.query_one("#rc-scope").value = "drive.readonly"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen.NAME == "dataset"
    gets = [r for r in fake_oauth.requests if r[0] == "GET"]
    assert "drive.readonly" in gets[0][2]["scope"][0]
    secret = home / ".config/gpuwizard/secrets/gdlocal.token.json"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert json.loads(secret.read_text())["access_token"] == fake_oauth.access_token
    assert app.draft.rclone.remotes["gdlocal"].options["token_file"] == \
        "~/.config/gpuwizard/secrets/gdlocal.token.json"
    text = _recipe_text(app)
    assert fake_oauth.access_token not in text and fake_oauth.refresh_token not in text
