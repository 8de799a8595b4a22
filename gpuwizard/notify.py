"""Tell a person who walked away that something is ready: a bell and a desktop notification.

Used when ``gpuwizard run --wait`` finally gets its VM, possibly hours later. In order:
the terminal bell (``\\a``); ``notify-send`` when it is installed and a desktop session is
there to show it (libnotify, the common Linux desktop notifier); otherwise, on a terminal,
the OSC 777 (rxvt/foot/Ghostty/WezTerm) and OSC 9 (iTerm2/Windows Terminal/kitty) escape
sequences that ask the terminal to raise a desktop notification (terminals that know
neither ignore them). Notifying must never fail the run: every error is swallowed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Callable, TextIO

_UNSAFE = re.compile(r"[\x00-\x1f\x7f;]")   # no escape, bell or OSC separator from a message


def _clean(text: str) -> str:
    return _UNSAFE.sub(" ", text)[:200]


def notify(title: str, body: str, *, stream: TextIO | None = None,
           which: Callable[[str], str | None] = shutil.which,
           spawn: Callable[[list[str]], object] | None = None, env: dict[str, str] | None = None) -> list[str]:
    """Ring the bell and raise a desktop notification; returns what was done (``bell``,
    ``notify-send``, ``osc``) for tests. Never raises."""
    out = stream if stream is not None else sys.stderr
    env = dict(os.environ) if env is None else env
    done: list[str] = []
    title, body = _clean(title), _clean(body)
    try:
        out.write("\a")
        out.flush()
        done.append("bell")
    except (OSError, ValueError):
        pass
    desktop = any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"))
    exe = which("notify-send") if desktop else None
    if exe:
        try:
            argv = [exe, "--app-name=gpuwizard", title, body]
            if spawn is not None:
                spawn(argv)
            else:   # not waited for: a hung notification daemon must not hold the run
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            done.append("notify-send")
            return done
        except (OSError, ValueError):
            pass
    try:
        if out.isatty():
            out.write(f"\x1b]777;notify;{title};{body}\x1b\\\x1b]9;{title}: {body}\x1b\\")
            out.flush()
            done.append("osc")
    except (OSError, ValueError):
        pass
    return done
