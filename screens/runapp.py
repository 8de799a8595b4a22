"""``gpuwizard run`` on a terminal: the split-pane run screen on its own.

The headless renderer serves pipes and CI; a person at a terminal gets the same run
(same executor, same run directory, same resume rules) shown as hosts x steps with a
log pane per host. Quitting while the run goes on asks what to do with the VMs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Sequence

from textual.app import App

from screens.run import RunScreen


class RunApp(App[int]):
    """A one-screen app around :class:`RunScreen`."""

    CSS_PATH = "app.tcss"
    TITLE = "gpuwizard run"

    def __init__(self, screen: RunScreen) -> None:
        super().__init__()
        self.run_screen = screen
        self.exit_message: str | None = None

    def on_mount(self) -> None:
        self.push_screen(self.run_screen)

    async def action_quit(self) -> None:
        self.run_screen.confirm_quit()


def cmd_run(args: argparse.Namespace) -> int:
    """``gpuwizard run RECIPE`` on a terminal (the CLI routes here when stdin and stdout are TTYs)."""
    import sys

    from gpuwizard.recipe import RecipeError
    from gpuwizard.runner import prepare

    try:
        recipe, steps = prepare(args)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    return run_tui(recipe, args, steps)


def run_tui(recipe: Any, args: argparse.Namespace, steps: Sequence[Any]) -> int:
    """Run ``recipe`` under the Textual run screen; returns the process exit code."""
    from screens import runsource

    src = runsource.ExecutorSource(recipe, os.path.abspath(args.recipe), steps=steps,
                                   resume=bool(getattr(args, "resume", False)), run_dir=getattr(args, "run_dir", None))
    src.accept_new_host_key = bool(getattr(args, "accept_new_host_key", False))
    src.run_args = args
    screen = RunScreen.for_recipe(recipe, args.recipe, factory=lambda _r, _p: src)
    app = RunApp(screen)
    code = app.run()
    if app.exit_message:
        print(app.exit_message)
    if src.rd is not None:
        print(f"gpuwizard: run directory {src.rd.path} (see `gpuwizard logs {src.rd.run_id}`)")
    if src.outcome is not None:
        import asyncio

        from gpuwizard.runner import conclude

        for line in asyncio.run(conclude(args, recipe, src.outcome, src.rd.run_id)):
            print(line)
        if src.outcome.interrupted:
            return 130
    return int(code if code is not None else 1)
