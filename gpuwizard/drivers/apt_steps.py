"""The NVIDIA stack as idempotent apt steps on Ubuntu 22.04/24.04 and Debian 12.

Each step has a cheap ``check`` (package state, held marks, file contents) so a re-run
changes nothing, and the branch is pinned so ``apt upgrade`` can never jump to a branch
that drops the GPU.
"""

from __future__ import annotations

import re

from gpuwizard.catalog import stack as S
from gpuwizard.drivers.bash import (APT, INSTALLED, KERNEL_GCC, KFLAVOR, MATCHING, NEWEST, VERSION_OF,
                                    distro_block, script)
from gpuwizard.drivers.choice import default_flavor, is_verify_only, os_of, recipe_image, resolve
from gpuwizard.drivers.secureboot import secure_boot_step, signed_route
from gpuwizard.recipe import Recipe
from gpuwizard.shell import q
from gpuwizard.steps import Step


def _prereqs_step(osinfo: S.OsInfo | None) -> Step:
    run = script(
        APT, KERNEL_GCC, distro_block(osinfo), KFLAVOR,
        "apt_get update",
        'pkgs=(dkms build-essential "linux-headers-$(uname -r)" pciutils ca-certificates curl)',
        "# the kernel and headers meta packages (linux-image-gcp on GCE Ubuntu, -cloud-amd64 on Debian)",
        'if apt-cache show "linux-headers-$kflavor" >/dev/null 2>&1; then',
        '  pkgs+=("linux-image-$kflavor" "linux-headers-$kflavor")',
        "fi",
        'apt_get install "${pkgs[@]}"',
        "# DKMS builds with the compiler that built the kernel (gcc-12 for 22.04's 6.x -gcp kernels)",
        "gccs=()",
        "for cfg in /boot/config-*; do",
        '  v=$(kernel_gcc "$cfg")',
        '  if [ -n "$v" ]; then gccs+=("gcc-$v"); fi',
        "done",
        'if [ "${#gccs[@]}" -gt 0 ]; then apt_get install "${gccs[@]}"; fi',
        "# headers for the kernel the reboot will start (the meta package may have brought a newer one)",
        'apt_get install "linux-headers-$(newest_kernel)"',
        "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' >/etc/modprobe.d/blacklist-nouveau.conf",
        "if command -v update-initramfs >/dev/null 2>&1; then update-initramfs -u; fi",
    )
    check = script(
        INSTALLED, KERNEL_GCC, distro_block(osinfo),
        'installed dkms build-essential "linux-headers-$(uname -r)"',
        'v=$(kernel_gcc "/boot/config-$(uname -r)")',
        'if [ -n "$v" ]; then command -v "gcc-$v" >/dev/null; fi',
        "[ -f /etc/modprobe.d/blacklist-nouveau.conf ]",
        "# running the newest installed kernel (else the reboot is still to come)",
        '[ "$(newest_kernel)" = "$(uname -r)" ]',
    )
    return Step(id="driver.prereqs", title="Kernel headers, the kernel's gcc, DKMS; blacklist nouveau (reboots)",
                run=run, check=check, sudo=True, reboot=True, timeout=1800, retries=1, phase="driver")


def _keyring_sums() -> str:
    """Bash: ``sum`` = the expected SHA-256 of cuda-keyring for the detected ``$distro``
    (catalog data from Google's installer, docs/facts/realworld-sources.md)."""
    lines = ['case "$distro" in']
    for o in S.oses().values():
        sha = S.keyring_sha256(o.repo)
        if sha:
            lines.append(f"  {o.repo}) sum={q(sha)} ;;")
    lines += ["  *) sum='' ;;", "esac"]
    return "\n".join(lines) + "\n"


def _repo_step(osinfo: S.OsInfo | None) -> Step:
    url = S.keyring_url("${distro}")
    packages_uri = S.repo_base("${distro}") + "/Packages"
    no_sum = "gpuwizard has no SHA-256 for cuda-keyring on this OS; add keyring_sha256 to catalog/stack.yaml"
    bad_sum = ("the downloaded cuda-keyring does not match its known SHA-256 (a proxy, a mirror or a changed "
               "package); check the download, then update keyring_sha256 in catalog/stack.yaml if NVIDIA changed it")
    run = script(
        APT, distro_block(osinfo),
        "# the retired apt-key flow (key 7fa2af80) leaves a stale trusted key behind on old images",
        "if command -v apt-key >/dev/null 2>&1 && apt-key list 2>/dev/null | grep '7FA2 AF80' >/dev/null; then",
        "  apt-key del 7fa2af80",
        "fi",
        'tmp=$(mktemp -d)',
        "trap 'rm -rf \"$tmp\"' EXIT",
        _keyring_sums(),
        f'if [ -z "$sum" ]; then echo {q(no_sum)} >&2; exit 1; fi',
        f'curl -fsSL --retry 5 -o "$tmp/cuda-keyring.deb" "{url}"',
        'if ! printf \'%s  %s\\n\' "$sum" "$tmp/cuda-keyring.deb" | sha256sum -c --quiet - >/dev/null 2>&1; then',
        f"  echo {q(bad_sum)} >&2",
        "  exit 1",
        "fi",
        'dpkg -i "$tmp/cuda-keyring.deb"',
        "apt_get update",
    )
    check = script(
        INSTALLED, distro_block(osinfo),
        "installed cuda-keyring",
        '[ -f "/etc/apt/sources.list.d/cuda-${distro}-x86_64.list" ]',
        "# apt-get update has fetched the repository's package list: ask apt, which lists only",
        "# downloaded indexes (the file names under /var/lib/apt/lists escape '_': x86%5f64)",
        "# shellcheck disable=SC2016  # $(URI) is apt's format field",
        f"apt-get indextargets --format '$(URI)' 'Identifier: Packages' | grep -xF \"{packages_uri}\" >/dev/null",
    )
    return Step(id="driver.repo", title="NVIDIA CUDA repository (cuda-keyring, SHA-256 checked; not apt-key)", run=run, check=check,
                sudo=True, timeout=600, retries=2, phase="driver")


# Every package of one driver release, on Ubuntu (libnvidia-compute-580, nvidia-dkms-580-open ...)
# and on Debian 12, whose NVIDIA repository uses Debian's names (nvidia-driver, libcuda1,
# firmware-nvidia-gsp, libgl1-nvidia-glvnd-glx ...) with "=" dependencies between them: one
# left out of the pin keeps the newest branch as apt's candidate and the install fails
# ("libcuda1 (= 580.95.05-1) but 595.58.03-1 is to be installed"). The hold uses the same list.
_HOLD_GLOBS = ["cuda-drivers*", "nvidia-*", "libnvidia-*", "libcuda1", "libcudadebugger*", "libnvcuvid*",
               "libnvoptix*", "libegl-nvidia*", "libgl1-nvidia*", "libgles-nvidia*", "libglx-nvidia*",
               "firmware-nvidia-*", "xserver-xorg-video-nvidia*", "libxnvctrl*"]
_PIN_GLOBS = " ".join(_HOLD_GLOBS)
_PIN_FILE = "/etc/apt/preferences.d/gpuwizard-nvidia-driver"


def pin_preferences(branch: str) -> str:
    """The apt preferences for a branch without NVIDIA's pinning package.

    apt gives a version the priority of the *first* record that matches it (apt_preferences(5)),
    so the OS archives' packages of the same names (Ubuntu's nvidia-driver-570,
    libnvidia-compute-570 ...; Debian's nvidia-driver) are fenced off first; then NVIDIA's
    packages of the branch win over any version; NVIDIA's other branches rank below the default.
    """
    return (f"# Written by gpuwizard: the NVIDIA driver on branch {branch}, from NVIDIA's repository only.\n"
            f"Package: {_PIN_GLOBS}\nPin: release o=Ubuntu\nPin-Priority: -1\n\n"
            f"Package: {_PIN_GLOBS}\nPin: release o=Debian\nPin-Priority: -1\n\n"
            f"Package: {_PIN_GLOBS}\nPin: version {branch}.*\nPin-Priority: 1001\n\n"
            f"Package: {_PIN_GLOBS}\nPin: origin {S.REPO_HOST}\nPin-Priority: 100\n")


def _pin_step(branch: S.Branch) -> Step:
    if branch.pin_package:
        pkg = f"nvidia-driver-pinning-{branch.name}"
        run = script(APT, f"apt_get install {q(pkg)}")
        check = script(INSTALLED, f"installed {q(pkg)}")
        title = f"Pin the driver to R{branch.name} ({pkg}, NVIDIA's pinning package)"
    else:
        content = pin_preferences(branch.name)
        run = script(f"printf '%s' {q(content)} >{_PIN_FILE}.tmp", f"mv {_PIN_FILE}.tmp {_PIN_FILE}")
        check = script(f"printf '%s' {q(content)} | cmp -s - {_PIN_FILE}")
        title = f"Pin the driver to R{branch.name} (apt preferences, NVIDIA's repository only)"
    return Step(id="driver.pin", title=title, run=run, check=check, sudo=True, timeout=600, retries=1, phase="driver")


def _install_step(branch: S.Branch, flavor: str) -> Step:
    pkgs = S.driver_packages(branch, flavor)
    words = " ".join(q(p) for p in pkgs)
    run = script(
        APT, signed_route(branch, flavor),
        "route=$(signed_route)",
        'if [ -n "$route" ]; then',
        "  # Secure Boot on Ubuntu: Canonical's signed module + the archive's DKMS-free driver",
        "  read -r -a signed <<<\"$route\"",
        '  apt_get install "${signed[@]}"',
        "else",
        f"  apt_get install {words}",
        "fi",
    )
    check = script(
        INSTALLED, VERSION_OF, signed_route(branch, flavor),
        "route=$(signed_route)",
        'if [ -n "$route" ]; then',
        "  read -r -a signed <<<\"$route\"",
        '  installed "${signed[@]}"',
        "  pkg=${signed[1]}",
        "else",
        f"  installed {words}",
        f"  pkg={q(pkgs[0])}",
        "fi",
        'v=$(version_of "$pkg")',
        'case "$v" in',
        f"  {branch.name}.*|*:{branch.name}.*) ;;",
        f'  *) echo "$pkg is $v, not branch {branch.name}" >&2; exit 1 ;;',
        "esac",
        "# the module is built (or, signed, installed) for the running kernel",
        'modinfo -k "$(uname -r)" nvidia >/dev/null 2>&1',
    )
    return Step(id="driver.install", title=f"NVIDIA driver R{branch.name} ({flavor} kernel modules; reboots)",
                run=run, check=check, sudo=True, reboot=True, timeout=3600, retries=1, phase="driver")


def _hold_step() -> Step:
    globs = " ".join(q(g) for g in _HOLD_GLOBS)
    collect = script(
        INSTALLED, MATCHING, KFLAVOR,
        f"mapfile -t pkgs < <(installed_matching {globs} 'linux-modules-nvidia-*')",
        'for k in "linux-image-$(uname -r)" "linux-headers-$(uname -r)" "linux-image-$kflavor" "linux-headers-$kflavor"; do',
        '  if installed "$k"; then pkgs+=("$k"); fi',
        "done",
    )
    run = script(collect, 'apt-mark hold "${pkgs[@]}"')
    check = script(
        collect,
        "held=$(apt-mark showhold)",
        'for p in "${pkgs[@]}"; do',
        '  grep -qxF "$p" <<<"$held"',
        "done",
    )
    return Step(id="driver.hold", title="Hold the driver and kernel packages (no surprise upgrades)", run=run,
                check=check, sudo=True, timeout=300, phase="driver")


def _toolkit_step(cuda: str) -> Step:
    pkg = "cuda-toolkit-" + cuda.replace(".", "-")
    run = script(APT, f"apt_get install {q(pkg)}")
    check = script(INSTALLED, f"installed {q(pkg)}", f"[ -x {q('/usr/local/cuda-' + cuda + '/bin/nvcc')} ]")
    return Step(id="cuda.toolkit", title=f"CUDA {cuda} toolkit (toolkit only, no driver)", run=run, check=check,
                sudo=True, timeout=3600, retries=1, phase="driver")


PROFILE_FILE = "/etc/profile.d/gpuwizard-cuda.sh"


def cuda_profile(cuda: str) -> str:
    """The /etc/profile.d snippet: PATH and LD_LIBRARY_PATH for one CUDA toolkit, idempotent."""
    base = f"/usr/local/cuda-{cuda}"
    return (f"# Written by gpuwizard: the CUDA {cuda} toolkit for login shells.\n"
            f'case ":$PATH:" in *":{base}/bin:"*) ;; *) export PATH="{base}/bin:$PATH" ;; esac\n'
            f'case ":${{LD_LIBRARY_PATH:-}}:" in *":{base}/lib64:"*) ;; '
            f'*) export LD_LIBRARY_PATH="{base}/lib64${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ;; esac\n')


def _profile_step(cuda: str) -> Step:
    content = cuda_profile(cuda)
    run = script("# shellcheck disable=SC2016  # the $ are for the login shell, not this one",
                  f"printf '%s' {q(content)} >{PROFILE_FILE}.tmp", f"chmod 0644 {PROFILE_FILE}.tmp",
                  f"mv {PROFILE_FILE}.tmp {PROFILE_FILE}")
    check = script("# shellcheck disable=SC2016  # the $ are for the login shell, not this one",
                    f"printf '%s' {q(content)} | cmp -s - {PROFILE_FILE}")
    return Step(id="cuda.env", title=f"PATH and LD_LIBRARY_PATH for CUDA {cuda} (/etc/profile.d)", run=run,
                check=check, sudo=True, timeout=60, phase="driver")


def _version_regex(prefix: str, cuda_major: str | None) -> str:
    """'9.10' -> '^9\\.10\\.'; with a CUDA major, also require '+cudaN.' (cuDNN 8, TensorRT)."""
    rx = "^" + re.escape(prefix + ".")
    if cuda_major:
        rx += r".*\+cuda" + re.escape(cuda_major + ".")
    return rx


def _pinned_install(kind: str, probe: str, pkgs: list[str] | None, globs: list[str], rx: str,
                    what: str) -> tuple[str, str]:
    """Shell (run, check) that installs ``pkgs`` (or ``probe`` and its direct dependencies)
    at the newest repository version matching ``rx``, pins that exact version in an apt
    preferences file and holds the packages."""
    pin_file = f"/etc/apt/preferences.d/gpuwizard-{kind}"
    glob_words = " ".join(q(g) for g in globs)
    lines = [
        APT, NEWEST, MATCHING,
        f"ver=$(newest_version {q(probe)} {q(rx)})",
        f'if [ -z "$ver" ]; then echo {q("NVIDIA repository has no " + what)} >&2; exit 1; fi',
        f'echo "{what}: $ver"',
        f"printf 'Package: %s\\nPin: version %s\\nPin-Priority: 1001\\n' {q(' '.join(globs))} \"$ver\" >{pin_file}",
    ]
    if pkgs:
        lines.append("pkgs=(" + " ".join(q(p) for p in pkgs) + ")")
    else:
        lines += [
            f"pkgs=({q(probe)})",
            "# every direct dependency at the same version (the meta package alone follows the newest CUDA)",
            f'mapfile -t -O 1 pkgs < <(apt-cache show "{probe}=$ver" | sed -n \'s/^Depends: //p\' | head -n 1 '
            "| tr ',' '\\n' | sed -E 's/^ *([^ (|]+).*/\\1/')",
        ]
    lines += [
        'apt_get install "${pkgs[@]/%/=$ver}"',
        f"mapfile -t held < <(installed_matching {glob_words})",
        'apt-mark hold "${held[@]}"',
    ]
    check = script(
        INSTALLED, VERSION_OF,
        f"installed {q(probe)}",
        f"version_of {q(probe)} | grep -E {q(rx)} >/dev/null",
        f"apt-mark showhold | grep -xF {q(probe)} >/dev/null",
    )
    return script(*lines), check


def _cudnn_step(prefix: str, cuda: str) -> Step:
    major = str(S.vtuple(prefix)[0])
    cmaj = str(S.vtuple(cuda)[0])
    pkgs = S.cudnn_packages(major, cmaj)
    rx = _version_regex(prefix, cmaj if major == "8" else None)
    globs = [f"libcudnn{major}*", f"cudnn{major}*"]
    run, check = _pinned_install("cudnn", pkgs[0], pkgs, globs, rx, f"cuDNN {prefix}.x for CUDA {cmaj}")
    return Step(id="cudnn.install", title=f"cuDNN {prefix} for CUDA {cmaj} (pinned to one version)", run=run,
                check=check, sudo=True, timeout=1800, retries=1, phase="driver")


def _tensorrt_step(prefix: str, cuda: str) -> Step:
    cmaj = str(S.vtuple(cuda)[0])
    trt = S.tensorrt()
    rx = _version_regex(prefix, cmaj)
    run, check = _pinned_install("tensorrt", trt["meta"], None, list(trt["hold_globs"]), rx,
                                 f"TensorRT {prefix}.x for CUDA {cmaj}")
    return Step(id="tensorrt.install", title=f"TensorRT {prefix} for CUDA {cmaj} (every package pinned to one version)",
                run=run, check=check, sudo=True, timeout=1800, retries=1, phase="driver")


def steps(recipe: Recipe) -> list[Step]:
    """The NVIDIA stack steps for ``recipe``: [] without a driver section or when the
    driver is preinstalled (the verify step then checks it)."""
    if recipe.driver is None or is_verify_only(recipe):
        return []
    st = resolve(recipe)
    branch = S.branches().get(st.branch or "")
    if branch is None:
        raise ValueError(f"driver branch {st.branch!r} is not in the catalog; run `gpuwizard validate`")
    _, osinfo = os_of(recipe_image(recipe))
    flavor = st.flavor or default_flavor(branch, None)
    out = [secure_boot_step(branch, flavor), _prereqs_step(osinfo), _repo_step(osinfo), _pin_step(branch),
           _install_step(branch, flavor), _hold_step()]
    if st.cuda:
        out += [_toolkit_step(st.cuda), _profile_step(st.cuda)]
        if st.cudnn:
            out.append(_cudnn_step(st.cudnn, st.cuda))
        if st.tensorrt:
            out.append(_tensorrt_step(st.tensorrt, st.cuda))
    return out


