"""The fan-out's key files, made locally once per run: the key pair (0600, kept for a resumed
run) and the head's host key as the workers will check it - the key gpuwizard itself trusts
for the head (hashed known_hosts entries too), named by the head's private address."""

from __future__ import annotations

import pathlib
import subprocess

from gpuwizard import datasets_fanout as fanout
from gpuwizard.ssh import HostSpec


def host_key(tmp: pathlib.Path, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    return " ".join((tmp / f"{name}.pub").read_text().split()[:2])


def test_pin_names_the_private_address_and_comes_from_what_gpuwizard_trusts(tmp_path: pathlib.Path) -> None:
    head_key, other_key = host_key(tmp_path, "head"), host_key(tmp_path, "other")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"203.0.113.5 {head_key}\n203.0.113.6 {other_key}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, capture_output=True)  # hashed, as Ubuntu's
    assert "203.0.113.5" not in kh.read_text()
    head = HostSpec(name="vm-0", address="203.0.113.5", port=22, known_hosts=str(kh), private_address="10.128.0.2")
    files = fanout.prepare_files(str(tmp_path / "run"), "run-7", head)
    assert pathlib.Path(files.pin).read_text() == f"10.128.0.2 {head_key}\n"
    key = pathlib.Path(files.private)
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert pathlib.Path(files.public).read_text().split()[2] == "gpuwizard-fanout-run-7"
    # the key is made once per run: a resumed run keeps it
    before = key.read_bytes()
    fanout.prepare_files(str(tmp_path / "run"), "run-7", head)
    assert key.read_bytes() == before
    # a head on another port is pinned as [address]:port (asyncssh, which verified it, also
    # accepts a port-less entry then, as OpenSSH's ssh does not: the pin carries the port)
    odd = HostSpec(name="h", address="203.0.113.5", port=2222, known_hosts=str(kh))
    assert pathlib.Path(fanout.prepare_files(str(tmp_path / "r2"), "r", odd).pin).read_text() == \
        f"[203.0.113.5]:2222 {head_key}\n"
    # a head gpuwizard has no key for pins nothing (the workers' step then says what to do)
    unknown = HostSpec(name="u", address="198.51.100.9", known_hosts=str(kh))
    assert pathlib.Path(fanout.prepare_files(str(tmp_path / "r3"), "r", unknown).pin).read_text() == ""
