"""The generated NVIDIA driver/apt steps, run for real inside a throwaway Debian 12 root
against a local stand-in for NVIDIA's CUDA repository.

What is real here: bash, dpkg, apt (resolver, apt preferences, holds, signed-by
keyrings, gpgv, the https method), curl, update-ca-certificates, all from Debian 12
(``debootstrap --variant=minbase bookworm``), and the exact ``run``/``check`` scripts
:func:`gpuwizard.drivers.steps` generates, unmodified, run the way the executor runs
them (``bash --norc --noprofile -euo pipefail -c``, as root).

What is fake:

* NVIDIA's repository. A flat, gpg-signed apt repository of empty packages built with
  ``dpkg-deb --build``, with NVIDIA's Debian 12 names, versions and dependency shapes:
  driver branches 580 (580.82.07-1, 580.95.05-1), 595 (595.58.03-1) and 610
  (610.43.02-1); branch metas with ``>=``-only dependencies (``cuda-drivers-580``:
  ``nvidia-driver (>= 580.65.06)`` ..., as NVIDIA ships it) over Debian-style component
  packages that depend on each other with ``=`` (``nvidia-driver``, ``libcuda1``,
  ``firmware-nvidia-gsp``, ``nvidia-kernel-open-dkms`` ...); ``nvidia-driver-pinning-<branch>``;
  ``cuda-keyring`` 1.1-1 (the signing key and the sources list); CUDA toolkits, cuDNN 9
  and TensorRT 10 in several versions (TensorRT builds for CUDA 12 and 13 of one
  release). It is served over https by a thread of this test on a random 127.x.y.1:443,
  and the chroot's /etc/hosts maps developer.download.nvidia.com to it, with a
  throwaway CA added to the chroot's trust store. gpuwizard's production URL, the
  keyring download and the check on apt's list file names are exercised unchanged: no
  test seam in gpuwizard.
* The kernel. ``uname -r`` is a PATH shim (/usr/local/bin/uname) printing a GCE Debian
  kernel (6.1.0-37-cloud-amd64); ``modinfo -k KVER nvidia`` is a shim
  (/usr/local/sbin/modinfo) that succeeds when /lib/modules/KVER/updates/dkms/nvidia.ko
  exists, which the fake ``nvidia-kernel(-open)-dkms`` packages ship in place of a DKMS
  build. The fake ``nvidia-smi`` package's /usr/bin/nvidia-smi prints one GPU line.
* Skipped: the ``driver.prereqs`` step (kernel headers for the running kernel, DKMS,
  gcc, a reboot: nothing a chroot can do) and every reboot; curl and ca-certificates,
  which that step installs, come with the chroot instead. Debian's own archive is
  switched off in the chroot so the steps only see the fake NVIDIA repository (the
  dummy packages depend on nothing from Debian).

Run it (as root, Linux, with debootstrap, dpkg-dev, gpg and openssl installed)::

    GPUWIZARD_CHROOT_TESTS=1 python -m pytest tests/test_drivers_chroot.py -v

Once the cached root exists, the tests run without the variable (``scripts/test`` runs
them whenever the cache is there; ``GPUWIZARD_CHROOT_TESTS=0`` turns them off).

The first run debootstraps Debian 12 from ``$GPUWIZARD_DEBIAN_MIRROR`` (default
http://deb.debian.org/debian; about a minute) and caches it as a tarball in
``$GPUWIZARD_CHROOT_CACHE`` (default ~/.cache/gpuwizard-tests); later runs only unpack
it and need no network. Each scenario unpacks a fresh root under /tmp and deletes it
afterwards (the tarball stays). Nothing is mounted on the host: every command runs
under ``unshare --mount --pid --fork --mount-proc`` + ``chroot``, so its /proc (bash's
process substitution needs /dev/fd) lives and dies with that private namespace; and
debootstrap's own /proc and /sys mounts are checked for and unmounted should it die
half way. Without
``GPUWIZARD_CHROOT_TESTS=1``, or without root, the tools or (for the first run) the
network, the tests skip.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pathlib
import random
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest

from gpuwizard import drivers
from gpuwizard.catalog import stack as S
from gpuwizard.steps import Step
from tests.builders.drivers import chroot_tests_enabled, make_recipe

MIRROR = os.environ.get("GPUWIZARD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = pathlib.Path(os.environ.get("GPUWIZARD_CHROOT_CACHE") or pathlib.Path.home() / ".cache" / "gpuwizard-tests")
INCLUDE = "curl,ca-certificates"   # what driver.prereqs would have installed and driver.repo needs
TARBALL = CACHE / f"debian12-bookworm-minbase-{INCLUDE.replace(',', '-')}.tar.gz"


ENABLED = chroot_tests_enabled(os.environ, TARBALL)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ENABLED, reason="set GPUWIZARD_CHROOT_TESTS=1 (or cache the Debian 12 root) to run "
                                           "the Debian 12 chroot tests"),
]
NVIDIA_HOST = "developer.download.nvidia.com"
REPO_PATH = "compute/cuda/repos/debian12/x86_64"
KVER = "6.1.0-37-cloud-amd64"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ["debootstrap", "chroot", "unshare", "dpkg-deb", "dpkg-scanpackages", "gpg", "openssl", "tar", "umount"]


# ---------------------------------------------------------------------------- the fake repository

@dataclass
class Pkg:
    name: str
    version: str
    depends: list[str] = field(default_factory=list)
    arch: str = "amd64"
    extra: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)   # path -> (content, mode)


DRIVER_VERSIONS = {"570": ["570.172.08-1", "570.195.03-1"], "580": ["580.82.07-1", "580.95.05-1"],
                   "595": ["595.58.03-1"], "610": ["610.43.02-1"]}
BRANCH_FLOOR = {"570": "570.86.10", "580": "580.65.06", "595": "595.45.04", "610": "610.43.02"}
PINNING_FROM = 580   # NVIDIA ships nvidia-driver-pinning-<branch> from R580 on
# Debian-style component packages NVIDIA's debian12 repository ships for every driver version.
DRIVER_COMPONENTS = {
    "nvidia-driver": ["nvidia-driver-libs (= {v})", "nvidia-kernel-dkms (= {v}) | nvidia-kernel-open-dkms (= {v})",
                      "firmware-nvidia-gsp (= {v})", "nvidia-alternative (= {v})", "xserver-xorg-video-nvidia (= {v})"],
    "nvidia-driver-libs": ["libgl1-nvidia-glvnd-glx (= {v})", "libegl-nvidia0 (= {v})", "libglx-nvidia0 (= {v})",
                           "libnvidia-eglcore (= {v})"],
    "nvidia-driver-cuda": ["libcuda1 (= {v})", "nvidia-smi (= {v})", "libnvidia-ml1 (= {v})",
                           "nvidia-persistenced (= {v})"],
    "nvidia-kernel-dkms": ["nvidia-kernel-support (= {v})"],
    "nvidia-kernel-open-dkms": ["nvidia-kernel-support (= {v})"],
    "nvidia-kernel-support": ["nvidia-modprobe (= {v})"],
    "nvidia-smi": ["libnvidia-ml1 (= {v})"],
    "libcuda1": ["nvidia-alternative (= {v})"],
    **{n: [] for n in ["firmware-nvidia-gsp", "nvidia-alternative", "xserver-xorg-video-nvidia", "libgl1-nvidia-glvnd-glx",
                       "libegl-nvidia0", "libglx-nvidia0", "libnvidia-eglcore", "libnvidia-ml1", "nvidia-persistenced",
                       "nvidia-modprobe", "nvidia-settings", "nvidia-xconfig"]},
}
# Branch metas: dependencies are ">=" only, exactly the shape that lets them drift to a newer branch.
OPEN_DEPS = ["nvidia-kernel-open-dkms (>= {f})", "nvidia-driver (>= {f})", "nvidia-driver-cuda (>= {f})"]
PROPRIETARY_DEPS = ["nvidia-driver (>= {f})", "nvidia-driver-cuda (>= {f})", "nvidia-kernel-dkms (>= {f})",
                    "nvidia-settings (>= {f})", "nvidia-xconfig (>= {f})"]
# What NVIDIA's pinning packages pin (they own the package list, so it is complete).
PINNING_GLOBS = ("nvidia-* libnvidia-* libcuda1 libcudadebugger* libnvcuvid* libnvoptix* libegl-nvidia* "
                 "libgl1-nvidia* libgles-nvidia* libglx-nvidia* firmware-nvidia-* xserver-xorg-video-nvidia* "
                 "libxnvctrl* cuda-drivers*")
TOOLKITS = {"12.8": ["12.8.0-1", "12.8.1-1"], "12.9": ["12.9.1-1"], "13.0": ["13.0.2-1"], "13.2": ["13.2.1-1"]}
CUDNN = ["9.10.2.21-1", "9.14.0.64-1"]
TRT = ["10.4.0.26-1+cuda12.6", "10.13.3.9-1+cuda12.9", "10.13.3.9-1+cuda13.0"]
TRT_LIBS = {"libnvinfer10": [], "libnvinfer-plugin10": ["libnvinfer10"], "libnvinfer-lean10": [],
            "libnvinfer-dispatch10": [], "libnvonnxparsers10": ["libnvinfer10"], "libnvinfer-headers-dev": [],
            "libnvinfer-dev": ["libnvinfer10", "libnvinfer-headers-dev"], "libnvinfer-bin": ["libnvinfer10"],
            "python3-libnvinfer": ["libnvinfer10", "libnvinfer-plugin10"]}

NVIDIA_SMI = "#!/bin/sh\necho 'GPU 0: Tesla T4 (UUID: GPU-00000000-0000-0000-0000-000000000000)'\n"
NVCC = "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver (gpuwizard test double)'\n"


def driver_names() -> set[str]:
    names = set(DRIVER_COMPONENTS) | {"nvidia-open", "cuda-drivers"}
    for br in DRIVER_VERSIONS:
        if int(br) >= PINNING_FROM:
            names.add(f"nvidia-driver-pinning-{br}")
        if int(br) <= 580:
            names |= {f"nvidia-open-{br}", f"cuda-drivers-{br}"}
    return names


def trt_names() -> set[str]:
    return set(TRT_LIBS) | {"tensorrt"}


def repo_packages(keyring: bytes) -> list[Pkg]:
    pkgs = [Pkg("cuda-keyring", "1.1-1", arch="all", files={
        "/usr/share/keyrings/cuda-archive-keyring.gpg": (keyring.decode("latin-1"), 0o644),
        "/etc/apt/sources.list.d/cuda-debian12-x86_64.list": (
            f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] https://{NVIDIA_HOST}/{REPO_PATH}/ /\n", 0o644),
    })]
    for br, versions in DRIVER_VERSIONS.items():
        f = BRANCH_FLOOR[br]
        for v in versions:
            up = v.rsplit("-", 1)[0]
            for name, deps in DRIVER_COMPONENTS.items():
                p = Pkg(name, v, [d.format(v=v) for d in deps])
                if name in ("nvidia-kernel-dkms", "nvidia-kernel-open-dkms"):
                    other = "nvidia-kernel-open-dkms" if name == "nvidia-kernel-dkms" else "nvidia-kernel-dkms"
                    p.extra["Conflicts"] = other
                    p.files[f"/lib/modules/{KVER}/updates/dkms/nvidia.ko"] = ("", 0o644)
                if name == "nvidia-smi":
                    p.files["/usr/bin/nvidia-smi"] = (NVIDIA_SMI, 0o755)
                pkgs.append(p)
            pkgs.append(Pkg("nvidia-open", v, [d.format(f=up) for d in OPEN_DEPS], arch="all"))
            pkgs.append(Pkg("cuda-drivers", v, [d.format(f=up) for d in PROPRIETARY_DEPS]))
            if int(br) <= 580:
                pkgs.append(Pkg(f"nvidia-open-{br}", v, [d.format(f=f) for d in OPEN_DEPS], arch="all"))
                pkgs.append(Pkg(f"cuda-drivers-{br}", v, [d.format(f=f) for d in PROPRIETARY_DEPS]))
            if int(br) < PINNING_FROM:
                continue
            pkgs.append(Pkg(f"nvidia-driver-pinning-{br}", v, arch="all",
                            extra={"Provides": "nvidia-driver-pinning", "Conflicts": "nvidia-driver-pinning"},
                            files={f"/etc/apt/preferences.d/nvidia-driver-pinning-{br}": (
                                f"Package: {PINNING_GLOBS}\nPin: version {br}.*\nPin-Priority: 1000\n", 0o644)}))
    for cuda, versions in TOOLKITS.items():
        d = cuda.replace(".", "-")
        for v in versions:
            pkgs.append(Pkg(f"cuda-toolkit-{d}", v, [f"cuda-nvcc-{d} (>= {cuda})", f"cuda-cudart-{d} (>= {cuda})"]))
        pkgs.append(Pkg(f"cuda-nvcc-{d}", f"{cuda}.93-1", files={f"/usr/local/cuda-{cuda}/bin/nvcc": (NVCC, 0o755)}))
        pkgs.append(Pkg(f"cuda-cudart-{d}", f"{cuda}.90-1"))
    for cmaj in ("12", "13"):
        for v in CUDNN:
            lib, hdr, dev = f"libcudnn9-cuda-{cmaj}", f"libcudnn9-headers-cuda-{cmaj}", f"libcudnn9-dev-cuda-{cmaj}"
            pkgs += [Pkg(lib, v), Pkg(hdr, v), Pkg(dev, v, [f"{lib} (= {v})", f"{hdr} (= {v})"]),
                     Pkg(f"cudnn9-cuda-{cmaj}", v, [f"{lib} (= {v})", f"{dev} (= {v})"])]
    for v in TRT:
        for name, deps in TRT_LIBS.items():
            pkgs.append(Pkg(name, v, [f"{d} (= {v})" for d in deps]))
        pkgs.append(Pkg("tensorrt", v, [f"{n} (= {v})" for n in TRT_LIBS]))
    return pkgs


def _build_deb(pkg: Pkg, out: pathlib.Path, work: pathlib.Path) -> None:
    root = work / f"{pkg.name}_{pkg.version}"
    (root / "DEBIAN").mkdir(parents=True)
    fields = {"Package": pkg.name, "Version": pkg.version, "Architecture": pkg.arch,
              "Maintainer": "gpuwizard tests <tests@invalid>", "Section": "multiverse/devel", "Priority": "optional"}
    if pkg.depends:
        fields["Depends"] = ", ".join(pkg.depends)
    fields.update(pkg.extra)
    fields["Description"] = f"{pkg.name} (empty gpuwizard test double of NVIDIA's package)"
    (root / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    for path, (content, mode) in pkg.files.items():
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content.encode("latin-1"))
        f.chmod(mode)
    name = f"{pkg.name}_{pkg.version.replace(':', '%3a')}_{pkg.arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(out / name)],
                   check=True, capture_output=True)


def build_repo(base: pathlib.Path) -> pathlib.Path:
    """The flat, signed repository under base/srv/<REPO_PATH>; returns the repository dir."""
    repo = base / "srv" / REPO_PATH
    repo.mkdir(parents=True)
    gnupg = base / "gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run(gpg + ["--quick-gen-key", "gpuwizard test CUDA repository <tests@invalid>", "ed25519", "sign",
                              "1d"], check=True, capture_output=True)
        keyring = subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout
        work = base / "debs"
        with ThreadPoolExecutor(max_workers=4) as ex:
            list(ex.map(lambda p: _build_deb(p, repo, work), repo_packages(keyring)))
        shutil.rmtree(work)
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo, check=True,
                                  capture_output=True).stdout
        (repo / "Packages").write_bytes(packages)
        (repo / "Packages.gz").write_bytes(gzip.compress(packages))
        release = ["Origin: NVIDIA (gpuwizard test double)", "Label: NVIDIA CUDA", "Architectures: amd64",
                   f"Date: {formatdate(time.time() - 3600, usegmt=True)}"]
        for title, algo in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
            release.append(f"{title}:")
            for fn in ("Packages", "Packages.gz"):
                data = (repo / fn).read_bytes()
                release.append(f" {algo(data).hexdigest()} {len(data)} {fn}")
        (repo / "Release").write_text("\n".join(release) + "\n")
        subprocess.run(gpg + ["--digest-algo", "SHA256", "--clearsign", "-o", str(repo / "InRelease"),
                              str(repo / "Release")], check=True, capture_output=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], capture_output=True, check=False)
    return repo


def make_tls(base: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """A throwaway CA and a server certificate for NVIDIA_HOST; returns (ca.crt, srv.crt, srv.key)."""
    d = base / "tls"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj",
                    "/CN=gpuwizard test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=d, check=True, capture_output=True)
    subprocess.run(["openssl", "req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", f"/CN={NVIDIA_HOST}"],
                   cwd=d, check=True, capture_output=True)
    (d / "ext.cnf").write_text(f"subjectAltName=DNS:{NVIDIA_HOST}\nextendedKeyUsage=serverAuth\n"
                               "basicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext.cnf"],
                   cwd=d, check=True, capture_output=True)
    return d / "ca.crt", d / "srv.crt", d / "srv.key"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(self.path)


@dataclass
class FakeNvidia:
    addr: str
    ca: pathlib.Path
    requests: list[str]
    keyring_sha256: str


@pytest.fixture(scope="module")
def fake_nvidia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNvidia]:
    _require_host()
    base = tmp_path_factory.mktemp("fake-nvidia")
    repo = build_repo(base)
    keyring_sha = hashlib.sha256((repo / "cuda-keyring_1.1-1_all.deb").read_bytes()).hexdigest()
    ca, crt, key = make_tls(base)
    requests: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requests": requests}), directory=str(base / "srv"))
    httpd = None
    for _ in range(20):
        addr = f"127.{random.randint(16, 250)}.{random.randint(1, 250)}.1"
        try:
            httpd = http.server.ThreadingHTTPServer((addr, 443), handler)
            break
        except OSError:
            continue
    if httpd is None:
        pytest.skip("cannot listen on a loopback address at port 443")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield FakeNvidia(addr, ca, requests, keyring_sha)
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------------- the Debian 12 root

def _require_host() -> None:
    if not ENABLED:
        pytest.skip("set GPUWIZARD_CHROOT_TESTS=1")
    if os.uname().sysname != "Linux" or os.geteuid() != 0:
        pytest.skip("the chroot tests need root on Linux")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"the chroot tests need {', '.join(missing)}")


def _mounts_under(path: pathlib.Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _unmount_under(path: pathlib.Path) -> None:
    for p in _mounts_under(path):
        if subprocess.run(["umount", p], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", p], capture_output=True, check=False)


def _remove_root(path: pathlib.Path) -> None:
    _unmount_under(path)
    assert not _mounts_under(path), f"still mounted under {path}: {_mounts_under(path)}"
    shutil.rmtree(path, ignore_errors=True)


def _network_ok() -> bool:
    host = re.sub(r"^\w+://([^/:]+).*", r"\1", MIRROR)
    try:
        socket.create_connection((host, 443 if MIRROR.startswith("https") else 80), timeout=5).close()
        return True
    except OSError:
        return False


def debian_tarball() -> pathlib.Path:
    """The cached minbase Debian 12 root, debootstrapped on first use."""
    if TARBALL.exists():
        return TARBALL
    if not _network_ok():
        pytest.skip(f"no cached Debian 12 root ({TARBALL}) and {MIRROR} is unreachable")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gpuwizard-debootstrap-", dir="/tmp"))
    root = tmp / "root"
    try:
        r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(root), MIRROR],
                           capture_output=True, text=True, timeout=1200, check=False)
        if r.returncode != 0:
            pytest.skip(f"debootstrap failed: {(r.stdout + r.stderr)[-1500:]}")
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / d).glob("*"):
                if f.is_file():
                    f.unlink()
        part = TARBALL.with_suffix(f".part{os.getpid()}")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-czf", str(part), "."], check=True)
        os.replace(part, TARBALL)
    finally:
        _remove_root(tmp)
    return TARBALL


UNAME_SHIM = f"""#!/bin/sh
# gpuwizard chroot test shim: the GCE VM's kernel, not the build host's
if [ "$#" -eq 1 ] && [ "$1" = -r ]; then echo {KVER}; exit 0; fi
exec /usr/bin/uname "$@"
"""
MODINFO_SHIM = """#!/bin/sh
# gpuwizard chroot test shim: a module "exists" when the fake DKMS package shipped it
k=$(/usr/local/bin/uname -r)
if [ "$1" = -k ]; then k=$2; shift 2; fi
[ -e "/lib/modules/$k/updates/dkms/$1.ko" ] && exit 0
echo "modinfo: ERROR: Module $1 not found." >&2
exit 1
"""


@pytest.fixture
def debian12(fake_nvidia: FakeNvidia) -> Iterator[pathlib.Path]:
    """A fresh Debian 12 root under /tmp that sees only the fake NVIDIA repository."""
    tarball = debian_tarball()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gpuwizard-chroot-", dir="/tmp"))
    root = tmp / "root"
    root.mkdir()
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xzf", str(tarball)], check=True)
        (root / "etc/apt/sources.list").write_text("# Debian's archive is off: the test sees only the fake NVIDIA repo\n")
        with open(root / "etc/hosts", "a") as f:
            f.write(f"{fake_nvidia.addr} {NVIDIA_HOST}\n")
        shutil.copy(fake_nvidia.ca, root / "usr/local/share/ca-certificates/gpuwizard-test-ca.crt")
        for path, text in (("usr/local/bin/uname", UNAME_SHIM), ("usr/local/sbin/modinfo", MODINFO_SHIM)):
            (root / path).write_text(text)
            (root / path).chmod(0o755)
        r = in_root(root, "update-ca-certificates >/dev/null")
        assert r.returncode == 0, r.stderr
        yield root
    finally:
        _remove_root(tmp)


def in_root(root: pathlib.Path, script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Runs a script in the root the way the executor runs steps (bash -euo pipefail, as root).

    In private mount and PID namespaces with their own /proc (bash's ``< <(...)`` needs
    /dev/fd, a link into /proc): that mount exists only inside the namespace and ends with
    the command, so the host never sees it."""
    return subprocess.run(["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc",
                           "chroot", str(root), "/usr/bin/env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
                           "bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", script],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def installed(root: pathlib.Path) -> dict[str, str]:
    r = in_root(root, "dpkg-query -W -f='${db:Status-Status} ${Package} ${Version}\\n'")
    assert r.returncode == 0, r.stderr
    return {p: v for s, p, v in (line.split() for line in r.stdout.splitlines()) if s == "installed"}


def showhold(root: pathlib.Path) -> set[str]:
    return set(in_root(root, "apt-mark showhold").stdout.split())


def candidate(root: pathlib.Path, pkg: str) -> str:
    out = in_root(root, f"apt-cache policy {pkg}").stdout
    m = re.search(r"Candidate: (\S+)", out)
    assert m, out
    return m.group(1)


# ---------------------------------------------------------------------------- scenarios

@dataclass(frozen=True)
class Scenario:
    id: str
    gpu: str
    driver: str
    branch: str
    driver_version: str   # what every driver package must end up at
    newest: str           # the newest driver version in the repository (what no pin would give)
    meta: str             # the package driver.install installs
    unsuffixed: str       # the flavor's branch-less meta (what a user might `apt install` later)
    cuda: str
    toolkit_version: str
    cudnn: str
    cudnn_cuda: str
    tensorrt: str


SCENARIOS = [
    Scenario("t4-580-open", "nvidia-tesla-t4", "{branch: '580', flavor: open, cuda: '12.8', cudnn: '9', tensorrt: true}",
             "580", "580.95.05-1", "610.43.02-1", "nvidia-open-580", "nvidia-open", "12.8", "12.8.1-1", "9.14.0.64-1", "12",
             "10.13.3.9-1+cuda12.9"),
    Scenario("v100-580-proprietary", "nvidia-tesla-v100", "{branch: '580', cuda: '12.9', cudnn: '9', tensorrt: true}",
             "580", "580.95.05-1", "610.43.02-1", "cuda-drivers-580", "cuda-drivers", "12.9", "12.9.1-1", "9.10.2.21-1", "12",
             "10.4.0.26-1+cuda12.6"),
    # R570 has no nvidia-driver-pinning package: the origin-restricted apt preferences pin it
    Scenario("t4-570-origin-pin", "nvidia-tesla-t4", "{branch: '570', cuda: '12.8', cudnn: '9', tensorrt: true}",
             "570", "570.195.03-1", "610.43.02-1", "nvidia-open-570", "nvidia-open", "12.8", "12.8.1-1", "9.14.0.64-1",
             "12", "10.13.3.9-1+cuda12.9"),
]
# R595 (production) is refused on Debian 12 (drivers.check), so no scenario installs it here.

SKIPPED = {"driver.prereqs"}        # kernel headers, DKMS, gcc and a reboot: not possible in a chroot
NOT_DONE_BY_RUN = {"driver.secureboot"}  # its check is "the driver already works", true only after install


def _fmt(step: Step, kind: str, r: subprocess.CompletedProcess[str]) -> str:
    return f"{step.id} {kind} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_steps_in_debian12_chroot(sc: Scenario, debian12: pathlib.Path, fake_nvidia: FakeNvidia,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = debian12
    # the fake repository's cuda-keyring is not NVIDIA's: the catalog's checksum for it is
    # the one thing the test supplies (the step's download-and-verify code runs unchanged)
    monkeypatch.setattr(S, "keyring_sha256", lambda repo: fake_nvidia.keyring_sha256)
    recipe = make_recipe(sc.gpu, "debian-12", driver=sc.driver)
    assert [p for p in drivers.check(recipe) if not p.warning] == []
    steps = [s for s in drivers.steps(recipe) if s.id not in SKIPPED]
    assert [s.id for s in steps] == ["driver.secureboot", "driver.repo", "driver.pin", "driver.install", "driver.hold",
                                     "cuda.toolkit", "cuda.env", "cudnn.install", "tensorrt.install"]
    outputs: dict[str, str] = {}

    # first pass: every check is false before its run and true after it
    for s in steps:
        assert s.check is not None
        before = in_root(root, s.check)
        assert before.returncode != 0, f"{s.id}: check passed before its run\n{_fmt(s, 'check', before)}"
        if s.id == "driver.pin":
            # the repository offers a newer branch, which is what apt would take without the pin
            assert candidate(root, "nvidia-driver") == sc.newest
            assert candidate(root, sc.unsuffixed) == sc.newest
        r = in_root(root, s.run, timeout=s.timeout)
        assert r.returncode == 0, _fmt(s, "run", r)
        outputs[s.id] = r.stdout + r.stderr
        if s.id not in NOT_DONE_BY_RUN:
            after = in_root(root, s.check)
            assert after.returncode == 0, f"{s.id}: check fails right after its run\n{_fmt(s, 'check', after)}"

    pin = [s for s in steps if s.id == "driver.pin"][0]
    if int(sc.branch) >= PINNING_FROM:
        assert f"nvidia-driver-pinning-{sc.branch}" in installed(root)
    else:
        prefs = in_root(root, "cat /etc/apt/preferences.d/gpuwizard-nvidia-driver").stdout
        assert "Pin: origin developer.download.nvidia.com" in prefs and "Pin: release o=Debian" in prefs
        assert "nvidia-driver-pinning" not in pin.run
    # the repository step fetched the keyring over https from the (fake) NVIDIA host
    assert any(p.endswith("/cuda-keyring_1.1-1_all.deb") for p in fake_nvidia.requests)
    assert any(p.endswith(f"/{REPO_PATH}/InRelease") for p in fake_nvidia.requests)

    state = installed(root)
    # the requested branch, newest version in it, for every driver package that got installed
    drv = {p: v for p, v in state.items() if p in driver_names()}
    assert sc.meta in drv and "nvidia-driver" in drv and "libcuda1" in drv and "firmware-nvidia-gsp" in drv
    assert {p: v for p, v in drv.items() if v != sc.driver_version} == {}
    # ... and nothing apt would do next moves off it
    for cmd in ("apt-get -s upgrade", "apt-get -s dist-upgrade", f"apt-get -s install {sc.unsuffixed}",
                f"apt-get -s install {sc.meta}"):
        r = in_root(root, cmd)
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
        moves = [line for line in r.stdout.splitlines() if line.startswith(("Inst ", "Remv "))
                 and sc.driver_version not in line]
        assert moves == [], f"{cmd} would change the driver:\n{r.stdout}"
    assert candidate(root, "nvidia-driver") == sc.driver_version

    # holds: what the hold step says it held, plus the cuDNN and TensorRT packages, and every driver package
    said = set(re.findall(r"^(\S+) set on hold\.$", outputs["driver.hold"], re.MULTILINE))
    held = showhold(root)
    assert said and said <= held
    assert set(drv) <= said, f"driver packages the hold step missed: {sorted(set(drv) - said)}"
    cudnn_pkgs = {p for p in state if p.startswith(("libcudnn9", "cudnn9"))}
    trt_pkgs = {p for p in state if p in trt_names()}
    assert held == said | cudnn_pkgs | trt_pkgs

    # toolkit, cuDNN and TensorRT: exactly the pinned versions
    d = sc.cuda.replace(".", "-")
    assert state[f"cuda-toolkit-{d}"] == sc.toolkit_version
    assert {p for p in state if p.startswith("cuda-toolkit-")} == {f"cuda-toolkit-{d}"}
    assert {p: state[p] for p in cudnn_pkgs} == {f"libcudnn9-{k}cuda-{sc.cudnn_cuda}": sc.cudnn
                                                 for k in ("", "dev-", "headers-")}
    assert {p: state[p] for p in trt_pkgs} == {p: sc.tensorrt for p in trt_names()}
    assert in_root(root, "cat /etc/apt/preferences.d/gpuwizard-tensorrt").stdout.endswith(
        f"Pin: version {sc.tensorrt}\nPin-Priority: 1001\n")
    r = in_root(root, ". /etc/profile.d/gpuwizard-cuda.sh && command -v nvcc")
    assert r.stdout.strip() == f"/usr/local/cuda-{sc.cuda}/bin/nvcc", r.stderr

    # second pass: everything is done, so every check passes and the executor would skip every step
    for s in steps:
        r = in_root(root, s.check)
        assert r.returncode == 0, f"second pass: {_fmt(s, 'check', r)}"

    # a retry re-runs a step whose check failed: every run is safe to repeat and changes nothing
    for s in steps:
        r = in_root(root, s.run, timeout=s.timeout)
        assert r.returncode == 0, f"re-run: {_fmt(s, 'run', r)}"
    assert installed(root) == state
    assert showhold(root) == held
    for s in steps:
        r = in_root(root, s.check)
        assert r.returncode == 0, f"after re-run: {_fmt(s, 'check', r)}"

    # a dpkg run cut short (reboot, dropped connection, Ctrl-C) leaves its journal behind and apt
    # refuses everything ("dpkg was interrupted"): the next apt step finishes it first
    in_root(root, "printf '' > /var/lib/dpkg/updates/0000")
    r = in_root(root, "apt-get -y install --reinstall cuda-keyring")
    assert r.returncode != 0 and "dpkg was interrupted" in r.stdout + r.stderr
    toolkit = [s for s in steps if s.id == "cuda.toolkit"][0]
    r = in_root(root, toolkit.run, timeout=toolkit.timeout)
    assert r.returncode == 0, f"after an interrupted dpkg: {_fmt(toolkit, 'run', r)}"
    assert "finishing an interrupted dpkg run" in r.stdout
    assert in_root(root, "ls -A /var/lib/dpkg/updates").stdout.strip() == ""
