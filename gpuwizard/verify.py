"""The verification step: does the host have the GPUs, driver, CUDA and PyTorch the
recipe promised? A mismatch fails the step and says what differs.

The host runs a small Python program (``python3`` ships with every supported image) that
calls ``nvidia-smi`` (the machine-readable ``--query-gpu`` CSV first, the banner as a
fallback and for the CUDA version), ``nvcc --version`` when gpuwizard installed the
toolkit, and the environment's Python for ``torch.cuda`` plus a small matmul on the GPU.
It prints one JSON report and exits 1 with the differences.

That program is :mod:`gpuwizard.probe_gpu` (stdlib only), read as package data and sent
verbatim: the parser the tests exercise is the parser that runs on the host.

The step is not retried: what it checks cannot change by running it again. Where a
first-boot install may still be running (a Deep Learning VM image, ``driver:
preinstalled``), the probe itself waits for the driver, bounded, saying so.
"""

from __future__ import annotations

import importlib.resources
import json

from gpuwizard import allreduce, catalog, drivers, envsteps
from gpuwizard.catalog import stack as S
from gpuwizard.recipe import Recipe
from gpuwizard.shell import q, qpath
from gpuwizard.probe_gpu import (GpuInfo, NvidiaSmiError, compare, parse_nvcc,  # noqa: F401 (re-exported)
                                 parse_nvidia_smi)
from gpuwizard.steps import Step

#: How long the probe waits for a first-boot driver install (Deep Learning VM images
#: install the driver at first boot when ``install-nvidia-driver=True`` is set).
DRIVER_WAIT_S = 900


def remote_program() -> str:
    """The source sent to the host: :mod:`gpuwizard.probe_gpu`, read as package data."""
    return importlib.resources.files("gpuwizard").joinpath("probe_gpu.py").read_text(encoding="utf-8")


def expected(recipe: Recipe) -> dict:
    """What the verification compares against, from the recipe and the catalog."""
    st = drivers.resolve(recipe)
    out: dict = {}
    if st.branch:
        out["driver_branch"] = st.branch
    g = recipe.target.gcp
    if g is not None and g.gpu is not None:
        name = S.smi_name(g.gpu.type)
        gt = catalog.gpu(g.gpu.type)
        if name:
            out["gpu_name"] = name
        out["gpu_count"] = g.gpu.count
        if gt is not None:
            # nvidia-smi shows slightly less than the marketing size (T4 16 GB -> 15360 MiB).
            out["min_memory_mib"] = int(gt.memory_gb * 1000 * 0.9)
    if st.cuda and not st.preinstalled:
        out["nvcc"] = st.cuda
    if recipe.env is not None and recipe.env.torch:
        idx = recipe.env.torch_index or st.torch_index
        out["torch"] = {"version": recipe.env.torch, "index": idx}
    if st.preinstalled and recipe.target.gcp is not None:
        # a VM gpuwizard just created may still be installing its driver at first boot
        # (Deep Learning VM images with install-nvidia-driver=True); an existing host is not
        out["wait_for_driver"] = {"timeout": DRIVER_WAIT_S, "interval": 15, "say_every": 60}
    return out


def steps(recipe: Recipe) -> list[Step]:
    """The verify steps (none for the GPU when the recipe has no driver section).

    Normally one, ``verify.gpu``, after the environment. When the driver is preinstalled
    the planner runs ``verify.gpu`` first (no point building an environment on a host
    without a working GPU) and, when the recipe has PyTorch, ``verify.torch`` after the
    environment. A cluster with PyTorch ends with ``verify.allreduce``
    (:mod:`gpuwizard.allreduce`): the nodes' network, measured, on every node at once."""
    cluster = [allreduce.step(recipe)] if allreduce.wanted(recipe) else []
    if recipe.driver is None:
        return cluster
    exp = expected(recipe)
    if not drivers.is_verify_only(recipe) or "torch" not in exp:
        return [_step(recipe, "verify.gpu", exp)] + cluster
    gpu_only = {k: v for k, v in exp.items() if k != "torch"}
    torch_only = {k: v for k, v in exp.items() if k != "wait_for_driver"}
    return [_step(recipe, "verify.gpu", gpu_only), _step(recipe, "verify.torch", torch_only)] + cluster


def _step(recipe: Recipe, step_id: str, exp: dict) -> Step:
    run = ""
    if exp.get("nvcc"):
        run += f"if [ -r {drivers.PROFILE_FILE} ]; then\n  # shellcheck source=/dev/null\n  . {drivers.PROFILE_FILE}\nfi\n"
    python = ""
    if exp.get("torch") and recipe.env is not None:
        python = " " + qpath(envsteps.env_path(recipe)) + "/bin/python"
    run += "# shellcheck disable=SC2016  # Python source, not shell\n"
    run += f"python3 -c {q(remote_program())} {q(json.dumps(exp, sort_keys=True))}{python}\n"
    what = ["nvidia-smi"] + (["nvcc"] if exp.get("nvcc") else []) + (["torch + matmul"] if exp.get("torch") else [])
    wait = exp.get("wait_for_driver")
    title = "Verify " + ", ".join(what) + " against the recipe"
    if wait:
        title += f" (waits up to {wait['timeout'] // 60} min for a first-boot driver install)"
    # retries=0: nothing here changes by running it again; the bounded wait is in the probe.
    return Step(id=step_id, title=title, run=run, check=None, sudo=False,
                timeout=600 + (wait["timeout"] if wait else 0), retries=0, phase="verify")
