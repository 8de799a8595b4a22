"""The process exit codes, defined once (the CLI contract in the README: 0 success, 1 a step
failed, 2 bad recipe or usage, 130 interrupted)."""

from __future__ import annotations

OK = 0
#: A step (or a look-up against Google) failed; the message says which and why.
FAILED = 1
#: A bad recipe, bad arguments or a missing precondition the user must fix first.
USAGE = 2
#: Ctrl-C / SIGINT (128 + 2, as shells report it).
INTERRUPTED = 130
