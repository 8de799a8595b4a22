"""Drive remote configuration with the real rclone binary, offline.

A fake OAuth server stands in for Google (auth_url/token_url), rclone's loopback login
link is followed as a browser would, and every flow must end with rclone's JSON
``State == ""``; the state check must catch a config that stopped to ask a question.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import threading

import pytest

from gpuwizard import rclone as R
from gpuwizard.recipe import Remote
from tests.fixtures.rclone_servers import RCLONE, FakeOAuth, browse_in_background, play_browser

pytestmark = pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed")


def token_for(fake: FakeOAuth) -> str:
    return json.dumps({"access_token": fake.access_token, "token_type": "Bearer",
                       "refresh_token": fake.refresh_token, "expiry": "2099-01-01T00:00:00Z"})


def run_rclone(argv: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def config_dump(env: dict[str, str]) -> dict[str, dict[str, str]]:
    return json.loads(run_rclone([RCLONE, "config", "dump"], env).stdout)


@pytest.fixture
def conf_env(rclone_env: dict[str, str], tmp_path: pathlib.Path) -> dict[str, str]:
    return {**rclone_env, "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}


def test_token_from_environment_completes_without_argv_secret(conf_env: dict[str, str], fake_oauth: FakeOAuth) -> None:
    argv = R.config_create_args("gd", "drive", {"scope": "drive.readonly",
                                                "client_id": "123-abc.apps.googleusercontent.com"}, rclone=RCLONE)
    assert not any(fake_oauth.access_token in a for a in argv)
    r = run_rclone(argv, {**conf_env, "RCLONE_CONFIG_GD_TOKEN": token_for(fake_oauth)})
    assert r.returncode == 0, r.stderr
    assert R.check_config_state(r.stdout)["State"] == ""
    gd = config_dump(conf_env)["gd"]
    assert gd["type"] == "drive" and gd["scope"] == "drive.readonly"
    assert "token" not in gd  # the secret stays in the secret file, read into the env per step


def test_config_create_args_refuse_secrets() -> None:
    with pytest.raises(R.RcloneError, match="process list"):
        R.config_create_args("gd", "drive", {"token": "{}"})
    argv = R.config_create_args("gd", "drive", {"scope": "drive", "shared_with_me": True})
    assert argv[-1] == "--non-interactive"
    assert "shared_with_me=true" in argv and "config_refresh_token=false" in argv
    assert "config_change_team_drive=false" in argv


def test_state_machine_check_catches_incomplete_config(conf_env: dict[str, str]) -> None:
    # No credential at all: rclone exits 0 but stops at "Use auto config?".
    r = run_rclone(R.config_create_args("gd", "drive", {"scope": "drive.readonly"}, rclone=RCLONE), conf_env)
    assert r.returncode == 0
    with pytest.raises(R.ConfigIncomplete) as exc:
        R.check_config_state(r.stdout)
    assert exc.value.option == "config_is_local" and exc.value.state.startswith("*oauth")
    assert "token_file" in str(exc.value)
    # Headless but no token: it stops at config_token.
    r = run_rclone(R.config_create_args("gd", "drive", {"scope": "drive.readonly", "config_is_local": False},
                                        rclone=RCLONE), conf_env)
    with pytest.raises(R.ConfigIncomplete) as exc:
        R.check_config_state(r.stdout)
    assert exc.value.option == "config_token"


def test_check_config_state_edge_cases() -> None:
    assert R.check_config_state('{"State": "", "Option": null, "Error": "", "Result": ""}')["State"] == ""
    with pytest.raises(R.ConfigIncomplete, match="boom"):
        R.check_config_state('{"State": "", "Option": null, "Error": "boom"}')
    with pytest.raises(R.RcloneError, match="1.56"):
        R.check_config_state("2021/01/01 NOTICE: something")
    with pytest.raises(R.RcloneError, match="1.56"):
        R.check_config_state("[1]")


def test_service_account_completes(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "client_email": "x@p.iam.gserviceaccount.com",
                              "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"}))
    r = run_rclone(R.config_create_args("gsa", "drive", {"scope": "drive.readonly", "service_account_file": str(sa),
                                                         "root_folder_id": "1AbCdEfGhIjKlMnOp"}, rclone=RCLONE), conf_env)
    R.check_config_state(r.stdout)
    gsa = config_dump(conf_env)["gsa"]
    assert gsa["service_account_file"] == str(sa) and gsa["root_folder_id"] == "1AbCdEfGhIjKlMnOp"


def test_local_authorize_through_fake_oauth(rclone_env: dict[str, str], fake_oauth: FakeOAuth,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Mode (a): `rclone authorize "drive"` here; we capture the token between the markers."""
    for k, v in fake_oauth.env().items():
        monkeypatch.setenv(k, v)
    spec = R.DriveRemoteSpec(name="gd", client_id="123-abc.apps.googleusercontent.com",
                             client_secret="GOCSPX-notreallysecret1234")
    setup = R.DriveSetup(spec, secrets_dir=tmp_path / "secrets")
    urls: list[str] = []

    def on_url(url: str) -> None:
        urls.append(url)
        browse_in_background(url)

    tok = setup.authorize(rclone=RCLONE, on_url=on_url, open_browser=False, timeout=30)
    assert urls and urls[0].startswith("http://127.0.0.1:53682/auth?state=")
    data = json.loads(tok)
    assert data["access_token"] == fake_oauth.access_token and data["refresh_token"] == fake_oauth.refresh_token
    # the client went through the environment and reached the token endpoint
    posts = [r for r in fake_oauth.requests if r[0] == "POST"]
    assert posts and posts[0][2].get("client_id") == ["123-abc.apps.googleusercontent.com"] or \
        "client_id" not in posts[0][2]  # basic auth header instead of form field is also fine
    gets = [r for r in fake_oauth.requests if r[0] == "GET"]
    assert gets[0][2]["client_id"] == ["123-abc.apps.googleusercontent.com"]
    assert "drive.readonly" in gets[0][2]["scope"][0]
    # and the result configures a remote that finishes
    opts = setup.save()
    assert opts["token_file"].endswith("gd.token.json") and "token" not in opts
    env = {**rclone_env, "RCLONE_CONFIG": str(tmp_path / "r.conf"), "RCLONE_CONFIG_GD_TOKEN": tok,
           "RCLONE_CONFIG_GD_CLIENT_SECRET": spec.client_secret}
    plain = {k: v for k, v in opts.items() if k not in ("type", "token_file", "client_secret_file")}
    r = run_rclone(R.config_create_args("gd", "drive", plain, rclone=RCLONE), env)
    R.check_config_state(r.stdout)


def test_tunnel_flow_config_is_local_on_host(conf_env: dict[str, str], fake_oauth: FakeOAuth) -> None:
    """Mode (c): on the VM, config_is_local=true waits on 127.0.0.1:53682 for the redirect
    that the user's browser sends through `ssh -L 53682:localhost:53682`."""
    argv = R.config_create_args("gd", "drive", {"scope": "drive.readonly", "config_is_local": True,
                                                "auth_url": fake_oauth.auth_url, "token_url": fake_oauth.token_url},
                                rclone=RCLONE)
    proc = subprocess.Popen(argv, env=conf_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"http://127\.0\.0\.1:53682/auth\?state=\S+", line)
            if m:
                url = m.group(0)
                break
        assert url, "rclone printed no login link"
        play_browser(url)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    R.check_config_state(out)
    gd = config_dump(conf_env)["gd"]
    assert json.loads(gd["token"])["access_token"] == fake_oauth.access_token


def host_run(script: str, home: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env={**env, "HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


def test_remote_step_script_runs_and_checks_state(conf_env: dict[str, str], fake_oauth: FakeOAuth,
                                                  tmp_path: pathlib.Path) -> None:
    home = tmp_path / "host-home"
    local_tok = tmp_path / "local.token.json"
    local_tok.write_text(token_for(fake_oauth))
    step = R.remote_step("gd", Remote(type="drive", options={"scope": "drive.readonly", "token_file": str(local_tok)}))
    assert step.id == "rclone.remote.gd" and fake_oauth.access_token not in step.run
    assert [(u.local, u.remote, u.mode) for u in step.uploads] == [(str(local_tok), "~/.config/gpuwizard/secrets/gd.token", 0o600)]
    # without the uploaded file: a clear message
    r = host_run(step.run, home, conf_env)
    assert r.returncode == 2 and "missing on this host" in r.stderr
    # "upload" it as the executor would, then run
    dest = home / ".config/gpuwizard/secrets/gd.token"
    dest.parent.mkdir(parents=True)
    dest.write_text(local_tok.read_text())
    r = host_run(step.run, home, {**conf_env, "PATH": os.path.dirname(RCLONE) + ":" + os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    assert 'rclone remote gd configured' in r.stdout.replace('"', "")
    assert fake_oauth.access_token not in r.stdout + r.stderr


def test_remote_step_script_fails_on_incomplete_config(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    step = R.remote_step("gd", Remote(type="drive", options={"scope": "drive.readonly", "config_is_local": False}))
    r = host_run(step.run, tmp_path, conf_env)
    assert r.returncode == 1
    assert "incomplete" in r.stderr and "config_token" in r.stderr


def test_generic_backends_pass_through(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """Any backend: options are handed to config create as given; secrets come from files."""
    pw = tmp_path / "pw"
    pw.write_text("s3cr3t-pass\n")
    step = R.remote_step("dav", Remote(type="webdav", options={"url": "http://127.0.0.1:9/", "vendor": "other",
                                                              "user": "u", "pass_file": str(pw)}))
    assert "s3cr3t" not in step.run and "rclone obscure -" in step.run
    dest = tmp_path / ".config/gpuwizard/secrets/dav.pass"
    dest.parent.mkdir(parents=True)
    dest.write_text(pw.read_text())
    r = host_run(step.run + 'rclone config dump\nprintf "%s" "$RCLONE_CONFIG_DAV_PASS" > "$HOME/obscured"\n',
                 tmp_path, conf_env)
    assert r.returncode == 0, r.stderr
    dav = json.loads(r.stdout[r.stdout.index("{"):])["dav"]
    assert dav == {"type": "webdav", "url": "http://127.0.0.1:9/", "vendor": "other", "user": "u"}
    revealed = run_rclone([RCLONE, "reveal", "--", (tmp_path / "obscured").read_text()], conf_env).stdout.strip()
    assert revealed == "s3cr3t-pass"


@pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed")
def test_authorize_can_be_cancelled_and_frees_the_port(fake_oauth: FakeOAuth) -> None:
    import socket
    import time

    spec = R.DriveRemoteSpec(name="gd", auth="local")
    cancel = threading.Event()
    urls: list[str] = []
    errors: list[Exception] = []

    def login() -> None:
        try:
            R.authorize_local(spec, rclone=RCLONE, on_url=urls.append, open_browser=False, timeout=60,
                              extra_env=fake_oauth.env(), cancel=cancel)
        except R.RcloneError as exc:
            errors.append(exc)

    t = threading.Thread(target=login)
    t.start()
    deadline = time.monotonic() + 20
    while not urls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert urls, "rclone printed no login link"
    t0 = time.monotonic()
    cancel.set()  # the user closes the dialog instead of logging in
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 3
    assert [str(e) for e in errors] == ["login cancelled"]
    with socket.socket() as s:  # rclone no longer holds its redirect port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 53682))
