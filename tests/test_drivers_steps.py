"""The driver steps' behaviour where it matters most, run in bash with stubbed tools:
the cuda-keyring checksum and the branch pin (the chroot test runs them against apt)."""

from __future__ import annotations

import hashlib
import pathlib
import re
import shutil
import subprocess

import pytest

from gpuwizard import drivers
from gpuwizard.catalog import stack as S
from tests.builders.drivers import chroot_tests_enabled, make_recipe

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


PKG = "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: ./x.deb\nSize: 1\nDescription: x\n\n"


def _policy(tmp_path: pathlib.Path, preferences: str, repos: dict[str, list[tuple[str, str]]], pkg: str) -> str:
    """apt's own answer (apt-cache policy) for ``pkg`` given flat repositories by Origin and a
    preferences file: real apt, throwaway state dirs, no root, no network."""
    lines = []
    for origin, pkgs in repos.items():
        repo = tmp_path / f"repo-{origin}"
        repo.mkdir()
        (repo / "Packages").write_text("".join(PKG.format(name=n, version=v) for n, v in pkgs))
        (repo / "Release").write_text(f"Origin: {origin}\nLabel: {origin}\nArchitectures: amd64\n")
        lines.append(f"deb [trusted=yes] file:{repo} ./\n")
    etc, lists, cache = tmp_path / "etc", tmp_path / "lists", tmp_path / "cache"
    for d in (etc / "parts", lists / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True)
    (etc / "sources.list").write_text("".join(lines))
    (etc / "preferences").write_text(preferences)
    opts = []
    for k, v in {"Dir::Etc::sourcelist": etc / "sources.list", "Dir::Etc::sourceparts": etc / "parts",
                 "Dir::Etc::preferences": etc / "preferences", "Dir::Etc::preferencesparts": etc / "parts",
                 "Dir::State::lists": lists, "Dir::Cache": cache, "Dir::State::status": "/dev/null",
                 "Debug::NoLocking": "1", "APT::Architecture": "amd64"}.items():
        opts += ["-o", f"{k}={v}"]
    up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 0, up.stderr
    r = subprocess.run(["apt-cache", *opts, "policy", pkg], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "W: " not in r.stderr, r.stderr
    return r.stdout


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt is not installed (Debian/Ubuntu only)")
def test_origin_pin_keeps_the_os_archives_same_named_packages_out(tmp_path: pathlib.Path) -> None:
    """Ubuntu's archive has libnvidia-compute-570 at a higher version than NVIDIA's repository:
    a version glob alone (the old pin) gives both 1001 and apt takes Ubuntu's; the pin fences
    the OS archive off first, so NVIDIA's wins."""
    repos = {"Ubuntu": [("libnvidia-compute-570", "570.200.01-0ubuntu0.22.04.1")],
             "NVIDIA": [("libnvidia-compute-570", "570.195.03-0ubuntu1"),
                        ("libnvidia-compute-580", "580.95.05-0ubuntu1")]}
    out = _policy(tmp_path, drivers.apt_steps.pin_preferences("570"), repos, "libnvidia-compute-570")
    assert "Candidate: 570.195.03-0ubuntu1" in out, out
    assert re.search(r"570\.200\.01-0ubuntu0\.22\.04\.1 -1\n", out), out


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt is not installed (Debian/Ubuntu only)")
def test_a_version_glob_alone_would_pick_the_os_archive(tmp_path: pathlib.Path) -> None:
    """The defect the origin pin fixes, shown with apt itself (guards the test above)."""
    globs = " ".join(drivers.apt_steps._HOLD_GLOBS)
    old = f"Package: {globs}\nPin: version 570.*\nPin-Priority: 1001\n"
    repos = {"Ubuntu": [("libnvidia-compute-570", "570.200.01-0ubuntu0.22.04.1")],
             "NVIDIA": [("libnvidia-compute-570", "570.195.03-0ubuntu1")]}
    assert "Candidate: 570.200.01-0ubuntu0.22.04.1" in _policy(tmp_path, old, repos, "libnvidia-compute-570")


def _host_with_secure_boot(tmp_path: pathlib.Path, sb: str, available: set[str]) -> tuple[dict[str, str], pathlib.Path]:
    """PATH with mokutil (saying ``sb``), apt-cache (knowing ``available``) and a recording apt-get."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "mokutil").write_text(f"#!/bin/sh\necho {sb!r}\n")
    known = " ".join(f'"{p}"' for p in available) or '"none"'
    (bin_ / "apt-cache").write_text(f'#!/bin/sh\nfor p in {known}; do [ "$2" = "$p" ] && exit 0; done\nexit 100\n')
    (bin_ / "apt-get").write_text(STUB)
    for f in bin_.iterdir():
        f.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    return {"PATH": f"{bin_}:/usr/bin:/bin", "CALLS": str(calls)}, calls


def _bash(script: str, env: dict[str, str], os_id: str = "ubuntu") -> subprocess.CompletedProcess[str]:
    script = script.replace(". /etc/os-release", f"ID={os_id}")
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


SIGNED_580_OPEN = {"linux-modules-nvidia-580-server-open-gcp", "nvidia-headless-no-dkms-580-server-open",
                   "nvidia-utils-580-server"}


def _driver_steps(branch: str) -> dict[str, object]:
    r = make_recipe("nvidia-tesla-t4", driver=f"{{branch: '{branch}', flavor: open}}")
    return {s.id: s for s in drivers.steps(r)}


def test_secure_boot_on_ubuntu_uses_canonicals_signed_modules(tmp_path: pathlib.Path) -> None:
    env, calls = _host_with_secure_boot(tmp_path, "SecureBoot enabled", SIGNED_580_OPEN)
    steps = _driver_steps("580")
    sb = _bash(steps["driver.secureboot"].run, env)
    assert sb.returncode == 0, sb.stderr
    assert "using Canonical's signed prebuilt modules" in sb.stdout
    install = _bash(steps["driver.install"].run, env)
    assert install.returncode == 0, install.stderr
    line = [c for c in calls.read_text().splitlines() if " install " in c][-1]
    assert line.endswith("install linux-modules-nvidia-580-server-open-gcp nvidia-headless-no-dkms-580-server-open "
                         "nvidia-utils-580-server")
    assert "nvidia-open-580" not in calls.read_text()


def test_secure_boot_off_installs_nvidias_driver(tmp_path: pathlib.Path) -> None:
    env, calls = _host_with_secure_boot(tmp_path, "SecureBoot disabled", SIGNED_580_OPEN)
    steps = _driver_steps("580")
    assert _bash(steps["driver.secureboot"].run, env).returncode == 0
    assert _bash(steps["driver.install"].run, env).returncode == 0
    assert calls.read_text().splitlines()[-1].endswith("install nvidia-open-580")


@pytest.mark.parametrize("os_id,branch,available,why", [
    ("ubuntu", "580", SIGNED_580_OPEN - {"linux-modules-nvidia-580-server-open-gcp"},
     "(linux-modules-nvidia-580-server-open-gcp) are not available on this host"),
    ("debian", "580", SIGNED_580_OPEN, "are not available on this host"),
    ("ubuntu", "570", {"linux-modules-nvidia-570-server-open-gcp"}, "only for R580 and newer"),
])
def test_secure_boot_without_a_signed_route_says_both_routes(tmp_path: pathlib.Path, os_id: str, branch: str,
                                                             available: set[str], why: str) -> None:
    env, _ = _host_with_secure_boot(tmp_path, "SecureBoot enabled", available)
    r = _bash(_driver_steps(branch)["driver.secureboot"].run, env, os_id)
    assert r.returncode == 1
    assert "--no-shielded-secure-boot" in r.stderr and "Deep Learning VM image" in r.stderr and why in r.stderr


def test_chroot_tests_run_wherever_the_cached_root_exists(tmp_path: pathlib.Path) -> None:
    cached, missing = tmp_path / "root.tar.gz", tmp_path / "none.tar.gz"
    cached.write_bytes(b"")
    assert chroot_tests_enabled({}, cached) and not chroot_tests_enabled({}, missing)
    assert chroot_tests_enabled({"GPUWIZARD_CHROOT_TESTS": "1"}, missing)
    assert not chroot_tests_enabled({"GPUWIZARD_CHROOT_TESTS": "0"}, cached)
