"""Which NVIDIA stack fits a GPU on an image: driver branch, module flavor, CUDA, cuDNN,
TensorRT and the PyTorch wheel index, all from ``catalog/stack.yaml``.

:func:`propose` answers "what should this GPU on this image run?" with the newest
recommended branch the architecture (and the OS) still supports, and says why when it
is capped; :func:`resolve` lays a recipe's explicit choices over that proposal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuwizard import catalog
from gpuwizard.catalog import stack as S
from gpuwizard.recipe import Recipe

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


def arch_of(gpu_type: str | None) -> tuple[catalog.GpuType | None, S.Arch | None]:
    g = catalog.gpu(gpu_type) if gpu_type else None
    return g, (S.archs().get(g.arch) if g else None)


def os_of(image: str | None) -> tuple[catalog.Image | None, S.OsInfo | None]:
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
    requested = str(requested)
    # a bare major ('10') on a GPU whose last TensorRT is inside it (Volta: 10.4) means that
    # last release, as cudnn_prefix does: the newest 10.x has no Volta kernels
    if arch and arch.tensorrt_max and "." not in requested \
            and S.vtuple(arch.tensorrt_max)[0] == S.vtuple(requested)[0]:
        return arch.tensorrt_max
    return requested


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
    compat = [i for i in runs if within_minor_compat(i, br.name)]
    if compat:
        pick = max(compat, key=key)
        return pick, f"{pick} runs on R{br.name} through CUDA minor-version compatibility"
    return None, f"no PyTorch {torch} wheel runs on driver R{br.name}"


def os_refusal(image: str | None, branch: str | None = None, cuda: str | None = None) -> str | None:
    """Why ``branch`` (or ``cuda``) does not install on ``image``'s OS from NVIDIA's
    repository, in one sentence with what to pick instead; None when it does (or the
    image is unknown). The wizard greys the choices this refuses; ``check`` reports it."""
    _, osinfo = os_of(image)
    if osinfo is None:
        return None
    if branch and osinfo.branch_max and branch.isdigit() and int(branch) > int(osinfo.branch_max):
        return (f"{osinfo.limit_why or osinfo.label + ' supports branches up to R' + osinfo.branch_max}; "
                f"use branch '{osinfo.branch_max}' or another image (Ubuntu 24.04)")
    if cuda and osinfo.cuda_max and not S.vle(cuda, osinfo.cuda_max):
        return (f"CUDA {cuda} does not install on {osinfo.label} ({osinfo.limit_why or 'not supported'}); "
                f"use CUDA {osinfo.cuda_max} or older, or another image (Ubuntu 24.04)")
    return None


def within_minor_compat(index: str, branch: str) -> bool:
    cuda = S.index_cuda(index)
    floor = S.minor_compat_floor(str(S.vtuple(cuda)[0])) if cuda else None
    return floor is not None and int(branch) >= S.vtuple(floor)[0]


def propose(gpu_type: str | None, image: str | None) -> Stack:
    """The newest compatible stack for a GPU type on an image, with the reasons for any cap.

    Unknown GPU (an existing SSH host): R580, the LTS branch that drives every GPU from
    Maxwell to Blackwell, and the cu126 wheels with the widest GPU support.
    """
    g, arch = arch_of(gpu_type)
    img, osinfo = os_of(image)
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
    allowed = [b for b in candidates if os_refusal(image, b.name) is None]
    if osinfo is not None and len(allowed) < len(candidates) and allowed:
        if [b for b in candidates if b.recommended][-1:] != [b for b in allowed if b.recommended][-1:]:
            notes.append(f"{osinfo.label}: {osinfo.limit_why}")
        candidates = allowed
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
        if osinfo and (S.vtuple(c) < S.vtuple(osinfo.cuda_min)
                       or (osinfo.cuda_max and not S.vle(c, osinfo.cuda_max))):
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
        if trt and cuda_major in S.tensorrt_cuda_majors(trt) and trt_cuda_ok(trt, cuda):
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


def trt_cuda_ok(trt: str, cuda: str) -> bool:
    """TensorRT lines before 10.13 have no CUDA 13 builds."""
    if S.vtuple(cuda)[0] >= 13:
        return S.vtuple(trt) >= S.vtuple(S.tensorrt()["cuda13_from"]) or S.vtuple(trt) == (10,)
    return True


def recipe_gpu(recipe: Recipe) -> str | None:
    g = recipe.target.gcp
    return g.gpu.type if g is not None and g.gpu is not None else None


def recipe_image(recipe: Recipe) -> str | None:
    g = recipe.target.gcp
    return g.image if g is not None else None


def is_verify_only(recipe: Recipe) -> bool:
    """Driver preinstalled (``driver: preinstalled`` or a Deep Learning VM image)."""
    d = recipe.driver
    img = catalog.image(recipe_image(recipe)) if recipe_image(recipe) else None
    return d is not None and (d.preinstalled or bool(img and img.dlvm))


def resolve(recipe: Recipe) -> Stack:
    """The stack a recipe will get: its explicit choices over :func:`propose`'s defaults.

    ``driver.cuda: null`` means driver only, so CUDA is never filled in from the proposal.
    """
    gpu, image = recipe_gpu(recipe), recipe_image(recipe)
    base = propose(gpu, image)
    _, arch = arch_of(gpu)
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
