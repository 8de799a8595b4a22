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
import socket
import subprocess
import threading

import pytest

from gpuwizard import rclone as R
from gpuwizard.rclone import config_state
from gpuwizard.rclone.host_steps import config_state_program
from gpuwizard.recipe import Remote
from gpuwizard.steps import Step
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


def host_env(conf_env: dict[str, str]) -> dict[str, str]:
    """The step's environment on a "host": the real rclone first on PATH."""
    return {**conf_env, "PATH": os.path.dirname(RCLONE) + ":" + os.environ["PATH"]}


def host_run(script: str, home: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a step's bash as the executor does (``bash -euo pipefail -c``) with HOME=home."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env={**env, "HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


def upload(step: Step, home: pathlib.Path) -> None:
    """Copy the step's secret files to their host paths (0600), as the executor's SFTP would."""
    for u in step.uploads:
        dest = home / u.remote.removeprefix("~/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(pathlib.Path(os.path.expanduser(u.local)).read_bytes())
        dest.chmod(u.mode)


def state_check(json_text: str, name: str = "gd") -> subprocess.CompletedProcess[str]:
    """The State check exactly as the remote step ships it to the host."""
    return subprocess.run(["python3", "-c", config_state_program(), name], input=json_text,
                          capture_output=True, text=True, timeout=30)


def test_token_file_completes_without_the_token_on_argv_or_in_the_config(
        conf_env: dict[str, str], fake_oauth: FakeOAuth, tmp_path: pathlib.Path) -> None:
    home = tmp_path / "host-home"
    tok = tmp_path / "local.token.json"
    tok.write_text(token_for(fake_oauth))
    step = R.remote_step("gd", Remote(type="drive", options={
        "scope": "drive.readonly", "client_id": "123-abc.apps.googleusercontent.com", "token_file": str(tok)}))
    assert fake_oauth.access_token not in step.run
    upload(step, home)
    r = host_run(step.run, home, host_env(conf_env))
    assert r.returncode == 0, r.stderr
    gd = config_dump(conf_env)["gd"]
    assert gd["type"] == "drive" and gd["scope"] == "drive.readonly"
    assert "token" not in gd  # the secret stays in the secret file, read into the env per step


def test_config_create_line_answers_every_question_and_refuses_inline_secrets() -> None:
    step = R.remote_step("gd", Remote(type="drive", options={"scope": "drive", "shared_with_me": True,
                                                             "token_file": "/x/t.json"}))
    line = next(ln for ln in step.run.splitlines() if "rclone config create" in ln)
    assert line.rstrip(")").endswith("--non-interactive")
    for word in ("shared_with_me=true", "config_refresh_token=false", "config_change_team_drive=false"):
        assert word in line
    inline = R.remote_step("gd", Remote(type="drive", options={"token": '{"access_token": "ya29.x"}'}))
    assert "ya29" not in inline.run and "process list" in inline.run and "exit 2" in inline.run


def test_step_fails_when_rclone_stops_to_ask(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """rclone exits 0 but stops at "Use auto config?" when a drive remote has no credential
    (and the tunnel login is off): the shipped check turns that into a failed step."""
    step = R.remote_step("gd", Remote(type="drive", options={"scope": "drive.readonly", "env_auth": False}))
    r = host_run(step.run, tmp_path, host_env(conf_env))
    assert r.returncode == 1, r.stderr
    assert "remote 'gd' is incomplete: rclone stopped to ask for 'config_is_local'" in r.stderr
    assert "token_file" in r.stderr and "configured" not in r.stdout


def test_host_without_python3_is_told_before_rclone_runs(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """The State check needs python3 on the host; without it the step says so first,
    before rclone could stop half-way through a login."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "rclone").symlink_to(RCLONE)  # rclone, but no python3 on this "host"
    step = R.remote_step("gd", Remote(type="drive", options={"scope": "drive.readonly", "env_auth": False}))
    r = subprocess.run(["/bin/bash", "-euo", "pipefail", "-c", step.run], capture_output=True, text=True, timeout=60,
                       env={**conf_env, "HOME": str(tmp_path), "PATH": str(bindir)})
    assert r.returncode == 1
    assert "python3 is needed" in r.stderr and "apt-get install python3" in r.stderr
    assert not (tmp_path / "rclone.conf").exists()  # rclone never ran


def test_shipped_state_check_edge_cases() -> None:
    ok = state_check('{"State": "", "Option": null, "Error": "", "Result": ""}')
    assert ok.returncode == 0 and ok.stderr == ""
    boom = state_check('{"State": "", "Option": null, "Error": "boom"}')
    assert boom.returncode == 1 and "(boom)" in boom.stderr
    asked = state_check('{"State": "*oauth-islocal,x", "Option": {"Name": "config_token", "Help": "SECRET-HELP"}}')
    assert asked.returncode == 1 and "'config_token'" in asked.stderr and "gpuwizard rclone" in asked.stderr
    assert "SECRET-HELP" not in asked.stderr  # Help can embed authorize blobs: never printed
    for junk in ("2021/01/01 NOTICE: something", "[1]", ""):
        r = state_check(junk)
        assert r.returncode == 1 and "1.56" in r.stderr


def test_state_check_program_is_the_module_the_tests_import() -> None:
    assert config_state_program() == pathlib.Path(config_state.__file__).read_text(encoding="utf-8")
    assert config_state.problem('{"State": ""}', "gd") is None


def test_service_account_completes(conf_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "client_email": "x@p.iam.gserviceaccount.com",
                              "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"}))
    home = tmp_path / "host-home"
    step = R.remote_step("gsa", Remote(type="drive", options={
        "scope": "drive.readonly", "service_account_file": str(sa), "root_folder_id": "1AbCdEfGhIjKlMnOp"}))
    upload(step, home)
    r = host_run(step.run, home, host_env(conf_env))
    assert r.returncode == 0, r.stderr
    gsa = config_dump(conf_env)["gsa"]
    assert gsa["service_account_file"] == str(home / ".config/gpuwizard/secrets/gsa.service_account")
    assert gsa["root_folder_id"] == "1AbCdEfGhIjKlMnOp"


def test_local_authorize_through_fake_oauth(rclone_env: dict[str, str], fake_oauth: FakeOAuth,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
                                            rclone_auth_port: int) -> None:
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
    conf_env = {**rclone_env, "RCLONE_CONFIG": str(tmp_path / "r.conf")}
    step = R.remote_step("gd", Remote(type="drive", options={k: v for k, v in opts.items() if k != "type"}))
    home = tmp_path / "host-home"
    upload(step, home)
    r = host_run(step.run, home, host_env(conf_env))
    assert r.returncode == 0, r.stderr
    assert config_dump(conf_env)["gd"]["client_id"] == "123-abc.apps.googleusercontent.com"


def test_tunnel_step_logs_in_on_the_host(conf_env: dict[str, str], fake_oauth: FakeOAuth, tmp_path: pathlib.Path,
                                         rclone_auth_port: int) -> None:
    """Mode (c): the remote step without a credential runs config_is_local=true on the
    host, which waits on 127.0.0.1:53682 for the redirect that the user's browser sends
    through `ssh -L 53682:localhost:53682`; the shipped State check then passes."""
    step = R.remote_step("gd", Remote(type="drive", options={
        "scope": "drive.readonly", "auth_url": fake_oauth.auth_url, "token_url": fake_oauth.token_url}))
    assert step.check and "ssh -L 53682:localhost:53682" in step.run
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", step.run],
                            env={**host_env(conf_env), "HOME": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"http://127\.0\.0\.1:53682/auth\?state=\S+", line)
            if m:
                url = m.group(0)
                break
        assert url, "rclone printed no login link"
        try:
            play_browser(url)
        except OSError as exc:  # say what rclone said, not only "connection refused"
            proc.kill()
            rest = proc.communicate()[1]
            raise AssertionError(f"rclone's login listener never answered ({exc}); rclone said: {rest}") from exc
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "rclone remote gd configured" in out
    gd = config_dump(conf_env)["gd"]
    assert json.loads(gd["token"])["access_token"] == fake_oauth.access_token
    # the step's check now says "done": a re-run never replaces the working token
    assert host_run(step.check, tmp_path, host_env(conf_env)).returncode == 0


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


def test_authorize_can_be_cancelled_and_frees_the_port(fake_oauth: FakeOAuth, rclone_auth_port: int) -> None:
    spec = R.DriveRemoteSpec(name="gd", auth="local")
    cancel = threading.Event()
    url_seen = threading.Event()
    errors: list[Exception] = []

    def login() -> None:
        try:
            R.authorize_local(spec, rclone=RCLONE, on_url=lambda _url: url_seen.set(), open_browser=False,
                              timeout=120, extra_env=fake_oauth.env(), cancel=cancel)
        except R.RcloneError as exc:
            errors.append(exc)

    t = threading.Thread(target=login)
    t.start()
    try:
        assert url_seen.wait(60), "rclone printed no login link"
    finally:
        cancel.set()  # the user closes the dialog instead of logging in
        t.join(60)
    assert not t.is_alive()
    assert [str(e) for e in errors] == ["login cancelled"]  # cancelled, not the 120 s deadline
    with socket.socket() as s:  # rclone no longer holds its redirect port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", rclone_auth_port))
