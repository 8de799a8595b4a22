"""The ST-GCN preset: one definition (gpuwizard.presets) that the shipped recipe equals, built
for the chosen CUDA and torch; its setup commands run in bash, in order, with stubbed
pip/python/git against a clone-shaped directory."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from gpuwizard import plan, presets, recipe

SHIPPED = pathlib.Path(__file__).parent.parent / "recipes" / "stgcn-t4.yaml"
# what mmskeleton's setup_linux.py says at the pinned commit (nvcc flags of the gpu_nms extension)
NMS_SETUP = "            'nvcc': [\n                '-arch=sm_35', '--ptxas-options=-v', '-c',\n"
LOGGER = ('#!/bin/sh\nprintf "%s|%s|%s\\n" "$(basename "$0") $*" "$PWD" "${TORCH_CUDA_ARCH_LIST:-}" '
          '>>"$CALLS"\n')
# the lines the mmcv 1.7 patches rewrite, as they are at the pinned commit
CHECKPOINT = "from mmcv.runner import load_checkpoint as mmcv_load_checkpoint\nfrom mmcv.runner.checkpoint import load_url_dist\n"
RECOGNITION = "    runner = Runner(model, batch_processor, optimizer, work_dir, log_level)\n"
GIT = '#!/bin/sh\nif [ "$3" = rev-parse ]; then echo 0123456789abcdef; fi\n'


def test_the_shipped_recipe_is_the_preset_for_a_t4() -> None:
    r = recipe.load(str(SHIPPED))
    g = r.target.gcp
    p = presets.stgcn(g.gpu.type, g.image, r.driver.cuda)
    env = r.env
    assert (env.manager, env.python, env.torch, env.torch_index) == (
        p.env["manager"], p.env["python"], p.env["torch"], p.env["torch_index"])
    assert env.packages == p.env["packages"]
    assert (env.repo.url, env.repo.ref, env.repo.setup) == (
        p.env["repo"]["url"], p.env["repo"]["ref"], p.env["repo"]["setup"])
    assert [(d.from_, d.to, d.unzip) for d in r.datasets] == [(d["from"], d["to"], d["unzip"]) for d in p.datasets]
    assert [(s.name, s.run) for s in r.steps] == [(s["name"], s["run"]) for s in p.steps]


def test_torch_wheel_matches_the_toolkit_the_extension_is_built_with() -> None:
    p = presets.stgcn("nvidia-tesla-t4", "ubuntu-2204-lts", "12.8")
    assert p.env["torch_index"] == "cu128"
    p13 = presets.stgcn("nvidia-l4", "ubuntu-2204-lts", "13.0")
    assert p13.env["torch_index"] == "cu130" and "sm_89" in "\n".join(p13.env["repo"]["setup"])
    with pytest.raises(presets.PresetError, match="PyTorch 2.14 has no cu128 wheels"):
        presets.stgcn("nvidia-tesla-t4", "ubuntu-2204-lts", "12.8", torch="2.14")
    with pytest.raises(presets.PresetError, match="choose a CUDA toolkit"):
        presets.stgcn("nvidia-tesla-t4", "ubuntu-2204-lts", None)


def test_images_without_an_old_enough_python_get_conda_and_unknown_gpus_native_arch() -> None:
    p = presets.stgcn("nvidia-tesla-t4", "ubuntu-2404-lts-amd64", "12.8")
    assert (p.env["manager"], p.env["python"]) == ("conda", "3.10")
    anyhost = presets.stgcn(None, None, "12.8")
    assert "-arch=native" in "\n".join(anyhost.env["repo"]["setup"])
    assert anyhost.env["repo"]["setup"][4] == "python setup.py develop"


def _host(tmp_path: pathlib.Path, nms_setup: str) -> tuple[dict[str, str], pathlib.Path, pathlib.Path]:
    home = tmp_path / "home"
    venv_bin = home / "venvs" / "stgcn-t4" / "bin"
    tools = tmp_path / "tools"
    for d in (venv_bin, tools):
        d.mkdir(parents=True)
    for name, body, where in (("python", LOGGER, venv_bin), ("pip", LOGGER, venv_bin), ("git", GIT, tools)):
        (where / name).write_text(body)
        (where / name).chmod(0o755)
    clone = home / "mmskeleton"
    nms = clone / "mmskeleton" / "ops" / "nms"
    nms.mkdir(parents=True)
    (nms / "setup_linux.py").write_text(nms_setup)
    (clone / "mmskeleton" / "utils").mkdir()
    (clone / "mmskeleton" / "utils" / "checkpoint.py").write_text(CHECKPOINT)
    (clone / "mmskeleton" / "processor").mkdir()
    (clone / "mmskeleton" / "processor" / "recognition.py").write_text(RECOGNITION)
    calls = tmp_path / "calls"
    calls.touch()
    env = {"HOME": str(home), "PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls)}
    return env, clone, calls


def _bash(script: str, env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_setup_commands_run_in_order_with_their_quoting(tmp_path: pathlib.Path) -> None:
    env, clone, calls = _host(tmp_path, NMS_SETUP)
    steps = {s.id: s for s in plan.build(recipe.load(str(SHIPPED)))}
    order = [f"env.setup.{i}" for i in range(1, 7)] + ["user.train"]
    for sid in order:
        r = _bash(steps[sid].run, env, tmp_path)
        assert r.returncode == 0, f"{sid}\n{r.stdout}\n{r.stderr}"
    patched = (clone / "mmskeleton" / "ops" / "nms" / "setup_linux.py").read_text()
    assert "'-arch=sm_75', '--ptxas-options=-v'" in patched and "sm_35" not in patched
    nms = clone / "mmskeleton" / "ops" / "nms"
    code = clone / "mmskeleton"
    assert (code / "utils" / "checkpoint.py").read_text().splitlines()[1] == \
        "from mmcv.runner.checkpoint import load_from_http as load_url_dist"
    assert (code / "processor" / "recognition.py").read_text() == (
        '    runner = Runner(model, batch_processor, optimizer, work_dir, '
        'logger=__import__("mmcv").utils.get_logger("mmskeleton", log_level=log_level))\n')
    assert calls.read_text().splitlines() == [
        f"pip install setuptools<70|{clone}|",
        f"pip install --no-build-isolation mmcv==1.7.2|{clone}|",
        f"python setup.py develop|{clone}|7.5",
        f"python setup_linux.py develop|{nms}|",
        f"python mmskl.py configs/recognition/st_gcn_aaai18/kinetics-skeleton/train.yaml --gpus 1 "
        f"--batch_size 64 --work_dir ./work_dir/st_gcn_kinetics|{clone}|",
    ]
    # the environment is what a person would have: the venv's python first on PATH
    assert os.path.exists(pathlib.Path(env["HOME"]) / "venvs" / "stgcn-t4" / ".gpuwizard" / "setup-6")


def test_the_arch_patch_fails_loudly_when_upstream_changed(tmp_path: pathlib.Path) -> None:
    env, _, calls = _host(tmp_path, NMS_SETUP.replace("sm_35", "sm_52"))
    (step,) = [s for s in plan.build(recipe.load(str(SHIPPED))) if s.id == "env.setup.4"]
    r = _bash(step.run, env, tmp_path)
    assert r.returncode != 0 and calls.read_text() == ""
