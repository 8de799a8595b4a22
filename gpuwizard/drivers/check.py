"""Recipe validation for the NVIDIA stack: the driver, CUDA, cuDNN, TensorRT, PyTorch and
Python choices against the GPU, the image's OS and each other, each problem located at
the field to change (``gpuwizard validate`` and the wizard call :func:`check`)."""

from __future__ import annotations

from gpuwizard import catalog
from gpuwizard.catalog import stack as S
from gpuwizard.drivers.choice import (Stack, arch_of, branch_supports, is_verify_only, os_of, os_refusal,
                                      recipe_gpu, recipe_image, resolve, trt_cuda_ok, within_minor_compat)
from gpuwizard.recipe import Problem, Recipe

def check(recipe: Recipe) -> list[Problem]:
    """Cross-checks of the driver, CUDA, cuDNN, TensorRT and PyTorch choices against the
    GPU, the image and each other, each located at the field to change."""
    out: list[Problem] = []
    gpu, image = recipe_gpu(recipe), recipe_image(recipe)
    g, arch = arch_of(gpu)
    img, osinfo = os_of(image)
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
        if branch is not None and (why := os_refusal(image, branch=branch.name)):
            out.append(recipe.problem("driver.branch" if d.branch else "driver", why))
        if d.cuda and (why := os_refusal(image, cuda=d.cuda)):
            out.append(recipe.problem("driver.cuda", why))
        if osinfo is not None and osinfo.install_warning and not any(not p.warning for p in out):
            out.append(recipe.problem("driver", f"{osinfo.label}: {osinfo.install_warning}", warning=True))
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
    if cmaj not in majors or not trt_cuda_ok(trt, cuda):
        others = [m for m in majors if m != cmaj]
        if cmaj in majors:  # the line has CUDA 13 builds, but only from a later release on
            first = S.tensorrt()["cuda13_from"]
            fix = f"use TensorRT {first} or newer" + (
                f", or pair {trt} with CUDA {'/'.join(m + '.x' for m in others)}" if others else "")
        else:
            fix = f"pair it with CUDA {'/'.join(m + '.x' for m in majors)}" + (
                f" (CUDA 13 builds start at {S.tensorrt()['cuda13_from']})" if cmaj == "13" else "")
        return [recipe.problem("driver.tensorrt", f"TensorRT {trt} has no builds for CUDA {cuda}; {fix}")]
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
    if st.branch and st.branch in S.branches() and not within_minor_compat(idx, st.branch):
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


