"""A recipe secret named by an environment variable (``pass_env: DAVPASS``) stays off disk.

``gpuwizard plan`` is pure: it writes no file (the variable is not even read). At run
time the executor reads the variable and sends its value to the host from memory,
0600, masked in every event and log; an unset variable fails the step with one sentence.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pathlib
import pwd
import subprocess
import sys

import pytest

from gpuwizard import events as ev
from gpuwizard import rclone as R
from gpuwizard import recipe as RR
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.headless import Fanout, JsonRenderer, LineRenderer
from gpuwizard.runlog import RunDir
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step, Upload

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)

RECIPE = """version: 1
name: envsecret
target: {ssh: {hosts: ['gwtest@127.0.0.1']}}
rclone:
  remotes:
    dav: {type: webdav, url: 'http://127.0.0.1:9/', user: u, pass_env: DAVPASS}
datasets:
  - {from: 'dav:d.bin', to: '~/data'}
"""


def _files(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("json_out", [False, True])
def test_plan_writes_no_secret_file(tmp_path: pathlib.Path, json_out: bool) -> None:
    value = "gwt-envpass-" + os.urandom(6).hex()
    (tmp_path / "r.yaml").write_text(RECIPE)
    cfg, home = tmp_path / "cfg", tmp_path / "home"
    cfg.mkdir()
    home.mkdir()
    env = dict(os.environ, XDG_CONFIG_HOME=str(cfg), HOME=str(home), DAVPASS=value, PYTHONPATH=str(ROOT),
               XDG_STATE_HOME=str(tmp_path / "state"))
    p = subprocess.run([sys.executable, "-m", "gpuwizard.cli", "plan", "r.yaml", *(["--json"] if json_out else [])],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=50, check=False)
    assert p.returncode == 0, p.stderr
    assert _files(cfg) == [] and _files(home) == []
    assert value not in p.stdout + p.stderr
    assert "$DAVPASS" in p.stdout  # the plan says where the upload comes from


def test_steps_upload_from_the_variable_without_reading_it(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("DAVPASS", raising=False)  # plan time: need not be set at all
    steps = R.steps(RR.loads(RECIPE))
    assert _files(tmp_path) == []
    for s in steps[1:]:
        (up,) = s.uploads
        assert (up.env, up.remote, up.mode, up.secret) == ("DAVPASS", "~/.config/gpuwizard/secrets/dav.pass",
                                                           0o600, True)
        assert "is not set" not in s.run  # not a failing step: whether it is set is the run's business
        assert "rclone obscure - <" in s.run


def _run_step(host, step, rd=None):

    spec = HostSpec(name="h", address=host.address, port=host.port, user=host.user, identity=host.client_key,
                    known_hosts=host.known_hosts)
    events: list[ev.Event] = []

    def sink(e: ev.Event) -> None:
        events.append(e)
        if rd is not None:
            rd(e)

    ok = asyncio.run(Executor([spec], [step], sink, ExecOptions(connect_timeout=15)).run())
    return ok, events


def test_env_upload_reaches_the_host_0600_and_is_masked(sshd_user_host, tmp_path, monkeypatch) -> None:
    """Through the runner's own pieces (RunDir + renderers): events.jsonl, the host log and
    both renderers never hold the value, though the step prints it."""

    value = "gwt-envpass-" + os.urandom(8).hex()
    monkeypatch.setenv("GWT_UPLOAD_VALUE", value)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    remote = "~/.config/gpuwizard/secrets/gwtenv.pass"
    step = Step("use", "use", f'cat {remote.replace("~", "$HOME")}; echo; echo done',
                uploads=(Upload("$GWT_UPLOAD_VALUE", remote, env="GWT_UPLOAD_VALUE"),))
    rd = RunDir.create(None, "name: x\n", "x", base=tmp_path / "runs")
    rd.set_plan({"h": [step]})
    lines, js = io.StringIO(), io.StringIO()
    host_file = pathlib.Path(pwd.getpwnam(sshd_user_host.user).pw_dir) / ".config/gpuwizard/secrets/gwtenv.pass"
    try:
        ok, events = _run_step(sshd_user_host, step, Fanout(rd, LineRenderer(lines), JsonRenderer(js)))
        rd.close()
        assert ok
        assert host_file.read_text() == value
        assert host_file.stat().st_mode & 0o777 == 0o600
    finally:
        host_file.unlink(missing_ok=True)
    for text in [(rd.path / "events.jsonl").read_text(), rd.host_log_path("h").read_text(),
                 lines.getvalue(), js.getvalue(), json.dumps([e.to_dict() for e in events])]:
        assert value not in text
    assert "done" in rd.host_log_path("h").read_text()
    assert not (tmp_path / "cfg").exists()


def test_unset_variable_fails_the_step_with_one_sentence(sshd_user_host, monkeypatch) -> None:

    monkeypatch.delenv("GWT_NOT_SET", raising=False)
    step = Step("use", "use", "echo should-not-run",
                uploads=(Upload("$GWT_NOT_SET", "~/.config/gpuwizard/secrets/gwtunset", env="GWT_NOT_SET"),))
    ok, events = _run_step(sshd_user_host, step)
    assert not ok
    (fin,) = [e for e in events if isinstance(e, ev.StepFinished)]
    assert fin.status == "failed"
    assert "environment variable GWT_NOT_SET is not set" in fin.message
    assert not any(isinstance(e, ev.Output) and "should-not-run" in e.data for e in events)
