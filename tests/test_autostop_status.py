"""The auto-stop phrase shown by `gpuwizard status` and the run screen."""

from gpuwizard.autostop.status import describe, parse

NOW = 1_800_000_000.0


def test_countdown_when_idle():
    st = {"why": "idle for 18m; stops in 12m", "idle_for": 1080, "stops_at": NOW + 720, "updated": NOW - 10}
    assert describe(st, NOW) == "idle 18m, stops in 12m"


def test_what_keeps_it_awake():
    st = {"why": "kept awake: 1 SSH connection(s)", "stops_at": NOW + 1800, "updated": NOW, "idle_for": 0}
    assert describe(st, NOW) == "1 SSH connection(s) (else stops in 30m)"


def test_off_absent_stale_and_garbage():
    assert describe({"enabled": False, "updated": NOW}, NOW) == "auto-stop off"
    assert describe(None, NOW) == "no auto-stop agent"
    assert describe({"why": "idle", "updated": NOW - 3600}, NOW) == "agent silent for 1h"
    assert parse("{not json") is None and parse("[]") is None
    assert parse('{"why": "x"}') == {"why": "x"}
