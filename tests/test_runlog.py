"""The run directory as an event sink, resume state, and ``gpuwizard logs``."""

from __future__ import annotations

import argparse
import json

import pytest

from gpuwizard import events as ev
from gpuwizard.executor import fingerprint
from gpuwizard.logs import cmd_logs
from gpuwizard.runlog import RunDir, find_resumable, host_file, list_runs
from gpuwizard.steps import Step


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "gpuwizard" / "runs"


def feed(rd: RunDir, interrupted: bool = False) -> None:
    for e in [
        ev.RunStarted(run_id=rd.run_id, recipe="x", hosts=["u@h:22"], steps=["a", "b"]),
        ev.StepStarted(host="u@h:22", step="a"),
        ev.Output(host="u@h:22", step="a", stream="stdout", data="alpha 1\n"),
        ev.Output(host="u@h:22", step="a", stream="stderr", data="alpha 2\n"),
        ev.StepFinished(host="u@h:22", step="a", status="ok", exit_code=0),
        ev.StepStarted(host="u@h:22", step="b"),
        ev.Output(host="u@h:22", step="b", stream="stdout", data="beta\n"),
        ev.StepStarted(host="u@h:22", step="b", attempt=2),
        ev.Output(host="u@h:22", step="b", stream="stdout", data="beta again\n"),
        ev.StepFinished(host="u@h:22", step="b", status="cancelled" if interrupted else "ok"),
        ev.RunFinished(ok=not interrupted, interrupted=interrupted),
    ]:
        rd(e)


def test_files_state_and_logs_command(state_home, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    a, b = Step("a", "a", "echo alpha"), Step("b", "b", "echo beta")
    rd = RunDir.create(str(recipe), recipe.read_text(), "x")
    assert rd.path.parent == state_home and not find_resumable(str(recipe))  # live (locked)
    rd.set_plan({"u@h:22": [a, b]})
    feed(rd, interrupted=True)
    rd.close()
    assert (rd.path / "recipe.yaml").read_text() == "name: x\n"
    events = [json.loads(line) for line in (rd.path / "events.jsonl").read_text().splitlines()]
    assert "output" not in {e["event"] for e in events} and events[-1]["interrupted"] is True
    assert (rd.path / "hosts" / "u@h_22.log").read_text() == "alpha 1\nalpha 2\nbeta\nbeta again\n"
    assert rd.done() == {"u@h:22": {"a": fingerprint(a)}}
    assert RunDir.open(rd.path).done() == {"u@h:22": {"a": fingerprint(a)}}  # from the journal, after a crash too
    assert find_resumable(str(recipe)).path == rd.path

    cmd_logs(argparse.Namespace(run=None, host=None, step="b", list=False))
    assert capsys.readouterr().out == "beta\nbeta again\n"
    cmd_logs(argparse.Namespace(run=rd.run_id[-6:], host="h", step="a", list=False))
    assert capsys.readouterr().out == "alpha 1\nalpha 2\n"
    cmd_logs(argparse.Namespace(run=None, host=None, step=None, list=False))
    whole = capsys.readouterr().out
    assert whole.startswith("--- a (attempt 1, ok) ---\nalpha 1\nalpha 2\n--- b (attempt 1,")  # step headers
    cmd_logs(argparse.Namespace(run=None, host=None, step=None, list=True))
    listing = capsys.readouterr().out
    assert rd.run_id in listing and "interrupted" in listing
    assert [r.run_id for r in list_runs()] == [rd.run_id]


def test_finished_run_is_not_resumed_and_unknown_run_is_a_usage_error(state_home, tmp_path):
    from gpuwizard.errors import UsageError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("x")
    rd = RunDir.create(str(recipe), "x", "x")
    feed(rd)
    rd.close()
    assert find_resumable(str(recipe)) is None
    with pytest.raises(UsageError):
        cmd_logs(argparse.Namespace(run="no-such-run", host=None, step=None, list=False))


def test_host_file_names_are_safe():
    assert host_file("ubuntu@1.2.3.4:22") == "ubuntu@1.2.3.4_22"
    assert "/" not in host_file("../../etc/passwd")


def test_running_processes_are_recorded_until_they_end(tmp_path):
    rd = RunDir.create(None, "x", "x", base=tmp_path)
    assert rd.running() == {}
    rd.record_running("a", {"pid": 10, "start": "5", "boot": "b", "step": "s1"})
    rd.record_running("b", {"pid": 20, "start": "6", "boot": "b", "step": "s1"})
    rd.record_running("a", None)  # ended
    rd.record_running("b", {"pid": 30, "start": "7", "boot": "b", "step": "s2"})
    # on disk at once (a hard exit skips close()), read back by a later attempt
    again = RunDir.open(rd.path)
    assert again.running() == {"b": {"pid": 30, "start": "7", "boot": "b", "step": "s2"}}
    with open(rd.path / "running.jsonl", "a") as fh:
        fh.write('{"host": "a", "proc": {"pid"')  # torn by a crash
    rd.close()
    again = RunDir.open(rd.path)
    assert again.running() == {"b": {"pid": 30, "start": "7", "boot": "b", "step": "s2"}}
    again.record_running("b", None)  # appended after the torn line, not glued onto it
    again.close()
    assert RunDir.open(rd.path).running() == {}


def test_run_directory_is_private_to_its_user(state_home, tmp_path):
    rd = RunDir.create(str(tmp_path / "r.yaml"), "name: x\n", "x")
    rd.set_plan({"u@h:22": [Step("a", "a", "echo alpha"), Step("b", "b", "echo beta")]})
    feed(rd, interrupted=True)
    rd.record_running("u@h:22", None)
    rd.close()
    assert rd.path.stat().st_mode & 0o777 == 0o700 and (rd.path / "hosts").stat().st_mode & 0o777 == 0o700
    files = [p for p in rd.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"events.jsonl", "u@h_22.log", "state.json", "done.jsonl", "running.jsonl"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}


def test_a_damaged_run_without_a_way_back_is_named_and_skipped(state_home, tmp_path, capsys):
    good = RunDir.create(None, "x", "x")
    good.close()
    bad = RunDir.create(None, "x", "x")
    bad.close()
    (bad.path / "origin.json").unlink()  # as a run from before origin.json existed
    (bad.path / "state.json").write_text("[]")
    assert [r.run_id for r in list_runs()] == [good.run_id]
    err = capsys.readouterr().err
    assert f"skipping a damaged run directory: {bad.path}: state.json holds list" in err


def test_a_failed_write_is_kept_not_raised_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    rd = RunDir.create(None, "x", "x", base=tmp_path)
    seen = []
    rd.on_fault = seen.append
    import os

    def full(fd, *a, **kw):   # the temporary file exists; writing it fails
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gpuwizard.privatefile.os.fdopen", full)
    rd(ev.HostFinished(host="h", ok=True))  # saves state.json: the write fails
    monkeypatch.undo()
    assert rd.fault is not None and rd.fault.errno == errno.ENOSPC and seen == [rd.fault]
    assert not list(rd.path.glob("*.tmp"))
    json.loads((rd.path / "state.json").read_text())  # the previous state, whole
    rd.close()


def test_logs_of_a_cluster_show_its_nodes_in_rank_order_by_rank(state_home, tmp_path, capsys):
    # three nodes on one address: without the rank, "==> root@10.0.0.1:2201 <==" says
    # nothing, and the names' sort put node 2 first
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    hosts = ["u@10.0.0.1:3003", "u@10.0.0.1:2002", "u@10.0.0.1:1001"]
    rd = RunDir.create(str(recipe), recipe.read_text(), "x")
    rd.set_plan({h: [Step("a", "a", "true")] for h in hosts})
    rd(ev.RunStarted(run_id=rd.run_id, recipe="x", hosts=hosts, steps=["a"], ranks={h: i for i, h in enumerate(hosts)}))
    for i, h in enumerate(hosts):
        rd(ev.StepStarted(host=h, step="a"))
        rd(ev.Output(host=h, step="a", stream="stdout", data=f"rank {i}\n"))
        rd(ev.StepFinished(host=h, step="a", status="ok", exit_code=0))
    rd(ev.RunFinished(ok=True))
    rd.close()
    cmd_logs(argparse.Namespace(run=None, host=None, step="a", list=False))
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("==>")]
    assert heads == ["==> node 0 (head) u@10.0.0.1:3003 <==", "==> node 1 u@10.0.0.1:2002 <==",
                     "==> node 2 u@10.0.0.1:1001 <=="]
    cmd_logs(argparse.Namespace(run=None, host="node 1", step="a", list=False))
    assert capsys.readouterr().out == "rank 1\n"
