"""Masking of secret values in a stream of output chunks.

Why: a step may print a token it was given (``cat token.json``, ``rclone config
show``). Output arrives in chunks of arbitrary size, so a secret can be split across
two chunks; :class:`Masker` holds back the shortest tail that could still be the start
of a secret, and masks across the boundary once the next chunk arrives.
"""

from __future__ import annotations

import json
from typing import Iterable

MASK = "********"
MIN_SECRET = 6  # shorter strings would mask ordinary words


_SECRET_KEY_WORDS = ("token", "secret", "pass", "key", "credential", "auth")
LONG = 16  # a value this long is masked whatever its key: tokens are long, words are not


def _secret_key(key: object) -> bool:
    k = str(key).lower()
    return any(w in k for w in _SECRET_KEY_WORDS) and not k.endswith(("_type", "_uri", "_url"))


def values_from_file_text(text: str) -> set[str]:
    """The strings to mask for an uploaded secret file.

    The whole content; for JSON (token files) every string under a secret-looking key
    and every long string; for ``key = value`` lines (rclone.conf) the values of
    secret-looking keys, long values, and JSON inside values; other long lines whole.
    Short ordinary values (``type = drive``, ``"Bearer"``) stay readable in logs.
    """
    out: set[str] = set()
    stripped = text.strip()
    if len(stripped) >= MIN_SECRET:
        out.add(stripped)

    def walk(v: object, key: object = "") -> None:
        if isinstance(v, str):
            if len(v) >= LONG or (len(v) >= MIN_SECRET and _secret_key(key)):
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
            if len(value) >= LONG or (len(value) >= MIN_SECRET and _secret_key(key)):
                out.add(value)
            if value.startswith(("{", "[")):
                walk_json(value, key)
        elif len(line) >= LONG:
            out.add(line)
    return out


class Masker:
    """Masks every known secret in a stream; ``feed`` chunks in order, ``flush`` at the end.

    One Masker per stream (stdout and stderr are separate streams). With no secrets
    ``feed`` returns its input unchanged, so the common case costs nothing.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        # longest first so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._carry = ""

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def feed(self, text: str) -> str:
        if not self.secrets:
            return text
        text = self._carry + text
        text = self.mask(text)
        hold = self._partial_tail(text)
        if hold:
            self._carry = text[-hold:]
            return text[:-hold]
        self._carry = ""
        return text

    def flush(self) -> str:
        rest, self._carry = self._carry, ""
        return rest

    def mask(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

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


def mask_all(text: str, secrets: Iterable[str]) -> str:
    """Mask a complete text (messages, not streams)."""
    return Masker(secrets).mask(text)
