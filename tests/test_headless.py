"""Headless renderers: line prefixes across chunk splits, summaries, the table, JSON lines."""

from __future__ import annotations

import io
import json

from gpuwizard import events as ev
from gpuwizard.headless import Fanout, JsonRenderer, LineRenderer


def render(events) -> str:
    out = io.StringIO()
    r = LineRenderer(out)
    for e in events:
        r(e)
    return out.getvalue()


def test_lines_are_prefixed_across_chunk_boundaries():
    text = render([
        ev.RunStarted(run_id="r1", recipe="x", hosts=["a", "b"], steps=["s"]),
        ev.StepStarted(host="a", step="s"),
        ev.Output(host="a", step="s", stream="stdout", data="one\ntw"),
        ev.Output(host="b", step="s", stream="stdout", data="other\n"),
        ev.Output(host="a", step="s", stream="stdout", data="o\nthr"),
        ev.Output(host="a", step="s", stream="stderr", data="bar 10%\rbar 20%\r\n"),
        ev.StepFinished(host="a", step="s", status="ok", exit_code=0, seconds=1.25),
    ])
    lines = text.splitlines()
    assert "[a] s | one" in lines and "[a] s | two" in lines and "[b] s | other" in lines
    assert "[a] s | bar 10%" in lines and "[a] s | bar 20%" in lines
    assert lines.index("[a] s | thr") < lines.index("[a] s: ok (1.2s)")  # partial line flushed at the end


def test_summary_lines_and_final_table():
    text = render([
        ev.RunStarted(run_id="r1", recipe="x", hosts=["a", "b"], steps=["s1", "s2"]),
        ev.StepFinished(host="a", step="s1", status="ok", exit_code=0, seconds=0.5),
        ev.StepFinished(host="a", step="s2", status="skipped", message="already done"),
        ev.HostFinished(host="a", ok=True),
        ev.StepFinished(host="b", step="s1", status="failed", exit_code=2, seconds=0.1, message="exit code 2"),
        ev.StepFinished(host="b", step="s2", status="not_run"),
        ev.HostFinished(host="b", ok=False, message="s1 failed: exit code 2"),
        ev.RunFinished(ok=False, seconds=3.0),
    ])
    assert "[b] s1: FAILED, exit code 2 (0.1s)\n" in text
    assert "[a] s2: skipped: already done\n" in text
    assert "s2: not run" not in text
    table = text[text.index("HOST"):]
    a_row = next(line for line in table.splitlines() if line.startswith("a "))
    b_row = next(line for line in table.splitlines() if line.startswith("b "))
    assert a_row.split()[1:5] == ["1", "1", "0", "0"] and a_row.endswith("ok")
    assert b_row.split()[1:5] == ["0", "0", "1", "1"] and b_row.endswith("failed at s1")
    assert text.rstrip().endswith("some steps failed in 3.0s")


def test_json_renderer_round_trips():
    out = io.StringIO()
    evs = [ev.StepStarted(host="a", step="s"), ev.Output(host="a", step="s", stream="stdout", data="ünï\n"),
           ev.RunFinished(ok=True, seconds=1.0)]
    Fanout(JsonRenderer(out))(evs[0])
    for e in evs[1:]:
        JsonRenderer(out)(e)
    back = [ev.from_dict(json.loads(line)) for line in out.getvalue().splitlines()]
    assert [type(e) for e in back] == [type(e) for e in evs]
    assert back[1].data == "ünï\n"


def test_a_long_line_without_newline_is_kept_as_pieces_not_recopied():
    """A line that never ends (a progress bar, a minified blob) arrives in many chunks:
    each chunk is kept as it came and joined once, when the line ends (linear); gluing
    each chunk onto all before it copied O(n^2) bytes (50 MB: 26 s)."""
    out = io.StringIO()
    r = LineRenderer(out)
    chunks = [f"{i:05d}" * 100 for i in range(2000)]
    for c in chunks:
        r(ev.Output(host="a", step="s", stream="stdout", data=c))
    (held,) = r._partial.values()
    assert len(held) == len(chunks) and all(h is c for h, c in zip(held, chunks))  # no copy made
    assert out.getvalue() == ""
    r(ev.Output(host="a", step="s", stream="stdout", data="end\nnext"))
    r(ev.StepFinished(host="a", step="s", status="ok", exit_code=0))
    assert out.getvalue().splitlines()[:2] == ["[a] s | " + "".join(chunks) + "end", "[a] s | next"]
