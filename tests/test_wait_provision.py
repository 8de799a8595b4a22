"""``--wait``: rounds of zones with a growing, jittered gap, against the fake Compute server.

The real google-cloud-compute client talks to the fake; stockouts are injected per zone
for the first N inserts (``Fault.times``). Time is not waited for: the policy's clock and
sleep are replaced, so each test asserts the exact gaps asked for and the order of the
zones the inserts went to.
"""

from __future__ import annotations

import asyncio
import io
import random

import pytest

from gpuwizard import notify
from gpuwizard.gcp.errors import PERMISSION, STOCKOUT, GcpError
from gpuwizard.gcp.wait import Backoff, WaitPolicy, human, policy_for
from gpuwizard.runner import wait_policy
from gpuwizard.runrequest import RunRequest
from gpuwizard.errors import UsageError
from tests.builders.gcp import make_recipe, run

A, B, C = "us-central1-a", "us-central1-b", "us-west1-b"


class FakeTime:
    """A clock that moves only when the wait sleeps; records every gap asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(t: FakeTime, seed: int = 7, max_wait: float | None = None, **kw) -> WaitPolicy:
    return WaitPolicy(max_wait=max_wait, backoff=Backoff(first=30.0, factor=1.5, cap=600.0, jitter=0.2),
                      rng=random.Random(seed), clock=t.clock, sleep=t.sleep, **kw)


def expected_gaps(n: int, seed: int = 7) -> list[float]:
    """The schedule written out: 30 s, x1.5 per round, capped at 600 s, each times (1 +- 0.2)."""
    rng = random.Random(seed)
    return [min(600.0, min(600.0, 30.0 * 1.5 ** i) * (1 + rng.uniform(-0.2, 0.2))) for i in range(n)]


def zones_of(paths: list[str]) -> list[str]:
    return [p.split("/zones/")[1].split("/")[0] for p in paths]


def test_stockouts_then_success_follows_the_schedule_and_the_zone_order(fake_compute, tmp_path):
    fake_compute.add_fault(A, "stockout", times=2)
    fake_compute.add_fault(B, "stockout_details", times=3)
    fake_compute.add_fault(C, "insufficient_capacity", times=3)
    t = FakeTime()
    hosts, lines = run(make_recipe([A, B, C]), tmp_path, wait=policy(t))
    assert [h.zone for h in hosts] == [A]
    # three rounds in the recipe's order; the third stops at the first zone that works
    assert zones_of(fake_compute.inserts()) == [A, B, C, A, B, C, A]
    assert t.sleeps == pytest.approx(expected_gaps(2))
    assert 24 <= t.sleeps[0] <= 36 and 36 <= t.sleeps[1] <= 54   # 30 s and 45 s, +-20%
    waits = [ln for ln in lines if ln.startswith("waiting for")]
    assert waits == [f"waiting for T4 in 3 zones: next try in {human(t.sleeps[0])} (attempt 2, 0 s so far)",
                     f"waiting for T4 in 3 zones: next try in {human(t.sleeps[1])} (attempt 3, "
                     f"{human(t.sleeps[0])} so far)"]
    assert [z for (z, _) in fake_compute.instances] == [A]


def test_zones_available_hints_go_first_in_the_next_round(fake_compute, tmp_path):
    east = "us-east1-c"
    fake_compute.add_fault(A, "stockout_details", zones_available=[east], times=1)
    fake_compute.add_fault(east, "stockout", times=1)
    fake_compute.add_fault(B, "stockout", times=5)
    t = FakeTime()
    hosts, _ = run(make_recipe([A, B, east]), tmp_path, wait=policy(t))
    # round 1: A, then A's hint, then B; round 2 starts with the hinted zone, which now works
    assert zones_of(fake_compute.inserts()) == [A, east, B, east]
    assert hosts[0].zone == east
    assert len(t.sleeps) == 1


def test_quota_is_not_waited_for_and_max_wait_ends_with_the_reason(fake_compute, tmp_path):
    fake_compute.add_fault("us-east1-c", "quota_region")
    fake_compute.add_fault(B, "stockout")
    t = FakeTime()
    with pytest.raises(GcpError) as ei:
        run(make_recipe(["us-east1-c", B]), tmp_path, wait=policy(t, max_wait=100.0))
    err = ei.value
    assert err.kind == STOCKOUT
    assert "Still no capacity for T4 after waiting" in err.message and "--max-wait 100 s" in err.message
    assert "us-central1-b: no capacity" in err.message
    # the quota-refused zone is tried once; the stocked-out one every round until max-wait
    inserts = zones_of(fake_compute.inserts())
    assert inserts.count("us-east1-c") == 1
    assert inserts.count(B) == len(t.sleeps) + 1
    g = expected_gaps(3)
    assert t.sleeps == pytest.approx([g[0], g[1], 100.0 - g[0] - g[1]])   # the last gap stops at max-wait
    assert fake_compute.instances == {}


def test_permission_denied_while_waiting_stops_at_once(fake_compute, tmp_path):
    fake_compute.add_fault(A, "stockout")
    fake_compute.add_fault(B, "permission")
    t = FakeTime()
    with pytest.raises(GcpError) as ei:
        run(make_recipe([A, B]), tmp_path, wait=policy(t))
    assert ei.value.kind == PERMISSION
    assert t.sleeps == []


def test_no_capacity_reason_means_no_waiting(fake_compute, tmp_path):
    fake_compute.add_fault(A, "resource_not_found")   # the zone lacks the accelerator: waiting cannot cure it
    t = FakeTime()
    with pytest.raises(GcpError) as ei:
        run(make_recipe([A]), tmp_path, wait=policy(t))
    assert "none of the reasons is a lack of capacity" in ei.value.message
    assert t.sleeps == [] and len(fake_compute.inserts()) == 1


def test_without_wait_a_stockout_fails_and_says_wait_exists(fake_compute, tmp_path):
    fake_compute.add_fault(A, "stockout", times=1)
    with pytest.raises(GcpError) as ei:
        run(make_recipe([A]), tmp_path)
    assert ei.value.kind == STOCKOUT and "--wait" in ei.value.message
    assert len(fake_compute.inserts()) == 1


def test_the_vm_being_up_after_waiting_is_announced_once(fake_compute, tmp_path):
    fake_compute.add_fault(A, "stockout", times=1)
    told: list[str] = []
    t = FakeTime()
    hosts, _ = run(make_recipe([A]), tmp_path, wait=policy(t, on_ready=told.append))
    assert len(told) == 1 and hosts[0].name in told[0] and A in told[0] and "2 attempts" in told[0]


def test_first_try_success_rings_nothing(fake_compute, tmp_path):
    told: list[str] = []
    run(make_recipe([A]), tmp_path, wait=policy(FakeTime(), on_ready=told.append))
    assert told == []


def test_backoff_is_capped_jittered_and_seeded():
    b = Backoff(first=30.0, factor=2.0, cap=600.0, jitter=0.2)
    one = [b.gap(n, random.Random(3)) for n in range(1, 12)]
    assert one == [b.gap(n, random.Random(3)) for n in range(1, 12)]   # same seed, same schedule
    for n, gap in enumerate(one, start=1):
        base = min(600.0, 30.0 * 2.0 ** (n - 1))
        assert 0.8 * base <= gap <= min(600.0, 1.2 * base)
    rng = random.Random(5)
    assert len({round(b.gap(1, rng), 6) for _ in range(20)}) > 1   # jittered, not constant


def test_the_command_line_wins_over_the_recipe():
    r = make_recipe([A], extra="    wait: 2h")
    assert policy_for(r, None, None).max_wait == 7200
    assert policy_for(r, False, None) is None
    assert policy_for(r, True, None).max_wait == 7200
    assert policy_for(r, None, 60.0).max_wait == 60
    plain = make_recipe([A])
    assert policy_for(plain, None, None) is None
    assert policy_for(plain, True, None).max_wait is None   # --wait alone: until it works or Ctrl-C
    assert wait_policy(RunRequest(recipe="r.yaml", max_wait="1h30m"), plain).max_wait == 5400
    with pytest.raises(UsageError, match="--max-wait"):
        wait_policy(RunRequest(recipe="r.yaml", max_wait="soon"), plain)
    with pytest.raises(UsageError, match="contradict"):
        wait_policy(RunRequest(recipe="r.yaml", wait=False, max_wait="1h"), plain)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_notify_rings_and_prefers_notify_send():
    out = io.StringIO()
    spawned: list[list[str]] = []
    done = notify.notify("up", "vm-1 in us-central1-a", stream=out, which=lambda _: "/usr/bin/notify-send",
                         spawn=spawned.append, env={"DISPLAY": ":0"})
    assert done == ["bell", "notify-send"] and out.getvalue() == "\a"
    assert spawned == [["/usr/bin/notify-send", "--app-name=gpuwizard", "up", "vm-1 in us-central1-a"]]


def test_notify_falls_back_to_terminal_escapes_and_cleans_the_text():
    out = _Tty()
    done = notify.notify("up", "evil\x1b]0;x\x07;tail", stream=out, which=lambda _: None, env={})
    assert done == ["bell", "osc"]
    text = out.getvalue()
    assert text.startswith("\a\x1b]777;notify;up;evil ]0 x  tail\x1b\\")
    assert "\x07" not in text[1:] and text.count("\x1b") == 4   # two OSC sequences, nothing injected


def test_notify_never_fails():
    out = io.StringIO()
    out.close()
    assert notify.notify("up", "x", stream=out, which=lambda _: None, env={}) == []

    def boom(argv):
        raise OSError("no dbus")
    assert notify.notify("up", "x", stream=io.StringIO(), which=lambda _: "/bin/notify-send", spawn=boom,
                         env={"DISPLAY": ":0"}) == ["bell"]


def test_a_cancelled_gap_stops_at_once_with_nothing_pending(fake_compute, tmp_path):
    """Cancelling the provisioning task during a gap (what Ctrl-C does) ends it with
    Stopped: no VM, no request in flight (the subprocess test does it with a real SIGINT)."""
    fake_compute.add_fault(A, "stockout")
    gate = asyncio.Event()

    async def main() -> BaseException | None:
        from gpuwizard.gcp.provision import provision

        async def sleep(_s: float) -> None:
            gate.set()
            await asyncio.Event().wait()   # a gap that never ends by itself

        pol = WaitPolicy(sleep=sleep)
        task = asyncio.ensure_future(provision(make_recipe([A]), "run-1", known_hosts_path=str(tmp_path / "kh"),
                                               wait=pol))
        await gate.wait()
        task.cancel()
        return (await asyncio.gather(task, return_exceptions=True))[0]

    res = asyncio.run(main())
    assert isinstance(res, GcpError) and res.kind == "interrupted" and not res.vm_exists
    assert "no VM was created and no request is pending" in res.message
    assert fake_compute.instances == {}


def test_the_waiting_units_read_as_a_person_writes_them():
    """"45 s", "14 min", "6 h" (not "6 h 0 min", as --max-wait 6h was echoed), "2 h 5 min"."""
    assert [human(s) for s in (45, 14 * 60, 6 * 3600, 2 * 3600 + 5 * 60)] == ["45 s", "14 min", "6 h", "2 h 5 min"]
