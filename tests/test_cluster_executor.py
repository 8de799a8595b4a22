"""Barrier and gang steps (gpuwizard/executor/gang.py) on real sshd "nodes": several
sshd daemons on 127.0.0.1, one per rank. The nodes share this machine's files, so the
steps leave their traces in ``tmp_path`` for the test to read."""

from __future__ import annotations

import os
import subprocess

import pytest

from gpuwizard import events as ev
from gpuwizard.executor import fingerprint
from gpuwizard.steps import Step
from tests.builders.cluster import finished, host_message, node_name, output, run_nodes, step_result

pytestmark = pytest.mark.timeout(90)


def _wait_for(*paths, tries: int = 600) -> str:
    """Shell that waits (a bounded poll) until every path exists."""
    cond = " || ".join(f"[ ! -e {p} ]" for p in paths)
    return f"i=0; while {{ {cond}; }} && [ $i -lt {tries} ]; do sleep 0.05; i=$((i+1)); done; "


def _gone(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_barrier_no_node_starts_before_every_node_reached_it(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    log, go = tmp_path / "order.log", tmp_path / "go"
    # Node 2 is late: it reaches the barrier only after nodes 0 and 1 said they wait
    # there (bounded: without a barrier the others would have started long before).
    plan = {node_name(r): [Step("pre", "pre", (_wait_for(go, tries=400) if r == 2 else "") + f"echo pre{r} >> {log}"),
                           Step("sync", "sync", f"echo start{r} >> {log}", barrier=True)]
            for r in range(3)}
    waiting: set[str] = set()

    def watch(e: ev.Event, _ex) -> None:
        if isinstance(e, ev.Output) and e.step == "sync" and "waiting for" in e.data:
            waiting.add(e.host)
            if waiting >= {"n0", "n1"}:
                go.touch()

    ok, events, _ = run_nodes(hosts, plan, watch)
    assert ok, [e for e in events if isinstance(e, ev.HostFinished)]
    lines = log.read_text().split()
    assert sorted(lines[:3]) == ["pre0", "pre1", "pre2"] and sorted(lines[3:]) == ["start0", "start1", "start2"]
    assert "node 2 n2" in output(events, "n0", "sync", stream="gpuwizard")
    assert all(finished(events, node_name(r)) == [("pre", "ok"), ("sync", "ok")] for r in range(3))


def test_a_node_failing_before_the_barrier_releases_the_others_naming_it(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    ran = tmp_path / "sync-ran"
    plan = {node_name(r): [Step("build", "build", "exit 3" if r == 1 else "true"),
                           Step("sync", "sync", f"touch {ran}", barrier=True),
                           Step("after", "after", "true")] for r in range(3)}
    ok, events, _ = run_nodes(hosts, plan)
    assert not ok and not ran.exists()
    for name in ("n0", "n2"):
        assert finished(events, name) == [("build", "ok"), ("sync", "not_run"), ("after", "not_run")]
        assert "node 1 n1 failed at step build (exit code 3)" in step_result(events, name, "sync").message
        assert "node 1 n1 failed at step build" in host_message(events, name)
    assert finished(events, "n1") == [("build", "failed"), ("sync", "not_run"), ("after", "not_run")]

    # a node that never connects releases them too
    hosts[2].stop()
    ok, events, _ = run_nodes(hosts, plan[node_name(0)], connect_timeout=2)
    assert not ok and not ran.exists()
    for name in ("n0", "n1"):
        assert finished(events, name) == [("build", "ok"), ("sync", "not_run"), ("after", "not_run")]
        assert "node 2 n2 failed at step build" in step_result(events, name, "sync").message


def test_a_node_done_in_an_earlier_attempt_counts_as_having_reached_it(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    sync = Step("sync", "sync", f"echo $(hostname) >> {tmp_path}/sync.log", barrier=True)
    train = Step("train", "train", "echo trained", gang=True)
    done = {"n0": {"sync": fingerprint(sync), "train": fingerprint(train)}}
    ok, events, _ = run_nodes(hosts, [sync, train], done=done)
    assert ok
    assert finished(events, "n0") == [("sync", "skipped"), ("train", "skipped")]
    for name in ("n1", "n2"):
        assert finished(events, name) == [("sync", "ok"), ("train", "ok")]
        assert output(events, name, "train") == "trained\n"
    assert len((tmp_path / "sync.log").read_text().splitlines()) == 2


def test_gang_one_rank_dying_stops_the_step_on_every_node_naming_it(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    marker = f"gwgang{os.getpid()}x"

    def train(r: int) -> Step:
        if r == 1:  # dies once the others run
            run = _wait_for(tmp_path / "up0", tmp_path / "up2") + "echo rank 1 dies >&2; exit 1"
        else:
            run = f"touch {tmp_path}/up{r}; exec -a {marker}{r} sleep 300"
        return Step("train", "train", run, gang=True)

    plan = {node_name(r): [Step("pre", "pre", "true"), train(r), Step("after", "after", "true")] for r in range(3)}
    ok, events, _ = run_nodes(hosts, plan)
    assert not ok
    for r in range(3):
        name = node_name(r)
        assert finished(events, name) == [("pre", "ok"), ("train", "failed"), ("after", "not_run")]
        res = step_result(events, name, "train")
        assert "node 1 n1 failed first (exit code 1)" in res.message
        assert "node 1 n1" in host_message(events, name)
    assert step_result(events, "n1", "train").exit_code == 1
    assert _gone(marker)  # the sleeping ranks were killed, not left behind


def test_gang_a_rank_that_ended_well_fails_when_a_later_rank_fails(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    plan = {node_name(r): [Step("train", "train",
                                {0: f"touch {tmp_path}/done0",
                                 1: _wait_for(tmp_path / "done0") + "exit 2",
                                 2: "true"}[r], gang=True)] for r in range(3)}
    ok, events, _ = run_nodes(hosts, plan)
    assert not ok
    first = step_result(events, "n0", "train")
    assert first.status == "failed" and first.exit_code is None
    assert "node 1 n1 failed first (exit code 2)" in first.message
    # node 0 waited for the others before reporting
    order = [e.host for e in events if isinstance(e, ev.StepFinished)]
    assert order.index("n1") < order.index("n0")


def test_gang_timeout_on_one_rank_stops_the_others(sshd_factory, tmp_path):
    hosts = sshd_factory.start(2)
    marker = f"gwgangt{os.getpid()}x"
    plan = {"n0": [Step("train", "train", f"exec -a {marker} sleep 300", gang=True)],
            "n1": [Step("train", "train", "exec sleep 300", gang=True, timeout=1.0)]}
    ok, events, _ = run_nodes(hosts, plan)
    assert not ok
    assert step_result(events, "n1", "train").status == "timeout"
    zero = step_result(events, "n0", "train")
    assert zero.status == "failed" and "node 1 n1 failed first (timed out after 1s)" in zero.message
    assert _gone(marker)


def test_cancel_while_waiting_at_a_barrier(sshd_factory, tmp_path):
    hosts = sshd_factory.start(2)
    marker = f"gwbarc{os.getpid()}x"
    plan = {"n0": [Step("sync", "sync", "true", barrier=True)],
            "n1": [Step("slow", "slow", f"echo slow running; exec -a {marker} sleep 300"),
                   Step("sync", "sync", "true", barrier=True)]}
    seen: set[str] = set()

    def watch(e: ev.Event, ex) -> None:
        if isinstance(e, ev.Output) and "waiting for node 1 n1" in e.data:
            seen.add("waiting")
        if isinstance(e, ev.Output) and "slow running" in e.data:
            seen.add("slow")
        if seen == {"waiting", "slow"}:
            ex.cancel()

    ok, events, ex = run_nodes(hosts, plan, watch)
    assert not ok and ex.interrupted
    assert finished(events, "n0") == [("sync", "cancelled")]
    assert finished(events, "n1") == [("slow", "cancelled"), ("sync", "not_run")]
    assert _gone(marker)


def test_gang_a_dropped_connection_fails_the_step_everywhere_and_stops_every_rank(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    marker = f"gwgangl{os.getpid()}x"
    plan = {node_name(r): [Step("train", "train",
                                f"touch {tmp_path}/up{r}; "
                                + (_wait_for(tmp_path / "up0", tmp_path / "up2") + "echo ready; " if r == 1 else "")
                                + f"exec -a {marker}{r} sleep 300", gang=True)] for r in range(3)}

    def watch(e: ev.Event, _ex) -> None:
        if isinstance(e, ev.Output) and e.host == "n1" and "ready" in e.data:
            hosts[1].drop_connections()  # a network blip: the rank keeps running on the host

    ok, events, _ = run_nodes(hosts, plan, watch)
    assert not ok
    for r in range(3):
        res = step_result(events, node_name(r), "train")
        assert res.status == "failed"
        assert "node 1 n1 failed first (the connection to n1 dropped during this step" in res.message
    assert _gone(marker)  # node 1's orphaned rank too: it reconnected to stop it


@pytest.mark.parametrize("kind", ["gang", "barrier"])
def test_a_connection_dropped_while_waiting_at_a_barrier_reconnects_and_runs(sshd_factory, tmp_path, kind):
    # A head's dataset download can keep the workers waiting at the gang step's barrier
    # for an hour; a network blip then must not fail the training on every node: nothing
    # of the step ran on the dropped node yet, so it reconnects and takes part.
    hosts = sshd_factory.start(3)
    go = tmp_path / "go"
    plan = {node_name(r): [Step("pre", "pre", _wait_for(go, tries=600) if r == 0 else "true"),
                           Step("train", "train", f"echo trained{r}", **{kind: True})] for r in range(3)}
    dropped: list[str] = []

    def watch(e: ev.Event, _ex) -> None:
        if isinstance(e, ev.Output) and e.host == "n1" and e.step == "train" and "waiting for" in e.data \
                and not dropped:
            hosts[1].drop_connections()
            dropped.append("n1")
            go.touch()

    ok, events, _ = run_nodes(hosts, plan, watch)
    assert dropped
    assert ok, [(e.host, e.message) for e in events if isinstance(e, ev.HostFinished)]
    for r in range(3):
        assert finished(events, node_name(r)) == [("pre", "ok"), ("train", "ok")]
        assert f"trained{r}" in output(events, node_name(r), "train")


def test_gang_a_check_passing_on_some_nodes_only_runs_the_step_on_every_node(sshd_factory, tmp_path):
    # `check: test -f ~/out/model.pt` passes on the head only (rank 0 saved it): were the
    # head to skip torchrun, the workers would wait at the rendezvous for a rank 0 that
    # never comes. A gang step is skipped only where its check passes on every node.
    hosts = sshd_factory.start(3)
    plan = {node_name(r): [Step("train", "train", f"echo trained{r}", check="true" if r == 0 else "false", gang=True)]
            for r in range(3)}
    ok, events, _ = run_nodes(hosts, plan)
    assert ok
    for r in range(3):
        assert finished(events, node_name(r)) == [("train", "ok")]
        assert f"trained{r}" in output(events, node_name(r), "train")
    assert "node 1 n1, node 2 n2" in output(events, "n0", "train", stream="gpuwizard")

    # passing everywhere: skipped everywhere
    plan = {node_name(r): [Step("train", "train", f"echo trained{r}", check="true", gang=True)] for r in range(3)}
    ok, events, _ = run_nodes(hosts, plan)
    assert ok and all(finished(events, node_name(r)) == [("train", "skipped")] for r in range(3))
