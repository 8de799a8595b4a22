"""Errors every part of the command line shares.

In its own module (not cli.py) so that ``python -m gpuwizard.cli``, where cli.py runs
as ``__main__``, still catches the same class the handlers raise.
"""


class UsageError(Exception):
    """A problem with what the user asked for: printed as one sentence, exit 2."""
