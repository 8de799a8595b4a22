"""The choices each wizard screen offers, and why some are disabled. No Textual here.

Machine types and prices come from :mod:`gpuwizard.catalog`. The NVIDIA stack comes
from :mod:`gpuwizard.drivers` (``propose`` and ``check``) when it is present: an option
is disabled exactly when ``check`` finds a problem with a trial recipe that uses it, so
the screen and ``gpuwizard validate`` cannot disagree. Until that module exists a small
built-in table (from the architecture matrix) gives the same answers for common cases.
"""

from __future__ import annotations

import copy
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
        label = f"{mt.name:<16} {mt.vcpus:>3} vCPU {mt.memory_gb:>7g} GB  ${price or 0:.2f}/h with GPU"
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

BRANCHES = ["535", "550", "570", "575", "580", "590", "595", "610"]
BRANCH_MAX_CUDA = {"535": "12.2", "550": "12.4", "570": "12.8", "575": "12.9", "580": "13.0",
                   "590": "13.1", "595": "13.2", "610": "13.3"}
CUDAS = ["11.8", "12.2", "12.4", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2"]
CUDNNS: list[str | None] = [None, "8", "9"]
TENSORRTS: list[bool | str] = [False, True, "10.4", "8.6"]
_ARCH_LAST_BRANCH = {"kepler": "470", "maxwell": "580", "pascal": "580", "volta": "580"}
_ARCH_FIRST_BRANCH = {"blackwell": "570", "hopper": "525", "ada": "525"}


def _v(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split("."))


def _drivers_module() -> Any:
    try:
        from gpuwizard import drivers  # type: ignore[attr-defined]
    except ImportError:
        return None
    return drivers if hasattr(drivers, "propose") else None


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
    """Best stack for the GPU: ``drivers.propose`` when available, else the built-in table."""
    d = _drivers_module()
    if d is not None:
        try:
            s = d.propose(gpu, image)
            return StackProposal(getattr(s, "branch", None), getattr(s, "cuda", None), getattr(s, "cudnn", None),
                                 getattr(s, "tensorrt", False), getattr(s, "flavor", None),
                                 getattr(s, "torch", None), getattr(s, "torch_index", None),
                                 tuple(getattr(s, "notes", ()) or ()))
        except Exception:  # noqa: BLE001 - fall back to the table below
            pass
    g = catalog.gpu(gpu)
    arch = g.arch if g else "turing"
    old = arch in ("pascal", "volta", "maxwell")
    if arch == "kepler":
        return StackProposal("470", "11.4", "8", False, "proprietary", None, None,
                             ("K80 is retired; R470 and CUDA 11.4 are the last that support it.",))
    if old:
        return StackProposal("580", "12.8" if arch == "volta" else "12.6", "9", False, "proprietary", "2.9.1", "cu126",
                             (f"{g.label if g else gpu} ({arch}) stops at driver R580 and CUDA 12.x; "
                              "proprietary kernel modules.",))
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
        return None
    if field_name == "cuda":
        if drv.branch and drv.branch in BRANCH_MAX_CUDA and _v(value) > _v(BRANCH_MAX_CUDA[drv.branch]):
            return f"R{drv.branch} supports CUDA up to {BRANCH_MAX_CUDA[drv.branch]}"
        if _v(value) >= (13, 0) and g and g.cc_float < 7.5:
            return f"CUDA 13 dropped {arch.title()} ({label})"
        if arch == "blackwell" and _v(value) < (12, 8):
            return f"{label} needs CUDA 12.8 or newer"
        return None
    if field_name == "cudnn":
        if value == "8" and drv.cuda and _v(drv.cuda) >= (13, 0):
            return "cuDNN 8 has no CUDA 13 build"
        if value is not None and drv.cuda is None:
            return "needs a CUDA toolkit"
        return None
    if field_name == "tensorrt":
        if value is False:
            return None
        if drv.cuda is None:
            return "needs a CUDA toolkit"
        if arch == "pascal" and value in (True, "10.4"):
            return "TensorRT 10 dropped Pascal (8.6 is the last)"
        if arch == "volta" and value is True:
            return "TensorRT 10.5+ dropped Volta (10.4 is the last)"
        if value == "8.6" and _v(drv.cuda) >= (12, 0) and arch not in ("pascal",):
            return "TensorRT 8.6 is for CUDA 11.x / Pascal"
        if value == "8.6" and _v(drv.cuda) >= (13, 0):
            return "TensorRT 8.6 has no CUDA 13 build"
        return None
    return None


def driver_reason(recipe: Recipe, field_name: str, value: Any, drv: Driver) -> str | None:
    """Why ``driver.<field_name> = value`` is not possible with the rest of ``drv``; None if it is.

    With :mod:`gpuwizard.drivers`, this asks ``check`` about a trial recipe, so the
    wizard disables exactly what ``gpuwizard validate`` would reject.
    """
    g = recipe.target.gcp
    gpu = g.gpu.type if g and g.gpu else "nvidia-tesla-t4"
    d = _drivers_module()
    if d is not None and hasattr(d, "check"):
        trial = copy.copy(recipe)
        trial.driver = _replace(drv, field_name, value)
        try:
            problems = d.check(trial)
        except Exception:  # noqa: BLE001
            problems = None
        if problems is not None:
            for p in problems:
                path = getattr(p, "path", "") or ""
                if path in (f"driver.{field_name}", "driver") or path.endswith(f".{field_name}"):
                    return str(getattr(p, "message", p))
            return None
    return _fallback_reason(gpu, field_name, value, drv)


def _replace(obj: Any, name: str, value: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **{name: value})


def driver_choices(recipe: Recipe, drv: Driver) -> dict[str, list[Choice]]:
    """Every option of the four stack fields, each with the reason it is disabled (if it is)."""
    def cuda_label(c: str) -> str:
        return f"CUDA {c}"

    def trt_label(t: bool | str) -> str:
        return {False: "none", True: "newest for the CUDA"}.get(t, f"TensorRT {t}") if isinstance(t, bool) else f"TensorRT {t}"

    return {
        "branch": [Choice(b, f"R{b}", driver_reason(recipe, "branch", b, drv)) for b in BRANCHES],
        "cuda": [Choice(None, "driver only", None)] + [Choice(c, cuda_label(c), driver_reason(recipe, "cuda", c, drv)) for c in CUDAS],
        "cudnn": [Choice(c, "none" if c is None else f"cuDNN {c}", driver_reason(recipe, "cudnn", c, drv)) for c in CUDNNS],
        "tensorrt": [Choice(t, trt_label(t), driver_reason(recipe, "tensorrt", t, drv)) for t in TENSORRTS],
    }


def driver_problems(recipe: Recipe) -> list[str]:
    """Problems of the recipe's driver section (``drivers.check`` or the table)."""
    drv = recipe.driver
    if drv is None or drv.preinstalled:
        return []
    d = _drivers_module()
    if d is not None and hasattr(d, "check"):
        try:
            return [str(getattr(p, "message", p)) for p in d.check(recipe)]
        except Exception:  # noqa: BLE001
            pass
    out = []
    for name in ("branch", "cuda", "cudnn", "tensorrt"):
        value = getattr(drv, name)
        if value is None or value is False:
            continue
        r = driver_reason(recipe, name, value, drv)
        if r:
            out.append(f"{name} {value}: {r}")
    return out


# ------------------------------------------------------------------------ environment

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
TORCHES = ["2.9.1", "2.8.0", "2.7.1", "2.6.0", "2.5.1", "2.1.2"]


def torch_index_for(cuda: str | None, gpu: str | None) -> str:
    """The PyTorch wheel index that matches the CUDA choice and the GPU generation."""
    g = catalog.gpu(gpu) if gpu else None
    if cuda is None:
        return "cu126" if g else "cpu"
    v = _v(cuda)
    if g is not None and g.cc_float < 7.5:
        return "cu126"  # cu128+ wheels drop Pascal (and later Volta)
    if v >= (13, 0):
        return "cu130"
    if v >= (12, 8):
        return "cu128"
    if v >= (12, 6):
        return "cu126"
    if v >= (12, 4):
        return "cu124"
    return "cu118"


def torch_choices(cuda: str | None, gpu: str | None) -> list[Choice]:
    idx = torch_index_for(cuda, gpu)
    out = [Choice(None, "no PyTorch")]
    for t in TORCHES:
        reason = None
        if idx == "cu130" and _v(t) < (2, 9):
            reason = "no cu130 wheel before 2.9"
        elif idx == "cu128" and _v(t) < (2, 7):
            reason = "no cu128 wheel before 2.7"
        elif idx == "cu126" and _v(t) < (2, 6):
            reason = "no cu126 wheel before 2.6"
        out.append(Choice(t, f"torch {t} ({idx})", reason))
    return out


#: The original case gpuwizard automates: ST-GCN via mmskeleton (see shared/origin).
STGCN_PRESET = {
    "url": "https://github.com/open-mmlab/mmskeleton.git",
    "ref": "",
    "setup": ["pip install -r requirements.txt", "pip install mmcv==0.4.3 cython", "python setup.py develop"],
}


def env_default(recipe: Recipe) -> Env:
    """A fresh environment matched to the driver choice."""
    drv = recipe.driver
    gpu = recipe.target.gcp.gpu.type if recipe.target.gcp and recipe.target.gcp.gpu else None
    cuda = drv.cuda if drv and not drv.preinstalled else None
    if drv and drv.preinstalled and recipe.target.gcp:
        img = catalog.image(recipe.target.gcp.image)
        cuda = img.cuda if img else None
    return Env(manager="venv", python="3.10", torch="2.9.1", torch_index=torch_index_for(cuda, gpu))
