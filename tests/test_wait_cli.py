"""``gpuwizard run --wait`` as a user runs it: the real CLI in a subprocess, the real
google-cloud-compute client, the fake Compute server, a real SIGINT (as tests/test_signals.py
sends). No VM and no pending operation may be left unreported."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

from tests.builders.gcp import ROOT, gw

ZONES = ["us-central1-a", "us-central1-b"]


def _recipe(path: pathlib.Path, zones: list[str] = ZONES, extra: str = "") -> pathlib.Path:
    path.write_text(f"""version: 1
name: waiter
target:
  gcp:
    zones: [{", ".join(zones)}]
    machine_type: n1-standard-4
    gpu: {{type: nvidia-tesla-t4, count: 1}}
{extra}steps:
  - name: hello
    run: echo never-reached
""")
    return path


def _start(recipe: pathlib.Path, tmp_path: pathlib.Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[str]:
    full = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), CI="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", "run", str(recipe), "--headless", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full, cwd=ROOT,
                            stdin=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    proc.kill()
    raise AssertionError(f"{needle!r} never printed; got:\n{''.join(seen)}")


def test_ctrl_c_during_the_wait_stops_at_once_and_leaves_nothing(fake_compute, tmp_path: pathlib.Path) -> None:
    for z in ZONES:
        fake_compute.add_fault(z, "stockout")
    proc = _start(_recipe(tmp_path / "r.yaml"), tmp_path, "--wait")
    seen = _read_until(proc, "next try in")
    assert "waiting for T4 in 2 zones: next try in" in seen[-1] and "(attempt 2, " in seen[-1]
    inserts = len(fake_compute.inserts())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = "".join(seen) + out + err
    assert proc.returncode == 130, text
    assert "no VM was created and no request is pending" in text
    assert "may already exist" not in text and "Traceback" not in text
    assert fake_compute.instances == {}
    assert len(fake_compute.inserts()) == inserts   # nothing sent after the stop


def test_ctrl_c_with_an_insert_in_flight_follows_it_and_deletes_what_it_made(fake_compute,
                                                                          tmp_path: pathlib.Path) -> None:
    zone = ZONES[0]
    fake_compute.add_fault(zone, "stockout", times=1)   # the second insert works ...
    fake_compute.op_seconds = 3.0                        # ... and takes a while, like a real one
    proc = _start(_recipe(tmp_path / "r.yaml", zones=[zone]), tmp_path, "--wait",
                  env={"GPUWIZARD_WAIT_FIRST": "0.2"})
    deadline = time.monotonic() + 60
    while len(fake_compute.inserts()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)   # polling a condition (the second insert arrived), with a deadline
    assert len(fake_compute.inserts()) == 2
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    text = out + err
    assert proc.returncode == 130, text
    assert "following the insert of" in text and "came up in us-central1-a as you stopped" in text
    assert "deleted again; no VM is left and no request is pending" in text
    assert fake_compute.instances == {}   # the VM the insert made is gone again
    assert "may already exist" not in text


def test_max_wait_ends_with_a_clear_message_and_exit_1(fake_compute, tmp_path: pathlib.Path) -> None:
    fake_compute.add_fault(ZONES[0], "stockout")
    p = gw("run", str(_recipe(tmp_path / "r.yaml", zones=[ZONES[0]])), "--headless", "--max-wait", "1s",
           state=tmp_path / "state")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "gpuwizard: on stockout: keep trying the zones for up to 1 s\n" in p.stderr   # the flag, announced
    assert "Still no capacity for T4 after waiting" in p.stderr and "--max-wait 1 s" in p.stderr
    assert len(fake_compute.inserts()) == 2   # the gap stopped at max-wait, then one last round
    assert fake_compute.instances == {}


def test_the_recipes_wait_applies_and_no_wait_overrides_it(fake_compute, tmp_path: pathlib.Path) -> None:
    fake_compute.add_fault(ZONES[0], "stockout")
    recipe = _recipe(tmp_path / "r.yaml", zones=[ZONES[0]], extra="    wait: 1s\n")
    p = gw("run", str(recipe), "--headless", state=tmp_path / "state")
    assert p.returncode == 1 and "Still no capacity" in p.stderr, p.stderr
    n = len(fake_compute.inserts())
    assert n == 2
    p = gw("run", str(recipe), "--headless", "--no-wait", "--fresh", state=tmp_path / "state")
    assert p.returncode == 1 and "No zone could take the VM" in p.stderr, p.stderr
    assert "on stockout: try each zone once, then stop" in p.stderr
    assert len(fake_compute.inserts()) == n + 1


def test_a_bad_max_wait_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    p = gw("run", str(_recipe(tmp_path / "r.yaml")), "--headless", "--max-wait", "soon", state=tmp_path / "state")
    assert p.returncode == 2 and "--max-wait" in p.stderr and "30m, 2h or 1h30m" in p.stderr


def test_a_second_ctrl_c_while_following_an_insert_says_the_vm_may_appear(fake_compute,
                                                                         tmp_path: pathlib.Path) -> None:
    """"Ctrl-C again quits at once" while the insert is followed: the process leaves at once,
    but not silently: the VM that insert may still make (and bill) is named, with the commands
    that find and delete it."""
    zone = ZONES[0]
    fake_compute.add_fault(zone, "stockout", times=1)   # the second insert works ...
    fake_compute.op_seconds = 30.0                       # ... slowly: the follow is still going at press two
    proc = _start(_recipe(tmp_path / "r.yaml", zones=[zone]), tmp_path, "--wait",
                  env={"GPUWIZARD_WAIT_FIRST": "0.2"})
    deadline = time.monotonic() + 60
    while len(fake_compute.inserts()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)   # polling a condition (the second insert arrived), with a deadline
    assert len(fake_compute.inserts()) == 2
    proc.send_signal(signal.SIGINT)
    seen = _read_until(proc, "following the insert of")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = "".join(seen) + out + err
    assert proc.returncode == 130, text
    assert "no request is pending" not in text and "no VM was created" not in text
    assert "quitting with the insert of " in text and f" in {zone} (recipe waiter) unfinished" in text, text
    assert "gpuwizard status" in text and "gpuwizard down" in text


def test_the_last_zone_of_a_round_and_the_first_ctrl_c_say_what_is_true(fake_compute, tmp_path: pathlib.Path) -> None:
    """The last zone of a round does not promise "the next zone", and Ctrl-C before any step
    started does not speak of remote commands being stopped."""
    fake_compute.add_fault(ZONES[0], "stockout")
    proc = _start(_recipe(tmp_path / "r.yaml", zones=[ZONES[0]]), tmp_path, "--wait")
    seen = _read_until(proc, "next try in")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = "".join(seen) + out + err
    assert proc.returncode == 130, text
    assert f"{ZONES[0]}: no capacity [ZONE_RESOURCE_POOL_EXHAUSTED]; no zone left to try" in text
    assert "trying the next zone" not in text
    assert "remote commands are being stopped" not in text
    assert "stopping: no step has started on a host yet (Ctrl-C again to quit at once)." in text
