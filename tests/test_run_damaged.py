"""A damaged run directory (issue 13) is repaired or reported by path, never fatal:
``run`` of another recipe, ``logs``, ``logs --list`` and a resume of the damaged run."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from gpuwizard.runlog import host_file
from tests.builders.runs import gw, runs, write_recipe

pytestmark = pytest.mark.timeout(120)


def _state(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def _put_state(run_dir: pathlib.Path, value: object) -> None:
    (run_dir / "state.json").write_text(json.dumps(value))


def _log(run_dir: pathlib.Path) -> pathlib.Path:
    (log,) = (run_dir / "hosts").glob("*.log")
    return log


CORRUPTIONS = {
    "state is []": lambda d: _put_state(d, []),
    "state is null": lambda d: _put_state(d, None),
    "hosts is []": lambda d: _put_state(d, {**_state(d), "hosts": []}),
    "done and attempts are strings": lambda d: _put_state(
        d, {**_state(d), "attempts": "two", "hosts": {h: {**v, "done": "user.a"} for h, v in _state(d)["hosts"].items()}}),
    "state.json truncated": lambda d: (d / "state.json").write_bytes((d / "state.json").read_bytes()[:37]),
    "non-UTF-8 in running.jsonl": lambda d: (d / "running.jsonl").write_bytes(
        (d / "running.jsonl").read_bytes() + b'{"host": "\xff\xfe", "proc": {"pid": 1}}\n'),
    "non-UTF-8 in done.jsonl": lambda d: (d / "done.jsonl").write_bytes(
        b'{"host": "\xff", "step": "x", "fp": "y"}\n' + (d / "done.jsonl").read_bytes()),
    "host log is a directory": lambda d: (_log(d).unlink(), _log_dir(d)),
    "torn last line of events.jsonl": lambda d: (d / "events.jsonl").write_bytes(
        (d / "events.jsonl").read_bytes() + b'{"event": "step_sta'),
}


def _log_dir(d: pathlib.Path) -> None:
    for line in (d / "done.jsonl").read_text().splitlines():
        log = d / "hosts" / f"{host_file(json.loads(line)['host'])}.log"
        if not log.exists():
            log.mkdir()


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_a_damaged_run_is_repaired_or_skipped_never_fatal(sshd_host, tmp_path, damage):
    flag = tmp_path / "count"
    steps = [{"name": "a", "run": f"echo a >> {flag}"}, {"name": "b", "run": "echo b-ran; exit 3"}]
    r = write_recipe(tmp_path / "r.yaml", [sshd_host], steps)
    p = gw(tmp_path, "run", str(r))
    assert p.returncode == 1, p.stdout + p.stderr  # "b" failed: a run to resume, "a" done
    (run_dir,) = runs(tmp_path)
    CORRUPTIONS[damage](run_dir)

    other = write_recipe(tmp_path / "other.yaml", [sshd_host], [{"name": "x", "run": "echo other"}], name="other")
    p = gw(tmp_path, "run", str(other))
    assert p.returncode == 0, p.stdout + p.stderr
    for args in (["logs", "--list"], ["logs"], ["logs", run_dir.name]):
        p = gw(tmp_path, *args)
        assert p.returncode in (0, 2), p.stdout + p.stderr  # 2: "cannot read that run", said in one line
        assert "Traceback" not in p.stderr and "unexpected error" not in p.stderr, p.stderr
    listing = gw(tmp_path, "logs", "--list")
    assert "other" in listing.stdout
    assert run_dir.name in listing.stdout or str(run_dir) in listing.stderr  # listed, or named as skipped

    steps[1]["run"] = "echo b-fixed"
    write_recipe(r, [sshd_host], steps)
    p = gw(tmp_path, "run", str(r), "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert "resuming run" in p.stderr and f"[{sshd_host.host_string}] user.a: skipped" in p.stdout
    assert flag.read_text() == "a\n"  # "a" ran once
    # events appended after a torn line start on a line of their own
    bad = [line for line in (run_dir / "events.jsonl").read_bytes().splitlines() if not _parses(line)]
    assert bad in ([], [b'{"event": "step_sta'])
    shutil.rmtree(run_dir, ignore_errors=True)
