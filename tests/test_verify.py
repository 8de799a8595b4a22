"""The verification step: nvidia-smi parsing on real samples (tests/data/nvidia_smi,
sources in its README), the comparison with the recipe, and the remote program run for
real here against a fake ``nvidia-smi`` and a fake environment Python (no GPU here)."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess

import pytest

from gpuwizard import recipe as R
from gpuwizard import verify
from tests.builders.drivers import make_recipe

DATA = pathlib.Path(__file__).parent / "data" / "nvidia_smi"


def sample(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize("name,count,gpu,mem,driver,cuda", [
    ("t4_580.82.07_banner.txt", 1, "Tesla T4", 15360, "580.82.07", "13.0"),
    ("t4_525.85.12_banner.txt", 1, "Tesla T4", 15360, "525.85.12", "12.0"),
    ("a100-40gb_570.124.06_banner.txt", 1, "NVIDIA A100-SXM4-40GB", 40960, "570.124.06", "12.8"),
    ("h100-80gb_535.104.12_banner.txt", 1, "NVIDIA H100 80GB HBM3", 81559, "535.104.12", "12.2"),
    ("a40x10_550.127.05_banner.txt", 10, "NVIDIA A40", 46068, "550.127.05", "12.4"),
    ("titanv_515.65.01_banner.txt", 1, "NVIDIA TITAN V", 12288, "515.65.01", "11.7"),
    ("t4_580.82.07_query.csv", 1, "Tesla T4", 15360, "580.82.07", None),
    ("l4_580.159.04_query.csv", 1, "NVIDIA L4", 23034, "580.159.04", None),
])
def test_parse_real_samples(name: str, count: int, gpu: str, mem: int, driver: str, cuda: str | None) -> None:
    gpus = verify.parse_nvidia_smi(sample(name))
    assert len(gpus) == count
    assert [g.index for g in gpus] == list(range(count))
    g = gpus[0]
    assert (g.name, g.memory_mib, g.driver_version, g.cuda_version, g.truncated) == (gpu, mem, driver, cuda, False)


def test_csv_wins_and_banner_adds_cuda_version() -> None:
    gpus = verify.parse_nvidia_smi(sample("t4_580.82.07_query.csv") + sample("t4_580.82.07_banner.txt"))
    assert len(gpus) == 1 and gpus[0].cuda_version == "13.0"


def test_truncated_banner_name_is_flagged() -> None:
    (g,) = verify.parse_nvidia_smi(sample("geforce-truncated_470.63.01_banner.txt"))
    assert g.truncated and g.name == "NVIDIA GeForce" and g.memory_mib == 16116


@pytest.mark.parametrize("name,meaning", [
    ("fail_couldnt_communicate.txt", "cannot talk to the NVIDIA kernel module"),
    ("fail_version_mismatch.txt", "kernel module and the user-space driver libraries differ"),
    ("fail_no_devices.txt", "sees no GPU"),
    ("fail_no_cuda_device_deviceQuery.txt", "CUDA sees no GPU"),
])
def test_failure_outputs_raise_a_clear_error(name: str, meaning: str) -> None:
    with pytest.raises(verify.NvidiaSmiError) as exc:
        verify.parse_nvidia_smi(sample(name))
    assert meaning in str(exc.value) and exc.value.hint


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        verify.parse_nvidia_smi("bash: line 1: something else\n")


def test_compare_reports_each_difference() -> None:
    gpus = verify.parse_nvidia_smi(sample("t4_580.82.07_banner.txt"))
    ok = {"driver_branch": "580", "gpu_name": "T4", "gpu_count": 1, "min_memory_mib": 14400}
    assert verify.compare(ok, gpus, None, None) == []
    bad = {"driver_branch": "595", "gpu_name": "L4", "gpu_count": 2, "min_memory_mib": 21600, "nvcc": "13.2",
           "torch": {"version": "2.9.1", "index": "cu126"}}
    diffs = verify.compare(bad, gpus, "13.0", {"torch": "2.9.1+cu128", "available": False})
    text = "\n".join(diffs)
    for part in ("branch R580, the recipe wants R595", "'Tesla T4' is not a L4", "1 GPU(s) visible",
                 "15360 MiB, expected at least 21600", "nvcc reports CUDA 13.0", "not the cu126 build",
                 "is_available() is False"):
        assert part in text, text


def test_expected_from_recipe() -> None:
    r = make_recipe("nvidia-l4", driver="{cuda: '12.8'}", env="{python: '3.10', torch: '2.9.1'}")
    exp = verify.expected(r)
    assert exp == {"driver_branch": "595", "gpu_name": "L4", "gpu_count": 1, "min_memory_mib": 21600,
                   "nvcc": "12.8", "torch": {"version": "2.9.1", "index": "cu128"}}
    dlvm = make_recipe("nvidia-l4", "common-cu129-ubuntu-2204-nvidia-580", driver="preinstalled")
    assert verify.expected(dlvm)["driver_branch"] == "580" and "nvcc" not in verify.expected(dlvm)
    assert verify.steps(make_recipe("nvidia-l4", driver=None)) == []


def _fake_bin(d: pathlib.Path, name: str, body: str) -> None:
    p = d / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def _run_step(tmp_path: pathlib.Path, smi_query: str, smi_banner: str, torch_json: dict, rc: int = 0,
              query_rc: int | None = None):
    """Run the generated verify step here, with fake nvidia-smi and env python on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (tmp_path / "q.txt").write_text(smi_query)
    (tmp_path / "b.txt").write_text(smi_banner)
    _fake_bin(bin_, "nvidia-smi", f'if [ "${{1:-}}" = "" ]; then cat {tmp_path}/b.txt; exit {rc}; fi\n'
                                  f"cat {tmp_path}/q.txt\nexit {rc if query_rc is None else query_rc}\n")
    env_py = tmp_path / "venv" / "bin"
    env_py.mkdir(parents=True)
    _fake_bin(env_py, "python", f"echo {json.dumps(json.dumps(torch_json))}\n")
    r = make_recipe("nvidia-tesla-t4", driver="{branch: '580'}",
                    env=f"{{path: '{tmp_path}/venv', torch: '2.9.1', torch_index: cu126}}")
    (step,) = verify.steps(r)
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", step.run],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})


def test_remote_program_passes_on_a_matching_host(tmp_path: pathlib.Path) -> None:
    res = _run_step(tmp_path, sample("t4_580.82.07_query.csv"), sample("t4_580.82.07_banner.txt"),
                    {"torch": "2.9.1+cu126", "cuda": "12.6", "available": True, "device": "Tesla T4", "matmul": True})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and report["gpus"][0]["cuda_version"] == "13.0"


def test_remote_program_fails_with_what_differs(tmp_path: pathlib.Path) -> None:
    res = _run_step(tmp_path, sample("l4_580.159.04_query.csv"), "",
                    {"torch": "2.9.1+cu126", "available": True, "matmul": False, "matmul_error": "no kernel image"})
    assert res.returncode == 1
    assert "'NVIDIA L4' is not a T4" in res.stderr and "matmul on the GPU gave a wrong result" in res.stderr


def test_remote_program_explains_a_dead_driver(tmp_path: pathlib.Path) -> None:
    res = _run_step(tmp_path, sample("fail_couldnt_communicate.txt"), sample("fail_couldnt_communicate.txt"),
                    {}, rc=9)
    assert res.returncode == 1 and "reboot" in res.stderr and "dkms status" in res.stderr


def test_refused_query_falls_back_to_the_banner_once(tmp_path: pathlib.Path) -> None:
    """An nvidia-smi that refuses the CSV query (old driver, a field a GPU rejects) still
    has its banner read, once: one T4 is one GPU, not two."""
    res = _run_step(tmp_path, 'Field "driver_version" is not a valid field to query.\n',
                    sample("t4_580.82.07_banner.txt"),
                    {"torch": "2.9.1+cu126", "cuda": "12.6", "available": True, "device": "Tesla T4", "matmul": True},
                    query_rc=2)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["gpus"]) == 1


def _smi_results(outputs: list[str]):
    """nvidia-smi as the probe sees it: one (query, banner) pair per call, in order."""
    import subprocess as sp

    calls = iter(outputs)

    def smi():
        text = next(calls)
        rc = 0 if "MiB" in text else 9
        return sp.CompletedProcess([], rc, text), sp.CompletedProcess([], rc, text)
    return smi


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_probe_waits_for_a_first_boot_driver_install_and_says_so() -> None:
    from gpuwizard import probe_gpu

    clock, said = _Clock(), []
    smi = _smi_results(["nvidia-smi: command not found", "NVIDIA-SMI has failed because it couldn't communicate "
                        "with the NVIDIA driver", sample("t4_580.82.07_query.csv")])
    query, _ = probe_gpu.wait_for_driver({"timeout": 900, "interval": 15, "say_every": 60}, smi=smi,
                                         clock=clock.now, sleep=clock.sleep, say=lambda *a, **k: said.append(a[0]))
    assert probe_gpu.parse_nvidia_smi(query.stdout)[0].name.endswith("T4")
    assert clock.t == 30 and said and "first-boot driver install" in said[0] and "900 s left" in said[0]


def test_probe_wait_is_bounded_and_skips_what_waiting_cannot_fix() -> None:
    from gpuwizard import probe_gpu

    clock = _Clock()
    smi = _smi_results(["nvidia-smi: command not found"] * 1000)
    probe_gpu.wait_for_driver({"timeout": 120, "interval": 15}, smi=smi, clock=clock.now, sleep=clock.sleep,
                              say=lambda *a, **k: None)
    assert clock.t == 120
    clock2 = _Clock()
    smi2 = _smi_results(["Failed to initialize NVML: Driver/library version mismatch"] * 3)
    probe_gpu.wait_for_driver({"timeout": 120}, smi=smi2, clock=clock2.now, sleep=clock2.sleep, say=lambda *a, **k: None)
    assert clock2.t == 0   # a mismatch needs a reboot, not patience


def test_verify_is_not_retried_and_waits_only_for_preinstalled_drivers() -> None:
    (installed,) = verify.steps(make_recipe("nvidia-l4", driver="{cuda: '12.8'}"))
    assert installed.retries == 0 and "wait_for_driver" not in verify.expected(make_recipe("nvidia-l4"))
    dlvm = make_recipe("nvidia-l4", "common-cu129-ubuntu-2204-nvidia-580", driver="preinstalled")
    (step,) = verify.steps(dlvm)
    assert step.retries == 0 and verify.expected(dlvm)["wait_for_driver"]["timeout"] == verify.DRIVER_WAIT_S
    assert step.timeout > verify.DRIVER_WAIT_S and "first-boot" in step.title
    ssh = R.loads("version: 1\nname: t\ntarget: {ssh: {hosts: ['u@h']}}\ndriver: preinstalled\n")
    assert "wait_for_driver" not in verify.expected(ssh)   # an existing host has no first boot to wait for


def test_remote_program_is_the_probe_module_and_stdlib_only() -> None:
    import ast

    from gpuwizard import probe_gpu

    src = verify.remote_program()
    assert src == pathlib.Path(probe_gpu.__file__).read_text()
    ast.parse(src, feature_version=(3, 8))   # it runs on whatever python3 the image ships
    mods = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)}
    mods |= {n.module.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    assert "gpuwizard" not in mods and mods <= {"re", "subprocess", "sys", "time", "json", "dataclasses", "typing", "torch"}
