"""Golden files of the generated steps for each supported OS x GPU family, and every
generated script through ``bash -n`` and shellcheck.

Regenerate after an intended change: ``GPUWIZARD_UPDATE_GOLDEN=1 pytest tests/test_drivers_golden.py``
and review the diff.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from gpuwizard import drivers, envsteps, recipe, verify
from gpuwizard.catalog import stack as S
from gpuwizard.steps import Step
from tests.builders.drivers import make_recipe

GOLDEN = pathlib.Path(__file__).parent / "golden"
UPDATE = os.environ.get("GPUWIZARD_UPDATE_GOLDEN") == "1"
IMAGES = {"ubuntu2204": "ubuntu-2204-lts", "ubuntu2404": "ubuntu-2404-lts-amd64", "debian12": "debian-12"}
GPUS = {"t4": "nvidia-tesla-t4", "v100": "nvidia-tesla-v100", "l4": "nvidia-l4", "a100": "nvidia-tesla-a100",
        "h100": "nvidia-h100-80gb"}
REMOTE = "<the verify.remote_program() source>"


def assert_golden(path: pathlib.Path, text: str) -> None:
    """``text`` equals the reviewed golden file. A missing file fails like a changed one:
    only GPUWIZARD_UPDATE_GOLDEN=1 writes (blesses) golden files."""
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path.name} is missing; set GPUWIZARD_UPDATE_GOLDEN=1 to create it, then review it"
    assert text == path.read_text(), f"{path.name} changed; set GPUWIZARD_UPDATE_GOLDEN=1 to accept"


def full_recipe(gpu: str, image: str, name: str = "golden"):
    """The whole stack the proposal gives, plus an environment with torch, a package and a repo."""
    st = drivers.propose(gpu, image)
    os_key = [k for k, v in IMAGES.items() if v == image][0]
    py = S.oses()[os_key].python_default
    return make_recipe(gpu, image, name=name,
                       driver=f"{{cuda: '{st.cuda}', cudnn: '9', tensorrt: true}}",
                       env=f"{{python: '{py}', torch: '{st.torch}', packages: [six, torchvision], "
                           "repo: {url: 'https://github.com/open-mmlab/mmskeleton.git', ref: master, "
                           "setup: ['pip install -r requirements.txt', 'python setup.py develop']}}")


def all_steps(r) -> list[Step]:
    return drivers.steps(r) + envsteps.steps(r) + verify.steps(r)


def render(steps: list[Step]) -> str:
    """A reviewable text form of steps: flags, then the exact check and run scripts."""
    remote = verify.remote_program()
    out = []
    for s in steps:
        flags = f"sudo={s.sudo} reboot={s.reboot} timeout={s.timeout:g} retries={s.retries} phase={s.phase}"
        out.append(f"## {s.id}: {s.title}\n{flags}\n")
        if s.check is not None:
            out.append("### check\n" + s.check.replace(remote, REMOTE))
        out.append("### run\n" + s.run.replace(verify.q(remote), REMOTE) + "\n")
    return "\n".join(out)


CASES = [(o, g) for o in IMAGES for g in GPUS]


@pytest.mark.parametrize("os_key,gpu_key", CASES, ids=[f"{o}-{g}" for o, g in CASES])
def test_golden_steps(os_key: str, gpu_key: str) -> None:
    r = full_recipe(GPUS[gpu_key], IMAGES[os_key])
    assert [p for p in drivers.check(r) if not p.warning] == []
    text = render(all_steps(r))
    assert_golden(GOLDEN / f"steps-{os_key}-{gpu_key}.txt", text)


def test_golden_dlvm_and_existing_host() -> None:
    """A Deep Learning VM installs nothing and only verifies; an existing host detects its OS."""
    dlvm = make_recipe("nvidia-l4", "common-cu129-ubuntu-2204-nvidia-580", driver="preinstalled")
    assert drivers.steps(dlvm) == []
    assert [s.id for s in all_steps(dlvm)] == ["verify.gpu"]
    ssh = recipe.loads("version: 1\nname: golden\ntarget: {ssh: {hosts: ['u@h']}}\n"
                       "driver: {branch: '580', cuda: '12.9', flavor: proprietary}\n")
    for name, r in (("dlvm-l4", dlvm), ("ssh-580", ssh)):
        text = render(all_steps(r))
        assert_golden(GOLDEN / f"steps-{name}.txt", text)


def test_step_ids_and_reboots() -> None:
    ids = [s.id for s in drivers.steps(full_recipe("nvidia-tesla-t4", "ubuntu-2204-lts"))]
    assert ids == ["driver.secureboot", "driver.prereqs", "driver.repo", "driver.pin", "driver.install",
                   "driver.hold", "cuda.toolkit", "cuda.env", "cudnn.install", "tensorrt.install"]
    steps = {s.id: s for s in drivers.steps(full_recipe("nvidia-tesla-t4", "ubuntu-2204-lts"))}
    assert steps["driver.prereqs"].reboot and steps["driver.install"].reboot
    assert all(s.check for s in steps.values())
    assert all(s.sudo for s in steps.values())   # driver.secureboot may refresh apt's lists


def test_branch_pinning_by_packaging() -> None:
    new = {s.id: s for s in drivers.steps(full_recipe("nvidia-tesla-t4", "ubuntu-2404-lts-amd64"))}
    assert "nvidia-driver-pinning-595" in new["driver.pin"].run
    assert "apt_get install nvidia-open\n" in new["driver.install"].run
    old = {s.id: s for s in drivers.steps(full_recipe("nvidia-tesla-v100", "ubuntu-2204-lts"))}
    assert "nvidia-driver-pinning-580" in old["driver.pin"].run and "cuda-drivers-580" in old["driver.install"].run
    assert "cuda-toolkit-12-9" in old["cuda.toolkit"].run
    assert "apt-key adv" not in "".join(s.run for s in old.values())


def test_a_missing_golden_fails_instead_of_blessing_itself(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "UPDATE", False)
    with pytest.raises(AssertionError, match="missing"):
        assert_golden(tmp_path / "steps-new.txt", "anything")
    assert not (tmp_path / "steps-new.txt").exists()


def _scripts() -> dict[str, str]:
    """Every distinct script (run and check) across the matrix, wrapped as the executor runs it."""
    out: dict[str, str] = {}
    recipes = [full_recipe(GPUS[g], IMAGES[o]) for o, g in CASES]
    recipes.append(recipe.loads("version: 1\nname: c\ntarget: {ssh: {hosts: ['u@h']}}\n"
                                "driver: {branch: '580', cuda: '12.9', flavor: proprietary}\n"
                                "env: {manager: conda, python: '3.12', packages: ['six>=1.0'], "
                                "repo: {url: '/srv/r.git'}}\n"))
    for r in recipes:
        for s in all_steps(r):
            for kind in ("run", "check"):
                body = getattr(s, kind)
                if body:
                    script = "#!/bin/bash\nset -euo pipefail\n" + body
                    out[hashlib.sha256(script.encode()).hexdigest()[:12] + f"-{s.id}-{kind}.sh"] = script
    return out


def test_every_script_passes_bash_n_and_shellcheck(tmp_path: pathlib.Path) -> None:
    scripts = _scripts()
    paths = []
    for name, body in scripts.items():
        p = tmp_path / name
        p.write_text(body)
        paths.append(str(p))
        res = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}: {res.stderr}"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", "-s", "bash", "-S", "info", *paths], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-6000:]
