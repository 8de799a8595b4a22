"""The GPU probe gpuwizard sends to a host and runs there with ``python3 -c``.

Standard library only, Python 3.8+: it runs on whatever python3 the image ships. It calls
``nvidia-smi`` (the machine-readable ``--query-gpu`` CSV first, the banner as a fallback
and for the CUDA version), ``nvcc --version`` when gpuwizard installed the toolkit, and
the environment's Python for ``torch.cuda`` plus a small matmul on the GPU. It prints one
JSON report and exits 1 with the differences.

:mod:`gpuwizard.verify` reads this file's text with :mod:`importlib.resources` and sends
it verbatim, so the parser the tests exercise is the parser that runs on the host. Keep
it free of gpuwizard imports (the host has no gpuwizard).
"""

import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

SMI_QUERY = "index,name,memory.total,driver_version"

_FAILURES = [
    # (pattern, what it means, what to do)
    (r"couldn't communicate with the NVIDIA driver|NVIDIA-SMI has failed",
     "nvidia-smi cannot talk to the NVIDIA kernel module",
     "the module is not loaded: reboot after installing the driver; if it persists check `dkms status` "
     "(a kernel update without headers) and Secure Boot (`mokutil --sb-state`)"),
    (r"Driver/library version mismatch",
     "the loaded kernel module and the user-space driver libraries differ",
     "an upgrade replaced the libraries under a running module: reboot"),
    (r"Failed to initialize NVML",
     "NVML could not start", "reboot; then check `dmesg | grep -i nvrm`"),
    (r"No devices were found",
     "the driver is loaded but sees no GPU",
     "check that the VM has a GPU attached (`lspci | grep -i nvidia`) and that the branch supports it"),
    (r"no CUDA-capable device is detected",
     "CUDA sees no GPU", "check `nvidia-smi`; a freshly installed driver needs a reboot (nouveau may hold the GPU)"),
    (r"nvidia-smi: (command )?not found|No such file or directory.*nvidia-smi",
     "nvidia-smi is not installed", "the NVIDIA driver is not installed on this host"),
]


class NvidiaSmiError(Exception):
    """nvidia-smi reported a failure instead of GPUs; ``hint`` says what to do."""

    def __init__(self, meaning: str, hint: str, output: str):
        self.meaning, self.hint, self.output = meaning, hint, output
        super().__init__(f"{meaning}: {hint}")


@dataclass
class GpuInfo:
    """One GPU as nvidia-smi reports it. ``truncated``: the banner shortened the name."""

    index: int
    name: str
    memory_mib: int
    driver_version: str
    cuda_version: Optional[str] = None
    truncated: bool = False


_CSV_ROW = re.compile(r"^\s*(\d+)\s*,\s*([^,]+?)\s*,\s*(\d+)\s*MiB\s*,\s*(\d+\.\d+(?:\.\d+)?)\s*$")
_BANNER_DRIVER = re.compile(r"Driver Version:\s*(\d+\.\d+(?:\.\d+)?)")
_BANNER_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
_BANNER_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off|TCC|WDDM)\s*\|\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:")
_BANNER_MEM = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def parse_nvidia_smi(text: str) -> List[GpuInfo]:
    """GPUs from nvidia-smi output: ``--query-gpu=index,name,memory.total,driver_version
    --format=csv,noheader`` rows, the human banner, or both (CSV wins, the banner adds the
    CUDA version). Raises :class:`NvidiaSmiError` on the known failure messages and
    ValueError when the text holds no GPU at all."""
    for pattern, meaning, hint in _FAILURES:
        if re.search(pattern, text, re.I):
            raise NvidiaSmiError(meaning, hint, text.strip())
    driver_m = _BANNER_DRIVER.search(text)
    cuda_m = _BANNER_CUDA.search(text)
    cuda = cuda_m.group(1) if cuda_m else None
    gpus: List[GpuInfo] = []
    for line in text.splitlines():
        m = _CSV_ROW.match(line)
        if m:
            gpus.append(GpuInfo(int(m.group(1)), m.group(2), int(m.group(3)), m.group(4), cuda))
    if gpus:
        return gpus
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _BANNER_ROW.match(line)
        if not m:
            continue
        name = m.group(2).strip()
        mem = 0
        for nxt in lines[i + 1:i + 3]:
            mm = _BANNER_MEM.search(nxt)
            if mm:
                mem = int(mm.group(2))
                break
        gpus.append(GpuInfo(int(m.group(1)), name.rstrip(". ").strip() if name.endswith("...") else name, mem,
                            driver_m.group(1) if driver_m else "", cuda, truncated=name.endswith("...")))
    if not gpus:
        raise ValueError("no GPU found in the nvidia-smi output")
    return gpus


def parse_nvcc(text: str) -> Optional[str]:
    """'Cuda compilation tools, release 12.8, V12.8.93' -> '12.8'."""
    m = re.search(r"release (\d+\.\d+)", text)
    return m.group(1) if m else None


def compare(expected: dict, gpus: List[GpuInfo], nvcc: Optional[str], torch: Optional[dict]) -> List[str]:
    """What differs between the recipe's expectations and what the host reports."""
    out = []
    branch = expected.get("driver_branch")
    if branch and gpus:
        have = gpus[0].driver_version.split(".")[0]
        if have != branch:
            out.append(f"driver {gpus[0].driver_version} is branch R{have}, the recipe wants R{branch}")
    name = expected.get("gpu_name")
    if name and gpus:
        rx = re.compile(r"(^|[^A-Za-z0-9])" + re.escape(name) + r"($|[^A-Za-z0-9])")
        wrong = [g for g in gpus if not rx.search(g.name) and not (g.truncated and name.startswith(g.name.split()[-1]))]
        if wrong:
            out.append(f"GPU {wrong[0].name!r} is not a {name}")
    count = expected.get("gpu_count")
    if count is not None and len(gpus) != count:
        out.append(f"{len(gpus)} GPU(s) visible, the recipe attaches {count}")
    min_mib = expected.get("min_memory_mib")
    if min_mib and gpus:
        small = [g for g in gpus if g.memory_mib and g.memory_mib < min_mib]
        if small:
            out.append(f"GPU {small[0].index} has {small[0].memory_mib} MiB, expected at least {min_mib}")
    want_cuda = expected.get("nvcc")
    if want_cuda and nvcc != want_cuda:
        out.append(f"nvcc reports CUDA {nvcc or 'nothing'}, the recipe installs {want_cuda}")
    want_torch = expected.get("torch")
    if want_torch:
        if torch is None or torch.get("error"):
            out.append("PyTorch did not import: " + str((torch or {}).get("error", "no output")))
        else:
            ver = str(torch.get("torch", ""))
            public, _, local = ver.partition("+")
            spec = want_torch["version"]
            if not (public == spec or (public + ".").startswith(spec + ".")):
                out.append(f"torch {ver} is installed, the recipe wants {spec}")
            label = want_torch.get("index")
            if label and local and local != label:
                out.append(f"torch {ver} is not the {label} build")
            if not torch.get("available"):
                out.append("torch.cuda.is_available() is False")
            elif not torch.get("matmul"):
                out.append("a matmul on the GPU gave a wrong result: " + str(torch.get("matmul_error", "")))
    return out


TORCH_PROBE = r"""
import json
r = {}
try:
    import torch
    r = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    if r["available"]:
        r["count"] = torch.cuda.device_count()
        r["device"] = torch.cuda.get_device_name(0)
        r["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
        try:
            a = torch.randn(256, 256)
            want = a @ a.T
            got = (a.cuda() @ a.cuda().T).cpu()
            r["matmul"] = bool(torch.allclose(got, want, rtol=1e-2, atol=1e-2))
        except Exception as exc:
            r["matmul"] = False
            r["matmul_error"] = str(exc)
except Exception as exc:
    r["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(r))
"""


def _run(argv: List[str]) -> "subprocess.CompletedProcess[str]":
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=120)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, f"{argv[0]}: command not found\n")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, f"{argv[0]} timed out after 120 s\n")


def _smi() -> "tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]":
    return (_run(["nvidia-smi", "--query-gpu=" + SMI_QUERY, "--format=csv,noheader"]), _run(["nvidia-smi"]))


def _gpus(query: "subprocess.CompletedProcess[str]", banner: "subprocess.CompletedProcess[str]") -> List[GpuInfo]:
    # The query's CSV, plus the banner once: it carries the GPUs when the query is
    # refused (old drivers, a field a GPU rejects) and the failure text when both fail.
    use_banner = banner.returncode == 0 or query.returncode != 0
    return parse_nvidia_smi(query.stdout + "\n" + (banner.stdout if use_banner else ""))


def wait_for_driver(wait: dict, smi=_smi, clock=time.monotonic, sleep=time.sleep, say=print):
    """Polls nvidia-smi while the image's first-boot driver install (Deep Learning VM images)
    is still running: "not installed" and "cannot talk to the module" may turn into GPUs
    within minutes, so they are retried until ``wait['timeout']`` seconds have passed,
    saying so every ``wait['say_every']`` seconds. Returns the last (query, banner) pair."""
    deadline = clock() + float(wait.get("timeout", 0))
    interval = float(wait.get("interval", 15))
    say_every = float(wait.get("say_every", 60))
    next_say = clock()
    while True:
        query, banner = smi()
        try:
            _gpus(query, banner)
            return query, banner
        except NvidiaSmiError as exc:
            if not any(w in exc.meaning for w in _WAITABLE):
                return query, banner
        except ValueError:
            return query, banner
        left = deadline - clock()
        if left <= 0:
            return query, banner
        if clock() >= next_say:
            say("verify: no working NVIDIA driver yet; waiting for the image's first-boot driver install "
                "(%d s left)" % left, flush=True)
            next_say = clock() + say_every
        sleep(min(interval, max(left, 0)))


# What a first-boot install in progress looks like (the rest cannot change by waiting).
_WAITABLE = ("nvidia-smi is not installed", "cannot talk to the NVIDIA kernel module", "NVML could not start")


def main(argv: List[str]) -> int:
    """Run the checks on the host; argv: expected JSON [, environment python]."""
    expected = json.loads(argv[0])
    python = argv[1] if len(argv) > 1 else ""
    report: dict = {"ok": False}
    if expected.get("wait_for_driver"):
        query, banner = wait_for_driver(expected["wait_for_driver"])
    else:
        query, banner = _smi()
    try:
        gpus = _gpus(query, banner)
    except NvidiaSmiError as exc:
        report["error"] = str(exc)
        report["nvidia_smi"] = exc.output[-2000:]
        print(json.dumps(report, indent=2))
        print("verify: " + str(exc), file=sys.stderr)
        return 1
    except ValueError as exc:
        report["error"] = f"{exc}; nvidia-smi said: {(query.stdout + banner.stdout).strip()[-500:]}"
        print(json.dumps(report, indent=2))
        print("verify: " + report["error"], file=sys.stderr)
        return 1
    report["gpus"] = [asdict(g) for g in gpus]
    nvcc = None
    if expected.get("nvcc"):
        out = _run([f"/usr/local/cuda-{expected['nvcc']}/bin/nvcc", "--version"])
        nvcc = parse_nvcc(out.stdout)
        report["nvcc"] = nvcc
    torch = None
    if expected.get("torch") and python:
        out = _run([python, "-c", TORCH_PROBE])
        try:
            torch = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            torch = {"error": out.stdout.strip()[-500:] or f"exit {out.returncode}"}
        report["torch"] = torch
    diffs = compare(expected, gpus, nvcc, torch)
    report["ok"] = not diffs
    report["differences"] = diffs
    print(json.dumps(report, indent=2))
    for d in diffs:
        print("verify: " + d, file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
