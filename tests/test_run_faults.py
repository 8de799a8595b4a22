"""``gpuwizard run`` under faults of the local machine (issue 13): two runs of one recipe
at once, a full disk mid-run. Real processes, a real sshd host, a real (small) tmpfs."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.builders.runs import gw, gw_start, pids_running, read_until, runs, wait_for, write_recipe

pytestmark = pytest.mark.timeout(120)


def sleep_token() -> str:
    """A sleep duration no other process uses, so the test finds only its own remote sleep."""
    return f"40.{os.getpid()}{os.urandom(2).hex().translate(str.maketrans('abcdef', '123456'))}"


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)


def test_a_second_run_of_the_same_recipe_is_refused_while_the_first_runs(sshd_host, tmp_path):
    sleep = sleep_token()
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], [{"name": "hold", "run": f"echo waiting; sleep {sleep}"}])
    first = gw_start(tmp_path, "run", str(r), "--headless")
    try:
        read_until(first, "user.hold | waiting")
        (run_dir,) = runs(tmp_path)
        p = gw(tmp_path, "run", str(r), "--headless")
        assert p.returncode == 2, p.stdout + p.stderr
        assert f"pid {first.pid}" in p.stderr and str(run_dir) in p.stderr
        assert runs(tmp_path) == [run_dir]  # the refused run made nothing
        # another recipe is not held up by this one
        other = write_recipe(tmp_path / "other.yaml", [sshd_host], [{"name": "x", "run": "true"}], name="other")
        assert gw(tmp_path, "run", str(other)).returncode == 0
    finally:
        stop(first)
    assert first.returncode == 130


def test_two_resumes_at_once_the_second_is_refused_and_a_dead_holder_frees_the_lock(sshd_host, tmp_path):
    sleep = sleep_token()
    flag = tmp_path / "count"
    r = write_recipe(tmp_path / "r.yaml", [sshd_host],
                     [{"name": "hold", "run": f"echo start >> {flag}; echo waiting; sleep {sleep}"}])
    first = gw_start(tmp_path, "run", str(r))
    read_until(first, "user.hold | waiting")
    stop(first)
    (run_dir,) = runs(tmp_path)

    a = gw_start(tmp_path, "run", str(r), "--resume")
    try:
        read_until(a, "user.hold | waiting")
        p = gw(tmp_path, "run", str(r), "--resume")
        assert p.returncode == 2, p.stdout + p.stderr
        assert f"pid {a.pid}" in p.stderr and str(run_dir) in p.stderr
        assert runs(tmp_path) == [run_dir]  # the loser did not start a new run
    finally:
        a.kill()  # no clean-up at all: the lock must still come free
        a.communicate(timeout=30)

    r.write_text(r.read_text().replace(f"sleep {sleep}", "true"))
    p = gw(tmp_path, "run", str(r), "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming run" in p.stderr and runs(tmp_path) == [run_dir]
    wait_for(lambda: not pids_running(f"sleep {sleep}"), "the orphaned remote sleep to be stopped")


@pytest.fixture
def small_disk(tmp_path):
    """A 128 KiB tmpfs for the state directory (a full disk on demand)."""
    d = tmp_path / "small"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({p.stderr.strip()}); this test needs root")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_stops_the_remote_step_names_the_path_and_leaves_a_resumable_run(sshd_host, tmp_path,
                                                                                     small_disk):
    sleep = sleep_token()
    marker, once = tmp_path / "marker", tmp_path / "once"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 48 * 1024)  # freed later, as a user would free space
    steps = [{"name": "first", "run": f"echo one >> {marker}"},
             {"name": "loud", "run": f"if [ ! -e {once} ]; then touch {once}; echo waiting; "
                                     f"head -c 300000 /dev/zero | tr '\\0' x; echo; sleep {sleep}; fi; "
                                     f"echo two >> {marker}"}]
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], steps)
    p = gw(tmp_path, "run", str(r), "--headless", state=small_disk)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "unexpected error" not in p.stderr and "Traceback" not in p.stderr
    assert "is full" in p.stderr and str(small_disk) in p.stderr and "--resume" in p.stderr
    assert "user.first: ok" in p.stdout and "FAILED" not in p.stdout
    wait_for(lambda: not pids_running(f"sleep {sleep}"), "the remote step to be stopped")
    assert not list(small_disk.rglob("*.tmp"))
    (run_dir,) = [d for d in (small_disk / "gpuwizard" / "runs").iterdir()]
    json.loads((run_dir / "state.json").read_text())  # whole, parseable

    filler.unlink()
    p = gw(tmp_path, "run", str(r), "--resume", state=small_disk)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming run" in p.stderr and "user.first: skipped" in p.stdout
    assert marker.read_text() == "one\ntwo\n"
