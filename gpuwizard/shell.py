"""Shell quoting helpers: every recipe string that reaches a shell goes through here.

``shlex.quote`` alone breaks ``~/data`` (a quoted tilde is not expanded), so paths get
:func:`qpath`, which keeps a leading ``~/`` as ``"$HOME"/`` and quotes the rest.
"""

from __future__ import annotations

import shlex


def q(value: str) -> str:
    """Quote one word for bash."""
    return shlex.quote(value)


def qpath(path: str) -> str:
    """Quote a path for bash, expanding a leading ``~`` or ``~/`` to the user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)
