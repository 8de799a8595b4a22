"""The errors the rclone core raises; each message says what to do next."""

from __future__ import annotations


class RcloneError(Exception):
    """A problem in what was asked of rclone; the message says what to do."""


class TokenError(RcloneError):
    """Pasted or captured text is not a usable rclone OAuth token."""
