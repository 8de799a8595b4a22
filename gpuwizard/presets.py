"""Known experiments as recipe fragments, built for the stack the wizard picks.

One definition per experiment: the wizard's preset, ``gpuwizard new --from``, and the
shipped recipe (``recipes/stgcn-t4.yaml``, checked against :func:`stgcn` by a test) all
come from here, so they cannot drift apart.

ST-GCN (the seed case) uses mmskeleton at its last commit (archived, 2020). What it
needs on a current stack, read from its source (open-mmlab/mmskeleton ``setup.py``,
``requirements.txt``, ``mmskeleton/ops/nms/setup_linux.py``, ``doc/START_RECOGNITION.md``):

* ``setup.py`` imports torch, numpy and Cython at build time and compiles its NMS CUDA
  extension with torch's ``CUDAExtension``: nvcc's CUDA must match the wheel's CUDA
  (torch refuses a major mismatch), so the torch wheel index *is* the toolkit's CUDA
  (``cu128`` for CUDA 12.8), never just "the newest index the driver runs".
* ``mmskeleton/ops/nms/setup_linux.py`` hard-codes ``-arch=sm_35``, which CUDA 12
  dropped: a setup step patches it to the GPU's own architecture with a quoted ``sed``
  (``-arch=native`` when the GPU is unknown; nvcc 11.5+ detects it on the host).
* ``requirements.txt`` names ``mmcv`` unpinned: mmcv 2 moved ``Config``, ``Runner`` and
  ``MMDataParallel`` (which mmskeleton imports) to mmengine, so mmcv 1.7.2, built without
  build isolation (its setup.py needs ``pkg_resources``, gone from setuptools >= 70); two
  quoted ``sed`` patches adapt mmskeleton to mmcv 1.7 (``load_url_dist`` became
  ``load_from_http``; ``Runner`` takes a logger where mmskeleton passes a log level); the
  ``.pyx`` files use ``np.float``/``np.int`` (removed in numpy 1.24) and Cython 2
  syntax, so ``numpy<1.24`` and ``cython<3``; ``pytest-runner`` is its setup_requires.
  These pins need Python <= 3.11 (numpy 1.23 has no 3.12 wheels): a conda environment
  with Python 3.10 on images whose Python is newer.
* Training: ``python mmskl.py configs/recognition/st_gcn_aaai18/kinetics-skeleton/train.yaml``
  from the clone, reading ``./data/Kinetics/kinetics-skeleton/`` (the processed-data zip
  unpacks to ``data/``), hence the dataset goes into the clone.

Not built here (no GPU, no network): the mmcv 1.x + PyTorch 2.x runtime combination
and the CUDA compile itself are unverified; the setup commands' quoting and order are
tested with stubbed pip/python/git (tests/test_presets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuwizard import catalog
from gpuwizard.catalog import stack as S
from gpuwizard.shell import q

STGCN_REPO = "https://github.com/open-mmlab/mmskeleton.git"
#: mmskeleton's last commit on master (archived): pinned so the patch below keeps applying.
STGCN_REF = "b4c076baa9e02e69b5876c49fa7c509866d902c7"
STGCN_NMS_SETUP = "mmskeleton/ops/nms/setup_linux.py"
STGCN_PACKAGES = ("torchvision", "cython<3", "numpy<1.24", "lazy_import", "pytest-runner")
#: mmcv 1.x, the last line with the ``Runner``/``Config`` mmskeleton imports. Its setup.py imports
#: pkg_resources, which setuptools >= 70 no longer ships (build isolation brings the newest):
#: so it builds without isolation, against a setuptools that still has it.
STGCN_MMCV = ("pip install 'setuptools<70' && pip install --no-build-isolation 'mmcv==1.7.2'")
#: mmcv 1.7 no longer has ``load_url_dist``; ``load_from_http`` is its successor.
STGCN_CHECKPOINT_PY = "mmskeleton/utils/checkpoint.py"
STGCN_CHECKPOINT_SED = ("s/^from mmcv.runner.checkpoint import load_url_dist$/"
                        "from mmcv.runner.checkpoint import load_from_http as load_url_dist/")
#: mmcv 1.x's Runner takes a logger where mmskeleton passes ``log_level`` (a TypeError at train time).
STGCN_RECOGNITION_PY = "mmskeleton/processor/recognition.py"
STGCN_RUNNER_SED = ('s/work_dir, log_level)$/work_dir, logger=__import__("mmcv").utils.get_logger('
                    '"mmskeleton", log_level=log_level))/')
STGCN_DATA = "gdrive:st-gcn-processed-data.zip"
STGCN_TRAIN = ("python mmskl.py configs/recognition/st_gcn_aaai18/kinetics-skeleton/train.yaml "
               "--gpus 1 --batch_size 64 --work_dir ./work_dir/st_gcn_kinetics")


class PresetError(ValueError):
    """The chosen stack cannot build the preset; the message says what to change."""


@dataclass(frozen=True)
class Preset:
    """Recipe fragments (plain mappings in the recipe's YAML shape) for one experiment."""

    key: str
    title: str
    env: dict[str, Any]
    datasets: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def torch_for_toolkit(cuda: str, cc: str | None, torch: str | None = None) -> tuple[str, str]:
    """(torch release, wheel index) whose CUDA equals the toolkit's, for extensions built
    with nvcc: ``torch`` when given (refused if it has no such wheel), else the newest
    release with a stable wheel for it that carries kernels for ``cc``."""
    index = "cu" + cuda.replace(".", "")
    releases = [torch] if torch else list(reversed(S.torch_releases()))
    for t in releases:
        stable = S.torch_indexes(t, experimental=torch is not None)
        if index in stable and (cc is None or S.wheel_runs_on(index, t, cc) is not False):
            return t, index
    have = [t for t in S.torch_releases() if index in S.torch_indexes(t)]
    if torch:
        hint = f"PyTorch {', '.join(have)}" if have else "a CUDA toolkit PyTorch has wheels for"
        raise PresetError(f"PyTorch {torch} has no {index} wheels, and the CUDA extension must be built with the "
                          f"toolkit's CUDA ({cuda}); pick {hint}")
    fits = sorted({i for t in S.torch_releases() for i in S.torch_indexes(t, experimental=False)
                   if cc is None or S.wheel_runs_on(i, t, cc) is not False}, key=lambda i: int(i[2:]))
    cudas = [f"{i[2:-1]}.{i[-1]}" for i in fits][-3:]  # the newest three that have such wheels
    pick = ", ".join(cudas[:-1]) + f" or {cudas[-1]}" if len(cudas) > 1 else "".join(cudas)
    raise PresetError(f"no PyTorch release has {index} wheels for this GPU; pick CUDA {pick}")


def stgcn(gpu_type: str | None, image: str | None, cuda: str | None, torch: str | None = None) -> Preset:
    """The ST-GCN (mmskeleton) experiment for one GPU, image and CUDA toolkit."""
    if not cuda:
        raise PresetError("ST-GCN compiles a CUDA extension: choose a CUDA toolkit (driver.cuda)")
    g = catalog.gpu(gpu_type) if gpu_type else None
    img = catalog.image(image) if image else None
    osinfo = S.oses().get(img.os) if img is not None else None
    t, index = torch_for_toolkit(cuda, g.cc if g else None, torch)
    arch = f"sm_{g.cc.replace('.', '')}" if g else "native"
    arch_list = g.cc if g else None
    python = next((p for p in ("3.10", "3.11") if osinfo is None or p in osinfo.pythons), None)
    manager = "venv" if python else "conda"
    env: dict[str, Any] = {
        "manager": manager, "python": python or "3.10", "torch": t, "torch_index": index,
        "packages": list(STGCN_PACKAGES),
        "repo": {"url": STGCN_REPO, "ref": STGCN_REF, "setup": stgcn_setup(arch, arch_list)},
    }
    notes = [f"torch {t} from {index}: the NMS extension is compiled with nvcc {cuda}, which must match the wheel",
             f"mmskeleton's nms/setup_linux.py is patched from -arch=sm_35 (dropped in CUDA 12) to -arch={arch}"]
    if manager == "conda":
        notes.append(f"{osinfo.label if osinfo else 'this image'} has no Python 3.10/3.11 for a venv: conda with "
                     "Python 3.10 (mmskeleton's pins need numpy < 1.24)")
    return Preset(
        key="stgcn", title="ST-GCN action recognition (mmskeleton)", env=env,
        datasets=[{"from": STGCN_DATA, "to": "~/mmskeleton/", "unzip": True}],
        steps=[{"name": "smoke", "run": "python -c 'import torch, mmskeleton; print(torch.cuda.get_device_name(0))'"},
               {"name": "train", "run": STGCN_TRAIN}],
        notes=notes)


def stgcn_setup(arch: str, arch_list: str | None) -> list[str]:
    """mmskeleton's setup commands, run in order inside the clone with the venv active."""
    patched = f"-arch={arch}"
    sed = f"s/-arch=sm_35/{patched}/"
    build = "python setup.py develop"
    if arch_list:
        build = f"TORCH_CUDA_ARCH_LIST={q(arch_list)} {build}"
    return [
        STGCN_MMCV,
        f"sed -i {q(STGCN_CHECKPOINT_SED)} {STGCN_CHECKPOINT_PY} && "
        f"grep -F 'load_from_http as load_url_dist' {STGCN_CHECKPOINT_PY} >/dev/null",
        f"sed -i {q(STGCN_RUNNER_SED)} {STGCN_RECOGNITION_PY} && grep -F 'logger=' {STGCN_RECOGNITION_PY} >/dev/null",
        f"sed -i {q(sed)} {STGCN_NMS_SETUP} && grep -F -- {q(patched)} {STGCN_NMS_SETUP} >/dev/null",
        build,
        "cd mmskeleton/ops/nms && python setup_linux.py develop",
    ]
