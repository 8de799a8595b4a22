"""OS Login turned on by an organisation policy (no project metadata), seen in the VM's own
metadata (issue 12 item 11): the run stops before SSH with the one command that fixes it,
says the VM runs and is billed, and names `gpuwizard down RECIPE`; --delete-on-failure
deletes it. The real CLI, the real Compute client against the fake server, and a real sshd
that refuses the run's key (as an OS Login guest refuses a metadata key)."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import time

import pytest

from gpuwizard import ssh
from gpuwizard.gcp.errors import OS_LOGIN, GcpError
from tests.builders.gcp import e2e_vms, gw, make_recipe, point_fake_at, run


def _org_policy(fake) -> None:
    fake.instance_metadata = {"enable-oslogin": "TRUE"}
    assert "enable-oslogin" not in fake.project_metadata   # nothing the project check could see


def _recipe(path: pathlib.Path, host, identity: pathlib.Path) -> pathlib.Path:
    path.write_text(f"""version: 1
name: e2e
target:
  gcp:
    zones: [us-central1-a]
    machine_type: n1-standard-4
    gpu: {{type: nvidia-tesla-t4, count: 1}}
ssh:
  port: {host.port}
  identity: {identity}
  connect_timeout: 10
steps:
  - name: hello
    run: echo should-not-run
""")
    return path


def _refused_key(tmp_path: pathlib.Path) -> pathlib.Path:
    """A key the test sshd does not authorise: SSH with it is refused, as on an OS Login VM."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_provision_stops_on_a_vm_with_os_login_and_keeps_it_owned(fake_compute, tmp_path):
    _org_policy(fake_compute)
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-central1-a"], extra=f"ssh: {{identity: {_refused_key(tmp_path)}}}"), tmp_path)
    exc = ei.value
    assert exc.kind == OS_LOGIN and exc.vm_exists
    msg = str(exc)
    assert f"gcloud compute os-login ssh-keys add --key-file {tmp_path / 'id_ed25519'}.pub" in msg
    assert "ssh.user" in msg and "exp-run-1 in us-central1-a is running (and billed" in msg
    assert "gpuwizard down" in msg
    assert fake_compute.route_requests("guest") == 0   # stopped before waiting for host keys


def test_with_an_os_login_user_set_the_run_goes_on(fake_compute, tmp_path):
    _org_policy(fake_compute)
    hosts, lines = run(make_recipe(["us-central1-a"], extra="ssh: {user: alice_example_com}"), tmp_path)
    assert [h.user for h in hosts] == ["alice_example_com"]
    assert any("OS Login is on for this VM" in ln and "os-login ssh-keys add" in ln for ln in lines)


def test_run_on_an_os_login_vm_says_the_fix_and_how_to_delete(fake_compute, sshd_host, tmp_path):
    point_fake_at(fake_compute, sshd_host)
    _org_policy(fake_compute)
    recipe = _recipe(tmp_path / "e2e.yaml", sshd_host, _refused_key(tmp_path))
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "has OS Login on" in p.stderr and "gcloud compute os-login ssh-keys add --key-file" in p.stderr
    assert f"gpuwizard down {recipe}" in p.stderr           # the closing lines offer the deletion
    assert "should-not-run" not in p.stdout
    assert len(e2e_vms(fake_compute)) == 1                  # still there, and said to be billed
    d = gw("run", str(recipe), "--headless", "--resume", "--delete-on-failure", state=tmp_path / "state")
    assert d.returncode == 1 and "deleted 1 VM(s) of this run" in d.stderr, d.stderr
    assert e2e_vms(fake_compute) == []


def test_a_refusal_of_our_metadata_key_is_explained_as_os_login(fake_compute, sshd_host, tmp_path):
    """Nothing in the project's or the VM's metadata says OS Login (an organisation policy
    Compute Engine does not show): the refusal of the key we put in the VM's metadata is
    the evidence, and the host's failure says the fix; the closing lines offer the deletion."""
    point_fake_at(fake_compute, sshd_host)
    recipe = _recipe(tmp_path / "e2e.yaml", sshd_host, _refused_key(tmp_path))
    recipe.write_text(recipe.read_text().replace("connect_timeout: 10", "connect_timeout: 2"))
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "the server refused the key" in out and "OS Login is enforced" in out, out
    assert f"gcloud compute os-login ssh-keys add --key-file {tmp_path / 'id_ed25519'}.pub" in out
    assert f"gpuwizard down {recipe}" in p.stderr and "still running (and billed)" in p.stderr
    assert len(e2e_vms(fake_compute)) == 1


def test_a_lasting_refusal_of_a_new_vm_stops_retrying_after_the_grace(sshd_host, tmp_path, monkeypatch):
    """A new VM's refusal is retried (its agent installs our key late), but with an OS Login
    hint only for AUTH_GRACE, not for the whole connect timeout (600 s by default)."""
    monkeypatch.setattr(ssh, "AUTH_GRACE", 0.3)
    spec = ssh.HostSpec(name="vm", address=sshd_host.address, port=sshd_host.port, user=sshd_host.user,
                        identity=str(_refused_key(tmp_path)), known_hosts=sshd_host.known_hosts,
                        refused_hint="HINT: OS Login")
    attempts: list[ssh.Attempt] = []
    with pytest.raises(ssh.AuthError) as ei:
        asyncio.run(ssh.connect(spec, deadline=time.monotonic() + 120, on_attempt=attempts.append,
                                retry_auth=True, max_delay=0.2))
    assert str(ei.value).endswith("HINT: OS Login")
    assert 2 <= len(attempts) < 20        # retried, then stopped long before the 120 s deadline (~600 attempts)
    assert "OS Login is taken as the reason" in attempts[-1].message
