"""gpuwizard's own SSH key for GCE VMs, and the VMs' host keys from guest attributes.

The login key goes into instance metadata ``ssh-keys`` as ``user:key``; the user's own
keys are never uploaded unless the recipe names one (``ssh.identity``). Host keys are
read from the VM's guest attributes (the guest agent publishes them under
``hostkeys/`` when metadata ``enable-guest-attributes`` is TRUE) and pinned in a per-run
known_hosts file, so the first connection is verified instead of trusted blindly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from gpuwizard import locations
from gpuwizard.gcp.errors import GcpError
from gpuwizard.privatefile import write_atomic

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
_lock = threading.Lock()


def default_key_path() -> Path:
    """gpuwizard's own login key for the VMs it creates (made on first use)."""
    return locations.ssh_dir() / "id_ed25519"


def _generate(path: Path) -> None:
    """Create an ed25519 key pair at ``path`` (0600) with ssh-keygen, else with cryptography."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if shutil.which("ssh-keygen"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpuwizard", "-f", str(path)],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    else:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(priv)
        path.with_suffix(".pub").write_bytes(pub + b" gpuwizard\n")
    os.chmod(path, 0o600)


def ensure_identity(identity: str | None = None) -> tuple[str, str]:
    """(private key path, public key line) to log in with; creates gpuwizard's key when needed."""
    if identity:
        priv = Path(os.path.expanduser(identity))
        pub = Path(str(priv) + ".pub")
        if pub.exists():
            return str(priv), pub.read_text(encoding="utf-8").strip()
        if priv.exists() and shutil.which("ssh-keygen"):
            out = subprocess.run(["ssh-keygen", "-y", "-f", str(priv)], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=30)
            if out.returncode == 0:
                return str(priv), out.stdout.strip()
        raise GcpError(f"ssh.identity {identity} has no public key beside it ({pub}): create it with "
                       f"`ssh-keygen -y -f {identity} > {pub}`, or drop ssh.identity to use gpuwizard's own key.")
    priv = default_key_path()
    with _lock:
        if not priv.exists():
            _generate(priv)
    return str(priv), Path(str(priv) + ".pub").read_text(encoding="utf-8").strip()


def parse_host_keys(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(key type, base64) pairs from guest attribute items (namespace hostkeys)."""
    out = []
    for it in items:
        ns, key, value = it.get("namespace", "hostkeys"), it.get("key", ""), (it.get("value") or "").strip()
        if ns != "hostkeys" or not value:
            continue
        parts = value.split()
        if len(parts) >= 2 and parts[0] in KEY_TYPES:  # some agents publish "type base64"
            key, value = parts[0], parts[1]
        if key in KEY_TYPES:
            out.append((key, value))
    return out


def known_hosts_lines(addresses: list[str], port: int, keys: list[tuple[str, str]]) -> list[str]:
    """OpenSSH known_hosts lines for a host reachable at ``addresses``."""
    pats = ",".join(a if port == 22 else f"[{a}]:{port}" for a in addresses if a)
    return [f"{pats} {t} {b}" for t, b in keys]


def replace_known_hosts(path: str, addresses: list[str], port: int, lines: list[str]) -> list[str]:
    """Pin ``lines`` as the only keys of ``addresses``: drop earlier lines that name any of
    them (a restarted VM keeps its internal address but gets a new external one; an old
    external address may now belong to someone else), then append. Returns the dropped lines."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pats = {a if port == 22 else f"[{a}]:{port}" for a in addresses if a}
    with _lock:
        old = p.read_text(encoding="utf-8").splitlines() if p.exists() else []
        keep, dropped = [], []
        for ln in old:
            first = ln.split(None, 1)[0] if ln.strip() and not ln.lstrip().startswith("#") else ""
            (dropped if first and pats & set(first.split(",")) else keep).append(ln)
        out = keep + [ln for ln in lines if ln not in keep]
        write_atomic(p, "".join(ln + "\n" for ln in out))
    return [ln for ln in dropped if ln not in lines]
