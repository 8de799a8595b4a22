"""Write the README's SVG screenshots of the wizard and the run screen to docs/screenshots/.

    python scripts/screenshots.py [OUTDIR]

Offline and deterministic (the catalog, the shipped ST-GCN recipe, a synthetic run with
fixed timestamps), like the snapshot tests, so re-running it only changes the images
when the UI changed.
"""

from __future__ import annotations

import asyncio
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["GPUWIZARD_OFFLINE"] = "1"

SIZE = (120, 40)

# The shipped ST-GCN recipe: what a user starting from `gpuwizard new --from stgcn-t4` sees.
with open(os.path.join(ROOT, "recipes", "stgcn-t4.yaml"), encoding="utf-8") as _fh:
    RECIPE = _fh.read()


async def _steady(app) -> None:
    from textual.widgets import Input, TextArea

    await app.workers.wait_for_complete()
    for w in app.screen.query(Input):
        w.cursor_blink = False
    for w in app.screen.query(TextArea):
        w.cursor_blink = False


async def wizard_shot(start: str, out: str, recipe_text: str = RECIPE) -> None:
    from gpuwizard import recipe as rc
    from screens.app import WizardApp

    app = WizardApp(rc.loads(recipe_text, "stgcn.yaml"), path="stgcn.yaml", start=start, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await _steady(app)
        await pilot.pause()
        app.save_screenshot(out)


async def run_shot(out: str) -> None:
    from textual.app import App

    from screens.run import RunScreen
    from screens.runmodel import synthetic_source

    src = synthetic_source(["stgcn-t4-1", "stgcn-t4-2", "stgcn-t4-3", "stgcn-t4-4"],
                           ["driver.install", "cuda.toolkit", "env.torch", "dataset.copy", "train"],
                           lines_per_step=60, chunk_lines=20, fail=("stgcn-t4-3", "dataset.copy"), fixed_ts=1_000.0)

    class ShotApp(App[None]):
        CSS_PATH = os.path.join(ROOT, "screens", "app.tcss")

        def on_mount(self) -> None:
            self.push_screen(RunScreen(src, title="run stgcn.yaml", recipe_path="stgcn.yaml", hourly=0.88))

    app = ShotApp()
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.screen._flush()
        await pilot.pause()
        await pilot.press("e")  # jump to the failure: that host's pane and step
        await pilot.pause()
        app.clear_notifications()
        await pilot.pause()
        app.save_screenshot(out)


async def main(outdir: str) -> None:
    os.makedirs(outdir, exist_ok=True)
    for name in ("quota", "zone", "machine", "driver", "environment", "dataset", "steps", "review"):
        await wizard_shot(name, os.path.join(outdir, f"wizard-{name}.svg"))
    await wizard_shot("driver", os.path.join(outdir, "wizard-driver-v100.svg"),
                      RECIPE.replace("nvidia-tesla-t4", "nvidia-tesla-v100"))
    await run_shot(os.path.join(outdir, "run.svg"))
    print(f"wrote screenshots to {outdir}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "screenshots")))
