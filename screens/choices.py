"""The choices each wizard screen offers, and why some are disabled. No Textual here.

Machine types and prices come from :mod:`gpuwizard.catalog`. The NVIDIA stack comes
from :mod:`gpuwizard.drivers` (``propose`` and ``check``): an option is disabled exactly
when ``check`` finds a problem with a trial recipe that uses it, so the screen and
``gpuwizard validate`` cannot disagree; this module keeps no driver table of its own.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from gpuwizard import catalog, drivers, presets
from gpuwizard.autostop import settings as autostop
from gpuwizard.catalog import stack
from gpuwizard.plan import describe_provision
from gpuwizard.recipe import Driver, Env, Problem, Recipe


@dataclass(frozen=True)
class Choice:
    """One option: ``value`` (what goes into the recipe), a label, and a reason when disabled."""

    value: Any
    label: str
    reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.reason is None


def field_meta(cls: type, name: str) -> dict[str, Any]:
    """A recipe-model field's constraints (minimum, pattern ...): screens check what the
    loader checks, read from the model rather than copied."""
    return dict(next(f.metadata for f in dataclasses.fields(cls) if f.name == name))


# ------------------------------------------------------------------------ money


def cost_text(recipe: Recipe) -> str:
    """One line: what the recipe's VMs cost per hour and per month of continuous running,
    from :func:`gpuwizard.plan.describe_provision` (the one price rule, and the VM count
    ``plan`` and ``run`` state: a cluster's nodes), saying what it assumes."""
    summary = describe_provision(recipe)
    if summary is None:
        return "Existing hosts: no Compute Engine cost."
    if summary.hourly is None:
        return f"{summary.machine_type}: price unknown ({summary.cost_unknown})."
    n = summary.vms
    total = summary.hourly * n
    vms = (f" x {n} nodes" if recipe.cluster is not None else f" x {n} VMs") if n > 1 else ""
    if recipe.autostop is not None:
        running = f"{autostop.describe(recipe)}"
    else:
        running = f"no auto-stop: ~${total * 24:,.0f} a day, ~${total * 730:,.0f}/month if left running"
    return f"${summary.hourly:.2f}/h per VM{vms} -> ${total:.2f}/h ({running}); {summary.cost_assumes}"


# ------------------------------------------------------------------------ GPUs


def gpu_choices() -> list[Choice]:
    out = []
    for g in catalog.gpus().values():
        reason = f"retired: {g.retired}" if g.retired else None
        price = f"${g.price_hour:.2f}/h per GPU" if g.price_hour else "priced with the machine"
        out.append(Choice(g.name, f"{g.label:<10} {g.memory_gb:>3} GB  {g.arch:<9} {price}", reason))
    return out


def machine_choices(gpu: str, count: int, spot: bool, disk_gb: int = 0, disk_type: str = "pd-balanced",
                    region: str | None = None) -> list[Choice]:
    """Machine types that can carry the GPUs, within the GPU's vCPU/memory limits, each with
    the VM's price in ``region`` (:func:`gpuwizard.catalog.vm_price`, with the boot disk when given)."""
    out = []
    for mt in catalog.machine_types_for(gpu, count):
        price = catalog.vm_price(mt.name, gpu, count, spot, disk_gb, disk_type, region=region).per_hour
        shown = "price unknown" if price is None else f"${price:.2f}/h"
        label = f"{mt.name:<15} {mt.vcpus:>3} vCPU {mt.memory_gb:>5g} GB {shown}"
        reason = "spot only" if (mt.spot_only and not spot) else None
        out.append(Choice(mt.name, label, reason))
    return out


def machine_limits_text(gpu: str, count: int) -> str:
    g = catalog.gpu(gpu)
    if g is None:
        return ""
    if g.attachable:
        lim = g.n1_limits.get(count)
        if lim:
            return (f"{g.label} x {count} attaches to N1 machine types with at most {lim[0]} vCPUs and "
                    f"{lim[1]:g} GB memory.")
        return f"{g.label} takes {', '.join(map(str, g.counts))} GPUs per VM (got {count})."
    fams = ", ".join(f.upper() for f in g.families)
    return f"{g.label} comes bundled with {fams} machine types; the type fixes the GPU count."


def disk_types_for(machine: str) -> list[str]:
    mt = catalog.machine_type(machine)
    fam = catalog.family(mt.family) if mt else None
    return list(fam.get("disks", [])) if fam else ["pd-balanced", "pd-ssd", "pd-standard"]


def image_choices() -> list[Choice]:
    return [Choice(i.family, i.label + ("  (driver preinstalled)" if i.dlvm else "")) for i in catalog.images().values()]


# ------------------------------------------------------------------------ driver stack


def branches() -> list[str]:
    return list(stack.branches())


def cudas() -> list[str]:
    return list(stack.cuda_versions())


CUDNNS: list[str | None] = [None, "8", "9.10", "9"]
TENSORRTS: list[bool | str] = [False, True, "10", "10.4", "8.6"]
FLAVORS: list[str] = ["open", "proprietary"]
#: The Driver screen's fields, in the order a change ripples through them.
STACK_FIELDS: tuple[str, ...] = ("branch", "flavor", "cuda", "cudnn", "tensorrt")


def propose(gpu: str | None, image: str | None) -> drivers.Stack:
    """The best stack for the GPU on the image: :func:`gpuwizard.drivers.propose`, the
    same answer ``gpuwizard validate`` and the planner work from."""
    return drivers.propose(gpu, image)


def driver_from_stack(p: drivers.Stack) -> Driver:
    """The recipe's ``driver:`` section for a proposed stack."""
    return Driver(branch=p.branch, cuda=p.cuda, cudnn=p.cudnn, tensorrt=p.tensorrt or False, flavor=p.flavor)


def _errors(recipe: Recipe) -> list[Problem]:
    return [p for p in drivers.check(recipe) if not p.warning]


def driver_reason(recipe: Recipe, field_name: str, value: Any, drv: Driver) -> str | None:
    """Why ``driver.<field_name> = value`` cannot work with the rest of ``drv``; None if it can.

    Asks :func:`gpuwizard.drivers.check` about a trial recipe, so the wizard disables
    exactly what ``gpuwizard validate`` rejects (errors; warnings stay allowed).
    """
    trial = copy.copy(recipe)
    trial.driver = dataclasses.replace(drv, **{field_name: value}, preinstalled=False)
    trial.env = None  # judge the stack alone; PyTorch is the next screen's question
    for p in _errors(trial):
        if p.path == f"driver.{field_name}":
            return p.message
    return None


def driver_choices(recipe: Recipe, drv: Driver) -> dict[str, list[Choice]]:
    """Every option of the four stack fields, each with the reason it is disabled (if it is)."""
    def with_current(values: list[Any], current: Any) -> list[Any]:
        return values if current in values else values + [current]

    def trt_label(t: bool | str) -> str:
        if t is False:
            return "none"
        if t is True:
            return "newest for the CUDA"
        return f"TensorRT {t}"

    out = {
        "branch": [Choice(b, f"R{b}", driver_reason(recipe, "branch", b, drv))
                   for b in with_current(branches(), drv.branch) if b],
        "cuda": [Choice(None, "driver only")] + [Choice(c, f"CUDA {c}", driver_reason(recipe, "cuda", c, drv))
                                                 for c in with_current(cudas(), drv.cuda) if c],
        "cudnn": [Choice(c, "none" if c is None else f"cuDNN {c}",
                         None if c is None else driver_reason(recipe, "cudnn", c, drv))
                  for c in with_current(list(CUDNNS), drv.cudnn)],
        "tensorrt": [Choice(t, trt_label(t), None if t is False else driver_reason(recipe, "tensorrt", t, drv))
                     for t in with_current(list(TENSORRTS), drv.tensorrt)],
        "flavor": [Choice(None, "default for GPU")] + [
            Choice(f, f"{f} modules", driver_reason(recipe, "flavor", f, drv))
            for f in with_current(list(FLAVORS), drv.flavor) if f],
    }
    return out


def stack_problems(recipe: Recipe, prefix: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) from ``drivers.check`` whose path starts with ``prefix``."""
    problems = [p for p in drivers.check(recipe) if p.path.startswith(prefix)]
    return ([f"{p.path}: {p.message}" for p in problems if not p.warning],
            [f"{p.path}: {p.message}" for p in problems if p.warning])


def repropose(recipe: Recipe) -> list[str]:
    """Re-propose what an upstream change (GPU, image) broke, in place; returns what changed.

    A T4 recipe switched to a V100 keeps R595 and open kernel modules, which the V100
    cannot use: every driver field ``drivers.check`` rejects takes the proposal's value
    (a changed branch can break CUDA, so this repeats until nothing more changes), and a
    PyTorch wheel index that no longer fits is dropped so the planner derives it again.
    Fields that still fit stay as the user chose them.
    """
    changes: list[str] = []
    d = recipe.driver
    g = recipe.target.gcp
    if d is not None and not d.preinstalled:
        p = propose(g.gpu.type if g and g.gpu else None, g.image if g else None)
        proposed = driver_from_stack(p)
        for _ in range(len(STACK_FIELDS)):
            bad = {e.path.split(".", 1)[1] for e in _errors(recipe) if e.path.startswith("driver.")}
            field_name = next((f for f in STACK_FIELDS if f in bad), None)
            if field_name is None:
                break
            old, new = getattr(recipe.driver, field_name), getattr(proposed, field_name)
            if old == new:
                break
            recipe.driver = dataclasses.replace(recipe.driver, **{field_name: new})
            changes.append(f"driver {field_name} {_show(old)} -> {_show(new)}")
    env = recipe.env
    if env is not None and env.torch_index and any(e.path.startswith("env.torch") for e in _errors(recipe)):
        changes.append(f"PyTorch wheels {env.torch_index} -> chosen for the new GPU and driver")
        recipe.env = dataclasses.replace(env, torch_index=None)
    return changes


def _show(value: Any) -> str:
    return "none" if value in (None, False) else str(value)


# ------------------------------------------------------------------------ environment

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def torch_releases() -> list[str]:
    return list(reversed(stack.torch_releases()))


def _driver_branch(recipe: Recipe) -> str | None:
    d = recipe.driver
    g = recipe.target.gcp
    if d is not None and d.preinstalled and g is not None:
        img = catalog.image(g.image)
        return img.driver if img else None
    return d.branch if d else None


def torch_index_for(recipe: Recipe, torch: str) -> tuple[str | None, str | None]:
    """(wheel index, note) for PyTorch ``torch`` on the recipe's GPU and driver."""
    g = recipe.target.gcp
    gt = catalog.gpu(g.gpu.type) if g and g.gpu else None
    return drivers.choose_index(torch, gt.cc if gt else None, _driver_branch(recipe))


def torch_choices(recipe: Recipe) -> list[Choice]:
    """PyTorch releases, newest first, disabled when no wheel fits the GPU and driver."""
    out = [Choice(None, "no PyTorch")]
    for t in torch_releases():
        idx, note = torch_index_for(recipe, t)
        out.append(Choice(t, f"torch {t} ({idx})" if idx else f"torch {t}", None if idx else (note or "no wheel")))
    return out


def stgcn_preset(recipe: Recipe) -> presets.Preset:
    """The ST-GCN preset (:func:`gpuwizard.presets.stgcn`, the one definition the shipped
    stgcn-t4 recipe equals) for the draft's GPU, image and CUDA toolkit. Raises
    :class:`gpuwizard.presets.PresetError` when it cannot apply (no CUDA toolkit)."""
    g = recipe.target.gcp
    d = recipe.driver
    cuda = d.cuda if d is not None and not d.preinstalled else None
    if d is not None and d.preinstalled and g is not None:
        img = catalog.image(g.image)
        cuda = img.cuda if img else None
    return presets.stgcn(g.gpu.type if g and g.gpu else None, g.image if g else None, cuda)


def env_default(recipe: Recipe) -> Env:
    """A fresh environment: the newest PyTorch whose wheels fit the GPU and the driver.

    ``torch_index`` stays unset (the planner derives it) unless the choice needs minor-version
    compatibility, so recipes stay short."""
    g = recipe.target.gcp
    img = catalog.image(g.image) if g else None
    torch = None
    if img is not None and img.dlvm and img.torch:
        torch = None  # the image has PyTorch; do not install another
    else:
        for c in torch_choices(recipe):
            if c.value and c.enabled:
                torch = c.value
                break
    return Env(manager="venv", python=default_python(recipe), torch=torch)


def default_python(recipe: Recipe) -> str:
    """The image's own Python (a venv needs no extra packages then): 3.10 on Ubuntu 22.04,
    3.12 on Ubuntu 24.04, 3.11 on Debian 12; 3.10 when the image is unknown."""
    g = recipe.target.gcp
    img = catalog.image(g.image) if g else None
    info = stack.oses().get(img.os) if img is not None else None
    return info.python_default if info is not None else "3.10"
