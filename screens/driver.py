"""Screen 4, Driver: driver branch, CUDA, cuDNN, TensorRT; impossible choices disabled with the reason.

Reasons come from :mod:`gpuwizard.drivers` (via :mod:`screens.choices`) so the screen
disables exactly what ``gpuwizard validate`` would reject, e.g. "V100 (Volta) stops at
R580". With a Deep Learning VM image the stack is ``preinstalled``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Select, Static
from textual.widgets.option_list import Option

from gpuwizard import catalog, drivers
from gpuwizard.recipe import Driver
from screens import choices
from screens.base import WizardScreen

FIELDS = choices.STACK_FIELDS
TITLES = {"branch": "Driver branch", "flavor": "Kernel modules", "cuda": "CUDA toolkit", "cudnn": "cuDNN",
          "tensorrt": "TensorRT"}


class DriverScreen(WizardScreen):
    """The NVIDIA stack, or ``preinstalled`` for Deep Learning VM images."""

    NAME = "driver"
    TITLE = "Driver"
    HELP = ("The NVIDIA driver branch decides which GPUs and CUDA versions work. Arrow keys choose; greyed "
            "options do not work with your GPU or your other choices, and say why.")

    def __init__(self) -> None:
        super().__init__()
        self.drv = Driver()
        self._building = False

    def compose_body(self) -> ComposeResult:
        yield Static("How", classes="label")
        yield Select([("Install from NVIDIA's CUDA repository (pinned)", "install"),
                      ("Preinstalled: the image has it (Deep Learning VM)", "preinstalled"),
                      ("None: skip driver work", "none")], value="install", allow_blank=False, id="mode")
        with Horizontal(id="stack"):
            for f in FIELDS:
                with Vertical(classes="col"):
                    yield Static(TITLES[f], classes="label")
                    yield OptionList(id=f"opt-{f}")
        yield Static("", id="reasons", classes="note")
        yield Static("", id="stack-notes", classes="note")

    # -------------------------------------------------------------- load / store

    def _gpu(self) -> str:
        g = self.draft.target.gcp
        return g.gpu.type if g and g.gpu else "nvidia-tesla-t4"

    def _image(self) -> str | None:
        """The GCE image family, or None for existing hosts (target.ssh)."""
        g = self.draft.target.gcp
        return g.image if g else None

    def _image_info(self) -> catalog.Image | None:
        image = self._image()
        return catalog.image(image) if image else None

    def load(self) -> None:
        d = self.draft.driver
        img = self._image_info()
        dlvm = bool(img and img.dlvm)
        proposal = choices.propose(self._gpu(), self._image())
        self._notes = proposal.notes
        if d is None and self.wizard.source_path is None:
            mode = "preinstalled" if dlvm else "install"
            self.drv = self._from_proposal(proposal)
            self._proposed = True
        elif d is None:
            mode = "none"
            self.drv = self._from_proposal(proposal)
        elif d.preinstalled:
            mode = "preinstalled"
            self.drv = self._from_proposal(proposal)
        else:
            mode = "install"
            self.drv = dataclasses.replace(d)
        if dlvm and mode == "install" and d is None:
            mode = "preinstalled"
        self.query_one("#mode", Select).value = mode
        self._rebuild()

    @staticmethod
    def _from_proposal(p: drivers.Stack) -> Driver:
        return choices.driver_from_stack(p)

    def snapshot(self) -> Any:
        return (self.query_one("#mode", Select).value, dataclasses.astuple(self.drv))

    def apply(self) -> None:
        mode = self.query_one("#mode", Select).value
        if mode == "preinstalled":
            self.draft.driver = Driver(preinstalled=True)
        elif mode == "none":
            self.draft.driver = None
        else:
            self.draft.driver = dataclasses.replace(self.drv, preinstalled=False)

    def problems(self) -> list[str]:
        mode = self.query_one("#mode", Select).value
        img = self._image_info()
        if mode == "preinstalled":
            if img is not None and not img.dlvm:
                return [f"{img.label} has no NVIDIA driver: choose Install, or a Deep Learning VM image on the "
                        "Machine screen"]
            return []
        if mode == "none":
            return []
        if img is not None and img.dlvm:
            return [f"{img.label} already has driver R{img.driver}: choose Preinstalled"]
        if self.drv.branch is None:
            return ["choose a driver branch"]
        errs, _warns = choices.stack_problems(self._trial(), "driver")
        return errs

    def _trial(self) -> Any:
        trial = copy.copy(self.draft)
        trial.driver = dataclasses.replace(self.drv, preinstalled=False)
        trial.env = None
        return trial

    # -------------------------------------------------------------- rendering

    def _rebuild(self) -> None:
        """Refill the four lists: disabled options carry their reason."""
        self._building = True
        mode = self.query_one("#mode", Select).value
        all_choices = choices.driver_choices(self.draft, self.drv)
        reasons: dict[str, str] = {}
        for f in FIELDS:
            ol = self.query_one(f"#opt-{f}", OptionList)
            ol.clear_options()
            current = getattr(self.drv, f)
            highlight = None
            for i, c in enumerate(all_choices[f]):
                mark = "●" if c.value == current else " "
                text = f"{mark} {c.label}" if c.enabled else f"{mark} [strike]{c.label}[/strike] ✗"
                ol.add_option(Option(text, id=f"{f}:{i}", disabled=not c.enabled and c.value != current))
                if c.value == current:
                    highlight = i
                if c.reason:
                    reasons.setdefault(c.reason, c.label)
            if highlight is not None:
                ol.highlighted = highlight
            ol.disabled = mode != "install"
        self._choices = all_choices
        r = self.query_one("#reasons", Static)
        if mode == "install" and reasons:
            shown = list(reasons.items())[:6]
            more = len(reasons) - len(shown)
            r.update("✗ not available:\n" + "\n".join(f"  {lbl}: {why}" for why, lbl in shown)
                     + (f"\n  ... and {more} more" if more > 0 else ""))
        else:
            r.update("")
        notes = self.query_one("#stack-notes", Static)
        img = self._image_info()
        if mode == "preinstalled" and img and img.dlvm:
            notes.update(f"preinstalled: {img.label}. gpuwizard checks `nvidia-smi` on the host and installs nothing.")
        elif mode == "none":
            notes.update("No driver work: use this for hosts that already have a working NVIDIA stack.")
        else:
            flavor = self.drv.flavor or choices.propose(self._gpu(), self._image()).flavor or "open"
            lines = [f"Kernel modules: {flavor}. Packages are pinned to R{self.drv.branch} so an apt upgrade "
                     "cannot switch branches."] + list(getattr(self, "_notes", ()))
            lines += [w.split(": ", 1)[-1] for w in choices.stack_problems(self._trial(), "driver")[1]]
            notes.update("\n".join(lines))
        self.call_after_refresh(self._done_building)

    def _done_building(self) -> None:
        self._building = False

    @on(OptionList.OptionHighlighted)
    def _picked(self, event: OptionList.OptionHighlighted) -> None:
        if self._building or event.option.id is None:
            return
        f, _, idx = event.option.id.partition(":")
        c = self._choices[f][int(idx)]
        if getattr(self.drv, f) == c.value:
            return
        self.drv = dataclasses.replace(self.drv, **{f: c.value})
        if f == "cuda" and c.value is None:
            self.drv = dataclasses.replace(self.drv, cudnn=None, tensorrt=False)
        self._rebuild()
        self.revalidate()

    @on(Select.Changed, "#mode")
    def _mode(self) -> None:
        if self._loaded:
            self._rebuild()
