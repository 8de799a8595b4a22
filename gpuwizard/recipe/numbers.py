"""YAML 1.1 numbers read the way a person meant them, or refused with the reason.

Why: PyYAML resolves ``010`` as octal 8, ``1:30`` as base-60 90, ``.inf`` and ``.nan`` as
floats, and Python's ``int()`` refuses more than 4,300 digits with a bare ValueError.
A recipe loader that converts with ``int()``/``float()`` crashed on each; this module
turns each into a sentence the loader reports at the value's FILE:LINE:COL.
"""

from __future__ import annotations

import re

_MAX_DIGITS = 100  # far beyond any limit here; int() refuses over 4,300 digits with a bare ValueError


def yaml_number(raw: str, tag: str) -> tuple[int | float | None, str | None]:
    """``(number, None)``, or ``(None, reason)`` where reason is a ``str.format`` template
    whose ``{range}`` is where the loader puts the field's allowed range."""
    try:
        return _parse_number(raw, tag)
    except ValueError:  # forms the resolver accepts but hold no digits, such as `0b_` or `._`
        return None, f"{raw!r} is not a number; write it with digits"


def _parse_number(raw: str, tag: str) -> tuple[int | float | None, str | None]:
    """See :func:`yaml_number`.

    PyYAML resolves ``010`` (octal 8), ``1:30`` (base 60: 90), ``.inf`` and ``.nan`` as
    numbers; read as a user meant them they are surprises, so each is refused with what
    YAML made of it, except a leading zero that changes nothing (``007``).
    """
    text = raw.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.lower() in (".inf", ".nan"):
        return None, f"{raw!r} is not a finite number{{range}}"
    if len(re.sub(r"[^0-9a-fA-F]", "", body)) > _MAX_DIGITS:
        return None, f"a number with {len(body):,} digits is too large{{range}}"
    if ":" in body:
        head, _, frac = body.partition(".")
        value: int | float = 0
        for part in head.split(":"):
            value = value * 60 + int(part)
        if frac or tag == "float":
            value += float("0." + (frac or "0"))
        value *= sign
        return None, (f"{raw!r} is a base-60 number in YAML 1.1 (it reads as {value:g}); write {value:g}, "
                      "or quote the value to mean the text")
    if tag == "float":
        return sign * float(body), None
    if body.startswith(("0b", "0x")):
        return sign * int(body, 0), None
    if len(body) > 1 and body.startswith("0") and int(body, 8) != int(body, 10):
        return None, (f"{raw!r} starts with 0, which YAML 1.1 reads as octal ({sign * int(body, 8)}); "
                      "remove the leading zero, or quote the value to mean the text")
    return sign * int(body, 10), None
