"""rclone JSON-log progress parsing, against the real 1.60.1 sample in docs/facts."""

from __future__ import annotations

import json
import pathlib

from hypothesis import given, strategies as st

from gpuwizard.progress import parse

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "docs/facts/rclone-1.60.1-json-log-sample.ndjson"
LINES = [
    '{"level":"info","msg":"Starting bandwidth limiter at 60Mi Byte/s","source":"accounting/token_bucket.go:108","time":"2026-11-28T06:58:29.432635+00:00"}',
    '{"level":"info","msg":"\\nTransferred:   \\t   60.336 MiB / 230 MiB, 26%, 0 B/s, ETA -\\n","stats":{"bytes":63266816,"checks":0,"elapsedTime":1.08,"errors":0,"eta":null,"speed":0,"totalBytes":241172480,"totalChecks":0,"totalTransfers":2,"transfers":0},"time":"x"}',
    '{"level":"info","msg":"Copied (new)","object":"medium.bin","objectType":"*local.Object","source":"operations/operations.go:566","time":"x"}',
    '{"level":"info","msg":"...","stats":{"bytes":126152704,"checks":0,"errors":0,"eta":1,"speed":63589760.6,"totalBytes":241172480,"totalChecks":0,"totalTransfers":2,"transfers":1},"time":"x"}',
    '{"level":"info","msg":"...","stats":{"bytes":241172480,"checks":0,"errors":0,"eta":0,"speed":63140240.1,"totalBytes":241172480,"totalChecks":0,"totalTransfers":2,"transfers":2},"time":"x"}',
]


def test_sample_lines() -> None:
    out = [parse("rclone", line) for line in LINES]
    assert out[0] is None and out[2] is None
    a, b, c = out[1], out[3], out[4]
    assert a is not None and b is not None and c is not None
    assert a["bytes_done"] == 63266816 and a["bytes_total"] == 241172480
    assert a["eta"] is None and abs(a["fraction"] - 0.2623) < 1e-3
    assert b["eta"] == 1 and b["speed"] == 63589760.6 and "1/2 files" in b["text"]
    assert c["fraction"] == 1.0 and c["text"].startswith("100%")
    assert "ETA" not in c["text"]


def test_real_sample_file_is_monotonic() -> None:
    fr = [p["fraction"] for p in map(lambda l: parse("rclone", l), SAMPLE.read_text().splitlines()) if p]
    assert fr and fr == sorted(fr) and fr[-1] == 1.0


def test_non_json_and_junk_are_tolerated() -> None:
    for line in ["", "2026/11/28 07:02:27 Failed to copy: directory not found", "{", "{not json",
                 '{"stats": 3}', '{"stats": {"bytes": "x"}}', "[1,2]", '"stats"', "\x1b[2K\r"]:
        r = parse("rclone", line)
        assert r is None or 0.0 <= r["fraction"] <= 1.0


def test_everything_already_there_is_complete() -> None:
    line = json.dumps({"stats": {"bytes": 0, "totalBytes": 0, "checks": 3, "totalChecks": 3,
                                 "transfers": 0, "totalTransfers": 0}})
    r = parse("rclone", line)
    assert r is not None and r["fraction"] == 1.0 and "3/3 checked" in r["text"]


def test_listing_not_started_is_zero() -> None:
    r = parse("rclone", json.dumps({"stats": {"bytes": 0, "totalBytes": 0}}))
    assert r is not None and r["fraction"] == 0.0


def test_errors_are_shown() -> None:
    r = parse("rclone", json.dumps({"stats": {"bytes": 5, "totalBytes": 10, "errors": 1,
                                              "lastError": "directory not found"}}))
    assert r is not None and "1 error: directory not found" in r["text"]


def test_unknown_kind() -> None:
    assert parse("apt", LINES[4]) is None


@given(st.text(max_size=300))
def test_never_raises(line: str) -> None:
    r = parse("rclone", line)
    assert r is None or 0.0 <= r["fraction"] <= 1.0
