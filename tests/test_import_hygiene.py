"""Layering is a checked contract, and the fast commands never import heavy libraries.

The layering (the core never imports the UI; no import cycles among the core's modules;
google-cloud and asyncssh only behind their adaptors) is ``[tool.importlinter]`` in
pyproject.toml, checked here by running import-linter, as harlequin does.

`gpuwizard --help`, `validate` and `plan` must not import textual, google.cloud or
asyncssh: each costs 0.2-2 s at start-up. Checked in a fresh interpreter per command,
by looking at sys.modules after the command ran.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEAVY = ("textual", "google.cloud", "google.auth", "asyncssh", "questionary", "screens")
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))
SSH_RECIPE = ROOT / "tests" / "data" / "ssh-recipe.yaml"

PROBE = """
import sys, runpy, io, contextlib
sys.argv = ["gpuwizard", *{argv!r}]
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        from gpuwizard.cli import main
        code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {{'textual', 'asyncssh', 'questionary', 'screens'}}
               or m.startswith(('google.cloud', 'google.auth')))
print(repr((code, heavy)))
"""


def _modules_after(argv: list[str]) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["--version"],
    ["validate", str(SSH_RECIPE)],
    ["plan", str(SSH_RECIPE)],
    ["catalog", "gpus"],
    ["schema"],
    *[["validate", str(p)] for p in SHIPPED],
    *[["plan", str(p)] for p in SHIPPED],
])
def test_fast_commands_import_nothing_heavy(argv: list[str]) -> None:
    code, heavy = _modules_after(argv)
    assert code == 0
    assert heavy == []


def test_import_contracts_hold() -> None:
    """`lint-imports` with the project's contracts: exit 0, or its report of what broke."""
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is a test dependency: pip install -e '.[test]'"
    p = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout
