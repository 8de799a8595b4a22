"""The choices each wizard screen offers, and why some are disabled. No Textual here.

Machine types and prices come from :mod:`gpuwizard.catalog`. The NVIDIA stack comes
from :mod:`gpuwizard.drivers` (``propose`` and ``check``) when it is present: an option
is disabled exactly when ``check`` finds a problem with a trial recipe that uses it, so
the screen and ``gpuwizard validate`` cannot disagree. Until that module exists a small
built-in table (from the architecture matrix) gives the same answers for common cases.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from gpuwizard import catalog
from gpuwizard.recipe import Driver, Env, Recipe


@dataclass(frozen=True)
class Choice:
    """One option: ``value`` (what goes into the recipe), a label, and a reason when disabled."""

    value: Any
    label: str
    reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.reason is None


# ------------------------------------------------------------------------ money


def hourly_cost(machine: str, gpu: str | None, count: int, spot: bool, vms: int = 1) -> float | None:
    """USD/hour for ``vms`` VMs of ``machine`` + ``count`` GPUs (catalog prices)."""
    one = catalog.hourly_price(machine, gpu, count, spot)
    return None if one is None else round(one * vms, 4)


def cost_text(recipe: Recipe) -> str:
    """One line: what the recipe's VMs cost per hour and per month of continuous running."""
    g = recipe.target.gcp
    if g is None:
        return "Existing hosts: no Compute Engine cost."
    gpu = g.gpu.type if g.gpu else None
    count = g.gpu.count if g.gpu else 0
    one = catalog.hourly_price(g.machine_type, gpu, count, g.spot)
    if one is None:
        return f"{g.machine_type}: price unknown (not in the catalog)."
    mt = catalog.machine_type(g.machine_type)
    parts = [f"{g.machine_type} ${(mt.spot_price_hour if g.spot else mt.price_hour):.2f}" if mt else g.machine_type]
    gt = catalog.gpu(gpu) if gpu else None
    if gt and mt and mt.gpu_type is None:
        each = gt.spot_price_hour if g.spot else gt.price_hour
        parts.append(f"{count} x {gt.label} ${each:.2f}")
    elif gt:
        parts.append(f"{count} x {gt.label} included")
    total = one * g.count
    vms = f" x {g.count} VMs" if g.count > 1 else ""
    kind = "spot" if g.spot else "on-demand"
    return (f"{' + '.join(parts)} = ${one:.2f}/h per VM{vms} -> ${total:.2f}/h {kind} "
            f"(~${total * 730:,.0f}/month if left running)")


# ------------------------------------------------------------------------ GPUs


def gpu_choices() -> list[Choice]:
    out = []
    for g in catalog.gpus().values():
        reason = f"retired: {g.retired}" if g.retired else None
        price = f"${g.price_hour:.2f}/h per GPU" if g.price_hour else "priced with the machine"
        out.append(Choice(g.name, f"{g.label:<10} {g.memory_gb:>3} GB  {g.arch:<9} {price}", reason))
    return out


def machine_choices(gpu: str, count: int, spot: bool) -> list[Choice]:
    """Machine types that can carry the GPUs, within the GPU's vCPU/memory limits."""
    out = []
    for mt in catalog.machine_types_for(gpu, count):
        price = catalog.hourly_price(mt.name, gpu, count, spot)
        label = f"{mt.name:<15} {mt.vcpus:>3} vCPU {mt.memory_gb:>5g} GB ${price or 0:.2f}/h"
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


def _drivers_module() -> Any:
    """:mod:`gpuwizard.drivers`, or None when this build does not have it."""
    try:
        from gpuwizard import drivers  # type: ignore[attr-defined]
    except ImportError:
        return None
    return drivers if hasattr(drivers, "propose") and hasattr(drivers, "check") else None


def _stack_catalog() -> Any:
    try:
        from gpuwizard.catalog import stack  # type: ignore[attr-defined]
    except ImportError:
        return None
    return stack


def _v(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"[0-9]+", s))


def branches() -> list[str]:
    S = _stack_catalog()
    return list(S.branches()) if S else ["470", "535", "550", "570", "575", "580", "590", "595", "610"]


def cudas() -> list[str]:
    S = _stack_catalog()
    return list(S.cuda_versions()) if S else ["11.8", "12.2", "12.4", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2"]


CUDNNS: list[str | None] = [None, "8", "9.10", "9"]
TENSORRTS: list[bool | str] = [False, True, "10", "10.4", "8.6"]
_ARCH_LAST_BRANCH = {"kepler": "470", "maxwell": "580", "pascal": "580", "volta": "580"}
_ARCH_FIRST_BRANCH = {"blackwell": "570", "hopper": "525", "ada": "525"}
_BRANCH_MAX_CUDA = {"470": "11.4", "535": "12.2", "550": "12.4", "570": "12.8", "575": "12.9", "580": "13.0",
                    "590": "13.1", "595": "13.2", "610": "13.3"}


@dataclass(frozen=True)
class StackProposal:
    """The proposed NVIDIA stack for a GPU and image (mirrors ``drivers.Stack``)."""

    branch: str | None
    cuda: str | None
    cudnn: str | None
    tensorrt: bool | str
    flavor: str | None
    torch: str | None
    torch_index: str | None
    notes: tuple[str, ...] = ()


def propose(gpu: str, image: str) -> StackProposal:
    """Best stack for the GPU: ``drivers.propose`` when available, else a small table."""
    d = _drivers_module()
    if d is not None:
        s = d.propose(gpu, image)
        return StackProposal(s.branch, s.cuda, s.cudnn, s.tensorrt if s.tensorrt else False, s.flavor,
                             s.torch, s.torch_index, tuple(s.notes or ()))
    g = catalog.gpu(gpu)
    arch = g.arch if g else "turing"
    if arch in ("pascal", "volta", "maxwell"):
        return StackProposal("580", "12.8", "9", False, "proprietary", "2.9.1", "cu126",
                             (f"{g.label if g else gpu} ({arch}) stops at driver R580; proprietary kernel modules.",))
    return StackProposal("580", "12.8", "9", False, "open", "2.9.1", "cu128", ())


def _fallback_reason(gpu: str, field_name: str, value: Any, drv: Driver) -> str | None:
    g = catalog.gpu(gpu)
    arch = g.arch if g else "turing"
    label = g.label if g else gpu
    if field_name == "branch":
        last = _ARCH_LAST_BRANCH.get(arch)
        if last and int(value) > int(last):
            return f"{label} ({arch.title()}) stops at R{last}"
        first = _ARCH_FIRST_BRANCH.get(arch)
        if first and int(value) < int(first):
            return f"{label} needs R{first} or newer"
    elif field_name == "cuda":
        mx = _BRANCH_MAX_CUDA.get(drv.branch or "")
        if mx and _v(value) > _v(mx):
            return f"R{drv.branch} supports CUDA up to {mx}"
        if _v(value) >= (13, 0) and g and g.cc_float < 7.5:
            return f"CUDA 13 dropped {arch.title()} ({label})"
    elif field_name in ("cudnn", "tensorrt") and value not in (None, False) and drv.cuda is None:
        return "needs a CUDA toolkit"
    return None


def driver_reason(recipe: Recipe, field_name: str, value: Any, drv: Driver) -> str | None:
    """Why ``driver.<field_name> = value`` cannot work with the rest of ``drv``; None if it can.

    With :mod:`gpuwizard.drivers` this asks ``check`` about a trial recipe, so the wizard
    disables exactly what ``gpuwizard validate`` rejects (errors; warnings stay allowed).
    """
    g = recipe.target.gcp
    gpu = g.gpu.type if g and g.gpu else "nvidia-tesla-t4"
    d = _drivers_module()
    if d is None:
        return _fallback_reason(gpu, field_name, value, drv)
    trial = copy.copy(recipe)
    trial.driver = dataclasses.replace(drv, **{field_name: value}, preinstalled=False)
    trial.env = None  # judge the stack alone; PyTorch is the next screen's question
    try:
        problems = d.check(trial)
    except Exception as exc:  # noqa: BLE001 - a checker bug must not take the screen down
        return f"cannot check: {exc}"
    for p in problems:
        if getattr(p, "warning", False):
            continue
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
    }
    return out


def stack_problems(recipe: Recipe, prefix: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) from ``drivers.check`` whose path starts with ``prefix``."""
    d = _drivers_module()
    if d is None:
        return [], []
    try:
        problems = d.check(recipe)
    except Exception as exc:  # noqa: BLE001
        return [f"cannot check the stack: {exc}"], []
    errs = [f"{p.path}: {p.message}" for p in problems if p.path.startswith(prefix) and not getattr(p, "warning", False)]
    warns = [f"{p.path}: {p.message}" for p in problems if p.path.startswith(prefix) and getattr(p, "warning", False)]
    return errs, warns


# ------------------------------------------------------------------------ environment

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def torch_releases() -> list[str]:
    S = _stack_catalog()
    return list(reversed(S.torch_releases())) if S else ["2.9", "2.8", "2.7", "2.6"]


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
    d = _drivers_module()
    if d is not None and hasattr(d, "choose_index"):
        return d.choose_index(torch, gt.cc if gt else None, _driver_branch(recipe))
    if gt is not None and gt.cc_float < 7.5:
        return "cu126", None
    return "cu128", None


def torch_choices(recipe: Recipe) -> list[Choice]:
    """PyTorch releases, newest first, disabled when no wheel fits the GPU and driver."""
    out = [Choice(None, "no PyTorch")]
    for t in torch_releases():
        idx, note = torch_index_for(recipe, t)
        out.append(Choice(t, f"torch {t} ({idx})" if idx else f"torch {t}", None if idx else (note or "no wheel")))
    return out


#: The original case gpuwizard automates: ST-GCN via mmskeleton (see shared/origin).
STGCN_PRESET = {
    "url": "https://github.com/open-mmlab/mmskeleton.git",
    "ref": "",
    "setup": ["pip install -r requirements.txt", "pip install mmcv==0.4.3 cython", "python setup.py develop"],
}


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
    from gpuwizard.catalog import stack

    g = recipe.target.gcp
    img = catalog.image(g.image) if g else None
    info = stack.oses().get(img.os) if img is not None else None
    return info.python_default if info is not None else "3.10"
