"""Pure-logic parts of gpuwizard.rclone and the secret store: validation, token
parsing, error explanations, and the shell the steps contain (run against a fake
`rclone` on PATH that records its argv)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import stat
import subprocess

import pytest

from gpuwizard import rclone as R
from gpuwizard import recipe as RR
from gpuwizard import locations, secretstore
from gpuwizard.drive_scopes import DRIVE_SCOPES, OFFERED_SCOPES

FID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
TOKEN = {"access_token": "ya29.abcdefghijklmnopqrstuvwxyz", "token_type": "Bearer",
         "refresh_token": "1//0abcdefghijklmnopqrstuvwxyz", "expiry": "2099-01-01T00:00:00Z"}


# ---------------------------------------------------------------- tokens and validation

def test_parse_token_forms() -> None:
    raw = json.dumps(TOKEN)
    assert json.loads(R.parse_token_text(raw)) == TOKEN
    pasted = f"Paste the following into your remote machine --->\n{raw}\n<---End paste\n"
    assert json.loads(R.parse_token_text(pasted)) == TOKEN
    blob = base64.b64encode(json.dumps({"token": raw}).encode()).decode().rstrip("=")
    assert json.loads(R.parse_token_text(blob)) == TOKEN


@pytest.mark.parametrize("text,words", [
    ("", "nothing pasted"),
    ("not a token", "neither token JSON"),
    ('{"access_token": "x"', "not valid JSON"),
    ('{"foo": 1}', "no access_token"),
    ('{"access_token": "ya29.x"}', "refresh_token"),
])
def test_bad_tokens(text: str, words: str) -> None:
    assert words in (R.validate_token_text(text) or "")


def test_spec_validation_messages(tmp_path: pathlib.Path) -> None:
    s = R.DriveRemoteSpec(name="my drive", scope="drive.metadata.readonly", client_id="abc",
                          root_folder_id=f"https://drive.google.com/file/d/{FID}/view", team_drive="xyz",
                          shared_with_me=True, auth="paste", token="")
    p = s.validate()
    assert set(p) >= {"name", "scope", "client_id", "root_folder_id", "team_drive", "shared_with_me", "token"}
    assert "environment variable" in p["name"] and "link to a file" in p["root_folder_id"]
    ok = R.DriveRemoteSpec(root_folder_id=f"https://drive.google.com/drive/u/0/folders/{FID}", auth="paste",
                           token=json.dumps(TOKEN))
    assert ok.validate() == {} and ok.plain_options()["root_folder_id"] == FID
    sa = tmp_path / "sa.json"
    sa.write_text('{"type": "authorized_user"}')
    assert "not a service-account key" in R.DriveRemoteSpec(auth="service_account", service_account_file=str(sa)).validate()["service_account_file"]


def test_authorize_env_keeps_secret_off_argv() -> None:
    s = R.DriveRemoteSpec(client_id="1-a.apps.googleusercontent.com", client_secret="GOCSPX-secretsecret")
    env = s.authorize_env()
    assert env["RCLONE_DRIVE_CLIENT_SECRET"] == "GOCSPX-secretsecret" and env["RCLONE_DRIVE_SCOPE"] == "drive.readonly"
    assert "GOCSPX" not in s.authorize_command_text()


def test_save_is_all_or_nothing_and_private(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "secrets"
    bad = R.DriveSetup(R.DriveRemoteSpec(auth="paste", token="junk"), secrets_dir=d)
    with pytest.raises(R.RcloneError):
        bad.save()
    assert not d.exists()
    good = R.DriveSetup(R.DriveRemoteSpec(name="gd", client_id="1-a.apps.googleusercontent.com",
                                          client_secret="GOCSPX-secretsecret", auth="paste",
                                          token=json.dumps(TOKEN)), secrets_dir=d)
    opts = good.save()
    assert set(opts) == {"type", "scope", "client_id", "client_secret_file", "token_file"}
    for name in ("gd.token.json", "gd.client_secret"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    frag = good.recipe_fragment(opts)
    assert "ya29" not in frag and "GOCSPX" not in frag
    # the fragment loads as part of a recipe (the loader refuses inline secrets)
    body = frag.replace(str(d), "~/s")
    RR.loads("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\n" + body)


# ---------------------------------------------------------------- secret store

def test_secretstore_honours_xdg_and_is_atomic(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert locations.secrets_dir() == tmp_path / "xdg/gpuwizard/secrets"
    p = secretstore.write_secret("a.json", "one")
    p2 = secretstore.write_secret("a.json", "two")
    assert p == p2 and p.read_text() == "two" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert [x.name for x in p.parent.iterdir()] == ["a.json"]  # no temp files left
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert secretstore.write_secret("b.json", "x") == pathlib.Path.home() / ".config/gpuwizard/secrets/b.json"
    with pytest.raises(secretstore.SecretStoreError):
        secretstore.write_secret("../escape", "x")
    os.chmod(p, 0o644)
    assert "chmod 600" in (secretstore.check_private(p) or "")


# ---------------------------------------------------------------- error explanations

@pytest.mark.parametrize("text,words", [
    ('googleapi: Error 403: The download quota for this file has been exceeded., downloadQuotaExceeded', "24 hours"),
    ("Error 403: User Rate Limit Exceeded, userRateLimitExceeded", "own client_id"),
    ('oauth2: cannot fetch token: 400 Bad Request Response: {"error": "invalid_grant"}', "gpuwizard rclone"),
    ("error reading source directory: directory not found", "Nothing was found"),
    ("Failed to create file system for \"gd:\": didn't find section in config file", "not configured"),
    ("can't copy directory use: rclone copy --drive-root-folder-id ID gd: DEST", "folder"),
    ("write /data/x: no space left on device", "disk is full"),
])
def test_explain_rclone_error(text: str, words: str) -> None:
    assert words in (R.explain_rclone_error(text) or "")


def test_explain_unknown_is_none() -> None:
    assert R.explain_rclone_error("everything fine") is None and R.explain_rclone_error("") is None


# ---------------------------------------------------------------- steps

def recipe(datasets: list[RR.Dataset], remotes: dict[str, RR.Remote] | None = None, version: str | None = None) -> RR.Recipe:
    remotes = remotes if remotes is not None else {"gd": RR.Remote(type="drive", options={"scope": "drive.readonly",
                                                                                         "token_file": "/x/t.json"})}
    return RR.Recipe(name="t", target=RR.Target(ssh=RR.SshTarget(hosts=["u@h"])),
                     rclone=RR.Rclone(remotes=remotes, version=version), datasets=datasets)


def test_step_ids_and_shapes() -> None:
    r = recipe([RR.Dataset(from_="gd:st-gcn/data.zip", to="~/data/", unzip=True),
                RR.Dataset(from_=f"https://drive.google.com/file/d/{FID}/view", remote="gd", to="~/data/"),
                RR.Dataset(from_="gd:other/data.zip", to="~/d2/")], version="1.66.0")
    steps = R.steps(r)
    assert [s.id for s in steps] == ["rclone.install", "rclone.remote.gd", "dataset.data-zip",
                                     f"dataset.{FID[:12].lower()}", "dataset.data-zip-2"]
    inst = steps[0]
    assert "v1.66.0" in inst.run and "sha256sum -c" in inst.run and inst.check
    for s in steps[2:]:
        assert s.progress == "rclone" and s.check and ".done" in s.check
        assert [u.remote for u in s.uploads] == ["~/.config/gpuwizard/secrets/gd.token"]
        assert "--use-json-log --stats 1s" in s.run
    assert "backend copyid gd: " in steps[3].run
    assert R.steps(RR.Recipe(name="t")) == []


def test_secret_env_indirection(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KEY_env: the step uploads the variable's value at run time (Upload.env); planning
    writes no file and does not depend on the variable being set."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("MY_S3_SECRET", "abcdefSECRET123")
    opts = {"provider": "AWS", "access_key_id": "AK", "secret_access_key_env": "MY_S3_SECRET"}
    st = R.remote_step("s3x", RR.Remote(type="s3", options=opts))
    assert "abcdefSECRET123" not in st.run
    (up,) = st.uploads
    assert (up.env, up.local, up.mode, up.secret) == ("MY_S3_SECRET", "$MY_S3_SECRET", 0o600, True)
    assert up.remote == "~/.config/gpuwizard/secrets/s3x.secret_access_key"
    assert list(tmp_path.rglob("*")) == []
    assert "RCLONE_CONFIG_S3X_SECRET_ACCESS_KEY=$(<" in st.run
    monkeypatch.delenv("MY_S3_SECRET")
    assert R.remote_step("s3x", RR.Remote(type="s3", options=opts)) == st


def test_remote_name_with_dash_and_secrets_is_refused() -> None:
    st = R.remote_step("my-gd", RR.Remote(type="drive", options={"token_file": "/x"}))
    assert "letters, digits and _" in st.run and "exit 2" in st.run


def test_service_account_file_is_uploaded_and_given_as_path() -> None:
    st = R.remote_step("gsa", RR.Remote(type="drive", options={"service_account_file": "~/.config/gpuwizard/secrets/sa.json"}))
    assert st.uploads[0].remote == "~/.config/gpuwizard/secrets/gsa.service_account"
    assert 'service_account_file="$HOME"/.config/gpuwizard/secrets/gsa.service_account' in st.run
    assert "config_is_local=true" not in st.run  # a credential is given: no tunnel login


def test_drive_without_credentials_is_tunnel_mode() -> None:
    st = R.remote_step("gd", RR.Remote(type="drive", options={"scope": "drive.readonly"}))
    assert "config_is_local=true" in st.run and "ssh -L 53682:localhost:53682" in st.run
    assert st.check and "token = " in st.check  # a working token on the host is never replaced


FAKE_RCLONE = r"""#!/bin/bash
printf '%s\n' "$*" >> "$GW_FAKE_LOG"
if [ "$1" = backend ] && [ "$2" = copyid ] && [ -n "${GW_FAKE_FOLDER:-}" ]; then
  echo "2026/01/01 ERROR : can't copy directory use: rclone copy --drive-root-folder-id ID gd: DEST" >&2; exit 1
fi
if [ "$1" = copy ] || [ "$1" = backend ]; then
  echo '{"level":"info","msg":"x","stats":{"bytes":10,"totalBytes":10,"transfers":1,"totalTransfers":1}}' >&2
fi
exit 0
"""


def run_fake(step_run: str, tmp_path: pathlib.Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "rclone").write_text(FAKE_RCLONE)
    (bindir / "rclone").chmod(0o755)
    home = tmp_path / "home"
    sec = home / ".config/gpuwizard/secrets"
    sec.mkdir(parents=True, exist_ok=True)
    (sec / "gd.token").write_text(json.dumps(TOKEN))
    log = tmp_path / "argv.log"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", step_run], capture_output=True, text=True, timeout=30,
                       env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(home), "GW_FAKE_LOG": str(log), **env})
    return r, log.read_text().splitlines() if log.exists() else []


def test_file_link_uses_copyid_and_folder_link_connection_string(tmp_path: pathlib.Path) -> None:
    r = recipe([RR.Dataset(from_=f"https://drive.google.com/file/d/{FID}/view?resourcekey=RK-1", remote="gd", to="~/a"),
                RR.Dataset(from_=f"https://drive.google.com/drive/folders/{FID}", remote="gd", to="~/b")])
    f, d = R.steps(r)[2:]
    res, argv = run_fake(f.run, tmp_path)
    assert res.returncode == 0, res.stderr
    assert argv[0].startswith(f"backend copyid gd: {FID} {tmp_path}/home/a/ --drive-resource-key RK-1")
    assert TOKEN["access_token"] not in "\n".join(argv)
    res, argv = run_fake(d.run, tmp_path)
    assert res.returncode == 0, res.stderr
    assert any(a.startswith(f"copy gd,root_folder_id={FID}: {tmp_path}/home/b") for a in argv)
    assert any(a.startswith(f"check gd,root_folder_id={FID}: ") for a in argv)


def test_unknown_link_falls_back_to_folder_copy(tmp_path: pathlib.Path) -> None:
    st = R.steps(recipe([RR.Dataset(from_=f"https://drive.google.com/open?id={FID}", remote="gd", to="~/c")]))[-1]
    res, argv = run_fake(st.run, tmp_path, GW_FAKE_FOLDER="1")
    assert res.returncode == 0, res.stderr
    assert argv[0].startswith("backend copyid") and argv[1].startswith(f"copy gd,root_folder_id={FID}:")
    assert "the link is a folder" in res.stdout


def test_failure_prints_hint_and_exit_code(tmp_path: pathlib.Path) -> None:
    st = R.steps(recipe([RR.Dataset(from_=f"https://drive.google.com/file/d/{FID}/view", remote="gd", to="~/e")]))[-1]
    run_fake(st.run, tmp_path)  # sets up bin/ and the uploaded token
    bindir = tmp_path / "bin"
    (bindir / "rclone").write_text("#!/bin/bash\necho 'Error 403: downloadQuotaExceeded' >&2; exit 7\n")
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", st.run], capture_output=True, text=True, timeout=30,
                         env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    assert res.returncode == 7
    assert "download quota is used up" in res.stderr and "re-run the step to resume" in res.stderr




def test_drive_scopes_are_one_table() -> None:
    """The recipe checker, the set-up's choices and their explanations read one table."""
    assert set(R.SCOPES) == set(DRIVE_SCOPES) and list(R.SCOPE_LABELS) == OFFERED_SCOPES
    assert "drive.metadata.readonly" not in R.SCOPE_LABELS  # offered nowhere: it cannot download

    def load(scope: str) -> RR.Recipe:
        return RR.loads("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\n"
                        f"rclone: {{remotes: {{gd: {{type: drive, scope: {scope}, token_file: /t}}}}}}\n")

    for scope in DRIVE_SCOPES:
        assert load(scope).rclone.remotes["gd"].options["scope"] == scope
    with pytest.raises(RR.RecipeError) as exc:
        load("drive.photos")
    assert "rclone.remotes.gd.scope" in str(exc.value) and all(s in str(exc.value) for s in DRIVE_SCOPES)
