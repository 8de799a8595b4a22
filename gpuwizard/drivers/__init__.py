"""The NVIDIA stack: which driver/CUDA/cuDNN/TensorRT/PyTorch fit a GPU, the recipe checks
for it, and the apt steps that install it on Ubuntu 22.04/24.04 and Debian 12.

Three jobs, one module each, all driven by ``catalog/stack.yaml``:

* :mod:`.choice` -- :func:`propose` / :func:`resolve`: the stack for a GPU and image.
* :mod:`.check` -- :func:`check`: the recipe's explicit choices, as located problems.
* :mod:`.apt_steps` (with the shared bash in :mod:`.bash` and Secure Boot in
  :mod:`.secureboot`) -- :func:`steps`.

Deep Learning VM images (and ``driver: preinstalled``) install nothing here; the
verification step (:mod:`gpuwizard.verify`) checks what the image brought. This package
re-exports the names screens, validate and the planner use.
"""

from __future__ import annotations

from gpuwizard.drivers.apt_steps import PROFILE_FILE, cuda_profile, steps
from gpuwizard.drivers.check import check
from gpuwizard.drivers.choice import (Stack, branch_supports, choose_index, cudnn_prefix, default_flavor,
                                      is_verify_only, os_refusal, propose, resolve, tensorrt_prefix)
from gpuwizard.drivers.secureboot import SECURE_BOOT_MESSAGE

__all__ = ["PROFILE_FILE", "SECURE_BOOT_MESSAGE", "Stack", "branch_supports", "check", "choose_index",
           "cuda_profile", "cudnn_prefix", "default_flavor", "is_verify_only", "os_refusal",
           "propose", "resolve", "steps", "tensorrt_prefix"]
