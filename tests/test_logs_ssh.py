"""``gpuwizard logs`` (follow, unknown names, a host that never connected) and
``gpuwizard ssh`` with the run's pinned host keys: real processes, real sshd hosts."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.builders.runs import gw, gw_start, read_until, runs, write_recipe

pytestmark = pytest.mark.timeout(90)


def test_logs_follow_prints_a_running_run_until_it_ends(sshd_host, tmp_path):
    go = tmp_path / "go"
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], [
        {"name": "wait", "run": f"echo before; while [ ! -e {go} ]; do sleep 0.05; done; echo after"}])
    run = gw_start(tmp_path, "run", str(r), "--headless")
    try:
        read_until(run, "user.wait | before")
        follow = gw_start(tmp_path, "logs", "-f")
        read_until(follow, "before")  # what was there already
        go.touch()
        out, err = follow.communicate(timeout=60)  # returns by itself once the run ends
        assert follow.returncode == 0, err
        assert "after" in out
    finally:
        go.touch()  # the step ends whatever failed above
        run.communicate(timeout=60)
    assert run.returncode == 0


def test_logs_step_and_plan_only_with_an_unknown_name_exit_2_with_the_names(sshd_host, tmp_path):
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], [{"name": "a", "run": "true"}, {"name": "b", "run": "true"}])
    assert gw(tmp_path, "run", str(r)).returncode == 0
    p = gw(tmp_path, "logs", "--step", "nope")
    assert p.returncode == 2 and "'nope'" in p.stderr and "user.a, user.b" in p.stderr
    p = gw(tmp_path, "plan", str(r), "--only", "nope")
    assert p.returncode == 2 and "nope" in p.stderr and "user.a, user.b" in p.stderr
    assert gw(tmp_path, "logs", "--step", "user.a").returncode == 0


def test_a_host_that_never_connects_shows_its_reason_in_logs(sshd_factory, tmp_path):
    good, bad = sshd_factory.start(2)
    pinned = tmp_path / "known_hosts"
    pinned.write_text(good.host_key_line + "\n")  # the second host's key is not known
    r = write_recipe(tmp_path / "r.yaml", [good, bad], [{"name": "a", "run": "echo hi"}], known_hosts=str(pinned))
    p = gw(tmp_path, "run", str(r))
    assert p.returncode == 1
    p = gw(tmp_path, "logs", "--host", bad.host_string)
    assert p.returncode == 0, p.stderr
    assert "host key" in p.stdout, p.stdout  # the reason, not just a header


def test_ssh_opens_the_host_with_the_runs_pinned_known_hosts(sshd_factory, tmp_path):
    host, other = sshd_factory.start(2)
    r = write_recipe(tmp_path / "r.yaml", [host, other], [{"name": "a", "run": "true"}])
    p = gw(tmp_path, "ssh", str(r))
    assert p.returncode == 2 and "no run yet" in p.stderr
    assert gw(tmp_path, "run", str(r)).returncode == 0

    p = gw(tmp_path, "ssh", str(r))
    assert p.returncode == 2 and "name one" in p.stderr and host.host_string in p.stderr
    # HOME is empty (no ~/.ssh/known_hosts): with StrictHostKeyChecking=yes this works
    # only because the run's pinned file is used
    p = gw(tmp_path, "ssh", str(r), host.host_string, "--", "echo", "on-the-host")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "on-the-host"
    # ...and a key other than the pinned one is refused
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    stranger = (tmp_path / "stranger.pub").read_text().split()[:2]
    pathlib.Path(host.known_hosts).write_text(f"[127.0.0.1]:{host.port} {' '.join(stranger)}\n")
    p = gw(tmp_path, "ssh", str(r), f":{host.port}", "--", "echo", "on-the-host")
    assert p.returncode != 0 and "on-the-host" not in p.stdout
    assert "host key" in p.stderr.lower()
