"""The NVIDIA stack: which driver/CUDA/cuDNN/TensorRT/PyTorch fit a GPU, and the apt
steps that install them on Ubuntu 22.04/24.04 and Debian 12.

Three layers, all driven by ``catalog/stack.yaml``:

* :func:`propose` answers "what should this GPU on this image run?" with the newest
  recommended branch the architecture still supports, and says why when it is capped
  (Pascal/Volta stop at R580 with proprietary modules, Blackwell needs open modules).
* :func:`check` cross-checks a recipe's explicit choices and returns located problems.
* :func:`steps` turns the resolved stack into idempotent Steps. Each has a cheap
  ``check`` (package state, held marks, file contents) so a re-run changes nothing, and
  the branch is pinned so ``apt upgrade`` can never jump to a branch that drops the GPU.

Deep Learning VM images (and ``driver: preinstalled``) install nothing here; the
verification step (:mod:`gpuwizard.verify`) checks what the image brought.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuwizard import catalog
from gpuwizard.catalog import stack as S
from gpuwizard.recipe import Problem, Recipe
from gpuwizard.shell import q
from gpuwizard.steps import Step


# ---------------------------------------------------------------------------- choice


@dataclass
class Stack:
    """A resolved NVIDIA software stack for one GPU and image.

    ``cudnn`` and ``tensorrt`` are version prefixes ('9', '9.10', '10.4') that the install
    steps match against NVIDIA's repository; ``notes`` explain every limit applied.
    """

    branch: str | None
    cuda: str | None
    cudnn: str | None
    tensorrt: str | None
    flavor: str | None
    torch: str | None
    torch_index: str | None
    notes: list[str] = field(default_factory=list)
    preinstalled: bool = False
    os: str | None = None


def _arch_of(gpu_type: str | None) -> tuple[catalog.GpuType | None, S.Arch | None]:
    g = catalog.gpu(gpu_type) if gpu_type else None
    return g, (S.archs().get(g.arch) if g else None)


def _os_of(image: str | None) -> tuple[catalog.Image | None, S.OsInfo | None]:
    img = catalog.image(image) if image else None
    return img, (S.oses().get(img.os) if img else None)


def branch_supports(branch: S.Branch, arch: S.Arch) -> bool:
    """True when the branch drives this architecture (both ends of its range)."""
    if arch.key not in branch.archs:
        return False
    if int(branch.name) < int(arch.branch_min):
        return False
    return arch.branch_max is None or int(branch.name) <= int(arch.branch_max)


def default_flavor(branch: S.Branch, arch: S.Arch | None) -> str:
    """Open modules where the GPU supports them (NVIDIA's default since R560), else proprietary."""
    prefs = arch.modules if arch else ("open", "proprietary")
    for m in prefs:
        if m in branch.modules:
            return m
    return branch.modules[0]


def cudnn_prefix(requested: str, arch: S.Arch | None) -> str:
    """'9' on a Volta becomes '9.10' (the last cuDNN with its kernels); explicit minors stay."""
    if arch and arch.cudnn_max and "." not in requested and S.vtuple(arch.cudnn_max)[0] == S.vtuple(requested)[0]:
        return arch.cudnn_max
    return requested


def tensorrt_prefix(requested: bool | str, arch: S.Arch | None) -> str | None:
    """True -> the newest line the GPU supports; a version string stays as written."""
    if requested is False or requested is None:
        return None
    if requested is True:
        return (arch.tensorrt_max if arch and arch.tensorrt_max else S.tensorrt()["latest"])
    return str(requested)


def choose_index(torch: str, cc: str | None, branch: str | None) -> tuple[str | None, str | None]:
    """The wheel index for a PyTorch release: kernels for ``cc``, a CUDA runtime the driver
    runs with full features if possible, else within minor-version compatibility.
    Returns (index, note)."""
    stable = S.torch_indexes(torch, experimental=False)
    allidx = S.torch_indexes(torch, experimental=True)
    if not allidx:
        return None, f"PyTorch {torch} is not in the catalog ({S.meta().get('snapshot')}); set env.torch_index"
    runs = [i for i in allidx if cc is None or S.wheel_runs_on(i, torch, cc) is not False]
    if not runs:
        return None, f"no PyTorch {torch} wheel index has kernels for compute capability {cc}"
    br = S.branches().get(branch) if branch else None
    if br is None:
        pick = "cu126" if "cu126" in runs else runs[0]
        return pick, f"driver unknown: chose {pick}, the index with the widest driver and GPU support"

    def key(i: str) -> tuple[int, ...]:
        return S.vtuple(S.index_cuda(i) or "0")

    full = [i for i in runs if S.vle(S.index_cuda(i) or "0", br.cuda_max)]
    if full:
        prefer = [i for i in full if i in stable] or full
        return max(prefer, key=key), None
    compat = [i for i in runs if _within_minor_compat(i, br.name)]
    if compat:
        pick = max(compat, key=key)
        return pick, f"{pick} runs on R{br.name} through CUDA minor-version compatibility"
    return None, f"no PyTorch {torch} wheel runs on driver R{br.name}"


def _within_minor_compat(index: str, branch: str) -> bool:
    cuda = S.index_cuda(index)
    floor = S.minor_compat_floor(str(S.vtuple(cuda)[0])) if cuda else None
    return floor is not None and int(branch) >= S.vtuple(floor)[0]


def propose(gpu_type: str | None, image: str | None) -> Stack:
    """The newest compatible stack for a GPU type on an image, with the reasons for any cap.

    Unknown GPU (an existing SSH host): R580, the LTS branch that drives every GPU from
    Maxwell to Blackwell, and the cu126 wheels with the widest GPU support.
    """
    g, arch = _arch_of(gpu_type)
    img, osinfo = _os_of(image)
    notes: list[str] = []
    if img is not None and img.dlvm:
        notes.append(f"{img.label}: the driver is preinstalled; gpuwizard only verifies it")
        torch = img.torch
        index = None
        if torch:
            index, n = choose_index(torch, g.cc if g else None, img.driver)
            notes += [n] if n else []
        return Stack(branch=img.driver, cuda=img.cuda, cudnn=None, tensorrt=None, flavor=None, torch=torch,
                     torch_index=index, notes=notes, preinstalled=True, os=img.os)
    if arch is not None and arch.note:
        notes.append(arch.note)
    if g is not None and g.retired:
        notes.append(g.retired)

    candidates = [b for b in S.branches().values() if arch is None or branch_supports(b, arch)]
    if arch is None:
        candidates = [S.branches()["580"]]
        notes.append("GPU unknown: R580 (LTS) drives every GPU from Maxwell to Blackwell")
    recommended = [b for b in candidates if b.recommended]
    branch = (recommended or candidates)[-1] if candidates else None
    if branch is None:
        return Stack(None, None, None, None, None, None, None, notes + ["no driver branch supports this GPU"], os=osinfo.key if osinfo else None)
    if not branch.recommended:
        notes.append(f"R{branch.name} ({branch.lifecycle}) is the newest branch for this GPU")
    flavor = default_flavor(branch, arch)

    cuda = None
    for c in reversed(S.cuda_versions()):
        if not S.vle(c, branch.cuda_max):
            continue
        if arch and (S.vtuple(c) < S.vtuple(arch.cuda_min) or (arch.cuda_max and not S.vle(c, arch.cuda_max))):
            continue
        if osinfo and S.vtuple(c) < S.vtuple(osinfo.cuda_min):
            continue
        cuda = c
        break
    if cuda is None:
        notes.append(f"NVIDIA's {osinfo.label if osinfo else ''} repository has no CUDA toolkit for this driver "
                     "and GPU; install the driver only")

    cudnn = tensorrt = None
    if cuda is not None:
        cuda_major = str(S.vtuple(cuda)[0])
        cudnn_major = str(S.raw()["cudnn"]["latest"])
        if arch and arch.cudnn_max:
            cudnn_major = str(S.vtuple(arch.cudnn_max)[0])
        if cuda_major in S.cudnn_cuda_majors(cudnn_major):
            cudnn = cudnn_prefix(cudnn_major, arch)
        trt = tensorrt_prefix(True, arch)
        if trt and cuda_major in S.tensorrt_cuda_majors(trt) and _trt_cuda_ok(trt, cuda):
            tensorrt = trt

    torch = index = None
    if g is None or g.arch != "kepler":
        for t in reversed(S.torch_releases()):
            idx, n = choose_index(t, g.cc if g else None, branch.name if g else None)
            if idx and idx in S.torch_indexes(t, experimental=False):
                torch, index = t, idx
                if n and g is not None:
                    notes.append(n)
                break
    else:
        notes.append("no current PyTorch release supports the K80 (sm_37); use a T4 or L4")
    return Stack(branch=branch.name, cuda=cuda, cudnn=cudnn, tensorrt=tensorrt, flavor=flavor, torch=torch,
                 torch_index=index, notes=notes, os=osinfo.key if osinfo else None)


def _trt_cuda_ok(trt: str, cuda: str) -> bool:
    """TensorRT lines before 10.13 have no CUDA 13 builds."""
    if S.vtuple(cuda)[0] >= 13:
        return S.vtuple(trt) >= S.vtuple(S.tensorrt()["cuda13_from"]) or S.vtuple(trt) == (10,)
    return True


def _gpu_type(recipe: Recipe) -> str | None:
    g = recipe.target.gcp
    return g.gpu.type if g is not None and g.gpu is not None else None


def _image(recipe: Recipe) -> str | None:
    g = recipe.target.gcp
    return g.image if g is not None else None


def is_verify_only(recipe: Recipe) -> bool:
    """Driver preinstalled (``driver: preinstalled`` or a Deep Learning VM image)."""
    d = recipe.driver
    img = catalog.image(_image(recipe)) if _image(recipe) else None
    return d is not None and (d.preinstalled or bool(img and img.dlvm))


def resolve(recipe: Recipe) -> Stack:
    """The stack a recipe will get: its explicit choices over :func:`propose`'s defaults.

    ``driver.cuda: null`` means driver only, so CUDA is never filled in from the proposal.
    """
    gpu, image = _gpu_type(recipe), _image(recipe)
    base = propose(gpu, image)
    _, arch = _arch_of(gpu)
    d = recipe.driver
    env = recipe.env
    if d is None:
        st = Stack(None, None, None, None, None, None, None, notes=list(base.notes), os=base.os)
    elif is_verify_only(recipe):
        st = Stack(branch=base.branch if base.preinstalled else None, cuda=base.cuda if base.preinstalled else None,
                   cudnn=None, tensorrt=None, flavor=None, torch=None, torch_index=None, notes=list(base.notes),
                   preinstalled=True, os=base.os)
    else:
        branch = d.branch or base.branch
        br = S.branches().get(branch or "")
        flavor = d.flavor or (default_flavor(br, arch) if br else base.flavor)
        cudnn = cudnn_prefix(d.cudnn, arch) if d.cudnn else None
        st = Stack(branch=branch, cuda=d.cuda, cudnn=cudnn, tensorrt=tensorrt_prefix(d.tensorrt, arch),
                   flavor=flavor, torch=None, torch_index=None, notes=list(base.notes), os=base.os)
    if env is not None and env.torch:
        st.torch = env.torch
        if env.torch_index:
            st.torch_index = env.torch_index
        else:
            g = catalog.gpu(gpu) if gpu else None
            idx, note = choose_index(env.torch, g.cc if g else None, st.branch)
            st.torch_index = idx
            if note:
                st.notes.append(note)
    return st


# ---------------------------------------------------------------------------- check


def check(recipe: Recipe) -> list[Problem]:
    """Cross-checks of the driver, CUDA, cuDNN, TensorRT and PyTorch choices against the
    GPU, the image and each other, each located at the field to change."""
    out: list[Problem] = []
    gpu, image = _gpu_type(recipe), _image(recipe)
    g, arch = _arch_of(gpu)
    img, osinfo = _os_of(image)
    d = recipe.driver
    label = g.label if g else "this GPU"
    archname = f"{arch.name}, sm_{g.cc.replace('.', '')}" if arch and g else ""
    st = resolve(recipe)
    branch = S.branches().get(st.branch or "")

    if d is not None and not is_verify_only(recipe):
        if recipe.target.gcp is not None and recipe.target.gcp.gpu is None:
            out.append(recipe.problem("driver", "no GPU is attached (target.gcp.gpu is null); remove driver "
                                      "or attach a GPU"))
        if d.branch and d.branch not in S.branches():
            known = ", ".join(S.branches())
            out.append(recipe.problem("driver.branch", f"unknown driver branch {d.branch!r}; known: {known}"))
        if recipe.target.ssh is not None and not d.branch:
            out.append(recipe.problem("driver.branch", "set driver.branch for existing hosts: gpuwizard cannot "
                                      "tell which GPU they have (R580 drives Maxwell to Blackwell; R595 Turing "
                                      "and newer)"))
        if branch is not None and arch is not None and g is not None:
            out += _branch_vs_arch(recipe, branch, arch, g, archname)
        if branch is not None and d.flavor:
            if d.flavor not in branch.modules:
                out.append(recipe.problem("driver.flavor", f"R{branch.name} ships {' and '.join(branch.modules)} "
                                          f"kernel modules only, not {d.flavor}"))
            elif arch is not None and d.flavor not in arch.modules:
                need = arch.modules[0]
                out.append(recipe.problem("driver.flavor", f"{label} ({archname}) cannot use {d.flavor} kernel "
                                          f"modules; use flavor: {need}"))
        if d.cuda:
            out += _cuda_problems(recipe, d.cuda, branch, arch, g, osinfo, archname)
        if d.cudnn:
            out += _cudnn_problems(recipe, d.cudnn, d.cuda, arch, label, archname)
        if d.tensorrt not in (False, None):
            out += _tensorrt_problems(recipe, st.tensorrt, d.cuda, arch, label, archname)
    out += _torch_problems(recipe, st, g, arch, archname)
    out += _python_problems(recipe, osinfo)
    return out


def _branch_vs_arch(recipe: Recipe, branch: S.Branch, arch: S.Arch, g: catalog.GpuType, archname: str) -> list[Problem]:
    if branch_supports(branch, arch):
        return []
    if arch.branch_max and int(branch.name) > int(arch.branch_max):
        flavor = f" with flavor: {arch.modules[0]}" if len(arch.modules) == 1 else ""
        why = (f"R{int(arch.branch_max) + 10} and later dropped {arch.name}" if arch.branch_max == "580"
               else f"later branches dropped {arch.name}")
        return [recipe.problem("driver.branch", f"{g.label} ({archname}) is supported by driver branches up to "
                               f"R{arch.branch_max}; {why}. Use branch '{arch.branch_max}'{flavor}")]
    newest = [b.name for b in S.branches().values() if branch_supports(b, arch) and b.recommended]
    hint = f"; use branch '{newest[-1]}'" if newest else ""
    extra = " with open kernel modules" if arch.modules == ("open",) else ""
    return [recipe.problem("driver.branch", f"{g.label} ({archname}) needs driver R{arch.branch_min} or newer"
                           f"{extra} (R{branch.name} does not support it){hint}")]


def _cuda_problems(recipe: Recipe, cuda: str, branch: S.Branch | None, arch: S.Arch | None,
                   g: catalog.GpuType | None, osinfo: S.OsInfo | None, archname: str) -> list[Problem]:
    out = []
    if S.cuda_driver(cuda) is None:
        known = ", ".join(S.cuda_versions())
        return [recipe.problem("driver.cuda", f"unknown CUDA version {cuda!r}; known: {known}")]
    if branch is not None and not S.vle(cuda, branch.cuda_max):
        fits = [b.name for b in S.branches().values() if S.vle(cuda, b.cuda_max) and (arch is None or branch_supports(b, arch))]
        hint = f"; use branch '{fits[0]}' or newer" if fits else ""
        out.append(recipe.problem("driver.cuda", f"CUDA {cuda} needs driver {S.cuda_driver(cuda)} or newer; "
                                  f"R{branch.name} supports CUDA up to {branch.cuda_max}{hint}"))
    if arch is not None and g is not None:
        if arch.cuda_max and not S.vle(cuda, arch.cuda_max):
            out.append(recipe.problem("driver.cuda", f"CUDA {cuda} has no support for {g.label} ({archname}); "
                                      f"use CUDA {arch.cuda_max} or older"))
        if S.vtuple(cuda) < S.vtuple(arch.cuda_min):
            out.append(recipe.problem("driver.cuda", f"{g.label} ({archname}) needs CUDA {arch.cuda_min} or newer"))
    if osinfo is not None and S.vtuple(cuda) < S.vtuple(osinfo.cuda_min):
        out.append(recipe.problem("driver.cuda", f"NVIDIA's {osinfo.label} repository starts at CUDA "
                                  f"{osinfo.cuda_min}; use a newer CUDA or another image"))
    return out


def _cudnn_problems(recipe: Recipe, cudnn: str, cuda: str | None, arch: S.Arch | None, label: str,
                    archname: str) -> list[Problem]:
    major = str(S.vtuple(cudnn)[0])
    if major not in S.raw()["cudnn"]["packages"]:
        return [recipe.problem("driver.cudnn", f"cuDNN {cudnn} is not packaged; use '9' (or '8')")]
    if not cuda:
        return [recipe.problem("driver.cudnn", "cuDNN packages are built per CUDA major: set driver.cuda too")]
    cmaj = str(S.vtuple(cuda)[0])
    if cmaj not in S.cudnn_cuda_majors(major):
        return [recipe.problem("driver.cudnn", f"cuDNN {major} has no builds for CUDA {cmaj}; "
                               f"use cuDNN {S.raw()['cudnn']['latest']}")]
    if arch is not None and arch.cudnn_max and not S.vle(cudnn, arch.cudnn_max) and "." in cudnn:
        return [recipe.problem("driver.cudnn", f"cuDNN {cudnn} has no kernels for {label} ({archname}); "
                               f"use '{arch.cudnn_max}' or older")]
    if arch is not None and arch.cudnn_max and S.vtuple(cudnn)[0] > S.vtuple(arch.cudnn_max)[0]:
        return [recipe.problem("driver.cudnn", f"cuDNN {cudnn} has no kernels for {label} ({archname}); "
                               f"use '{arch.cudnn_max}'")]
    return []


def _tensorrt_problems(recipe: Recipe, trt: str | None, cuda: str | None, arch: S.Arch | None, label: str,
                       archname: str) -> list[Problem]:
    if trt is None:
        return []
    if not cuda:
        return [recipe.problem("driver.tensorrt", "TensorRT packages are built per CUDA major: set driver.cuda too")]
    if arch is not None and arch.tensorrt_max and not S.vle(trt, arch.tensorrt_max) \
            and S.vtuple(trt)[: len(S.vtuple(arch.tensorrt_max))] > S.vtuple(arch.tensorrt_max):
        return [recipe.problem("driver.tensorrt", f"TensorRT {trt} does not support {label} ({archname}); "
                               f"use '{arch.tensorrt_max}' or older")]
    majors = S.tensorrt_cuda_majors(trt)
    cmaj = str(S.vtuple(cuda)[0])
    if not majors:
        return [recipe.problem("driver.tensorrt", f"TensorRT {trt} is not in NVIDIA's apt repository for "
                               "current OS releases; use 10.x (or 8.6 for Pascal)")]
    if cmaj not in majors or not _trt_cuda_ok(trt, cuda):
        return [recipe.problem("driver.tensorrt", f"TensorRT {trt} has no builds for CUDA {cuda}; "
                               f"pair it with CUDA {'/'.join(m + '.x' for m in majors)}"
                               + (" (CUDA 13 builds start at 10.13)" if cmaj == "13" else ""))]
    return []


def _torch_problems(recipe: Recipe, st: Stack, g: catalog.GpuType | None, arch: S.Arch | None,
                    archname: str) -> list[Problem]:
    env = recipe.env
    if env is None or not env.torch:
        return []
    out = []
    if g is not None and g.arch == "kepler":
        return [recipe.problem("env.torch", f"no current PyTorch wheel runs on the {g.label} (sm_37); use a T4 or L4")]
    indexes = S.torch_indexes(env.torch)
    if not indexes:
        if not env.torch_index:
            out.append(recipe.problem("env.torch", f"PyTorch {env.torch} is not in the catalog (releases "
                                      f"{S.torch_releases()[0]}-{S.torch_releases()[-1]}, snapshot "
                                      f"{S.meta().get('snapshot')}); set env.torch_index (e.g. cu126)"))
        return out
    idx = st.torch_index
    if idx is None:
        out.append(recipe.problem("env.torch", f"no PyTorch {env.torch} wheel fits {g.label if g else 'this GPU'} "
                                  f"and driver R{st.branch}; pick another env.torch"))
        return out
    if idx == "cpu":
        return out
    path = "env.torch_index" if env.torch_index else "env.torch"
    if idx not in indexes:
        out.append(recipe.problem(path, f"PyTorch {env.torch} has no {idx} wheels; it offers {', '.join(indexes)}"))
        return out
    if g is not None and S.wheel_runs_on(idx, env.torch, g.cc) is False:
        good = [i for i in indexes if S.wheel_runs_on(i, env.torch, g.cc)]
        hint = f"; use {good[0]}" if good else ""
        out.append(recipe.problem(path, f"PyTorch {env.torch} {idx} wheels have no kernels for {g.label} "
                                  f"({archname}){hint}"))
    if st.branch and st.branch in S.branches() and not _within_minor_compat(idx, st.branch):
        cuda = S.index_cuda(idx) or ""
        floor = S.minor_compat_floor(str(S.vtuple(cuda)[0])) or "?"
        out.append(recipe.problem(path, f"{idx} wheels need driver {floor} or newer (CUDA {cuda}); "
                                  f"R{st.branch} is too old"))
    return out


def _python_problems(recipe: Recipe, osinfo: S.OsInfo | None) -> list[Problem]:
    env = recipe.env
    if env is None or env.manager != "venv" or osinfo is None:
        return []
    if env.python not in osinfo.pythons:
        return [recipe.problem("env.python", f"{osinfo.label} packages Python {', '.join(osinfo.pythons)}; use one "
                               f"of those for a venv, or manager: conda for Python {env.python}")]
    return []


# ---------------------------------------------------------------------------- steps

# Shell fragments shared by the driver steps (they run as root under bash -euo pipefail).
# Never `producer | grep -q`: grep -q exits at the first match, the producer can die of
# SIGPIPE writing the rest, and pipefail turns the match into a failure (`apt-mark showhold |
# grep -qxF` on its first line: 76 of 500 runs exited 141 in a Debian 12 chroot); `grep ...
# >/dev/null` reads all of its input.
# apt_get first finishes a dpkg run that a reboot, a dropped connection or Ctrl-C cut short
# (dpkg leaves files in /var/lib/dpkg/updates; apt then refuses everything with "dpkg was
# interrupted"), waiting out a boot-time unattended-upgrades that holds the lock.
_APT = r"""export DEBIAN_FRONTEND=noninteractive
dpkg_heal() {
  local tries=60
  [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || return 0
  echo 'finishing an interrupted dpkg run (dpkg --configure -a)'
  until dpkg --force-confdef --force-confold --configure -a; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 10
  done
}
apt_get() { dpkg_heal; apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -y -q "$@"; }
"""
# "installed" is dpkg's package state, whatever the selection: a held package's ${Status} is
# "hold ok installed" and its ${db:Status-Abbrev} "hi", so matching "install ok installed"
# or "ii" would call every held package missing.
_INSTALLED = r"""installed() {  # every named package is installed (held or not)
  local p
  for p in "$@"; do
    # shellcheck disable=SC2016
    dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -x installed >/dev/null || return 1
  done
}
"""
_MATCHING = r"""installed_matching() {  # installed packages (held or not) whose names match the globs
  # shellcheck disable=SC2016
  { dpkg-query -W -f='${db:Status-Status} ${Package}\n' "$@" 2>/dev/null || true; } | awk '$1 == "installed" {print $2}'
}
"""
_VERSION_OF = r"""version_of() {
  # shellcheck disable=SC2016
  dpkg-query -W -f='${Version}' "$1"
}
"""
_NEWEST = r"""newest_version() {  # PACKAGE REGEX -> the newest version in the repositories matching REGEX
  { apt-cache madison "$1" || true; } | awk -F'|' '{gsub(/ /, "", $2); print $2}' | { grep -E "$2" || true; } | sort -uV | tail -n 1
}
"""
_KFLAVOR = r"""kflavor=$(uname -r | sed -E 's/^[0-9.]+-[0-9]+-//')  # gcp, cloud-amd64, generic ...
"""
_KERNEL_GCC = r"""kernel_gcc() {  # /boot/config-X -> the gcc major that built kernel X
  sed -n 's/^CONFIG_GCC_VERSION=\([0-9]*\)[0-9][0-9][0-9][0-9]$/\1/p' "$1"
}
newest_kernel() {
  find /boot -maxdepth 1 -name 'vmlinuz-*' | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1
}
"""


def _distro_block(osinfo: S.OsInfo | None) -> str:
    """Detect the OS (bash), refusing unsupported ones and, when the recipe names an image,
    one that is not what the recipe expects."""
    lines = ["# shellcheck source=/dev/null", ". /etc/os-release", 'case "${ID}-${VERSION_ID}" in']
    for o in S.oses().values():
        lines.append(f"  {o.id}-{o.version_id}) distro={o.repo} ;;")
    supported = ", ".join(o.label for o in S.oses().values())
    lines.append(f"  *) echo {q('gpuwizard installs the NVIDIA stack on ' + supported + '; this host runs')} "
                 '"${PRETTY_NAME:-$ID $VERSION_ID}" >&2; exit 1 ;;')
    lines.append("esac")
    if osinfo is not None:
        lines.append(f'if [ "$distro" != {q(osinfo.repo)} ]; then')
        lines.append(f"  echo {q('the recipe image is ' + osinfo.label + ' but this host runs')} "
                     '"${PRETTY_NAME:-$distro}" >&2')
        lines.append("  exit 1")
        lines.append("fi")
    lines.append('echo "host OS: $distro"')
    return "\n".join(lines) + "\n"


def _script(*parts: str) -> str:
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


SECURE_BOOT_MESSAGE = (
    "Secure Boot is on: the kernel will refuse the NVIDIA module that DKMS builds ('Key was rejected by "
    "service'). Stop the VM and run: gcloud compute instances update NAME --zone ZONE --no-shielded-secure-boot "
    "(then start it and re-run), or use a Deep Learning VM image, or an image built by Google's cuda_installer "
    "build_image whose signing key is enrolled in the UEFI db.")

_SB_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _secure_boot_step() -> Step:
    run = _script(
        "state='Secure Boot state unknown (no EFI variables)'",
        "if command -v mokutil >/dev/null 2>&1; then",
        "  state=$(mokutil --sb-state 2>&1 || true)",
        f"elif [ -r {_SB_VAR} ]; then",
        f'  if [ "$(od -An -t u1 -j 4 -N 1 {_SB_VAR} | tr -d \' \')" = 1 ]; then',
        "    state='SecureBoot enabled'",
        "  else",
        "    state='SecureBoot disabled'",
        "  fi",
        "fi",
        'echo "Secure Boot: $state"',
        'case "$state" in',
        f"  *'SecureBoot enabled'*) echo {q(SECURE_BOOT_MESSAGE)} >&2; exit 1 ;;",
        "esac",
    )
    check = "nvidia-smi -L 2>/dev/null | grep UUID >/dev/null\n"
    return Step(id="driver.secureboot", title="Check Secure Boot (unsigned NVIDIA modules would be refused)",
                run=run, check=check, sudo=False, timeout=60, phase="driver")


def _prereqs_step(osinfo: S.OsInfo | None) -> Step:
    run = _script(
        _APT, _KERNEL_GCC, _distro_block(osinfo), _KFLAVOR,
        "apt_get update",
        'pkgs=(dkms build-essential "linux-headers-$(uname -r)" pciutils ca-certificates curl)',
        "# the kernel and headers meta packages (linux-image-gcp on GCE Ubuntu, -cloud-amd64 on Debian)",
        'if apt-cache show "linux-headers-$kflavor" >/dev/null 2>&1; then',
        '  pkgs+=("linux-image-$kflavor" "linux-headers-$kflavor")',
        "fi",
        'apt_get install "${pkgs[@]}"',
        "# DKMS builds with the compiler that built the kernel (gcc-12 for 22.04's 6.x -gcp kernels)",
        "gccs=()",
        "for cfg in /boot/config-*; do",
        '  v=$(kernel_gcc "$cfg")',
        '  if [ -n "$v" ]; then gccs+=("gcc-$v"); fi',
        "done",
        'if [ "${#gccs[@]}" -gt 0 ]; then apt_get install "${gccs[@]}"; fi',
        "# headers for the kernel the reboot will start (the meta package may have brought a newer one)",
        'apt_get install "linux-headers-$(newest_kernel)"',
        "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' >/etc/modprobe.d/blacklist-nouveau.conf",
        "if command -v update-initramfs >/dev/null 2>&1; then update-initramfs -u; fi",
    )
    check = _script(
        _INSTALLED, _KERNEL_GCC, _distro_block(osinfo),
        'installed dkms build-essential "linux-headers-$(uname -r)"',
        'v=$(kernel_gcc "/boot/config-$(uname -r)")',
        'if [ -n "$v" ]; then command -v "gcc-$v" >/dev/null; fi',
        "[ -f /etc/modprobe.d/blacklist-nouveau.conf ]",
        "# running the newest installed kernel (else the reboot is still to come)",
        '[ "$(newest_kernel)" = "$(uname -r)" ]',
    )
    return Step(id="driver.prereqs", title="Kernel headers, the kernel's gcc, DKMS; blacklist nouveau (reboots)",
                run=run, check=check, sudo=True, reboot=True, timeout=1800, retries=1, phase="driver")


def _repo_step(osinfo: S.OsInfo | None) -> Step:
    url = S.keyring_url("${distro}")
    packages_uri = S.repo_base("${distro}") + "/Packages"
    run = _script(
        _APT, _distro_block(osinfo),
        "# the retired apt-key flow (key 7fa2af80) leaves a stale trusted key behind on old images",
        "if command -v apt-key >/dev/null 2>&1 && apt-key list 2>/dev/null | grep '7FA2 AF80' >/dev/null; then",
        "  apt-key del 7fa2af80",
        "fi",
        'tmp=$(mktemp -d)',
        "trap 'rm -rf \"$tmp\"' EXIT",
        f'curl -fsSL --retry 5 -o "$tmp/cuda-keyring.deb" "{url}"',
        'dpkg -i "$tmp/cuda-keyring.deb"',
        "apt_get update",
    )
    check = _script(
        _INSTALLED, _distro_block(osinfo),
        "installed cuda-keyring",
        '[ -f "/etc/apt/sources.list.d/cuda-${distro}-x86_64.list" ]',
        "# apt-get update has fetched the repository's package list: ask apt, which lists only",
        "# downloaded indexes (the file names under /var/lib/apt/lists escape '_': x86%5f64)",
        "# shellcheck disable=SC2016  # $(URI) is apt's format field",
        f"apt-get indextargets --format '$(URI)' 'Identifier: Packages' | grep -xF \"{packages_uri}\" >/dev/null",
    )
    return Step(id="driver.repo", title="NVIDIA CUDA repository (cuda-keyring, not apt-key)", run=run, check=check,
                sudo=True, timeout=600, retries=2, phase="driver")


# Every package of one driver release, on Ubuntu (libnvidia-compute-580, nvidia-dkms-580-open ...)
# and on Debian 12, whose NVIDIA repository uses Debian's names (nvidia-driver, libcuda1,
# firmware-nvidia-gsp, libgl1-nvidia-glvnd-glx ...) with "=" dependencies between them: one
# left out of the pin keeps the newest branch as apt's candidate and the install fails
# ("libcuda1 (= 580.95.05-1) but 595.58.03-1 is to be installed"). The hold uses the same list.
_HOLD_GLOBS = ["cuda-drivers*", "nvidia-*", "libnvidia-*", "libcuda1", "libcudadebugger*", "libnvcuvid*",
               "libnvoptix*", "libegl-nvidia*", "libgl1-nvidia*", "libgles-nvidia*", "libglx-nvidia*",
               "firmware-nvidia-*", "xserver-xorg-video-nvidia*", "libxnvctrl*"]
_PIN_GLOBS = " ".join(_HOLD_GLOBS)
_PIN_FILE = "/etc/apt/preferences.d/gpuwizard-nvidia-driver"


def _pin_step(branch: S.Branch) -> Step:
    if branch.packaging == "pinning":
        pkg = f"nvidia-driver-pinning-{branch.name}"
        run = _script(_APT, f"apt_get install {q(pkg)}")
        check = _script(_INSTALLED, f"installed {q(pkg)}")
        title = f"Pin the driver to R{branch.name} ({pkg})"
    else:
        content = (f"# Written by gpuwizard: keep the NVIDIA driver on branch {branch.name}.\n"
                   f"Package: {_PIN_GLOBS}\nPin: version {branch.name}.*\nPin-Priority: 1001\n")
        run = _script(f"printf '%s' {q(content)} >{_PIN_FILE}.tmp", f"mv {_PIN_FILE}.tmp {_PIN_FILE}")
        check = _script(f"printf '%s' {q(content)} | cmp -s - {_PIN_FILE}")
        title = f"Pin the driver to R{branch.name} (apt preferences)"
    return Step(id="driver.pin", title=title, run=run, check=check, sudo=True, timeout=600, retries=1, phase="driver")


def _install_step(branch: S.Branch, flavor: str) -> Step:
    pkgs = S.driver_packages(branch, flavor)
    words = " ".join(q(p) for p in pkgs)
    run = _script(_APT, f"apt_get install {words}")
    check = _script(
        _INSTALLED, _VERSION_OF,
        f"installed {words}",
        f"v=$(version_of {q(pkgs[0])})",
        'case "$v" in',
        f"  {branch.name}.*|*:{branch.name}.*) ;;",
        f'  *) echo "{pkgs[0]} is $v, not branch {branch.name}" >&2; exit 1 ;;',
        "esac",
        "# the module is built for the running kernel",
        'modinfo -k "$(uname -r)" nvidia >/dev/null 2>&1',
    )
    return Step(id="driver.install", title=f"NVIDIA driver R{branch.name} ({flavor} kernel modules; reboots)",
                run=run, check=check, sudo=True, reboot=True, timeout=3600, retries=1, phase="driver")


def _hold_step() -> Step:
    globs = " ".join(q(g) for g in _HOLD_GLOBS)
    collect = _script(
        _INSTALLED, _MATCHING, _KFLAVOR,
        f"mapfile -t pkgs < <(installed_matching {globs})",
        'for k in "linux-image-$(uname -r)" "linux-headers-$(uname -r)" "linux-image-$kflavor" "linux-headers-$kflavor"; do',
        '  if installed "$k"; then pkgs+=("$k"); fi',
        "done",
    )
    run = _script(collect, 'apt-mark hold "${pkgs[@]}"')
    check = _script(
        collect,
        "held=$(apt-mark showhold)",
        'for p in "${pkgs[@]}"; do',
        '  grep -qxF "$p" <<<"$held"',
        "done",
    )
    return Step(id="driver.hold", title="Hold the driver and kernel packages (no surprise upgrades)", run=run,
                check=check, sudo=True, timeout=300, phase="driver")


def _toolkit_step(cuda: str) -> Step:
    pkg = "cuda-toolkit-" + cuda.replace(".", "-")
    run = _script(_APT, f"apt_get install {q(pkg)}")
    check = _script(_INSTALLED, f"installed {q(pkg)}", f"[ -x {q('/usr/local/cuda-' + cuda + '/bin/nvcc')} ]")
    return Step(id="cuda.toolkit", title=f"CUDA {cuda} toolkit (toolkit only, no driver)", run=run, check=check,
                sudo=True, timeout=3600, retries=1, phase="driver")


PROFILE_FILE = "/etc/profile.d/gpuwizard-cuda.sh"


def cuda_profile(cuda: str) -> str:
    """The /etc/profile.d snippet: PATH and LD_LIBRARY_PATH for one CUDA toolkit, idempotent."""
    base = f"/usr/local/cuda-{cuda}"
    return (f"# Written by gpuwizard: the CUDA {cuda} toolkit for login shells.\n"
            f'case ":$PATH:" in *":{base}/bin:"*) ;; *) export PATH="{base}/bin:$PATH" ;; esac\n'
            f'case ":${{LD_LIBRARY_PATH:-}}:" in *":{base}/lib64:"*) ;; '
            f'*) export LD_LIBRARY_PATH="{base}/lib64${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ;; esac\n')


def _profile_step(cuda: str) -> Step:
    content = cuda_profile(cuda)
    run = _script("# shellcheck disable=SC2016  # the $ are for the login shell, not this one",
                  f"printf '%s' {q(content)} >{PROFILE_FILE}.tmp", f"chmod 0644 {PROFILE_FILE}.tmp",
                  f"mv {PROFILE_FILE}.tmp {PROFILE_FILE}")
    check = _script("# shellcheck disable=SC2016  # the $ are for the login shell, not this one",
                    f"printf '%s' {q(content)} | cmp -s - {PROFILE_FILE}")
    return Step(id="cuda.env", title=f"PATH and LD_LIBRARY_PATH for CUDA {cuda} (/etc/profile.d)", run=run,
                check=check, sudo=True, timeout=60, phase="driver")


def _version_regex(prefix: str, cuda_major: str | None) -> str:
    """'9.10' -> '^9\\.10\\.'; with a CUDA major, also require '+cudaN.' (cuDNN 8, TensorRT)."""
    rx = "^" + re.escape(prefix + ".")
    if cuda_major:
        rx += r".*\+cuda" + re.escape(cuda_major + ".")
    return rx


def _pinned_install(kind: str, probe: str, pkgs: list[str] | None, globs: list[str], rx: str,
                    what: str) -> tuple[str, str]:
    """Shell (run, check) that installs ``pkgs`` (or ``probe`` and its direct dependencies)
    at the newest repository version matching ``rx``, pins that exact version in an apt
    preferences file and holds the packages."""
    pin_file = f"/etc/apt/preferences.d/gpuwizard-{kind}"
    glob_words = " ".join(q(g) for g in globs)
    lines = [
        _APT, _NEWEST, _MATCHING,
        f"ver=$(newest_version {q(probe)} {q(rx)})",
        f'if [ -z "$ver" ]; then echo {q("NVIDIA repository has no " + what)} >&2; exit 1; fi',
        f'echo "{what}: $ver"',
        f"printf 'Package: %s\\nPin: version %s\\nPin-Priority: 1001\\n' {q(' '.join(globs))} \"$ver\" >{pin_file}",
    ]
    if pkgs:
        lines.append("pkgs=(" + " ".join(q(p) for p in pkgs) + ")")
    else:
        lines += [
            f"pkgs=({q(probe)})",
            "# every direct dependency at the same version (the meta package alone follows the newest CUDA)",
            f'mapfile -t -O 1 pkgs < <(apt-cache show "{probe}=$ver" | sed -n \'s/^Depends: //p\' | head -n 1 '
            "| tr ',' '\\n' | sed -E 's/^ *([^ (|]+).*/\\1/')",
        ]
    lines += [
        'apt_get install "${pkgs[@]/%/=$ver}"',
        f"mapfile -t held < <(installed_matching {glob_words})",
        'apt-mark hold "${held[@]}"',
    ]
    check = _script(
        _INSTALLED, _VERSION_OF,
        f"installed {q(probe)}",
        f"version_of {q(probe)} | grep -E {q(rx)} >/dev/null",
        f"apt-mark showhold | grep -xF {q(probe)} >/dev/null",
    )
    return _script(*lines), check


def _cudnn_step(prefix: str, cuda: str) -> Step:
    major = str(S.vtuple(prefix)[0])
    cmaj = str(S.vtuple(cuda)[0])
    pkgs = S.cudnn_packages(major, cmaj)
    rx = _version_regex(prefix, cmaj if major == "8" else None)
    globs = [f"libcudnn{major}*", f"cudnn{major}*"]
    run, check = _pinned_install("cudnn", pkgs[0], pkgs, globs, rx, f"cuDNN {prefix}.x for CUDA {cmaj}")
    return Step(id="cudnn.install", title=f"cuDNN {prefix} for CUDA {cmaj} (pinned to one version)", run=run,
                check=check, sudo=True, timeout=1800, retries=1, phase="driver")


def _tensorrt_step(prefix: str, cuda: str) -> Step:
    cmaj = str(S.vtuple(cuda)[0])
    trt = S.tensorrt()
    rx = _version_regex(prefix, cmaj)
    run, check = _pinned_install("tensorrt", trt["meta"], None, list(trt["hold_globs"]), rx,
                                 f"TensorRT {prefix}.x for CUDA {cmaj}")
    return Step(id="tensorrt.install", title=f"TensorRT {prefix} for CUDA {cmaj} (every package pinned to one version)",
                run=run, check=check, sudo=True, timeout=1800, retries=1, phase="driver")


def steps(recipe: Recipe) -> list[Step]:
    """The NVIDIA stack steps for ``recipe``: [] without a driver section or when the
    driver is preinstalled (the verify step then checks it)."""
    if recipe.driver is None or is_verify_only(recipe):
        return []
    st = resolve(recipe)
    branch = S.branches().get(st.branch or "")
    if branch is None:
        raise ValueError(f"driver branch {st.branch!r} is not in the catalog; run `gpuwizard validate`")
    _, osinfo = _os_of(_image(recipe))
    out = [_secure_boot_step(), _prereqs_step(osinfo), _repo_step(osinfo), _pin_step(branch),
           _install_step(branch, st.flavor or default_flavor(branch, None)), _hold_step()]
    if st.cuda:
        out += [_toolkit_step(st.cuda), _profile_step(st.cuda)]
        if st.cudnn:
            out.append(_cudnn_step(st.cudnn, st.cuda))
        if st.tensorrt:
            out.append(_tensorrt_step(st.tensorrt, st.cuda))
    return out


# ---------------------------------------------------------------------------- catalog view


def catalog_table(gpu_filter: str | None = None) -> str:
    """`gpuwizard catalog drivers`: the proposed stack per GPU on Ubuntu 22.04, and why."""
    from gpuwizard.commands import table

    rows = []
    notes = []
    for name, g in catalog.gpus().items():
        if gpu_filter and name != gpu_filter:
            continue
        st = propose(name, "ubuntu-2204-lts")
        rows.append([g.label, g.arch, g.cc, st.branch and f"R{st.branch}", st.flavor, st.cuda, st.cudnn,
                     st.tensorrt, st.torch and f"{st.torch} {st.torch_index}"])
        notes += [f"{g.label}: {n}" for n in st.notes]
    out = table(["GPU", "arch", "cc", "driver", "modules", "CUDA", "cuDNN", "TensorRT", "PyTorch"], rows)
    if notes:
        out += "\n\n" + "\n".join(dict.fromkeys(notes))
    m = S.meta()
    out += f"\n\nsnapshot {m.get('snapshot')}; sources: " + "; ".join(m.get("sources", []))
    return out
