"""Masking of secret values in a stream of output chunks.

Why: a step may print a token it was given (``cat token.json``, ``rclone config
show``). Output arrives in chunks of arbitrary size, on two streams that a person reads
interleaved, so a secret can be split across two chunks or across stdout and stderr;
:class:`Masker` sees both streams in arrival order, holds back the shortest tail that
could still be the start of a secret, and masks across the boundary once the next
chunk (of either stream) arrives.

The rule for short values: every secret of :data:`MIN_SECRET` (3) or more characters
is masked. One or two characters cannot be masked without turning ordinary output
into asterisks (and masking them would tell little anyway): :func:`too_short` finds
them so the executor can say, once, that such a secret shows in the log.

(Module name: ``masking``, not ``secrets``, which would shadow the standard library.)
"""

from __future__ import annotations

import json
import re
from typing import Iterable

from gpuwizard.secretcheck import secret_name

MASK = "********"
MIN_SECRET = 3  # shorter strings cannot be masked without masking ordinary text
LONG = 16  # a value this long is masked whatever its key: tokens are long, words are not


def values_from_file_text(text: str) -> set[str]:
    """The strings to mask for an uploaded secret file.

    The whole content; for JSON (token files) every string under a secret-looking key
    and every long string; for ``key = value`` lines (rclone.conf) the values of
    secret-looking keys, long values, and JSON inside values; other long lines whole.
    Short ordinary values (``type = drive``, ``"Bearer"``) stay readable in logs.
    """
    out: set[str] = set()
    stripped = text.strip()
    if stripped:
        out.add(stripped)  # even a short one: too_short() reports it

    def walk(v: object, key: object = "") -> None:
        if isinstance(v, str):
            if len(v) >= LONG or (len(v) >= MIN_SECRET and secret_name(key)):
                out.add(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)

    def walk_json(t: str, key: object = "") -> bool:
        try:
            walk(json.loads(t), key)
        except ValueError:
            return False
        return True

    if walk_json(text):
        return out
    for line in text.splitlines():
        line = line.strip()
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if eq and key and " " not in key:
            if len(value) >= LONG or (len(value) >= MIN_SECRET and secret_name(key)):
                out.add(value)
            if value.startswith(("{", "[")):
                walk_json(value, key)
        elif len(line) >= LONG:
            out.add(line)
    return out


def too_short(values: Iterable[str]) -> list[str]:
    """The secrets :class:`Masker` cannot mask (under :data:`MIN_SECRET` characters)."""
    return sorted(v for v in values if 0 < len(v) < MIN_SECRET)


Segment = tuple[str, str]  # (stream, text)


class Masker:
    """Masks every known secret in the output of one command, whichever stream it is on.

    ``feed_stream(stream, text)`` takes chunks in arrival order from any stream and
    returns ``(stream, text)`` segments safe to show; ``flush_streams()`` at the end.
    A secret split across streams (``printf ab; printf cd >&2``) is masked too: the
    mask goes to the stream where the secret started. ``feed``/``flush`` are the
    one-stream form. With no secrets input passes unchanged, so the common case costs
    nothing.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        # longest first so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._re = re.compile("|".join(map(re.escape, self.secrets))) if self.secrets else None
        self._carry: list[Segment] = []

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def feed(self, text: str) -> str:
        return "".join(t for _, t in self.feed_stream("", text))

    def flush(self) -> str:
        return "".join(t for _, t in self.flush_streams())

    def feed_stream(self, stream: str, text: str) -> list[Segment]:
        if self._re is None:
            return [(stream, text)] if text else []
        segs = self._carry + [(stream, text)]
        full = "".join(t for _, t in segs)
        bounds: list[tuple[int, int, str, str]] = []  # (start, end, stream, text) of each segment
        at = 0
        for s, t in segs:
            bounds.append((at, at + len(t), s, t))
            at += len(t)
        out: list[Segment] = []
        pos = 0
        for m in self._re.finditer(full):
            out += _slice(bounds, pos, m.start())
            out.append((_stream_at(bounds, m.start()), MASK))
            pos = m.end()
        hold = self._partial_tail(full[pos:])
        out += _slice(bounds, pos, len(full) - hold)
        self._carry = _slice(bounds, len(full) - hold, len(full))
        return _merge(out)

    def flush_streams(self) -> list[Segment]:
        rest, self._carry = self._carry, []
        return _merge(rest)

    def mask(self, text: str) -> str:
        return self._re.sub(MASK, text) if self._re is not None else text

    def _partial_tail(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a secret."""
        best = 0
        for s in self.secrets:
            first = s[0]
            # only positions where the secret's first char occurs can start a partial match
            start = max(0, len(text) - len(s) + 1)
            i = text.find(first, start)
            while i != -1:
                n = len(text) - i
                if n > best and s.startswith(text[i:]):
                    best = n
                    break
                i = text.find(first, i + 1)
        return best


def _slice(bounds: list[tuple[int, int, str, str]], a: int, b: int) -> list[Segment]:
    """The pieces of the joined text between offsets ``a`` and ``b``, each with its stream."""
    return [(s, t[max(a, lo) - lo:min(b, hi) - lo]) for lo, hi, s, t in bounds if lo < b and hi > a]


def _stream_at(bounds: list[tuple[int, int, str, str]], at: int) -> str:
    for lo, hi, s, _ in bounds:
        if lo <= at < hi:
            return s
    return bounds[-1][2]


def _merge(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s, t in segs:
        if not t:
            continue
        if out and out[-1][0] == s:
            out[-1] = (s, out[-1][1] + t)
        else:
            out.append((s, t))
    return out


def mask_all(text: str, secrets: Iterable[str]) -> str:
    """Mask a complete text (messages, not streams)."""
    return Masker(secrets).mask(text)
