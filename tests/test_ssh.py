"""gpuwizard.ssh: host strings, host key verification and waiting for a booting host."""

from __future__ import annotations

import asyncio
import time

import pytest

from gpuwizard.ssh import Attempt, AuthError, HostKeyError, HostSpec, SshError, connect, parse_host

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("text,expect", [
    ("1.2.3.4", ("1.2.3.4", None, None)),
    ("ubuntu@1.2.3.4", ("1.2.3.4", None, "ubuntu")),
    ("gw@127.0.0.1:2301", ("127.0.0.1", 2301, "gw")),
    ("[::1]:2222", ("::1", 2222, None)),
    ("host.example.org", ("host.example.org", None, None)),
])
def test_parse_host(text, expect):
    h = parse_host(text)
    assert (h.address, h.port, h.user) == expect
    assert h.name == text


def test_parse_host_defaults_and_errors():
    h = parse_host("1.2.3.4", user="ubuntu", port=2200)
    assert (h.user, h.port, h.key_host) == ("ubuntu", 2200, "[1.2.3.4]:2200")
    assert parse_host("me@1.2.3.4:22", user="ubuntu").user == "me"
    assert parse_host("1.2.3.4").key_host == "1.2.3.4"
    for bad in ("", "a b", "u@h:99999", "h:port", "u@@h"):
        with pytest.raises(ValueError):
            parse_host(bad)


def _spec(h, **kw) -> HostSpec:
    base = dict(name="t", address=h.address, port=h.port, user=h.user, identity=h.client_key,
                known_hosts=h.known_hosts)
    base.update(kw)
    return HostSpec(**base)


async def _run(spec: HostSpec, cmd: str = "echo ok", **kw) -> str:
    conn = await connect(spec, deadline=time.monotonic() + kw.pop("timeout", 10), **kw)
    try:
        return (await conn.run(cmd)).stdout
    finally:
        conn.close()


def test_connects_and_verifies(sshd_host):
    assert asyncio.run(_run(_spec(sshd_host))) == "ok\n"


def test_changed_key_refused_with_advice(sshd_factory, tmp_path):
    a, b = sshd_factory.start(2)
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{a.port} " + b.host_key_line.split(" ", 1)[1] + "\n")
    with pytest.raises(HostKeyError) as err:
        asyncio.run(_run(_spec(a, known_hosts=str(kh))))
    assert "does not match" in str(err.value) and f"ssh-keygen -R '[127.0.0.1]:{a.port}'" in str(err.value)
    # accept_new never overrides a changed key
    with pytest.raises(HostKeyError):
        asyncio.run(_run(_spec(a, known_hosts=str(kh), accept_new=True)))


def test_unknown_key_refused_unless_accept_new(sshd_host, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text("")
    with pytest.raises(HostKeyError) as err:
        asyncio.run(_run(_spec(sshd_host, known_hosts=str(kh))))
    assert "not in" in str(err.value) and "--accept-new-host-key" in str(err.value)
    assert asyncio.run(_run(_spec(sshd_host, known_hosts=str(kh), accept_new=True))) == "ok\n"
    assert sshd_host.host_key_line in kh.read_text()  # remembered ...
    assert asyncio.run(_run(_spec(sshd_host, known_hosts=str(kh)))) == "ok\n"  # ... and trusted next time


def test_missing_known_hosts_file(sshd_host, tmp_path):
    with pytest.raises(HostKeyError, match="no known_hosts file"):
        asyncio.run(_run(_spec(sshd_host, known_hosts=str(tmp_path / "nope"))))


def test_wrong_key_is_an_auth_error(sshd_host, tmp_path):
    import subprocess

    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(AuthError, match="refused"):
        asyncio.run(_run(_spec(sshd_host, identity=str(key))))


def test_waits_for_a_booting_host(sshd_host):
    sshd_host.restart(1.0)
    attempts: list[int] = []
    t0 = time.monotonic()
    assert asyncio.run(_run(_spec(sshd_host), on_attempt=attempts.append)) == "ok\n"
    assert len(attempts) > 1 and time.monotonic() - t0 >= 0.9


def test_gives_up_at_deadline(sshd_host):
    sshd_host.stop()
    attempts: list[Attempt] = []
    with pytest.raises(SshError, match=r"connection refused after \d+ attempts over [\d.]+s; is the host up") as err:
        asyncio.run(_run(_spec(sshd_host), timeout=1.0, on_attempt=attempts.append))
    assert f"after {len(attempts)} attempts" in str(err.value) and len(attempts) > 1
    assert attempts[-1].message.startswith("connection refused; retrying for ")


def test_missing_identity_fails_at_once(sshd_host, tmp_path):
    attempts: list[Attempt] = []
    with pytest.raises(AuthError, match="does not exist"):
        asyncio.run(_run(_spec(sshd_host, identity=str(tmp_path / "nope")), retry_auth=True,
                         on_attempt=attempts.append))
    assert len(attempts) == 1


def test_revoked_key_is_reported_as_revoked(sshd_host, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"@revoked {sshd_host.host_key_line}\n{sshd_host.host_key_line}\n")
    with pytest.raises(HostKeyError) as err:
        asyncio.run(_run(_spec(sshd_host, known_hosts=str(kh))))
    assert "revoked" in str(err.value) and str(kh) in str(err.value)
    assert "does not match" not in str(err.value)


def test_garbage_known_hosts_is_one_sentence_naming_the_file(sshd_host, tmp_path):
    kh = tmp_path / "kh"
    kh.write_bytes(b"\xff\xfe\x00garbage\x80\n")
    with pytest.raises(HostKeyError) as err:
        asyncio.run(_run(_spec(sshd_host, known_hosts=str(kh))))
    msg = str(err.value)
    assert f"cannot read the known_hosts file {kh}" in msg and "fix or remove that file" in msg
    assert "ssh-keyscan" in msg and "\n" not in msg
