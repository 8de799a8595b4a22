"""Loads every fixture module in tests/fixtures as a pytest plugin, so each part of the
suite (sshd hosts, the fake Compute server, rclone servers ...) keeps its fixtures in
its own file."""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
