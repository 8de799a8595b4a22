"""Where gpuwizard keeps its files on the user's machine, decided once.

XDG base directories, as the spec says: a relative ``$XDG_*_HOME`` is ignored. (platformdirs
would be the usual choice, but it accepts relative values, which would scatter state into
whatever folder the user happens to run from.)
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / default


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/gpuwizard`` (default ``~/.config/gpuwizard``): keys, secrets."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "gpuwizard"


def secrets_dir() -> Path:
    """Credential files (0600) the recipes name with ``token_file`` and friends."""
    return config_dir() / "secrets"


def ssh_dir() -> Path:
    """The key gpuwizard generates for the VMs it creates, and their pinned known_hosts."""
    return config_dir() / "ssh"


def state_dir() -> Path:
    """``$XDG_STATE_HOME/gpuwizard`` (default ``~/.local/state/gpuwizard``)."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "gpuwizard"


def runs_dir() -> Path:
    """One folder per run: events, raw logs, resume state."""
    return state_dir() / "runs"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gpuwizard`` (default ``~/.cache/gpuwizard``): prices and other look-ups."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "gpuwizard"
