"""The executor against real sshd hosts on 127.0.0.1 (tests/fixtures/sshd.py).

Reboots and connection drops are simulated by stopping and restarting the fixture's
sshd: nothing here reboots the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from gpuwizard import events as ev
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.executor.remote import sudo_problem, wrap
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step, Upload
from tests.builders.procs import group_alive, once_script

pytestmark = pytest.mark.timeout(60)


def spec(h, name: str | None = None, **kw) -> HostSpec:
    return HostSpec(name=name or f"h{h.index}", address=h.address, port=h.port, user=h.user,
                    identity=h.client_key, known_hosts=h.known_hosts, **kw)


def execute(hosts, steps, on_start=None, **opts) -> tuple[bool, list[ev.Event], Executor]:
    events: list[ev.Event] = []
    opts.setdefault("connect_timeout", 15)
    ex = Executor([spec(h) for h in hosts], steps, events.append, ExecOptions(**opts))

    async def main() -> bool:
        if on_start:
            on_start(ex)
        return await ex.run()

    return asyncio.run(main()), events, ex


def finished(events, host=None) -> list[tuple[str, str]]:
    return [(e.step, e.status) for e in events if isinstance(e, ev.StepFinished) and (host is None or e.host == host)]


def output(events, host, stream="stdout", step=None) -> str:
    return "".join(e.data for e in events if isinstance(e, ev.Output) and e.host == host
                   and e.stream == stream and (step is None or e.step == step))


def test_output_order_exit_codes_and_one_failing_host(sshd_factory):
    hosts = sshd_factory.start(3)
    good = [Step("count", "count", "for i in $(seq 1 3000); do echo \"line $i\"; echo \"err $i\" >&2; done"),
            Step("env", "env", 'echo "$GREETING"', env=(("GREETING", "it's a \"test\" $HOME"),)),
            Step("last", "last", "echo last")]
    bad = [good[0], Step("boom", "boom", "echo about to fail; exit 3"), good[2]]
    plan = {"h0": good, "h1": bad, "h2": good}
    ok, events, _ = execute(hosts, plan)
    assert not ok
    for name in ("h0", "h2"):
        assert output(events, name, step="count") == "".join(f"line {i}\n" for i in range(1, 3001))
        assert output(events, name, "stderr", step="count") == "".join(f"err {i}\n" for i in range(1, 3001))
        assert output(events, name, step="env") == "it's a \"test\" $HOME\n"
        assert finished(events, name) == [("count", "ok"), ("env", "ok"), ("last", "ok")]
    assert finished(events, "h1") == [("count", "ok"), ("boom", "failed"), ("last", "not_run")]
    boom = next(e for e in events if isinstance(e, ev.StepFinished) and e.step == "boom")
    assert boom.exit_code == 3
    hf = {e.host: e.ok for e in events if isinstance(e, ev.HostFinished)}
    assert hf == {"h0": True, "h1": False, "h2": True}
    assert isinstance(events[0], ev.RunStarted) and isinstance(events[-1], ev.RunFinished)
    assert events[-1].ok is False and events[-1].interrupted is False
    # the executor's pid marker never leaks into output
    assert "gwpid" not in "".join(e.data for e in events if isinstance(e, ev.Output))


def test_bash_strict_mode_and_step_timeout(sshd_host):
    marker = f"gwtimeout{os.getpid()}"
    steps = [Step("unset", "unset", "echo $NOPE_NOT_SET; echo unreachable"),
             ]
    ok, events, _ = execute([sshd_host], steps)
    assert finished(events) == [("unset", "failed")]
    assert "unreachable" not in output(events, "h0")
    steps = [Step("slow", "slow", f"echo go; exec -a {marker} sleep 30", timeout=1.0)]
    ok, events, _ = execute([sshd_host], steps, kill_grace=1.0)
    assert finished(events) == [("slow", "timeout")]
    assert output(events, "h0") == "go\n"
    # the remote process group was killed, not just abandoned
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_host_key_mismatch_is_refused(sshd_factory, tmp_path):
    host, other = sshd_factory.start(2)
    bad = tmp_path / "known_hosts"
    # the other host's key, filed under this host's name: a changed key
    bad.write_text(f"[127.0.0.1]:{host.port} " + other.host_key_line.split(" ", 1)[1] + "\n")
    events: list[ev.Event] = []
    s = HostSpec(name="victim", address=host.address, port=host.port, user="root", identity=host.client_key,
                 known_hosts=str(bad))
    ok = asyncio.run(Executor([s], [Step("a", "a", "echo hi")], events.append,
                              ExecOptions(connect_timeout=30)).run())
    assert not ok
    assert [e.attempt for e in events if isinstance(e, ev.HostConnecting)] == [1]  # refused at once, not retried
    hf = next(e for e in events if isinstance(e, ev.HostFinished))
    assert "does not match" in hf.message and "ssh-keygen -R" in hf.message and not hf.connected
    assert finished(events) == [("a", "not_run")]
    assert not [e for e in events if isinstance(e, ev.Output)]


def test_reboot_step_continues_after_host_returns(sshd_host):
    sshd_host.reboot_delay = 1.0
    steps = [Step("before", "before", "echo before"),
             Step("kernel", "kernel", "echo installing", reboot=True),
             Step("after", "after", "echo after")]
    ok, events, _ = execute([sshd_host], steps, reboot_command=sshd_host.reboot_command)
    assert ok, [e for e in events if isinstance(e, ev.StepFinished)]
    assert sshd_host.reboots == 1
    assert finished(events) == [("before", "ok"), ("kernel", "ok"), ("after", "ok")]
    assert output(events, "h0", step="after") == "after\n"
    assert sum(isinstance(e, ev.HostConnected) for e in events) == 2


def test_dropped_connection_reruns_the_step_exactly_once_to_completion(sshd_host, tmp_path):
    log = tmp_path / "steps.log"
    steps = [Step(f"s{i}", f"s{i}", f"echo start-{i} >> {log}; sleep {1.5 if i == 2 else 0.1}; echo done-{i} >> {log}")
             for i in range(1, 4)]

    def killer() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log.exists() and "start-2" in log.read_text():
                sshd_host.restart(0.8)  # kills sshd, the session and the step's processes
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    ok, events, _ = execute([sshd_host], steps)
    t.join()
    lines = log.read_text().split()
    assert ok, finished(events)
    assert [lines.count(f"done-{i}") for i in (1, 2, 3)] == [1, 1, 1]
    assert lines.count("start-2") == 2  # interrupted once, re-run once
    assert finished(events) == [("s1", "ok"), ("s2", "ok"), ("s3", "ok")]
    assert "connection lost" in output(events, "h0", "gpuwizard")


def test_check_skips_and_retries(sshd_host, tmp_path):
    m = tmp_path / "marker"
    flaky = tmp_path / "flaky"
    steps = [Step("mk", "mk", f"touch {m}", check=f"test -f {m}"),
             Step("flaky", "flaky", f"if [ -f {flaky} ]; then echo fine; else touch {flaky}; exit 1; fi", retries=1)]
    ok, events, _ = execute([sshd_host], steps)
    assert ok and finished(events) == [("mk", "ok"), ("flaky", "ok")]
    assert [e.attempt for e in events if isinstance(e, ev.StepStarted) and e.step == "flaky"] == [1, 2]
    ok, events, _ = execute([sshd_host], steps[:1])
    assert ok and finished(events) == [("mk", "skipped")]


def test_resume_state_skips_done_steps(sshd_host):
    from gpuwizard.executor import fingerprint

    a, b = Step("a", "a", "echo a"), Step("b", "b", "echo b")
    changed = Step("b", "b", "echo b2")
    done = {"h0": {"a": fingerprint(a), "b": fingerprint(b)}}
    ok, events, _ = execute([sshd_host], [a, changed], done=done)
    assert ok and finished(events) == [("a", "skipped"), ("b", "ok")]
    assert output(events, "h0") == "b2\n"
    sshd_host.stop()  # a host with nothing left to do is not even contacted
    ok, events, _ = execute([sshd_host], [a, b], done=done, connect_timeout=1)
    assert ok and finished(events) == [("a", "skipped"), ("b", "skipped")]
    assert not [e for e in events if isinstance(e, ev.HostConnecting)]


def test_cancel_kills_remote_and_reports(sshd_host):
    marker = f"gwcancel{os.getpid()}"
    steps = [Step("one", "one", "echo one"), Step("long", "long", f"echo started; exec -a {marker} sleep 30"),
             Step("three", "three", "echo three")]
    events: list[ev.Event] = []
    ex = Executor([spec(sshd_host)], steps, lambda e: (events.append(e), isinstance(e, ev.Output) and "started" in e.data
                                                      and ex.cancel()), ExecOptions(kill_grace=1.0))
    ok = asyncio.run(ex.run())
    assert not ok and ex.interrupted
    assert finished(events) == [("one", "ok"), ("long", "cancelled"), ("three", "not_run")]
    assert events[-1].interrupted is True
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_uploads_are_0600_in_home_and_masked(sshd_user_host, tmp_path):
    token = {"access_token": "ya29.A0ARrdaM-very-secret-token", "refresh_token": "1//0gSECRETrefresh_value"}
    local = tmp_path / "token.json"
    local.write_text(json.dumps(token))
    remote = "~/.config/gwtest-upload/token.json"
    steps = [Step("use", "use", "stat -c '%a %U' ~/.config/gwtest-upload/token.json; "
                               "cat ~/.config/gwtest-upload/token.json; echo; "
                               "printf 'ya29.A0ARrdaM-very'; sleep 0.2; printf -- '-secret-token\\n'",
                  uploads=(Upload(str(local), remote),))]
    ok, events, _ = execute([sshd_user_host], steps)
    assert ok, finished(events)
    text = output(events, "h0")
    assert text.startswith("600 gwtest\n")
    blob = json.dumps([e.to_dict() for e in events])
    for secret in token.values():
        assert secret not in blob
    assert "********" in text
    home = pathlib.Path(os.path.expanduser("~gwtest"))
    assert json.loads((home / ".config/gwtest-upload/token.json").read_text()) == token


def test_unprivileged_user_and_sudo_wrapping(sshd_user_host):
    steps = [Step("who", "who", "id -un"), Step("priv", "priv", "id -un", sudo=True)]
    ok, events, _ = execute([sshd_user_host], steps)
    assert output(events, "h0", step="who") == "gwtest\n"
    # gwtest has no sudo rights: sudo -n fails at once instead of prompting
    assert finished(events) == [("who", "ok"), ("priv", "failed")]
    assert "sudo -n -- bash --norc" in wrap("true", True) and "sudo" not in wrap("true", False)


def test_root_runs_sudo_steps_directly(sshd_host):
    ok, events, _ = execute([sshd_host], [Step("priv", "priv", "id -u", sudo=True)])
    assert ok and output(events, "h0") == "0\n"


def test_unreachable_host_gives_up_at_the_deadline(sshd_host):
    sshd_host.stop()
    ok, events, _ = execute([sshd_host], [Step("a", "a", "true")], connect_timeout=1.5)
    assert not ok
    tries = [e for e in events if isinstance(e, ev.HostConnecting)]
    assert len(tries) > 1
    # every retry says why and for how long it keeps trying (not a bare attempt count) ...
    assert tries[0].message == "" and all(re.fullmatch(r"connection refused; retrying for \ds more", e.message)
                                          for e in tries[1:]), [e.message for e in tries]
    # ... and the host's end says what happened, how often, over how long, and what to check
    hf = next(e for e in events if isinstance(e, ev.HostFinished))
    assert re.fullmatch(rf"h0: connection refused after {len(tries)} attempts over [\d.]+s; is the host up and is "
                        rf"port {sshd_host.port} open to this machine\?", hf.message), hf.message
    assert not hf.connected


def test_progress_events_from_lines(sshd_host, monkeypatch):
    from gpuwizard import progress

    def parse(kind, line):
        if kind == "pct" and line.endswith("%"):
            return {"fraction": int(line.split()[-1][:-1]) / 100, "text": line}
        return None

    monkeypatch.setattr(progress, "parse", parse)
    step = Step("dl", "dl", r"printf 'at 10%%\rat 50%%\rat 100%%\n'", progress="pct")
    ok, events, _ = execute([sshd_host], [step])
    assert ok
    assert [e.fraction for e in events if isinstance(e, ev.Progress)] == [0.1, 0.5, 1.0]


def test_network_blip_stops_the_orphaned_step_before_rerunning_it(sshd_host, tmp_path):
    log = tmp_path / "steps.log"
    steps = [Step("s1", "s1", f"echo start >> {log}; echo ready; sleep 1.5; echo done >> {log}")]
    events: list[ev.Event] = []
    blipped = []

    def sink(e: ev.Event) -> None:
        events.append(e)
        if isinstance(e, ev.Output) and "ready" in e.data and not blipped:
            blipped.append(1)
            sshd_host.drop_connections()  # the old step keeps running on the host ...

    groups: list[int] = []
    opts = ExecOptions(connect_timeout=15, on_running=lambda h, p: p and groups.append(p["pid"]))
    ok = asyncio.run(Executor([spec(sshd_host)], steps, sink, opts).run())
    assert ok and len(groups) == 2
    assert not group_alive(groups[0])  # ... until the executor stopped it: it can never write "done"
    assert log.read_text().split() == ["start", "start", "done"]


def test_reboot_that_fails_or_never_happens_fails_the_step(sshd_host):
    steps = [Step("k", "k", "true", reboot=True), Step("after", "after", "true")]
    ok, events, _ = execute([sshd_host], steps, reboot_command="echo no permission >&2; exit 1")
    assert finished(events) == [("k", "failed"), ("after", "not_run")]
    assert "reboot command failed" in next(e.message for e in events if isinstance(e, ev.StepFinished))
    ok, events, _ = execute([sshd_host], steps[:1], reboot_command="true", reboot_down_timeout=0.5)
    assert finished(events) == [("k", "failed")]
    assert "did not go down" in next(e.message for e in events if isinstance(e, ev.StepFinished))
    assert sshd_host.reboots == 0


def _abandon(host, step: Step) -> list[tuple[str, object]]:
    """Run ``step`` until it prints "ready", then die like ``os._exit`` (nothing stopped, the
    connection dropped): what ``on_running`` recorded, for the next attempt to stop."""
    records: list[tuple[str, object]] = []

    async def go() -> None:
        events: list[ev.Event] = []
        ex = Executor([spec(host)], [step], events.append,
                      ExecOptions(connect_timeout=15, on_running=lambda h, p: records.append((h, p))))
        task = asyncio.ensure_future(ex.run())
        while not any(isinstance(e, ev.Output) and "ready" in e.data for e in events):
            await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        for h in ex.hosts:
            assert h.conn is not None
            h.conn.abort()

    asyncio.run(go())
    return records


def test_resume_stops_the_step_an_abandoned_attempt_left_running(sshd_host, tmp_path):
    # "trap '' TERM" and bash exec-ing its last command (sleep): TERM does nothing, and
    # the pid's command line is no longer our wrapper's bash; the start time still matches
    step = Step("s", "s", once_script(tmp_path, "echo ready; trap '' TERM; sleep 25"))
    records = _abandon(sshd_host, step)
    log = tmp_path / "copies.log"
    first = int(log.read_text().split()[1])
    assert records and records[-1][0] == "h0" and records[-1][1]["pid"] == first
    assert records[-1][1]["start"].isdigit() and records[-1][1]["boot"]
    assert group_alive(first)  # the orphan: a plain re-run would start a second copy beside it

    fixed = Step("s", "s", once_script(tmp_path, "echo second"))
    try:
        ok, events, _ = execute([sshd_host], [fixed], running={"h0": records[-1][1]}, kill_grace=0.5,
                                on_running=lambda h, p: records.append((h, p)))
    finally:
        if group_alive(first):
            os.killpg(first, 9)
    assert ok, finished(events)
    assert not group_alive(first)
    starts = [line.split() for line in log.read_text().splitlines()]
    assert [s[2] for s in starts] == ["0", "0"]  # never two copies at once
    assert "stopped s (process group" in output(events, "h0", "gpuwizard")
    assert records[-1] == ("h0", None)  # ended: nothing left for a later attempt to stop


def test_stale_record_of_another_process_is_left_alone(sshd_host, tmp_path):
    """A recorded pid is only killed while it is the same process: pids get reused."""
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        boot = pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = pathlib.Path(f"/proc/{bystander.pid}/stat").read_text()
        start = stat[stat.rindex(")") + 2:].split()[19]
        for rec in ({"pid": bystander.pid, "start": str(int(start) + 1), "boot": boot},  # another process
                    {"pid": bystander.pid, "start": start, "boot": "0000-other-boot"},    # before a reboot
                    {"pid": bystander.pid}):                                             # not our bash
            ok, events, _ = execute([sshd_host], [Step("a", "a", "true")], running={"h0": rec}, kill_grace=0.5)
            assert ok and bystander.poll() is None, rec
            assert "stopped" not in output(events, "h0", "gpuwizard")
        # the same process: stopped (TERM), so the check above is not vacuous
        ok, events, _ = execute([sshd_host], [Step("a", "a", "true")], kill_grace=0.5,
                                running={"h0": {"pid": bystander.pid, "start": start, "boot": boot}})
        assert ok and bystander.wait(timeout=5) is not None
    finally:
        if bystander.poll() is None:
            bystander.kill()
            bystander.wait()


def _pids_matching(text: str) -> list[int]:
    """Local pids whose command line contains ``text`` (the host is this machine)."""
    r = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def test_step_env_values_never_show_in_ps_on_the_host(sshd_user_host):
    value = f"envsecret-{os.getpid()}-x9"
    marker = f"gwpsmark{os.getpid()}"
    shared = pathlib.Path(tempfile.mkdtemp(prefix="gw-ps-"))  # not pytest's 0700 tree: gwtest looks here
    shared.chmod(0o755)
    seen_it = shared / "ps-saw-the-step"
    # the step runs until a concurrent ps has seen its command line, then prints the value
    step = Step("env", "env", f": {marker}; while [ ! -e {seen_it} ]; do sleep 0.02; done; echo \"$GW_TOKENISH\"",
                env=(("GW_TOKENISH", value),))
    seen: list[str] = []
    finished_flag = threading.Event()

    def watch() -> None:  # a concurrent `ps -eo args` (full width), as any user on the host can run
        while not finished_flag.is_set():
            snap = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
            seen.append(snap)
            if marker in snap:
                seen_it.touch()

    t = threading.Thread(target=watch)
    t.start()
    try:
        ok, events, _ = execute([sshd_user_host], [step])
    finally:
        finished_flag.set()
        t.join()
        shutil.rmtree(shared, ignore_errors=True)
    assert ok and output(events, "h0") == value + "\n"  # the step got it ...
    assert any(marker in snap for snap in seen)  # ... ps saw the step's command line ...
    assert not [snap for snap in seen if value in snap]  # ... and never the value


def test_timeout_also_stops_processes_that_left_the_group_with_setsid(sshd_host):
    marker = f"gwsetsid{os.getpid()}"
    step = Step("esc", "esc", f"setsid bash -c 'exec -a {marker} sleep 1000' & echo started; sleep 30", timeout=1.5)
    try:
        ok, events, _ = execute([sshd_host], [step], kill_grace=0.5)
        assert finished(events) == [("esc", "timeout")]
        deadline = time.monotonic() + 10
        while _pids_matching(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pids_matching(marker) == []  # killed through the step's token, not left running
    finally:
        for pid in _pids_matching(marker):
            os.kill(pid, 9)


def test_cancel_also_stops_processes_that_left_the_group_with_setsid(sshd_host):
    marker = f"gwsetsidc{os.getpid()}"
    steps = [Step("esc", "esc", f"setsid bash -c 'exec -a {marker} sleep 1000' & echo started; sleep 30")]
    events: list[ev.Event] = []
    ex = Executor([spec(sshd_host)], steps, lambda e: (events.append(e), isinstance(e, ev.Output)
                                                      and "started" in e.data and ex.cancel()),
                  ExecOptions(kill_grace=0.5, connect_timeout=15))
    try:
        assert not asyncio.run(ex.run())
        assert finished(events) == [("esc", "cancelled")]
        deadline = time.monotonic() + 10
        while _pids_matching(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pids_matching(marker) == []
    finally:
        for pid in _pids_matching(marker):
            os.kill(pid, 9)


def test_missing_sudo_fails_at_once_with_the_fix(sshd_user_host):
    # this host has no sudo at all (and gwtest no rights): retrying cannot change that
    steps = [Step("priv", "priv", "id -u", sudo=True, retries=3), Step("after", "after", "true")]
    ok, events, _ = execute([sshd_user_host], steps)
    assert not ok and finished(events) == [("priv", "failed"), ("after", "not_run")]
    assert [e.attempt for e in events if isinstance(e, ev.StepStarted)] == [1]  # not retried
    msg = next(e.message for e in events if isinstance(e, ev.StepFinished) and e.step == "priv")
    assert ("sudo is not installed" in msg or "without a password" in msg) and "ssh.user: root" in msg, msg


def test_hosts_that_never_connect_say_why_and_how_to_fix_it(sshd_factory, tmp_path):
    good, unknown, closed = sshd_factory.start(3)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    closed.stop()
    specs = [spec(good), HostSpec(name="h1", address=unknown.address, port=unknown.port, user="root",
                                  identity=unknown.client_key, known_hosts=str(empty)), spec(closed)]
    events: list[ev.Event] = []
    ok = asyncio.run(Executor(specs, [Step("a", "a", "echo hi")], events.append,
                              ExecOptions(connect_timeout=1.5)).run())
    assert not ok
    hf = {e.host: e for e in events if isinstance(e, ev.HostFinished)}
    assert hf["h0"].ok and hf["h0"].connected
    assert not hf["h1"].connected and f"ssh-keyscan -p {unknown.port} 127.0.0.1 >> {empty}" in hf["h1"].message
    assert not hf["h2"].connected and "connection refused after" in hf["h2"].message
    assert f"port {closed.port}" in hf["h2"].message


def test_a_secret_printed_half_on_stdout_half_on_stderr_is_masked(sshd_host, tmp_path):
    local = tmp_path / "pw"
    local.write_text("pw5ch\n")  # five characters: too short for the old masker
    flag, flag2 = tmp_path / "first-half-arrived", tmp_path / "second-half-arrived"
    # each piece is written only once the one before has reached us (the host is this
    # machine): sshd reads stdout and stderr separately, so only that fixes their order
    wait = "while [ ! -e {} ]; do sleep 0.02; done"
    step = Step("leak", "leak", f"printf 'a pw'; {wait.format(flag)}; printf '5ch b\\n' >&2; {wait.format(flag2)}; "
                                "cat ~/.gwtest-pw; echo",
                uploads=(Upload(str(local), "~/.gwtest-pw"),))
    events: list[ev.Event] = []

    def sink(e: ev.Event) -> None:
        events.append(e)
        if isinstance(e, ev.Output) and e.stream == "stdout" and e.data.startswith("a "):
            flag.touch()
        if isinstance(e, ev.Output) and (e.stream == "stderr" or "********" in e.data):
            flag2.touch()

    ok = asyncio.run(Executor([spec(sshd_host)], [step], sink, ExecOptions(connect_timeout=15)).run())
    assert ok, finished(events)
    shown = "".join(e.data for e in events if isinstance(e, ev.Output))
    assert "pw5ch" not in shown and "5ch" not in shown and shown.count("********") == 2, shown


def test_headless_retry_lines_say_the_cause_and_the_time_left(sshd_host):
    import io

    from gpuwizard.headless import LineRenderer

    sshd_host.stop()
    out = io.StringIO()
    ok = asyncio.run(Executor([spec(sshd_host)], [Step("a", "a", "true")], LineRenderer(out),
                              ExecOptions(connect_timeout=1.5)).run())
    assert not ok
    retry = [line for line in out.getvalue().splitlines() if "not reachable yet" in line]
    assert retry and all(re.search(r"connection refused; retrying for \ds more \(attempt \d+\)$", line)
                         for line in retry), out.getvalue()


def test_resume_also_stops_what_the_abandoned_step_started_with_setsid(sshd_host, tmp_path):
    marker = f"gwsetsidr{os.getpid()}"
    step = Step("s", "s", f"setsid bash -c 'exec -a {marker} sleep 1000' & echo ready; sleep 25")
    records: list[tuple[str, object]] = []
    try:
        records = _abandon(sshd_host, step)
        assert _pids_matching(marker) and records[-1][1]["token"]  # the escapee outlived the attempt
        ok, events, _ = execute([sshd_host], [Step("s", "s", "echo second")], running={"h0": records[-1][1]},
                                kill_grace=0.5)
        assert ok, finished(events)
        deadline = time.monotonic() + 10
        while _pids_matching(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pids_matching(marker) == []
    finally:
        for pid in _pids_matching(marker):
            os.kill(pid, 9)
        pgid = records[-1][1]["pid"] if records and records[-1][1] else None
        if pgid and group_alive(pgid):
            os.killpg(pgid, 9)


@pytest.mark.parametrize("code,stderr,expect", [
    (0, "", ""),
    (127, "bash: line 1: sudo: command not found\n", "sudo is not installed"),
    (1, "sudo: a password is required\n", "may not use sudo without a password"),
    (1, "sudo: a terminal is required to read the password\n", "may not use sudo without a password"),
    (1, "sudo: unable to resolve host x\n", "sudo -n true failed (sudo: unable to resolve host x)"),
])
def test_sudo_problems_name_their_fix(code, stderr, expect):
    msg = sudo_problem("h0", "gw", code, stderr)
    assert (expect in msg) if expect else msg == ""
    if code:
        assert "log in as root" in msg


def test_error_lines_are_the_steps_own_lines(sshd_host):
    # the env prelude rides on the step's first line: bash's "line 2" is the step's line 2
    steps = [Step("e", "e", "true\necho $NOT_SET_AT_ALL", env=(("A", "1"),))]
    ok, events, _ = execute([sshd_host], steps)
    assert not ok and "line 2: NOT_SET_AT_ALL: unbound variable" in output(events, "h0", "stderr")


def test_a_secret_too_short_to_mask_is_said_once(sshd_host, tmp_path):
    local = tmp_path / "pin"
    local.write_text("42\n")  # two characters: masking them would garble every number in the log
    up = (Upload(str(local), "~/.gwtest-pin"),)
    ok, events, _ = execute([sshd_host], [Step("a", "a", "true", uploads=up), Step("b", "b", "true", uploads=up)])
    assert ok
    notes = output(events, "h0", "gpuwizard")
    assert notes.count(f"the secret in {local} is shorter than 3 characters") == 1, notes
