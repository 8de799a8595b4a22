"""Bash fragments shared by the driver steps (they run as root under ``bash -euo pipefail``).

Kept apart from the step builders so each step reads as "fragments + its own lines".
"""

from __future__ import annotations

from gpuwizard.catalog import stack as S
from gpuwizard.shell import q

# Shell fragments shared by the driver steps (they run as root under bash -euo pipefail).
# Never `producer | grep -q`: grep -q exits at the first match, the producer can die of
# SIGPIPE writing the rest, and pipefail turns the match into a failure (`apt-mark showhold |
# grep -qxF` on its first line: 76 of 500 runs exited 141 in a Debian 12 chroot); `grep ...
# >/dev/null` reads all of its input.
# apt_get first finishes a dpkg run that a reboot, a dropped connection or Ctrl-C cut short
# (dpkg leaves files in /var/lib/dpkg/updates; apt then refuses everything with "dpkg was
# interrupted"), waiting out a boot-time unattended-upgrades that holds the lock.
APT = r"""export DEBIAN_FRONTEND=noninteractive
dpkg_heal() {
  local tries=60
  [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || return 0
  echo 'finishing an interrupted dpkg run (dpkg --configure -a)'
  until dpkg --force-confdef --force-confold --configure -a; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 10
  done
}
apt_get() { dpkg_heal; apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -y -q "$@"; }
"""
# "installed" is dpkg's package state, whatever the selection: a held package's ${Status} is
# "hold ok installed" and its ${db:Status-Abbrev} "hi", so matching "install ok installed"
# or "ii" would call every held package missing.
INSTALLED = r"""installed() {  # every named package is installed (held or not)
  local p
  for p in "$@"; do
    # shellcheck disable=SC2016
    dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -x installed >/dev/null || return 1
  done
}
"""
MATCHING = r"""installed_matching() {  # installed packages (held or not) whose names match the globs
  # shellcheck disable=SC2016
  { dpkg-query -W -f='${db:Status-Status} ${Package}\n' "$@" 2>/dev/null || true; } | awk '$1 == "installed" {print $2}'
}
"""
VERSION_OF = r"""version_of() {
  # shellcheck disable=SC2016
  dpkg-query -W -f='${Version}' "$1"
}
"""
NEWEST = r"""newest_version() {  # PACKAGE REGEX -> the newest version in the repositories matching REGEX
  { apt-cache madison "$1" || true; } | awk -F'|' '{gsub(/ /, "", $2); print $2}' | { grep -E "$2" || true; } | sort -uV | tail -n 1
}
"""
KFLAVOR = r"""kflavor=$(uname -r | sed -E 's/^[0-9.]+-[0-9]+-//')  # gcp, cloud-amd64, generic ...
"""
KERNEL_GCC = r"""kernel_gcc() {  # /boot/config-X -> the gcc major that built kernel X
  sed -n 's/^CONFIG_GCC_VERSION=\([0-9]*\)[0-9][0-9][0-9][0-9]$/\1/p' "$1"
}
newest_kernel() {
  find /boot -maxdepth 1 -name 'vmlinuz-*' | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1
}
"""


def distro_block(osinfo: S.OsInfo | None) -> str:
    """Detect the OS (bash), refusing unsupported ones and, when the recipe names an image,
    one that is not what the recipe expects."""
    lines = ["# shellcheck source=/dev/null", ". /etc/os-release", 'case "${ID}-${VERSION_ID}" in']
    for o in S.oses().values():
        lines.append(f"  {o.id}-{o.version_id}) distro={o.repo} ;;")
    supported = ", ".join(o.label for o in S.oses().values())
    lines.append(f"  *) echo {q('gpuwizard installs the NVIDIA stack on ' + supported + '; this host runs')} "
                 '"${PRETTY_NAME:-$ID $VERSION_ID}" >&2; exit 1 ;;')
    lines.append("esac")
    if osinfo is not None:
        lines.append(f'if [ "$distro" != {q(osinfo.repo)} ]; then')
        lines.append(f"  echo {q('the recipe image is ' + osinfo.label + ' but this host runs')} "
                     '"${PRETTY_NAME:-$distro}" >&2')
        lines.append("  exit 1")
        lines.append("fi")
    lines.append('echo "host OS: $distro"')
    return "\n".join(lines) + "\n"


def script(*parts: str) -> str:
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)

