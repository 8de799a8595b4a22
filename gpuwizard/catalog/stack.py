"""Typed access to ``stack.yaml``: driver branches, CUDA, cuDNN, TensorRT, PyTorch wheels.

The data file is the single source of every version rule; this module only turns it
into small frozen objects and a few comparisons (version strings are compared as
tuples of ints, never as strings: "12.10" > "12.9").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from gpuwizard import catalog


def vtuple(v: str) -> tuple[int, ...]:
    """'12.8' -> (12, 8); '580.95.05' -> (580, 95, 5). Non-digits end the version."""
    out = []
    for part in str(v).split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def vle(a: str, b: str) -> bool:
    """``a <= b`` comparing only as many parts as ``b`` has ('9.10.2' <= '9.10' is True)."""
    ta, tb = vtuple(a), vtuple(b)
    return ta[: len(tb)] <= tb


@dataclass(frozen=True)
class Arch:
    """What one GPU architecture can still run."""

    key: str
    name: str
    branch_min: str
    branch_max: str | None
    modules: tuple[str, ...]
    cuda_min: str
    cuda_max: str | None
    cudnn_max: str | None
    tensorrt_max: str | None
    note: str | None


@dataclass(frozen=True)
class Branch:
    """One NVIDIA driver branch."""

    name: str
    cuda_max: str
    archs: tuple[str, ...]
    modules: tuple[str, ...]
    packaging: str
    lifecycle: str
    recommended: bool
    pin_package: bool = False   # NVIDIA ships nvidia-driver-pinning-<branch>


@dataclass(frozen=True)
class OsInfo:
    """What gpuwizard knows about one supported OS."""

    key: str
    label: str
    id: str            # /etc/os-release ID
    version_id: str    # /etc/os-release VERSION_ID
    repo: str
    cuda_min: str
    kernel_meta: str
    pythons: tuple[str, ...]
    python_default: str
    branch_max: str | None = None
    cuda_max: str | None = None
    limit_why: str | None = None
    limit_source: str | None = None
    keyring_sha256: str | None = None
    install_warning: str | None = None   # said (as a warning) for every driver install on this OS


def raw() -> dict[str, Any]:
    return catalog.data("stack")


def meta() -> dict[str, Any]:
    return raw().get("meta", {})


@functools.lru_cache(maxsize=None)
def archs() -> dict[str, Arch]:
    out = {}
    for key, a in raw()["archs"].items():
        out[key] = Arch(key=key, name=a["name"], branch_min=str(a["branch_min"]),
                        branch_max=None if a.get("branch_max") is None else str(a["branch_max"]),
                        modules=tuple(a["modules"]), cuda_min=str(a["cuda_min"]),
                        cuda_max=_opt(a.get("cuda_max")), cudnn_max=_opt(a.get("cudnn_max")),
                        tensorrt_max=_opt(a.get("tensorrt_max")), note=a.get("note"))
    return out


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


@functools.lru_cache(maxsize=None)
def branches() -> dict[str, Branch]:
    """Driver branches, oldest first."""
    items = sorted(raw()["branches"].items(), key=lambda kv: int(kv[0]))
    return {str(k): Branch(name=str(k), cuda_max=str(b["cuda_max"]), archs=tuple(b["archs"]),
                           modules=tuple(b["modules"]), packaging=b["packaging"], lifecycle=b["lifecycle"],
                           recommended=bool(b.get("recommended")), pin_package=bool(b.get("pin_package")))
            for k, b in items}


@functools.lru_cache(maxsize=None)
def oses() -> dict[str, OsInfo]:
    return {k: OsInfo(key=k, label=o["label"], id=o["id"], version_id=str(o["version_id"]), repo=o["repo"], cuda_min=str(o["cuda_min"]),
                      kernel_meta=o["kernel_meta"], pythons=tuple(str(p) for p in o["pythons"]),
                      python_default=str(o["python_default"]), branch_max=_opt(o.get("branch_max")),
                      cuda_max=_opt(o.get("cuda_max")), limit_why=o.get("limit_why"),
                      limit_source=o.get("limit_source"), keyring_sha256=o.get("keyring_sha256"),
                      install_warning=o.get("install_warning"))
            for k, o in raw()["os"].items()}


def cuda_versions() -> list[str]:
    """Known CUDA toolkits, oldest first."""
    return sorted((str(k) for k in raw()["cuda"]), key=vtuple)


def cuda_driver(cuda: str) -> str | None:
    """The driver a CUDA toolkit ships with (its full-feature minimum), or None if unknown."""
    return raw()["cuda"].get(cuda)


def minor_compat_floor(cuda_major: str) -> str | None:
    return raw()["minor_compat"].get(str(cuda_major))


def torch_releases() -> list[str]:
    """PyTorch releases (major.minor), oldest first."""
    return sorted((str(k) for k in raw()["torch"]), key=vtuple)


def torch_minor(version: str) -> str:
    """'2.9.1' -> '2.9'."""
    return ".".join(version.split(".")[:2])


def torch_indexes(version: str, experimental: bool = True) -> list[str]:
    """Wheel indexes for a PyTorch release ('2.9' or '2.9.1'); [] when unknown."""
    row = raw()["torch"].get(torch_minor(version))
    if row is None:
        return []
    return list(row["stable"]) + (list(row.get("experimental") or []) if experimental else [])


def index_cuda(index: str) -> str | None:
    """'cu126' -> '12.6'; 'cpu' -> None."""
    if not index.startswith("cu"):
        return None
    digits = index[2:]
    return f"{digits[:2]}.{digits[2:]}"


def index_url(index: str) -> str:
    return raw()["torch_index_url"].format(index=index)


def wheel_archs(index: str, torch_version: str) -> list[str] | None:
    """Compute capabilities a wheel index carries for one PyTorch release (None: unknown)."""
    row = raw()["wheel_archs"].get(index)
    if row is None:
        return None
    minor = vtuple(torch_minor(torch_version))
    for rng in row.get("ranges") or []:
        since = vtuple(rng["since"]) if "since" in rng else None
        until = vtuple(rng["until"]) if "until" in rng else None
        if (since is None or minor >= since) and (until is None or minor <= until):
            return list(rng["archs"])
    return list(row["default"])


def wheel_runs_on(index: str, torch_version: str, cc: str) -> bool | None:
    """True when the wheel has kernels for compute capability ``cc`` (same major, equal or
    lower minor: cubins are binary compatible within a major); None when unknown."""
    archs_ = wheel_archs(index, torch_version)
    if archs_ is None:
        return None
    major, minor = vtuple(cc)[0], vtuple(cc)[1] if len(vtuple(cc)) > 1 else 0
    for a in archs_:
        t = vtuple(a)
        if t[0] == major and t[1] <= minor:
            return True
    return False


#: The host NVIDIA's apt repository is served from (apt's "Pin: origin" matches it).
REPO_HOST = "developer.download.nvidia.com"


def repo_base(repo: str) -> str:
    """NVIDIA's CUDA apt repository for one OS repo name (no trailing slash)."""
    return raw()["repository"]["base"].format(repo=repo)


def keyring_url(repo: str) -> str:
    return repo_base(repo) + "/" + raw()["repository"]["keyring"]


def keyring_sha256(repo: str) -> str | None:
    """SHA-256 of cuda-keyring_1.1-1_all.deb in one OS repository (``stack.yaml`` os.*.keyring_sha256)."""
    for o in oses().values():
        if o.repo == repo:
            return o.keyring_sha256
    return None


def driver_packages(branch: Branch, flavor: str) -> list[str]:
    return [p.format(branch=branch.name) for p in raw()["driver_packages"][branch.packaging][flavor]]


def cudnn_packages(major: str, cuda_major: str) -> list[str]:
    return [p.format(cuda_major=cuda_major) for p in raw()["cudnn"]["packages"][major]]


def cudnn_cuda_majors(major: str) -> list[str]:
    return [str(x) for x in raw()["cudnn"]["cuda_majors"].get(major, [])]


def tensorrt() -> dict[str, Any]:
    return raw()["tensorrt"]


def tensorrt_cuda_majors(version: str) -> list[str]:
    """CUDA majors a TensorRT line has deb builds for ('10.4' -> the '10' row)."""
    rows = tensorrt()["cuda_majors"]
    t = vtuple(version)
    best: list[str] = []
    best_len = -1
    for key, majors in rows.items():
        k = vtuple(str(key))
        if t[: len(k)] == k and len(k) > best_len:
            best, best_len = [str(m) for m in majors], len(k)
    return best


def smi_name(gpu_type: str) -> str | None:
    return raw()["smi_names"].get(gpu_type)
