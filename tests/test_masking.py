"""Secret masking holds across arbitrary chunk boundaries."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwizard.masking import MASK, Masker, too_short, values_from_file_text


def feed_all(m: Masker, chunks: list[str]) -> str:
    return "".join(m.feed(c) for c in chunks) + m.flush()


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(text[prev:p])
        prev = p
    out.append(text[prev:])
    return out


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(max_size=30), suffix=st.text(max_size=30), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_secret_never_survives_any_split(prefix, suffix, cuts):
    secret = "ya29.s3cr3t-T0KEN-value"
    text = prefix + secret + suffix + secret
    out = feed_all(Masker([secret]), split(text, cuts))
    assert secret not in out
    assert out == Masker([secret]).mask(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_text_without_secrets_passes_unchanged(text, cuts):
    assert feed_all(Masker(["zzzzsecretzzzz"]), split(text, cuts)) == text.replace("zzzzsecretzzzz", MASK)


def test_no_secrets_is_identity():
    m = Masker([])
    assert not m and m.feed("abc") == "abc" and m.flush() == ""


def test_values_from_token_json():
    tok = {"access_token": "ya29.abcdefgh", "token_type": "Bearer", "refresh_token": "1//0xyzxyzxyz",
           "expiry": "2025-01-01T00:00:00Z"}
    vals = values_from_file_text(json.dumps(tok))
    assert {"ya29.abcdefgh", "1//0xyzxyzxyz", json.dumps(tok)} <= vals
    assert "Bearer" not in vals and "2025-01-01T00:00:00Z" in vals  # long values are masked anyway


def test_values_from_rclone_conf():
    conf = ("[gdrive]\ntype = drive\nscope = drive.readonly\n"
            'token = {"access_token":"ya29.short","refresh_token":"1//0abcdefghijklmnop"}\nclient_secret = abcdefgh\n')
    vals = values_from_file_text(conf)
    assert {"ya29.short", "1//0abcdefghijklmnop", "abcdefgh"} <= vals
    assert not {"drive", "drive.readonly", "[gdrive]"} & vals


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(max_size=20), cuts=st.lists(st.integers(0, 80), max_size=8),
       streams=st.lists(st.sampled_from(["stdout", "stderr"]), min_size=9, max_size=9))
def test_short_secret_split_across_streams_and_chunks_never_survives(prefix, cuts, streams):
    # a 4-character secret (the old masker ignored anything under 6) printed in pieces
    # that alternate between stdout and stderr: a person reading the pane sees it whole
    secret = "hunt"
    text = prefix + secret + "|" + secret
    m = Masker([secret])
    segs: list[tuple[str, str]] = []
    for chunk, stream in zip(split(text, cuts), streams):
        segs += m.feed_stream(stream, chunk)
    segs += m.flush_streams()
    shown = "".join(t for _, t in segs)
    assert secret not in shown
    assert shown == Masker([secret]).mask(text)


def test_masked_segments_keep_their_streams_and_order():
    m = Masker(["s3cr3t"])
    out = m.feed_stream("stdout", "a\ns3") + m.feed_stream("stderr", "cr3t b\n") + m.feed_stream("stdout", "c\n")
    assert out + m.flush_streams() == [("stdout", "a\n"), ("stdout", MASK), ("stderr", " b\n"), ("stdout", "c\n")]


def test_three_characters_are_masked_shorter_ones_are_reported():
    assert Masker(["abc"]).mask("xabcx") == f"x{MASK}x"
    assert Masker(["ab"]).mask("xabx") == "xabx"  # cannot be masked ...
    assert too_short({"ab", "abc", "x"}) == ["ab", "x"]  # ... so it is reported
    assert "abc12" in values_from_file_text("abc12\n")  # a 5-character password file
    assert "pw5ch" in values_from_file_text("[dav]\npass = pw5ch\n")
