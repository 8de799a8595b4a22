"""``gpuwizard run`` on a terminal: the split-pane run screen on its own.

The headless renderer serves pipes and CI; a person at a terminal gets the same run
(same executor, same run directory, same resume rules) shown as hosts x steps with a
log pane per host. Quitting while the run goes on asks what to do with the VMs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Sequence

from textual.app import App

from gpuwizard import exit_codes
from gpuwizard.recipe import Recipe, RecipeError
from gpuwizard.runner import conclude, prepare
from gpuwizard.runrequest import RunRequest
from gpuwizard.steps import Step
from screens import runsource
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


def cmd_run(req: RunRequest) -> int:
    """``gpuwizard run RECIPE`` on a terminal (the CLI routes here when stdin and stdout are TTYs)."""
    try:
        recipe, steps = prepare(req)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exit_codes.USAGE
    return run_tui(recipe, req, steps)


def run_tui(recipe: Recipe, req: RunRequest, steps: Sequence[Step]) -> int:
    """Run ``recipe`` under the Textual run screen; returns the process exit code."""
    src = runsource.ExecutorSource(recipe, os.path.abspath(req.recipe), steps=steps,
                                   request=req)
    screen = RunScreen.for_recipe(recipe, req.recipe, factory=lambda _r, _p: src)
    app = RunApp(screen)
    code = app.run()
    if app.exit_message:
        print(app.exit_message)
    if src.rd is not None:
        print(f"gpuwizard: run directory {src.rd.path} (see `gpuwizard logs {src.rd.run_id}`)")
    if src.outcome is not None:
        for line in asyncio.run(conclude(req, recipe, src.outcome, src.rd.run_id)):
            print(line)
        if src.outcome.interrupted:
            return exit_codes.INTERRUPTED
    return int(code if code is not None else exit_codes.FAILED)
