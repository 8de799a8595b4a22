"""The user's own steps run where a person would run them: CUDA on PATH, the recipe's
environment active, inside the cloned repository. Checked by running the generated
script with bash against a throwaway HOME holding a venv-shaped directory and a clone."""

from __future__ import annotations

import os
import pathlib
import subprocess

from gpuwizard import plan
from gpuwizard import recipe as R
from tests.builders.drivers import make_recipe


def _recipe(**env: object) -> R.Recipe:
    return R.Recipe(name="demo", target=R.Target(ssh=R.SshTarget(hosts=["u@h"])),
                    env=R.Env(**env) if env else None,  # type: ignore[arg-type]
                    steps=[R.UserStep(name="where", run='echo "cwd=$PWD"; echo "venv=${VIRTUAL_ENV:-}"; command -v python || true')])


def _run(step_script: str, home: pathlib.Path) -> str:
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", step_script], cwd=home,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          check=True).stdout


def test_user_step_runs_in_the_env_and_the_clone(tmp_path: pathlib.Path) -> None:
    r = _recipe(manager="venv", python="3.11", repo=R.Repo(url="https://example.org/lab/paper code.git"))
    venv_bin = tmp_path / "venvs" / "demo" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text("#!/bin/sh\n")
    (venv_bin / "python").chmod(0o755)
    (tmp_path / "paper code").mkdir()
    step = [s for s in plan.build(r) if s.id == "user.where"][0]
    out = _run(step.run, tmp_path).splitlines()
    assert out == [f"cwd={tmp_path}/paper code", f"venv={tmp_path}/venvs/demo", f"{venv_bin}/python"]


def test_user_step_without_env_runs_as_written(tmp_path: pathlib.Path) -> None:
    step = [s for s in plan.build(_recipe()) if s.id == "user.where"][0]
    out = _run(step.run, tmp_path).splitlines()
    assert out[0] == f"cwd={tmp_path}" and out[1] == "venv="


def test_cuda_profile_is_sourced_when_present(tmp_path: pathlib.Path) -> None:
    step = [s for s in plan.build(_recipe()) if s.id == "user.where"][0]
    assert plan.CUDA_PROFILE in step.run
    profile = tmp_path / "gpuwizard-cuda.sh"
    profile.write_text('export PATH="/usr/local/cuda/bin:$PATH"\n')
    script = step.run.replace("/etc/profile.d/gpuwizard-cuda.sh", str(profile)).replace(
        'command -v python || true', 'echo "$PATH"')
    assert _run(script, tmp_path).splitlines()[-1].startswith("/usr/local/cuda/bin:")
    assert os.path.exists(profile)


def test_a_preinstalled_driver_is_checked_before_the_environment_is_built() -> None:
    r = make_recipe("nvidia-l4", "common-cu129-ubuntu-2204-nvidia-580", driver="preinstalled",
                    env="{python: '3.10', torch: '2.9.1'}")
    ids = [s.id for s in plan.build(r)]
    assert ids[0] == "verify.gpu"
    env_ids = [i for i in ids if i.startswith("env.")]
    assert env_ids and ids.index("verify.torch") > ids.index(env_ids[-1])
    # the first check has no PyTorch to look at yet; the second one does
    steps = {s.id: s for s in plan.build(r)}
    assert "torch + matmul" not in steps["verify.gpu"].title and "torch + matmul" in steps["verify.torch"].title
    assert steps["verify.gpu"].retries == 0 and steps["verify.torch"].retries == 0
