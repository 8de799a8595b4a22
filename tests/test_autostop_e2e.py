"""The auto-stop agent end to end: installed by its plan step over a real sshd, then left alone.

No systemd here, so the install step starts the agent detached (its non-systemd branch); the
agent's paths live under a per-test root, the interval is short and ``poweroff`` is a shim that
writes a marker. The delete action and the preemption notice run the agent as a process against
the fake metadata server and the fake Compute server over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from gpuwizard.autostop import settings
from gpuwizard.autostop.settings import Where
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step

pytestmark = pytest.mark.timeout(120)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_steps(host, steps: list[Step]) -> bool:
    spec = HostSpec(name="h0", address=host.address, port=host.port, user=host.user,
                    identity=host.client_key, known_hosts=host.known_hosts)
    ex = Executor([spec], steps, lambda e: None, ExecOptions(connect_timeout=15))
    return asyncio.run(ex.run())


def state(root: pathlib.Path) -> dict:
    try:
        return json.loads((root / settings.STATE_PATH).read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture
def agent_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    yield root
    pid = root / settings.PID_PATH
    if pid.exists():
        try:
            os.kill(int(pid.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def install(host, root: pathlib.Path, *, idle_s: int = 3, before: str | None = None) -> pathlib.Path:
    marks = root / "marks"
    cfg = settings.agent_config(
        idle_s=idle_s, action="stop", max_runtime_s=None, gpu_busy_percent=10, before=before,
        where=Where(target="ssh", ssh_ports=(host.port,), login_user="root"), interval_s=0.3,
        poweroff_command=("bash", "-c", f"echo poweroff >> {marks}"))
    cfg["jupyter_runtime"] = []
    assert run_steps(host, [settings.install_step(cfg, root=str(root))])
    wait_for(lambda: state(root), 20, "the agent's first tick")
    return marks


def test_idle_runs_before_then_powers_off(sshd_host, agent_root):
    marks = install(sshd_host, agent_root, before=f"echo before >> {agent_root / 'marks'}")
    wait_for(lambda: (agent_root / "marks").exists() and "poweroff" in (agent_root / "marks").read_text(),
             30, "poweroff")
    assert (agent_root / "marks").read_text() == "before\npoweroff\n"
    assert state(agent_root)["why"].startswith("idle for")
    assert (agent_root / settings.CONFIG_PATH).stat().st_mode & 0o777 == 0o644


def test_an_ssh_tunnel_keeps_it_up(sshd_host, agent_root):
    argv = sshd_host.ssh_argv()
    tunnel = subprocess.Popen(argv[:1] + ["-N"] + argv[1:], stdin=subprocess.DEVNULL)
    try:
        marks = install(sshd_host, agent_root, idle_s=2)
        wait_for(lambda: "SSH connection" in state(agent_root).get("why", ""), 20, "the tunnel to count")
        time.sleep(4)  # twice the idle time: still up
        assert not marks.exists()
        assert "1 SSH connection(s)" in state(agent_root)["why"]
    finally:
        tunnel.terminate()
        tunnel.wait()
    wait_for(lambda: marks.exists(), 30, "poweroff after the tunnel closed")


def test_a_running_gpuwizard_step_keeps_it_up(sshd_host, agent_root):
    marks = install(sshd_host, agent_root, idle_s=2)
    gate = agent_root / "gate"
    step = Step("long", "long", f"while [ ! -e {gate} ]; do sleep 0.1; done")

    import threading
    done = threading.Event()
    threading.Thread(target=lambda: (run_steps(sshd_host, [step]), done.set()), daemon=True).start()
    wait_for(lambda: "gpuwizard step(s) running" in state(agent_root).get("why", ""), 20, "the step to count")
    time.sleep(3)  # longer than idle_s, the step still runs
    assert not marks.exists()
    gate.touch()
    done.wait(20)
    wait_for(lambda: marks.exists(), 30, "poweroff after the step ended")


def agent_process(tmp_path, cfg: dict, env: dict) -> subprocess.Popen:
    conf = tmp_path / "autostop.json"
    cfg = {**cfg, "started_at": time.time(), "jupyter_runtime": [], "keepalive_files": []}
    conf.write_text(json.dumps(cfg))
    src = tmp_path / "agent.py"
    src.write_text(settings.agent_source())
    return subprocess.Popen([sys.executable, "-I", str(src), "--config", str(conf),
                             "--state", str(tmp_path / "state.json")],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_delete_action_deletes_this_vm_with_its_own_token(tmp_path, fake_metadata, fake_compute):
    fake_compute.add_instance("us-central1-a", "vm-1", labels={"gpuwizard-recipe": "t"})
    fake_compute.add_instance("us-central1-a", "vm-2", labels={"gpuwizard-recipe": "t"})
    fake_metadata.name, fake_metadata.zone, fake_metadata.project = "vm-1", "us-central1-a", fake_compute.project
    fake_metadata.attributes["gpuwizard-autostop"] = "run-42"
    cfg = settings.agent_config(idle_s=1, action="delete", max_runtime_s=None, gpu_busy_percent=10, before=None,
                                where=Where(target="gcp", ssh_ports=(1,), login_user="root", instance="vm-1",
                                            token="run-42"), interval_s=0.3)
    proc = agent_process(tmp_path, cfg, {"GPUWIZARD_METADATA_ENDPOINT": fake_metadata.url,
                                         "GPUWIZARD_COMPUTE_ENDPOINT": fake_compute.url})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    deletes = [(m, p) for (_, m, p) in fake_compute.requests if m == "DELETE"]
    assert deletes == [("DELETE", f"/compute/v1/projects/{fake_compute.project}/zones/us-central1-a/instances/vm-1")]
    assert fake_compute.authorizations[-1] == f"Bearer {fake_metadata.token}"
    assert "asked Compute Engine to delete vm-1" in out
    # the agent published its state as a guest attribute while it ran
    assert "gpuwizard/autostop" in fake_metadata.guest_attributes


def test_a_vm_without_our_metadata_is_never_stopped(tmp_path, fake_metadata):
    fake_metadata.attributes.clear()   # created by someone else, or without autostop
    marks = tmp_path / "marks"
    cfg = settings.agent_config(idle_s=1, action="stop", max_runtime_s=None, gpu_busy_percent=10, before=None,
                                where=Where(target="gcp", ssh_ports=(1,), login_user="root", instance="vm-1",
                                            token="run-42"), interval_s=0.3,
                                poweroff_command=("bash", "-c", f"echo off >> {marks}"))
    proc = agent_process(tmp_path, cfg, {"GPUWIZARD_METADATA_ENDPOINT": fake_metadata.url})
    try:
        wait_for(lambda: "would stop" in (proc.stdout.readline() or ""), 30, "the refusal")
        assert not marks.exists()
    finally:
        proc.kill()
        proc.wait()


def test_preemption_notice_runs_before(tmp_path, fake_metadata):
    fake_metadata.attributes["gpuwizard-autostop"] = "run-42"
    marks = tmp_path / "marks"
    cfg = settings.agent_config(idle_s=3600, action="stop", max_runtime_s=None, gpu_busy_percent=10,
                                before=f"echo checkpoint >> {marks}",
                                where=Where(target="gcp", ssh_ports=(1,), login_user="root", instance="vm-1",
                                            token="run-42"), interval_s=0.3)
    proc = agent_process(tmp_path, cfg, {"GPUWIZARD_METADATA_ENDPOINT": fake_metadata.url})
    try:
        wait_for(lambda: any("wait_for_change" in p or p.endswith("instance/preempted")
                             for _, p, _ in fake_metadata.requests), 20, "the long poll")
        assert not marks.exists()
        fake_metadata.preempted.set()
        wait_for(lambda: marks.exists(), 30, "before after the notice")
        assert marks.read_text() == "checkpoint\n"
        wait_for(lambda: "preempted_at" in json.loads((tmp_path / "state.json").read_text()), 10, "state")
    finally:
        proc.kill()
        proc.wait()


def test_changing_autostop_on_a_running_host_applies_without_restart(sshd_host, agent_root):
    marks = install(sshd_host, agent_root, idle_s=3600)
    started = json.loads((agent_root / settings.CONFIG_PATH).read_text())["started_at"]
    assert "stops in 59m" in state(agent_root)["why"] or "stops in 1h" in state(agent_root)["why"]
    assert run_steps(sshd_host, [settings.update_step(None, root=str(agent_root))])
    wait_for(lambda: state(agent_root).get("why") == "auto-stop is off", 20, "off to apply")
    assert run_steps(sshd_host, [settings.update_step(2, root=str(agent_root))])
    wait_for(lambda: marks.exists(), 30, "poweroff after the new, shorter idle time")
    assert json.loads((agent_root / settings.CONFIG_PATH).read_text())["started_at"] == started


def test_gpuwizard_autostop_changes_the_hosts_of_the_latest_run(sshd_host, agent_root, tmp_path, monkeypatch, capsys):
    """The command reaches the hosts the run recorded (the real CLI made the run) and the agent
    applies the new setting on its next tick."""
    import argparse
    import functools

    from gpuwizard.autostop import command
    from tests.builders.runs import env, gw, write_recipe

    recipe = write_recipe(tmp_path / "r.yaml", [sshd_host], [{"name": "hello", "run": "echo hi"}])
    assert gw(tmp_path, "run", str(recipe)).returncode == 0
    for k, v in env(tmp_path).items():
        monkeypatch.setenv(k, v)
    install(sshd_host, agent_root, idle_s=3600)
    monkeypatch.setattr(command, "update_step", functools.partial(settings.update_step, root=str(agent_root)))
    assert command.cmd_autostop(argparse.Namespace(recipe=str(recipe), setting="off")) == 0
    assert "auto-stop is now off on 1 host(s)" in capsys.readouterr().out
    wait_for(lambda: state(agent_root).get("why") == "auto-stop is off", 20, "off to apply")
    with pytest.raises(Exception, match="not a duration"):
        command.cmd_autostop(argparse.Namespace(recipe=str(recipe), setting="soon"))
