"""Stack choice and recipe cross-checks (gpuwizard.drivers.propose / check)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from gpuwizard import commands, drivers, plan, recipe
from gpuwizard.catalog import stack as S
from tests.builders.drivers import make_recipe


def messages(r: recipe.Recipe) -> list[str]:
    return [f"{p.path}: {p.message}" for p in drivers.check(r)]


@pytest.mark.parametrize("gpu,branch,flavor,cuda,torch_index", [
    ("nvidia-tesla-t4", "595", "open", "13.2", "cu132"),
    ("nvidia-l4", "595", "open", "13.2", "cu132"),
    ("nvidia-tesla-a100", "595", "open", "13.2", "cu132"),
    ("nvidia-h100-80gb", "595", "open", "13.2", "cu132"),
    ("nvidia-b200", "595", "open", "13.2", "cu132"),
    ("nvidia-tesla-v100", "580", "proprietary", "12.9", "cu126"),
    ("nvidia-tesla-p100", "580", "proprietary", "12.9", "cu126"),
    ("nvidia-tesla-p4", "580", "proprietary", "12.9", "cu126"),
])
def test_propose_newest_compatible(gpu: str, branch: str, flavor: str, cuda: str, torch_index: str) -> None:
    st = drivers.propose(gpu, "ubuntu-2204-lts")
    assert (st.branch, st.flavor, st.cuda, st.torch_index) == (branch, flavor, cuda, torch_index)
    assert st.torch == S.torch_releases()[-1]


def test_propose_explains_pre_turing_and_blackwell_limits() -> None:
    v100 = drivers.propose("nvidia-tesla-v100", "ubuntu-2404-lts-amd64")
    assert (v100.cudnn, v100.tensorrt) == ("9.10", "10.4")
    assert any("R580" in n and "proprietary" in n for n in v100.notes)
    p100 = drivers.propose("nvidia-tesla-p100", "debian-12")
    assert p100.tensorrt == "8.6"
    b200 = drivers.propose("nvidia-b200", "ubuntu-2204-lts")
    assert any("open kernel modules" in n and "R570" in n for n in b200.notes)


def test_propose_k80_has_no_current_stack() -> None:
    st = drivers.propose("nvidia-tesla-k80", "ubuntu-2204-lts")
    assert st.branch == "470" and st.torch is None and st.cuda is None
    assert any("K80" in n and "PyTorch" in n for n in st.notes)


def test_propose_dlvm_is_verify_only() -> None:
    st = drivers.propose("nvidia-l4", "common-cu129-ubuntu-2204-nvidia-580")
    assert st.preinstalled and st.branch == "580" and st.cuda == "12.9"


def test_propose_unknown_gpu_is_broadest() -> None:
    st = drivers.propose(None, None)
    assert st.branch == "580" and st.torch_index == "cu126"


def test_valid_recipes_have_no_problems() -> None:
    assert messages(make_recipe("nvidia-tesla-t4", driver="{cuda: '12.8', cudnn: '9', tensorrt: true}",
                                env="{torch: '2.9.1'}")) == []
    assert messages(make_recipe("nvidia-tesla-v100", driver="{branch: '580', cuda: '12.9', cudnn: '9.10', "
                                "tensorrt: '10.4', flavor: proprietary}", env="{torch: '2.9.1', torch_index: cu126}")) == []


@pytest.mark.parametrize("gpu,driver,env,expect", [
    ("nvidia-tesla-v100", "{branch: '595'}", None, "driver.branch: V100 (Volta, sm_70) is supported by driver branches up to R580"),
    ("nvidia-tesla-p100", "{branch: '590'}", None, "R590 and later dropped Pascal"),
    ("nvidia-tesla-v100", "{flavor: open}", None, "driver.flavor: V100 (Volta, sm_70) cannot use open kernel modules; use flavor: proprietary"),
    ("nvidia-b200", "{branch: '550'}", None, "driver.branch: B200 (Blackwell, sm_100) needs driver R570 or newer with open kernel modules"),
    ("nvidia-b200", "{flavor: proprietary}", None, "cannot use proprietary kernel modules; use flavor: open"),
    ("nvidia-tesla-t4", "{branch: '620', flavor: proprietary}", None, "R620 ships open kernel modules only"),
    ("nvidia-tesla-t4", "{branch: '575', cuda: '13.0'}", None, "driver.cuda: CUDA 13.0 needs driver 580.65.06 or newer; R575 supports CUDA up to 12.9"),
    ("nvidia-tesla-v100", "{cuda: '13.0'}", None, "CUDA 13.0 has no support for V100"),
    ("nvidia-b200", "{cuda: '12.6', branch: '580'}", None, "needs CUDA 12.8 or newer"),
    ("nvidia-tesla-v100", "{cuda: '12.9', cudnn: '9.17'}", None, "cuDNN 9.17 has no kernels for V100"),
    ("nvidia-tesla-t4", "{cudnn: '9'}", None, "set driver.cuda too"),
    ("nvidia-tesla-v100", "{cuda: '12.9', tensorrt: '10.13'}", None, "TensorRT 10.13 does not support V100"),
    ("nvidia-tesla-t4", "{cuda: '13.0', tensorrt: '10.4'}", None, "no builds for CUDA 13.0"),
    ("nvidia-tesla-t4", "{cuda: '12.2'}", None, ""),
    ("nvidia-tesla-t4", "{branch: '999'}", None, "unknown driver branch '999'"),
    ("nvidia-tesla-v100", "{}", "{torch: '2.12.0', torch_index: cu130}", "env.torch_index: PyTorch 2.12.0 cu130 wheels have no kernels for V100"),
    ("nvidia-tesla-t4", "{}", "{torch: '2.12.0', torch_index: cu128}", "PyTorch 2.12.0 has no cu128 wheels"),
    ("nvidia-tesla-t4", "{branch: '575'}", "{torch: '2.12.0', torch_index: cu130}", "cu130 wheels need driver 580.65.06 or newer"),
    ("nvidia-tesla-k80", "{branch: '470'}", "{torch: '2.9.1'}", "no current PyTorch wheel runs on the K80"),
    ("nvidia-tesla-t4", "{}", "{python: '3.12'}", "env.python: Ubuntu 22.04 packages Python 3.10, 3.11"),
])
def test_check_rejects_with_reason(gpu: str, driver: str, env: str | None, expect: str) -> None:
    got = messages(make_recipe(gpu, driver=driver, env=env))
    if not expect:
        assert got == []
    else:
        assert any(expect in m for m in got), got


def test_problems_carry_line_and_column() -> None:
    r = make_recipe("nvidia-tesla-v100", driver="{branch: '595'}")
    (p,) = drivers.check(r)
    assert (p.path, p.line) == ("driver.branch", 9) and p.col > 1


def test_existing_host_needs_a_branch() -> None:
    r = recipe.loads("version: 1\nname: t\ntarget: {ssh: {hosts: ['u@h']}}\ndriver: {cuda: '12.8'}\n")
    assert any("driver.branch" in m and "existing hosts" in m for m in messages(r))
    r2 = recipe.loads("version: 1\nname: t\ntarget: {ssh: {hosts: ['u@h']}}\ndriver: preinstalled\n")
    assert messages(r2) == []


def test_resolve_caps_cudnn_for_volta_and_keeps_cuda_null() -> None:
    st = drivers.resolve(make_recipe("nvidia-tesla-v100", driver="{cuda: '12.9', cudnn: '9', tensorrt: true}"))
    assert (st.branch, st.flavor, st.cudnn, st.tensorrt) == ("580", "proprietary", "9.10", "10.4")
    assert drivers.resolve(make_recipe("nvidia-l4", driver="{}")).cuda is None


def test_stack_data_is_consistent() -> None:
    """Every branch's max CUDA and every arch named exist; wheel indexes are known."""
    for b in S.branches().values():
        assert S.cuda_driver(b.cuda_max) is not None, b
        assert set(b.archs) <= set(S.archs())
    for t in S.torch_releases():
        for idx in S.torch_indexes(t):
            assert S.wheel_archs(idx, t) is not None, (t, idx)
    assert S.meta()["snapshot"] and S.meta()["sources"]


def test_catalog_table_lists_every_gpu() -> None:
    text = commands.drivers_table()
    assert "R595" in text and "R580" in text and "snapshot" in text


@pytest.mark.parametrize("image,driver,path,expect", [
    ("debian-12", "{branch: '595'}", "driver.branch", "production branch (R595) does not install from NVIDIA's repository on Debian 12"),
    ("debian-12", "{branch: '610'}", "driver.branch", "use branch '580'"),
    ("ubuntu-2204-lts", "{branch: '610'}", "driver.branch", "new-feature branch (R610, CUDA 13.3) is not supported on Ubuntu 22.04"),
    ("ubuntu-2204-lts", "{branch: '620', cuda: '13.3'}", "driver.cuda", "CUDA 13.3 does not install on Ubuntu 22.04"),
])
def test_check_refuses_branches_and_cuda_the_os_cannot_install(image: str, driver: str, path: str, expect: str) -> None:
    got = messages(make_recipe("nvidia-tesla-t4", image, driver=driver))
    assert any(m.startswith(path + ":") and expect in m for m in got), got


def test_os_limits_cap_the_proposal_and_say_why() -> None:
    st = drivers.propose("nvidia-tesla-t4", "debian-12")
    assert (st.branch, st.cuda) == ("580", "13.0")
    assert any("Debian 12" in n and "dkms" in n for n in st.notes)
    assert drivers.propose("nvidia-tesla-t4", "ubuntu-2404-lts-amd64").branch == "595"
    # what the wizard greys: a reason for refused choices, None for allowed ones
    assert drivers.os_refusal("debian-12", branch="595")
    assert drivers.os_refusal("debian-12", branch="580") is None
    assert drivers.os_refusal("ubuntu-2204-lts", cuda="13.3")
    assert drivers.os_refusal("ubuntu-2404-lts-amd64", branch="610") is None
    for o in S.oses().values():
        assert (o.branch_max is None) == (o.limit_source is None), o.key


def test_debian_12_driver_installs_carry_the_dkms_warning() -> None:
    (p,) = drivers.check(make_recipe("nvidia-tesla-t4", "debian-12", driver="{branch: '580'}"))
    assert p.warning and p.path == "driver" and "dkms >= 3.1.8" in p.message
    assert drivers.check(make_recipe("nvidia-tesla-t4", "ubuntu-2404-lts-amd64", driver="{branch: '580'}")) == []


def test_tensorrt_11_is_known_with_cuda_13() -> None:
    assert messages(make_recipe("nvidia-l4", "ubuntu-2404-lts-amd64", driver="{cuda: '13.2', tensorrt: '11'}")) == []
    got = messages(make_recipe("nvidia-l4", "ubuntu-2404-lts-amd64", driver="{cuda: '12.8', tensorrt: '11'}"))
    assert any("TensorRT 11 has no builds for CUDA 12.8" in m for m in got), got


ROOT = pathlib.Path(__file__).resolve().parent.parent
MINE = [*sorted((ROOT / "gpuwizard" / "drivers").glob("*.py")),
        *(ROOT / "gpuwizard" / f for f in ("verify.py", "probe_gpu.py", "envsteps.py", "plan.py", "steps.py",
                                           "presets.py")),
        *sorted((ROOT / "gpuwizard" / "catalog").glob("*.py"))]


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import of the file."""
    out = []
    tree = ast.parse(path.read_text())
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(x) for f in funcs for x in ast.walk(f)}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module:
            out.append((n.module, id(n) in nested))
        elif isinstance(n, ast.Import):
            out += [(a.name, id(n) in nested) for a in n.names]
    return out


def test_the_driver_modules_import_the_project_at_module_top_and_never_the_cli() -> None:
    for path in MINE:
        for mod, in_function in _imports(path):
            assert not (in_function and mod.startswith("gpuwizard")), f"{path.name}: in-function import of {mod}"
            if path.parent.name == "drivers":
                assert mod != "gpuwizard.commands", f"{path.name} imports the CLI (an import cycle)"


def test_the_cuda_profile_path_is_written_once() -> None:
    literal = "/etc/profile.d/gpuwizard-cuda.sh"
    hits = [p for p in (ROOT / "gpuwizard").rglob("*.py") if literal in p.read_text()]
    assert [p.name for p in hits] == ["apt_steps.py"]
    assert drivers.PROFILE_FILE == literal and literal in plan.CUDA_PROFILE
