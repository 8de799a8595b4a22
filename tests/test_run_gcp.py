"""`gpuwizard run` on a target.gcp recipe, end to end, with nothing faked but Google.

The real CLI runs in a subprocess: it provisions through the real google-cloud-compute
client against the fake Compute server (which reports 127.0.0.1 as the VM's address
and publishes the test sshd's host key in its guest attributes), pins that key in the
run directory's known_hosts, connects to the real sshd with verification on, and runs
the steps. A failing run with --delete-on-failure deletes the VM it created.
"""

from __future__ import annotations

import pathlib
import subprocess

from tests.builders.gcp import e2e_vms, gw, point_fake_at, write_recipe
from tests.builders.runs import gw_start


def test_run_provisions_pins_host_key_and_runs(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo hello-from-$(whoami)")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "create 1 x n1-standard-4 with 1 x nvidia-tesla-t4 (on-demand)" in p.stderr  # cost before provisioning
    assert f"hello-from-{sshd_host.user}" in p.stdout
    insts = [i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"]
    assert len(insts) == 1
    from gpuwizard.gcp.provision import recipe_id

    assert insts[0]["labels"]["gpuwizard-recipe-id"] == recipe_id(str(recipe))  # `down` finds this file's VMs
    run_dirs = list((tmp_path / "state" / "gpuwizard" / "runs").iterdir())
    assert len(run_dirs) == 1
    kh = (run_dirs[0] / "known_hosts").read_text()
    assert host_key(sshd_host) in kh  # verified through the key the VM published, not trusted blindly


def host_key(host) -> str:
    return host.host_key_line.split()[2]


def test_wrong_published_key_is_refused(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    fake_compute.host_keys = {"ssh-ed25519": "AAAAC3NzaC1lZDI1NTE5AAAAIPOyBbj9pEx7w3tMUzhQ5GEUHJZJ3uO4c3X1xEwZmZ9t"}
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo should-not-run")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1
    assert "should-not-run" not in p.stdout
    assert "host key does not match" in p.stdout


def test_delete_on_failure_removes_the_runs_vm(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "exit 3")
    p = gw("run", str(recipe), "--headless", "--delete-on-failure", state=tmp_path / "state")
    assert p.returncode == 1, p.stderr
    assert "deleted 1 VM(s) of this run" in p.stderr
    assert [i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"] == []


def test_failure_without_delete_says_how_to_clean_up(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "exit 3")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1
    assert f"gpuwizard down {recipe}" in p.stderr
    assert len([i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"]) == 1


def test_ctrl_c_while_provisioning_runs_no_step(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    import signal
    import time

    point_fake_at(fake_compute, sshd_host)
    fake_compute.op_seconds = 6.0  # the insert operation takes a while, like a real one
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    proc = gw_start(tmp_path, "run", str(recipe), "--headless")
    deadline = time.monotonic() + 30
    line = ""
    while "creating" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    assert "creating" in line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "step-ran" not in out and "user.hello" not in out
    assert "a VM may already exist" in out and "--resume" in err
    p = gw("logs", "--list", state=tmp_path / "state")
    assert " interrupted " in p.stdout


def test_provisioning_failure_is_recorded_in_the_run_directory(sshd_host, tmp_path: pathlib.Path,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("GPUWIZARD_COMPUTE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    # The same refusals, retried for 2 s instead of the default minute (gcp/budgets.py's test override).
    monkeypatch.setenv("GPUWIZARD_GCP_READ_BUDGET", "2")
    monkeypatch.setenv("GPUWIZARD_GCP_RETRY_BASE", "0.05")
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "stopped before any step ran" in p.stdout and "HOST" not in p.stdout  # no empty summary table
    listing = gw("logs", "--list", state=tmp_path / "state").stdout
    assert " failed " in listing
    shown = gw("logs", state=tmp_path / "state").stdout
    assert "127.0.0.1:9" in shown or "connect" in shown.lower()


def test_resume_after_spot_preemption_restarts_the_vm_and_finishes(fake_compute, sshd_host,
                                                                    tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    marker = tmp_path / "second-ran"
    write_recipe(recipe, sshd_host, f"test -e {marker}.ok && touch {marker}")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1  # the step fails: the file it waits for is not there yet
    (vm,) = [i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"]
    fake_compute.preempt(run=vm["labels"]["gpuwizard-run"])  # Google takes the spot VM back
    (tmp_path / "second-ran.ok").touch()
    p = gw("run", str(recipe), "--headless", "--resume", state=tmp_path / "state")
    assert p.returncode == 0, p.stdout + p.stderr
    assert fake_compute.starts(), "the preempted VM was started again"
    assert [i["name"] for i in fake_compute.state()["instances"]] == [vm["name"]]  # no second VM
    assert marker.exists()


def test_success_says_the_vm_is_still_running_and_its_cost(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "true")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "still running at ~$" in p.stderr and f"gpuwizard down {recipe}" in p.stderr


def test_get_storm_after_insert_then_delete_on_failure_deletes_the_vm(fake_compute, sshd_host,
                                                                      tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    fake_compute.add_http_fault("inst_get", 503)           # every instances.get fails
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    p = gw("run", str(recipe), "--headless", "--delete-on-failure", state=tmp_path / "state",
           env={"GPUWIZARD_GCP_READ_BUDGET": "1"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "running (and billed" in p.stdout + p.stderr and "Timeout of" not in p.stdout + p.stderr
    assert "deleted 1 VM(s) of this run" in p.stderr
    assert e2e_vms(fake_compute) == []


def test_get_failure_after_insert_then_plain_rerun_resumes_onto_the_vm(fake_compute, sshd_host,
                                                                        tmp_path: pathlib.Path) -> None:
    point_fake_at(fake_compute, sshd_host)
    fake_compute.add_http_fault("inst_get", 503)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state", env={"GPUWIZARD_GCP_READ_BUDGET": "1"})
    assert p.returncode == 1 and "running (and billed" in p.stdout + p.stderr
    (vm,) = e2e_vms(fake_compute)
    fake_compute.http_faults.clear()
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming run" in p.stderr and "step-ran" in p.stdout
    assert [i["name"] for i in e2e_vms(fake_compute)] == [vm["name"]]   # no second VM
    assert len(fake_compute.inserts()) == 1


def test_ctrl_c_does_not_wait_for_the_request_in_flight(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    """The insert's operation never finishes and .../wait holds the request open: one
    Ctrl-C ends the run at once (exit 130) and says what was in flight; before, the
    process waited for the blocked request's thread (the client's 600 s timeout)."""
    import signal
    import time

    point_fake_at(fake_compute, sshd_host)
    fake_compute.op_seconds = 3600.0
    fake_compute.wait_cap = 3600.0
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    proc = gw_start(tmp_path, "run", str(recipe), "--headless")
    deadline = time.monotonic() + 60
    while fake_compute.route_requests("op_wait") == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)   # polling a condition (the wait request arrived), with a deadline
    assert fake_compute.route_requests("op_wait") >= 1
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("one Ctrl-C did not end the run while a request was in flight") from None
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "interrupted while waiting for zoneOperations.wait (us-central1-a)" in out + err


def test_hostkey_timeout_env_bounds_a_guest_attributes_storm(fake_compute, sshd_host, tmp_path: pathlib.Path) -> None:
    """503 on every getGuestAttributes: the run ends at GPUWIZARD_HOSTKEY_TIMEOUT (before, the
    client's 600 s retry ran first), says so, and says the VM is running and billed."""
    point_fake_at(fake_compute, sshd_host)
    fake_compute.add_http_fault("guest", 503)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "echo step-ran")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state",
           env={"GPUWIZARD_HOSTKEY_TIMEOUT": "2", "GPUWIZARD_HOSTKEY_POLL": "0.2"})
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "published no SSH host keys in 2 s" in out and "running (and billed" in out
    assert "step-ran" not in p.stdout and "Timeout of" not in out


def test_delete_on_failure_removes_a_clusters_vms_firewall_rule_and_policy(fake_compute, sshd_host,
                                                                           tmp_path: pathlib.Path) -> None:
    """A failed cluster run with --delete-on-failure leaves nothing of the run behind: its nodes,
    then the firewall rule and placement policy made for them (a policy in use cannot be
    deleted, so the VMs go first)."""
    point_fake_at(fake_compute, sshd_host)
    recipe = tmp_path / "e2e.yaml"
    write_recipe(recipe, sshd_host, "exit 3")
    text = recipe.read_text().replace("machine_type: n1-standard-4", "machine_type: g2-standard-8")
    text = text.replace("type: nvidia-tesla-t4", "type: nvidia-l4") + "cluster: {nodes: 2}\n"
    recipe.write_text(text)
    p = gw("run", str(recipe), "--headless", "--delete-on-failure", state=tmp_path / "state")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "deleted 2 VM(s) of this run" in p.stderr, p.stderr
    assert [i for i in fake_compute.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"] == []
    assert fake_compute.firewalls == {} and fake_compute.policies == {}, (fake_compute.firewalls, fake_compute.policies)
