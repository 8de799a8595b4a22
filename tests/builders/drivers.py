"""Recipe builders shared by the driver, verify, envsteps and chroot tests."""

from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Mapping

from gpuwizard import recipe

MACHINES = {
    "nvidia-tesla-t4": ("n1-standard-4", 1), "nvidia-tesla-v100": ("n1-standard-8", 1),
    "nvidia-tesla-p100": ("n1-standard-8", 1), "nvidia-tesla-p4": ("n1-standard-8", 1),
    "nvidia-tesla-k80": ("n1-standard-4", 1), "nvidia-l4": ("g2-standard-8", 1),
    "nvidia-tesla-a100": ("a2-highgpu-1g", 1), "nvidia-h100-80gb": ("a3-highgpu-8g", 8),
    "nvidia-b200": ("a4-highgpu-8g", 8),
}


def make_recipe(gpu: str = "nvidia-tesla-t4", image: str = "ubuntu-2204-lts", driver: str | None = "{}",
                env: str | None = None, name: str = "t") -> recipe.Recipe:
    """A gcp recipe from a few YAML fragments (driver/env given as flow mappings)."""
    machine, count = MACHINES.get(gpu, ("n1-standard-4", 1))
    text = textwrap.dedent(f"""\
        version: 1
        name: {name}
        target:
          gcp:
            zones: [us-central1-a]
            machine_type: {machine}
            gpu: {{type: {gpu}, count: {count}}}
            image: {image}
        """)
    if driver is not None:
        text += f"driver: {driver}\n"
    if env is not None:
        text += f"env: {env}\n"
    return recipe.loads(text)


def chroot_tests_enabled(env: Mapping[str, str], tarball: pathlib.Path) -> bool:
    """Whether tests/test_drivers_chroot.py runs: when asked for (GPUWIZARD_CHROOT_TESTS=1)
    or, unless turned off (=0), when the cached Debian 12 root exists (then it needs no
    network and about a minute, so ``scripts/test`` runs it wherever the cache is kept)."""
    flag = env.get("GPUWIZARD_CHROOT_TESTS")
    if flag is not None:
        return flag == "1"
    return tarball.exists()
