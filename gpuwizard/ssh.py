"""SSH connections: host strings, host key verification, and patient connecting.

Why a module of its own: the executor should not care how a host is reached, and the
rules here are the ones a user trusts us with: host keys are always verified (a
mismatch is refused with a sentence that says what to do), ``~/.ssh/config`` is
honoured where asyncssh can, and a booting host is waited for instead of failing on
the first refused connection.

asyncssh is imported inside the functions that need it, so importing this module (for
:func:`parse_host`) costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import asyncssh

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.-]+))"
                      r"(?::(?P<port>[0-9]{1,5}))?$")


class SshError(Exception):
    """A connection problem explained in one or two sentences for the user."""


class HostKeyError(SshError):
    """The host's key is unknown or does not match known_hosts: never retried."""


class AuthError(SshError):
    """The server refused our keys."""


@dataclass(frozen=True)
class HostSpec:
    """How to reach one host.

    ``name`` is the label used in events, logs and resume state (unique in a run);
    ``port``/``user`` None mean "whatever ~/.ssh/config or the defaults say".
    ``known_hosts`` None means the user's ~/.ssh/known_hosts. ``accept_new`` trusts
    (and records) a key the known_hosts file does not list yet, never a changed one.
    """

    name: str
    address: str
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    accept_new: bool = False

    @property
    def key_host(self) -> str:
        """The host as known_hosts names it: ``host`` or ``[host]:port``."""
        port = self.port or 22
        return self.address if port == 22 else f"[{self.address}]:{port}"


def parse_host(text: str, *, user: str | None = None, port: int | None = None,
               identity: str | None = None, known_hosts: str | None = None) -> HostSpec:
    """``[user@]host[:port]`` -> HostSpec; the string's user/port win over the defaults."""
    m = _HOST_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a host; write [user@]host[:port], e.g. ubuntu@203.0.113.7")
    host = m.group("v6") or m.group("host")
    p = int(m.group("port")) if m.group("port") else port
    if p is not None and not 0 < p < 65536:
        raise ValueError(f"{text!r}: port {p} is out of range")
    return HostSpec(name=text.strip(), address=host, port=p, user=m.group("user") or user,
                    identity=identity, known_hosts=known_hosts)


def hosts_from_recipe(recipe: Any, accept_new: bool = False) -> list[HostSpec]:
    """The recipe's ``target.ssh.hosts`` with its ``ssh`` defaults applied."""
    ssh = recipe.ssh
    port = ssh.port if ssh.port != 22 else None
    return [replace(parse_host(h, user=ssh.user, port=port, identity=ssh.identity, known_hosts=ssh.known_hosts),
                    accept_new=accept_new)
            for h in recipe.target.ssh.hosts]


def known_hosts_path(spec: HostSpec) -> str:
    return os.path.expanduser(spec.known_hosts or DEFAULT_KNOWN_HOSTS)


_KNOWN_HOSTS_CACHE: dict[str, tuple[tuple[int, int], Any]] = {}


def _known_hosts(path: str) -> Any:
    """The parsed known_hosts file, cached while it is unchanged: 32 hosts sharing one
    file would otherwise parse it 64 times."""
    import asyncssh

    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _KNOWN_HOSTS_CACHE.get(path)
    if hit is None or hit[0] != stamp:
        hit = _KNOWN_HOSTS_CACHE[path] = (stamp, asyncssh.read_known_hosts(path))
    return hit[1]


def _listed(spec: HostSpec, path: str) -> bool:
    """True when known_hosts has any key for this host (so a failure means "changed")."""
    try:
        trusted, _, revoked, *_ = _known_hosts(path).match(spec.address, "", spec.port or 22)
    except (OSError, ValueError):
        return False
    return bool(trusted or revoked)


def _remember_key(spec: HostSpec, path: str, key: Any) -> None:
    """Append a newly accepted host key (``accept_new``), like StrictHostKeyChecking=accept-new."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    line = f"{spec.key_host} {key.export_public_key('openssh').decode().strip()}\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def _key_message(spec: HostSpec, path: str, listed: bool) -> str:
    if listed:
        return (f"{spec.name}: the host key does not match the one in {path}, so the connection was refused "
                f"(the host may have been reinstalled, or someone is in between). If you trust the new key, "
                f"remove the old one with: ssh-keygen -R {_q(spec.key_host)} -f {_q(path)}")
    return (f"{spec.name}: its host key is not in {path}. Add it (ssh-keyscan -p {spec.port or 22} "
            f"{spec.address} >> {path}, after checking it), or run with --accept-new-host-key.")


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)


def _is_retryable(exc: BaseException) -> bool:
    import asyncssh

    if isinstance(exc, (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied, asyncssh.KeyImportError,
                        FileNotFoundError, PermissionError, IsADirectoryError)):
        return False  # a local problem: waiting will not fix it
    return isinstance(exc, (OSError, asyncio.TimeoutError, asyncssh.Error, EOFError))


async def connect_once(spec: HostSpec, *, keepalive: float = 15.0, timeout: float = 20.0) -> "asyncssh.SSHClientConnection":
    """One connection attempt with host key verification. Raises HostKeyError,
    AuthError, or the underlying OSError/asyncssh error (retryable)."""
    import asyncssh

    path = known_hosts_path(spec)
    listed = _listed(spec, path)
    if not listed and not spec.accept_new:
        if not os.path.exists(path):
            raise HostKeyError(f"{spec.name}: no known_hosts file at {path} to verify the host key with. "
                               f"Add the host's key there (ssh-keyscan), or run with --accept-new-host-key.")
    kwargs: dict[str, Any] = dict(
        known_hosts=None if (spec.accept_new and not listed) else (_known_hosts(path) if listed else path),
        keepalive_interval=keepalive, keepalive_count_max=4, connect_timeout=timeout,
    )
    if spec.port is not None:
        kwargs["port"] = spec.port
    if spec.user:
        kwargs["username"] = spec.user
    if spec.identity:
        key = os.path.expanduser(spec.identity)
        if not os.path.isfile(key):
            raise AuthError(f"{spec.name}: the identity file {spec.identity} does not exist; "
                            f"fix ssh.identity in the recipe (or remove it to use ssh-agent and ~/.ssh keys).")
        kwargs["client_keys"] = [key]
    try:
        conn = await asyncssh.connect(spec.address, **kwargs)
    except asyncssh.HostKeyNotVerifiable:
        raise HostKeyError(_key_message(spec, path, listed)) from None
    except asyncssh.PermissionDenied:
        who = f"{spec.user}@" if spec.user else ""
        how = f"the key {spec.identity}" if spec.identity else "your ssh-agent and ~/.ssh keys"
        raise AuthError(f"{spec.name}: the server refused {how} for {who}{spec.address}. "
                        f"Check ssh.user and ssh.identity in the recipe.") from None
    if kwargs["known_hosts"] is None:
        key = conn.get_server_host_key()
        if key is not None:
            _remember_key(spec, path, key)
    return conn


async def connect(spec: HostSpec, *, deadline: float, on_attempt: Callable[[int], None] | None = None,
                  keepalive: float = 15.0, retry_auth: bool = False,
                  first_delay: float = 0.2, max_delay: float = 5.0) -> "asyncssh.SSHClientConnection":
    """Connect, retrying refused/timed-out/dropped attempts with backoff until
    ``deadline`` (a ``time.monotonic()`` value): a booting or rebooting host is
    waited for. Host key problems fail at once; auth failures too unless
    ``retry_auth`` (a fresh VM may install our key a little after sshd starts)."""
    attempt = 0
    delay = first_delay
    while True:
        attempt += 1
        if on_attempt is not None:
            on_attempt(attempt)
        left = deadline - time.monotonic()
        try:
            return await connect_once(spec, keepalive=keepalive, timeout=max(1.0, min(20.0, left)))
        except HostKeyError:
            raise
        except AuthError as exc:
            if not retry_auth or "does not exist" in str(exc) or time.monotonic() + delay > deadline:
                raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_retryable(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise SshError(f"{spec.name}: could not connect ({_describe(exc)}); gave up after "
                               f"{attempt} attempts. Is the host up and is port {spec.port or 22} open?") from None
        await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
        delay = min(max_delay, delay * 1.6)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    return text
