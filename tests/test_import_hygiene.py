"""Layering is a checked contract, and the fast commands never import heavy libraries.

The layering (the core never imports the UI; no import cycles among sibling modules;
google-cloud, asyncssh and questionary each behind one adaptor) is ``[tool.importlinter]``
in pyproject.toml, checked here by running import-linter, as harlequin does. import-linter
only compares siblings, so a cycle between a package and one of its own modules is checked
here on the whole graph (grimp, the graph import-linter itself builds: it reads imports
inside functions too, so a lazy import does not hide a cycle).

`gpuwizard --help`, `validate` and `plan` must not import textual, google.cloud or
asyncssh: each costs 0.2-2 s at start-up. Checked in a fresh interpreter per command,
by looking at sys.modules after the command ran.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import grimp
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


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (each one is an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_among_the_projects_modules() -> None:
    """No cycle anywhere among gpuwizard's and screens' modules, lazy imports included
    (TYPE_CHECKING imports never run, so they are left out, as in the contracts)."""
    graph = grimp.build_graph("gpuwizard", "screens", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def _private_uses(path: pathlib.Path) -> list[str]:
    """``from gpuwizard.x import _name`` and ``mod._name`` (mod a project module) in ``path``."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()   # local names bound to project modules
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpuwizard"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {a.name}")
                target = f"{node.module}.{a.name}"
                if (ROOT / (target.replace(".", "/") + ".py")).exists() or (ROOT / target.replace(".", "/")).is_dir():
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gpuwizard") and a.asname:
                    modules.add(a.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return out


def test_no_module_uses_another_modules_private_names() -> None:
    """A name with a leading underscore is its module's own: another module that needs it
    gets a public name instead, so a refactor of the owner cannot break it unseen."""
    found = [u for p in sorted((ROOT / "gpuwizard").rglob("*.py")) for u in _private_uses(p)]
    assert found == []
