"""``gpuwizard run`` end to end: a real process, real sshd hosts, a real run directory."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Callable

import pytest

from tests.builders.runs import env, group_alive, gw, runs, wait_for, write_recipe

pytestmark = pytest.mark.timeout(60)

# A duration no other process on the machine uses, so pgrep finds only this test's sleep.
SLEEP = f"30.{os.getpid()}"


def test_headless_lines_summary_table_and_exit_codes(sshd_factory, tmp_path):
    hosts = sshd_factory.start(2)
    r = write_recipe(tmp_path / "r.yaml", hosts, [{"name": "hello", "run": "echo hello; echo warn >&2"},
                                                  {"name": "two", "run": "printf 'a\\nb\\n'"}])
    p = gw(tmp_path, "run", str(r))
    assert p.returncode == 0, p.stderr
    for h in hosts:
        assert f"[{h.host_string}] user.hello | hello\n" in p.stdout
        assert f"[{h.host_string}] user.two | a\n[{h.host_string}] user.two | b\n" in p.stdout
        assert f"[{h.host_string}] user.hello: ok" in p.stdout
    assert "HOST" in p.stdout and "all hosts ok" in p.stdout
    (run_dir,) = runs(tmp_path)
    assert (run_dir / "recipe.yaml").read_text() == r.read_text()
    log = (run_dir / "hosts" / f"root@127.0.0.1_{hosts[0].port}.log").read_text()
    assert "hello\n" in log and "warn\n" in log and "a\nb\n" in log
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "ok"

    bad = write_recipe(tmp_path / "bad.yaml", hosts[:1], [{"name": "x", "run": "exit 4"}, {"name": "y", "run": "true"}])
    p = gw(tmp_path, "run", str(bad), "--json")
    assert p.returncode == 1
    evs = [json.loads(line) for line in p.stdout.splitlines()]
    assert evs[0]["event"] == "run_started" and evs[-1]["event"] == "run_finished"
    fin = [(e["step"], e["status"], e["exit_code"]) for e in evs if e["event"] == "step_finished"]
    assert fin == [("user.x", "failed", 4), ("user.y", "not_run", None)]


def test_bad_recipe_exits_2(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("version: 1\nname: Bad Name\n")
    p = gw(tmp_path, "run", str(r))
    assert p.returncode == 2 and "r.yaml:2:" in p.stderr


def test_ctrl_c_leaves_a_resumable_run(sshd_host, tmp_path):
    flag = tmp_path / "count"
    steps = [{"name": "first", "run": f"echo first >> {flag}"},
             {"name": "slow", "run": f"echo slow-start >> {flag}; echo waiting; sleep {SLEEP}; echo slow-done >> {flag}"},
             {"name": "third", "run": f"echo third >> {flag}"}]
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], steps)
    proc = subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", "run", str(r)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(tmp_path), cwd=tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "user.slow | waiting" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "--resume" in err
    (run_dir,) = runs(tmp_path)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "interrupted"
    assert list(state["hosts"][sshd_host.host_string]["done"]) == ["user.first"]
    # the remote sleep was stopped with the run
    assert subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True).returncode == 1

    # the fix for "slow": re-running the unchanged recipe resumes the interrupted run by default
    steps[1]["run"] = steps[1]["run"].replace(f"sleep {SLEEP}", "true")
    write_recipe(r, [sshd_host], steps)
    p = gw(tmp_path, "run", str(r), "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming run" in p.stderr
    assert runs(tmp_path) == [run_dir]  # same run directory
    assert flag.read_text().split() == ["first", "slow-start", "slow-start", "slow-done", "third"]
    assert f"[{sshd_host.host_string}] user.first: skipped" in p.stdout


def test_rerun_after_interrupt_resumes_by_default(sshd_host, tmp_path):
    flag = tmp_path / "count"
    steps = [{"name": "a", "run": f"echo a >> {flag}"},
             {"name": "b", "run": f"echo b >> {flag}; echo go; sleep 30"}]
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], steps)
    proc = subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", "run", str(r), "--headless"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(tmp_path), cwd=tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "user.b | go" in line:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    p = gw(tmp_path, "run", str(r), "--only", "user.a")  # unchanged recipe: resumes, "a" already done
    assert p.returncode == 0 and "resuming run" in p.stderr and "user.a: skipped" in p.stdout
    p = gw(tmp_path, "run", str(r), "--fresh", "--only", "user.a")
    assert p.returncode == 0 and "resuming" not in p.stderr and "user.a: ok" in p.stdout
    assert len(runs(tmp_path)) == 2


def test_secret_upload_never_reaches_events_or_logs(sshd_host, tmp_path, monkeypatch):
    """Through the runner's own pieces (RunDir + renderers) with an upload step."""
    import asyncio
    import io

    from gpuwizard.executor import ExecOptions, Executor
    from gpuwizard.headless import Fanout, JsonRenderer, LineRenderer
    from gpuwizard.runlog import RunDir
    from gpuwizard.ssh import HostSpec
    from gpuwizard.steps import Step, Upload

    secret = "ya29.TOPSECRET-0123456789abcdef"
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps({"access_token": secret}))
    step = Step("use", "use", "cat ~/gw-test-token.json; echo; echo done",
                uploads=(Upload(str(tok), "~/gw-test-token.json"),))
    rd = RunDir.create(None, "name: x\n", "x", base=tmp_path / "runs")
    host = HostSpec(name="h", address=sshd_host.address, port=sshd_host.port, user="root",
                    identity=sshd_host.client_key, known_hosts=sshd_host.known_hosts)
    rd.set_plan({"h": [step]})
    lines, js = io.StringIO(), io.StringIO()
    ok = asyncio.run(Executor([host], [step], Fanout(rd, LineRenderer(lines), JsonRenderer(js)),
                              ExecOptions(run_id=rd.run_id)).run())
    rd.close()
    assert ok
    for text in [(rd.path / "events.jsonl").read_text(), rd.host_log_path("h").read_text(),
                 lines.getvalue(), js.getvalue()]:
        assert secret not in text
    assert "done" in rd.host_log_path("h").read_text()
    assert (pathlib.Path("/root/gw-test-token.json").stat().st_mode & 0o777) == 0o600
    os.unlink("/root/gw-test-token.json")


def test_unwritable_state_dir_is_a_usage_error(tmp_path) -> None:
    import os
    import subprocess
    import sys

    r = tmp_path / "r.yaml"
    r.write_text("version: 1\nname: x\ntarget: {ssh: {hosts: [u@127.0.0.1:9]}}\nsteps:\n  - {name: a, run: 'true'}\n")
    env = dict(os.environ, XDG_STATE_HOME="/proc/no-such-dir", CI="1")
    p = subprocess.run([sys.executable, "-m", "gpuwizard.cli", "run", str(r), "--headless"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 2
    assert "cannot create the run directory" in p.stderr and "Traceback" not in p.stderr


def once_script(tmp: pathlib.Path, body: str) -> str:
    """See tests/test_executor.py: logs ``start PID 1`` if the previous copy still runs."""
    pidf, log = tmp / "copy.pid", tmp / "copies.log"
    return (f'o=$(cat {pidf} 2>/dev/null || true); a=0; if [ -n "$o" ] && kill -0 "$o" 2>/dev/null; then a=1; fi; '
            f'echo $$ > {pidf}; echo "start $$ $a" >> {log}; {body}')


def ctrl_c_twice(tmp_path, recipe: pathlib.Path, ready: str,
                 landed: Callable[[], bool] | None = None) -> subprocess.CompletedProcess[str]:
    """Ctrl-C once when ``ready`` is printed, and again as soon as gpuwizard has begun the
    clean stop (it says "stopping") and ``landed`` holds: well inside the clean stop's
    TERM -> KILL grace, with no sleep to win a race."""
    proc = subprocess.Popen([sys.executable, "-m", "gpuwizard.cli", "run", str(recipe), "--headless"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(tmp_path), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if ready in line:
            break
    proc.send_signal(signal.SIGINT)
    first = []
    for line in proc.stderr:
        first.append(line)
        if "stopping:" in line:
            break
    if landed is not None:
        wait_for(landed, "the clean stop's TERM to reach the step", timeout=10)
    proc.send_signal(signal.SIGINT)  # "quit at once": no time for the clean stop's TERM -> KILL
    out, err = proc.communicate(timeout=20)  # the bounded last try (<= 2 s) then exit; speed is bench's
    err = "".join(first) + err
    assert proc.returncode == 130, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_second_ctrl_c_terms_the_remote_step_before_quitting(sshd_host, tmp_path):
    # Survives the first TERM (the clean stop's), ends on the second (the hard exit's):
    # without that last try it would run on after gpuwizard quit, KILL never coming.
    terms = tmp_path / "terms"
    body = (f"n=0; trap 'n=$((n+1)); echo term >> {terms}' TERM; echo waiting; "
            f"while [ $n -lt 2 ]; do sleep 0.1 || true; done; echo ended >> {tmp_path / 'ended'}")
    steps = [{"name": "twoterms", "run": once_script(tmp_path, body)}]
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], steps)
    p = ctrl_c_twice(tmp_path, r, "user.twoterms | waiting", landed=terms.exists)
    assert "quitting" in p.stderr
    pgid = int((tmp_path / "copies.log").read_text().split()[1])
    try:
        _rerun_after_second_ctrl_c(tmp_path, r, steps, sshd_host, pgid)
    finally:
        if group_alive(pgid):  # a failed test must not leave the loop running
            os.killpg(pgid, signal.SIGKILL)


def _rerun_after_second_ctrl_c(tmp_path, r, steps, sshd_host, pgid: int) -> None:
    # the hard exit's TERM ended the step (on loopback the bounded last try gets there);
    # the re-run then finds nothing to stop, and never two copies ran at once
    wait_for(lambda: not group_alive(pgid), "the step to end on the hard exit's TERM", timeout=10)
    assert (tmp_path / "terms").read_text().split() == ["term", "term"]
    steps[0]["run"] = once_script(tmp_path, "echo fixed")
    write_recipe(r, [sshd_host], steps)
    p = gw(tmp_path, "run", str(r), "--resume")
    assert p.returncode == 0 and "resuming run" in p.stderr, p.stdout + p.stderr
    assert "stopped user.twoterms" not in p.stdout
    assert [line.split()[2] for line in (tmp_path / "copies.log").read_text().splitlines()] == ["0", "0"]


def abandon_a_stubborn_step(sshd_host, tmp_path) -> tuple[pathlib.Path, int]:
    """Run a step that ignores TERM and quit with a double Ctrl-C, so it outlives
    gpuwizard: the first copy sleeps long (only a kill ends it in time), a later copy is
    quick. Returns the recipe and the orphan's process group."""
    body = ("echo waiting; trap '' TERM; if [ \"$a\" = 0 ] && [ ! -e " + str(tmp_path / "rerun") + " ]; then touch "
            + str(tmp_path / "rerun") + "; sleep 60; else sleep 1; fi; echo \"end $$\" >> " + str(tmp_path / "copies.log"))
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], [{"name": "stubborn", "run": once_script(tmp_path, body)}])
    ctrl_c_twice(tmp_path, r, "user.stubborn | waiting")
    first = int((tmp_path / "copies.log").read_text().split()[1])
    assert group_alive(first)
    return r, first


def test_rerun_after_a_hard_exit_stops_the_orphan_before_running_the_step(sshd_host, tmp_path):
    # TERM is ignored, so the hard exit's TERM cannot stop it: the orphan outlives
    # gpuwizard, and a plain re-run (which resumes the run) must stop it first
    r, first = abandon_a_stubborn_step(sshd_host, tmp_path)
    (run_dir,) = runs(tmp_path)
    assert json.loads((run_dir / "running.jsonl").read_text().splitlines()[-1])["proc"]["pid"] == first

    p = gw(tmp_path, "run", str(r))  # unchanged recipe: resumes the interrupted run
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming run" in p.stderr and runs(tmp_path) == [run_dir]
    assert "stopped user.stubborn" in p.stdout
    assert not group_alive(first)
    lines = [line.split() for line in (tmp_path / "copies.log").read_text().splitlines()]
    second = int(lines[1][1])
    assert lines == [["start", str(first), "0"], ["start", str(second), "0"], ["end", str(second)]]
    assert json.loads((run_dir / "running.jsonl").read_text().splitlines()[-1])["proc"] is None


def test_fresh_run_after_a_hard_exit_also_stops_the_orphan(sshd_host, tmp_path):
    # --fresh starts a new run directory; the abandoned run's record comes with it
    r, first = abandon_a_stubborn_step(sshd_host, tmp_path)
    p = gw(tmp_path, "run", str(r), "--fresh")
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(runs(tmp_path)) == 2 and "stopped user.stubborn" in p.stdout
    assert not group_alive(first)
    lines = [line.split() for line in (tmp_path / "copies.log").read_text().splitlines()]
    assert [ln[0] for ln in lines] == ["start", "start", "end"] and lines[1][2] == "0"
