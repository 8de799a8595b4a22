"""The driver steps' behaviour where it matters most, run in bash with stubbed tools:
the cuda-keyring checksum and the branch pin (the chroot test runs them against apt)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess

import pytest

from gpuwizard import drivers
from gpuwizard.catalog import stack as S
from tests.builders.drivers import make_recipe

STUB = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$CALLS\"\n"
# curl -fsSL --retry 5 -o FILE URL: write $KEYRING_CONTENT to FILE
CURL = STUB + 'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then printf %s "$KEYRING_CONTENT" >"$2"; fi; shift; done\n'


def _step(step_id: str, **kw: str):
    (step,) = [s for s in drivers.steps(make_recipe(**kw)) if s.id == step_id]
    return step


def _run_repo_step(tmp_path: pathlib.Path, content: str) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in (("curl", CURL), ("dpkg", STUB), ("apt-get", STUB)):
        (bin_ / name).write_text(body)
        (bin_ / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    run = _step("driver.repo", image="ubuntu-2204-lts").run
    # the host's /etc/os-release is whatever runs the tests: this is an Ubuntu 22.04 host
    run = run.replace(". /etc/os-release", "ID=ubuntu VERSION_ID=22.04 PRETTY_NAME=test")
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "CALLS": str(calls), "KEYRING_CONTENT": content,
           "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", run], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    return r, calls.read_text()


def test_a_keyring_that_fails_its_checksum_is_never_installed(tmp_path: pathlib.Path) -> None:
    r, calls = _run_repo_step(tmp_path, "not NVIDIA's keyring")
    assert r.returncode == 1
    assert "does not match its known SHA-256" in r.stderr
    assert "curl " in calls and "dpkg " not in calls


def test_the_keyring_with_the_catalog_checksum_is_installed(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    content = "the keyring package"
    monkeypatch.setattr(S, "keyring_sha256", lambda repo: hashlib.sha256(content.encode()).hexdigest())
    r, calls = _run_repo_step(tmp_path, content)
    assert r.returncode == 0, r.stderr
    assert "dpkg -i" in calls and "apt-get" in calls


def test_every_supported_os_has_a_keyring_checksum_with_its_source() -> None:
    for o in S.oses().values():
        assert o.keyring_sha256 and len(o.keyring_sha256) == 64, o.key
    assert "NVIDIA_KEYRING_SHA256_SUMS" in pathlib.Path(S.__file__).with_name("stack.yaml").read_text()


@pytest.mark.parametrize("branch", ["580", "595", "610"])
def test_branches_with_nvidia_pinning_packages_use_them(branch: str) -> None:
    pin = _step("driver.pin", gpu="nvidia-tesla-t4", image="ubuntu-2404-lts-amd64", driver=f"{{branch: '{branch}'}}")
    assert f"apt_get install nvidia-driver-pinning-{branch}\n" in pin.run
    assert "Pin: version" not in pin.run


def test_older_branches_pin_to_nvidias_repository_only() -> None:
    pin = _step("driver.pin", gpu="nvidia-tesla-t4", image="ubuntu-2204-lts", driver="{branch: '570'}")
    assert "nvidia-driver-pinning" not in pin.run
    prefs = drivers.apt_steps.pin_preferences("570")
    stanzas = prefs.split("\n\n")
    # apt takes the first matching record: the OS archives' same-named packages are fenced off
    # before the branch's versions get 1001, so Ubuntu's libnvidia-compute-570 can never win
    assert "Pin: release o=Ubuntu\nPin-Priority: -1" in stanzas[0]
    assert "Pin: release o=Debian\nPin-Priority: -1" in stanzas[1]
    assert "Pin: version 570.*\nPin-Priority: 1001" in stanzas[2]
    assert "Pin: origin developer.download.nvidia.com" in stanzas[3]
    assert "Pin: origin developer.download.nvidia.com" in pin.run and "Pin: release o=Ubuntu" in pin.run


def test_pin_preferences_parse_as_apt_preferences(tmp_path: pathlib.Path) -> None:
    """apt itself reads the file (no repository needed): a syntax slip would fail here."""
    if not os.path.exists("/usr/bin/apt-cache"):
        pytest.skip("apt is not installed")
    prefs = tmp_path / "prefs"
    prefs.write_text(drivers.apt_steps.pin_preferences("570"))
    empty = tmp_path / "empty.d"
    empty.mkdir()
    r = subprocess.run(["apt-cache", "-o", f"Dir::Etc::preferences={prefs}", "-o", f"Dir::Etc::preferencesparts={empty}",
                        "-o", f"Dir::Etc::sourceparts={empty}", "-o", f"Dir::Etc::sourcelist={tmp_path / 'none'}",
                        "-o", f"Dir::Cache={tmp_path}", "-o", f"Dir::State::lists={empty}", "policy"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "E:" not in r.stderr and "W:" not in r.stderr, r.stderr


def _run_secure_boot(tmp_path: pathlib.Path, os_id: str, signed: set[str]) -> subprocess.CompletedProcess[str]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "mokutil").write_text("#!/bin/sh\necho 'SecureBoot enabled'\n")
    cases = " ".join(f'"{p}"' for p in signed) or '"none"'
    (bin_ / "apt-cache").write_text(f'#!/bin/sh\nfor p in {cases}; do [ "$2" = "$p" ] && exit 0; done\nexit 100\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    run = _step("driver.secureboot", gpu="nvidia-tesla-t4", driver="{branch: '580', flavor: open}").run
    run = run.replace(". /etc/os-release", f"ID={os_id}")
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", run], capture_output=True,
                          text=True, env={"PATH": f"{bin_}:/usr/bin:/bin"}, timeout=60, check=False)


def test_secure_boot_names_canonicals_signed_modules_when_ubuntu_has_them(tmp_path: pathlib.Path) -> None:
    r = _run_secure_boot(tmp_path, "ubuntu", {"linux-modules-nvidia-580-open-gcp"})
    assert r.returncode == 1
    assert "Canonical's signed prebuilt module for this kernel (linux-modules-nvidia-580-open-gcp)" in r.stderr
    assert "ubuntu-drivers install --gpgpu nvidia:580-server-open" in r.stderr
    assert "--no-shielded-secure-boot" in r.stderr          # ... and the other route


def test_secure_boot_without_signed_modules_says_both_other_routes(tmp_path: pathlib.Path) -> None:
    r = _run_secure_boot(tmp_path, "debian", {"linux-modules-nvidia-580-open-gcp"})
    assert r.returncode == 1
    assert "--no-shielded-secure-boot" in r.stderr and "Deep Learning VM image" in r.stderr
    assert "linux-modules-nvidia-580-server-open-gcp or linux-modules-nvidia-580-open-gcp is not available" in r.stderr
