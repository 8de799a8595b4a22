"""Secure Boot and the NVIDIA driver: the check that runs first, and Ubuntu's signed route.

DKMS-built modules are unsigned, so a Secure Boot kernel refuses them. On Ubuntu,
Canonical signs prebuilt modules for the gcp kernel: when the archive has them for the
branch, the driver step installs those instead (:func:`signed_route` decides on the host,
at run time); otherwise the first step stops and says both routes.
"""

from __future__ import annotations

from gpuwizard.catalog import stack as S
from gpuwizard.drivers.bash import APT, script
from gpuwizard.shell import q
from gpuwizard.steps import Step

SECURE_BOOT_MESSAGE = (
    "Secure Boot is on: the kernel will refuse the NVIDIA module that DKMS builds ('Key was rejected by "
    "service').")
_SB_OFF = ("turn Secure Boot off: stop the VM, run gcloud compute instances update NAME --zone ZONE "
           "--no-shielded-secure-boot, start it and re-run")

_SB_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

_SB_STATE = f"""sb_state() {{  # what mokutil (or the EFI variable) says about Secure Boot
  if command -v mokutil >/dev/null 2>&1; then
    mokutil --sb-state 2>&1 || true
  elif [ -r {_SB_VAR} ]; then
    if [ "$(od -An -t u1 -j 4 -N 1 {_SB_VAR} | tr -d ' ')" = 1 ]; then
      echo 'SecureBoot enabled'
    else
      echo 'SecureBoot disabled'
    fi
  else
    echo 'Secure Boot state unknown (no EFI variables)'
  fi
}}
"""


def signed_module_packages(branch: str, flavor: str) -> list[str]:
    """Ubuntu's Secure Boot route for a branch: Canonical's signed prebuilt module for the gcp
    kernel (from linux-restricted-modules-gcp; docs/facts/realworld-sources.md) and the
    Ubuntu archive's matching DKMS-free driver, the set ``ubuntu-drivers install --gpgpu``
    installs. The ``-server`` builds: their names never collide with NVIDIA's repository."""
    o = "-open" if flavor == "open" else ""
    return [f"linux-modules-nvidia-{branch}-server{o}-gcp", f"nvidia-headless-no-dkms-{branch}-server{o}",
            f"nvidia-utils-{branch}-server"]


def signed_route(branch: S.Branch, flavor: str) -> str:
    """Bash ``signed_route``: prints the Canonical-signed package set when Secure Boot is on,
    the host runs Ubuntu and the archive has every package for the branch; else nothing.
    Only for branches NVIDIA pins with its own package (R580 on): the apt preferences pin of
    older branches fences the Ubuntu archive's driver packages off."""
    if not branch.pin_package:
        return "signed_route() { :; }\n"
    pkgs = " ".join(q(p) for p in signed_module_packages(branch.name, flavor))
    return (_SB_STATE + "signed_route() {\n"
            "  case \"$(sb_state)\" in *'SecureBoot enabled'*) ;; *) return 0 ;; esac\n"
            "  # shellcheck source=/dev/null\n"
            '  [ "$(. /etc/os-release && echo "${ID:-}")" = ubuntu ] || return 0\n'
            f"  local p pkgs=({pkgs})\n"
            '  for p in "${pkgs[@]}"; do apt-cache show "$p" >/dev/null 2>&1 || return 0; done\n'
            '  echo "${pkgs[*]}"\n'
            "}\n")


def secure_boot_message(branch: S.Branch, flavor: str) -> str:
    """What to do when Secure Boot is on and no signed route applies: both routes."""
    if branch.pin_package:
        why = (f"Canonical's signed modules for R{branch.name} ("
               f"{signed_module_packages(branch.name, flavor)[0]}) are not available on this host")
    else:
        why = f"gpuwizard uses Canonical's signed modules only for R580 and newer (R{branch.name} is pinned to NVIDIA's repository)"
    return (f"{SECURE_BOOT_MESSAGE} Two routes: (1) {_SB_OFF}; (2) keep Secure Boot with signed modules: an "
            f"Ubuntu image and a branch Canonical signs (R580 or newer), or a Deep Learning VM image; {why}.")


def secure_boot_step(branch: S.Branch, flavor: str) -> Step:
    run = script(
        APT, signed_route(branch, flavor),
        _SB_STATE if not branch.pin_package else "",
        'state=$(sb_state)',
        'echo "Secure Boot: $state"',
        'case "$state" in',
        "  *'SecureBoot enabled'*)",
        "    # Ubuntu's archive lists may be empty on a fresh image: refresh them before asking",
        "    apt_get update >/dev/null",
        '    route=$(signed_route)',
        '    if [ -n "$route" ]; then',
        "      echo \"using Canonical's signed prebuilt modules (the driver step installs: $route)\"",
        "    else",
        f"      echo {q(secure_boot_message(branch, flavor))} >&2",
        "      exit 1",
        "    fi ;;",
        "esac",
    )
    check = "nvidia-smi -L 2>/dev/null | grep UUID >/dev/null\n"
    return Step(id="driver.secureboot", title="Check Secure Boot (unsigned NVIDIA modules would be refused)",
                run=run, check=check, sudo=True, timeout=300, phase="driver")
