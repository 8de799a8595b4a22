"""Dataset steps end to end: rclone.steps(recipe) run by the real executor on a real
sshd host (as the unprivileged gwtest user), copying from a local ``rclone serve``.

Checks: Progress events grow monotonically to 100 %; the copied file's hash matches;
an interrupted copy resumes without re-copying finished files; archives are extracted;
a secret (webdav password) never appears in argv, events or the recipe, and its files
are 0600 locally and on the host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import zipfile
from typing import Iterator

import pytest

from gpuwizard import events as ev
from gpuwizard import rclone as R
from gpuwizard import recipe as RR
from gpuwizard import secretstore
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec
from tests.fixtures.rclone_servers import RCLONE

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed")]


@dataclasses.dataclass
class HostDirs:
    root: pathlib.Path     # a private scratch dir owned by the host user
    conf: str              # RCLONE_CONFIG for the host side


@pytest.fixture
def host_dirs(sshd_user_host) -> Iterator[HostDirs]:
    pw = pwd.getpwnam(sshd_user_host.user)
    root = pathlib.Path(tempfile.mkdtemp(prefix="gw-rclone-host-"))
    os.chown(root, pw.pw_uid, pw.pw_gid)
    secrets = pathlib.Path(pw.pw_dir) / ".config/gpuwizard/secrets"
    try:
        yield HostDirs(root, str(root / "rclone.conf"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for p in secrets.glob("gwt*"):
            p.unlink()


def recipe_for(remotes: dict[str, RR.Remote], datasets: list[RR.Dataset]) -> RR.Recipe:
    return RR.Recipe(name="rclone-e2e", target=RR.Target(ssh=RR.SshTarget(hosts=["gwtest@127.0.0.1"])),
                     rclone=RR.Rclone(remotes=remotes), datasets=datasets)


def run_steps(host, steps, conf: str, on_event=None) -> tuple[bool, list[ev.Event]]:
    steps = [dataclasses.replace(s, env=s.env + (("RCLONE_CONFIG", conf),)) for s in steps]
    events: list[ev.Event] = []
    spec = HostSpec(name="h", address=host.address, port=host.port, user=host.user,
                    identity=host.client_key, known_hosts=host.known_hosts)
    ex: Executor

    def sink(e: ev.Event) -> None:
        events.append(e)
        if on_event:
            on_event(e, ex)

    ex = Executor([spec], steps, sink, ExecOptions(connect_timeout=15))
    return asyncio.run(ex.run()), events


def statuses(events) -> dict[str, str]:
    return {e.step: e.status for e in events if isinstance(e, ev.StepFinished)}


def out_text(events, step: str) -> str:
    return "".join(e.data for e in events if isinstance(e, ev.Output) and e.step == step)


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def makefile(path: pathlib.Path, size: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([RCLONE, "test", "makefile", size, str(path), "--sparse", "--seed", "7"], check=True,
                   capture_output=True, env={**os.environ, "RCLONE_CONFIG": os.devnull})


def test_200mb_copy_progress_and_hash(sshd_user_host, host_dirs: HostDirs, rclone_serve, tmp_path) -> None:
    src = tmp_path / "src"
    makefile(src / "big.bin", "200M")
    served = rclone_serve("http", src, bwlimit="100M")
    dest = host_dirs.root / "data"
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:big.bin", to=str(dest) + "/")])
    steps = R.steps(r)
    assert [s.id for s in steps] == ["rclone.install", "rclone.remote.srv", "dataset.big-bin"]
    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)
    assert ok, (statuses(events), out_text(events, 'dataset.big-bin')[-3000:])
    assert statuses(events) == {"rclone.install": "skipped", "rclone.remote.srv": "ok", "dataset.big-bin": "ok"}
    prog = [e for e in events if isinstance(e, ev.Progress) and e.step == "dataset.big-bin"]
    fr = [p.fraction for p in prog]
    assert len(prog) >= 2 and fr == sorted(fr) and fr[-1] == 1.0, fr
    assert prog[-1].bytes_done == prog[-1].bytes_total == 200 * 1024 * 1024
    assert any(p.speed for p in prog)
    assert sha256(dest / "big.bin") == sha256(src / "big.bin")
    assert "verifying" in out_text(events, "dataset.big-bin")
    # a second run is a no-op: the check finds the done marker
    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)
    assert ok and statuses(events)["dataset.big-bin"] == "skipped"


def test_interrupted_copy_resumes(sshd_user_host, host_dirs: HostDirs, rclone_serve, tmp_path) -> None:
    src = tmp_path / "src"
    makefile(src / "set/a.bin", "4M")
    makefile(src / "set/b.bin", "120M")
    served = rclone_serve("http", src, bwlimit="60M")
    dest = host_dirs.root / "ds"
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:set", to=str(dest))])
    steps = R.steps(r)
    sid = steps[-1].id

    def cancel_after_a(e: ev.Event, ex: Executor) -> None:
        if isinstance(e, ev.Output) and '"object":"a.bin"' in e.data and "Copied" in e.data:
            ex.cancel()

    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf, on_event=cancel_after_a)
    assert not ok and statuses(events)[sid] == "cancelled"
    assert (dest / "a.bin").stat().st_size == 4 * 1024 * 1024
    a_inode = (dest / "a.bin").stat().st_ino
    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)
    assert ok, out_text(events, sid)[-2000:]
    text = out_text(events, sid)
    assert '"object":"b.bin"' in text and '"object":"a.bin"' not in text  # a.bin was not copied again
    assert (dest / "a.bin").stat().st_ino == a_inode
    assert sha256(dest / "b.bin") == sha256(src / "set/b.bin")


def test_unzip_and_untar(sshd_user_host, host_dirs: HostDirs, rclone_serve, tmp_path) -> None:
    src = tmp_path / "src/archives"
    src.mkdir(parents=True)
    with zipfile.ZipFile(src / "data.zip", "w") as z:
        z.writestr("train/x.txt", "zip content\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("labels/y.txt")
        payload = b"tar content\n"
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    (src / "more.tar.gz").write_bytes(buf.getvalue())
    (src / "README").write_text("plain file\n")
    served = rclone_serve("http", src.parent)
    dest = host_dirs.root / "unz"
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:archives", to=str(dest), unzip=True)])
    ok, events = run_steps(sshd_user_host, R.steps(r), host_dirs.conf)
    assert ok, out_text(events, "dataset.archives")[-2000:]
    assert (dest / "train/x.txt").read_text() == "zip content\n"
    assert (dest / "labels/y.txt").read_text() == "tar content\n"
    assert (dest / "README").read_text() == "plain file\n"
    assert "2 archive(s) extracted" in out_text(events, "dataset.archives")
    assert list((dest / ".gpuwizard").glob("stage-*")) == []  # the downloaded archives do not stay behind
    ok, events = run_steps(sshd_user_host, R.steps(r), host_dirs.conf)  # a re-run is skipped, not re-downloaded
    assert ok and "archive(s) extracted" not in out_text(events, "dataset.archives")


def test_damaged_zip_fails_the_step_and_is_never_marked_done(sshd_user_host, host_dirs: HostDirs, rclone_serve,
                                                             tmp_path) -> None:
    """unzip exits 3 for a damaged zip: that must fail the step (and a re-run must try
    again), not pass the archive off as a plain file and mark the dataset ready."""
    src = tmp_path / "src/bad"
    src.mkdir(parents=True)
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("train/x.txt", "zip content\n" * 50)
    data = bytearray(good.getvalue())
    data[len(data) - 22 + 10] = 0  # zero entries in the end record: unzip exits 3, "zipfile corrupt"
    (src / "data.zip").write_bytes(bytes(data))
    served = rclone_serve("http", src.parent)
    dest = host_dirs.root / "badz"
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:bad", to=str(dest), unzip=True, checksum=False)])
    steps = R.steps(r)
    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)
    assert not ok
    assert "could not extract data.zip" in out_text(events, "dataset.bad")
    assert not list((dest / ".gpuwizard").glob("*.done"))
    ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)  # the check does not skip it
    assert not ok and "could not extract data.zip" in out_text(events, "dataset.bad")


def test_missing_path_gives_clear_hint(sshd_user_host, host_dirs: HostDirs, rclone_serve, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    served = rclone_serve("http", tmp_path / "empty")
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:nope/", to=str(host_dirs.root / "x"))])
    ok, events = run_steps(sshd_user_host, R.steps(r), host_dirs.conf)
    assert not ok
    err = "".join(e.data for e in events if isinstance(e, ev.Output) and e.step == "dataset.nope")
    assert "gpuwizard: Nothing was found at that path" in err
    assert R.explain_rclone_error(err) is not None


@pytest.mark.parametrize("route", ["file", "env"])
def test_secret_never_leaks(sshd_user_host, host_dirs: HostDirs, rclone_serve, tmp_path, monkeypatch, route) -> None:
    """route "file": pass_file names a 0600 file; route "env": pass_env names an
    environment variable, read only at run time and sent from memory (no local file)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    password = "gwt-S3cret-" + os.urandom(6).hex()
    src = tmp_path / "src"
    makefile(src / "d.bin", "60M")
    served = rclone_serve("webdav", src, bwlimit="40M", user="u", password=password)
    if route == "file":
        pw_file = secretstore.write_secret("gwt.dav.pass", password)
        assert pw_file.stat().st_mode & 0o777 == 0o600
        assert secretstore.check_private(pw_file) is None
        secret_opt = {"pass_file": secretstore.display_path(pw_file)}
    else:
        monkeypatch.setenv("GWT_DAVPASS", password)
        secret_opt = {"pass_env": "GWT_DAVPASS"}
    remote = RR.Remote(type="webdav", options={**served.remote_options, **secret_opt})
    r = recipe_for({"gwtdav": remote}, [RR.Dataset(from_="gwtdav:d.bin", to=str(host_dirs.root / "w"))])
    yaml_text = RR.dumps(r)
    assert password not in yaml_text
    RR.loads(yaml_text)  # the recipe with pass_file is valid
    steps = R.steps(r)
    assert all(password not in (s.run + (s.check or "")) for s in steps)
    if route == "env":
        assert not (tmp_path / "cfg").exists()  # planning wrote nothing
    seen_argv: list[str] = []
    stop = threading.Event()

    def watch_ps() -> None:  # what `ps -eo args` shows, sampled during the whole run
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            seen_argv.append(fh.read().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.05)

    t = threading.Thread(target=watch_ps, daemon=True)
    t.start()
    try:
        ok, events = run_steps(sshd_user_host, steps, host_dirs.conf)
    finally:
        stop.set()
        t.join()
    assert ok, out_text(events, "dataset.d-bin")[-2000:]
    assert any("rclone copy" in a for a in seen_argv)  # the sampler did see the copy running
    leaked = [a for a in seen_argv if password in a and "serve webdav" not in a]  # the test server's own argv aside
    assert not leaked
    assert password not in json.dumps([e.to_dict() for e in events])
    pw = pwd.getpwnam(sshd_user_host.user)
    host_file = pathlib.Path(pw.pw_dir) / ".config/gpuwizard/secrets/gwtdav.pass"
    assert host_file.stat().st_mode & 0o777 == 0o600 and host_file.stat().st_uid == pw.pw_uid
    assert password not in pathlib.Path(host_dirs.conf).read_text()  # rclone.conf holds no secret either
    assert sha256(host_dirs.root / "w/d.bin") == sha256(src / "d.bin")
    if route == "env":
        assert not (tmp_path / "cfg").exists()  # nor did the run, locally


def test_destination_outside_home_without_sudo_says_what_to_do(sshd_user_host, host_dirs: HostDirs, rclone_serve,
                                                               tmp_path) -> None:
    """gwtest may not write /var/lib/... and has no sudo: one clear sentence, not mkdir's error alone."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.txt").write_text("x\n")
    served = rclone_serve("http", tmp_path / "srv")
    r = recipe_for({"srv": RR.Remote(type="http", options=served.remote_options)},
                   [RR.Dataset(from_="srv:f.txt", to="/var/lib/gpuwizard-test-not-allowed/data")])
    ok, events = run_steps(sshd_user_host, R.steps(r), host_dirs.conf)
    assert not ok
    text = "".join(e.data for e in events if isinstance(e, ev.Output) and e.step.startswith("dataset."))
    assert "cannot create /var/lib/gpuwizard-test-not-allowed/data as gwtest" in text
    assert "choose a folder under ~" in text
