"""SSH connections: host strings, host key verification, and patient connecting.

Why a module of its own: the executor should not care how a host is reached, and the
rules here are the ones a user trusts us with: host keys are always verified (a
mismatch is refused with a sentence that says what to do), ``~/.ssh/config`` is
honoured where asyncssh can, and a booting host is waited for instead of failing on
the first refused connection.

Why it is also the one adaptor around asyncssh: the executor speaks to
:class:`Connection` and :class:`Process`, and every asyncssh exception that means "the
connection went away" becomes :class:`ConnectionLost` here, in one place. asyncssh is
imported lazily (:func:`_asyncssh`), so importing this module (for :func:`parse_host`)
costs nothing and ``gpuwizard --help``/``validate``/``plan`` never load it. That is
also why it is one module of ~400 lines: connecting, verifying and wrapping the
connection share the lazy import and the error classification, and a second module
would be a second seam around the same library.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shlex
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import asyncssh

    from gpuwizard.recipe import Recipe

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
#: How long a new VM may keep refusing our key before a ``refused_hint`` (OS Login) is
#: taken as the reason and the connection stops: the guest agent installs metadata keys
#: within seconds of boot, so a refusal that lasts this long is not a late key.
AUTH_GRACE = float(os.environ.get("GPUWIZARD_AUTH_GRACE", "") or 60.0)

_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.-]+))"
                      r"(?::(?P<port>[0-9]{1,5}))?$")


class SshError(Exception):
    """A connection problem explained in one or two sentences for the user."""


class HostKeyError(SshError):
    """The host's key is unknown or does not match known_hosts: never retried."""


class AuthError(SshError):
    """The server refused our keys."""


class ConnectionLost(SshError):
    """The connection dropped under a command: the caller reconnects and re-runs it."""


class CommandTimeout(SshError):
    """A short remote command (``Connection.run`` with a timeout) did not finish in time."""


def _asyncssh() -> ModuleType:
    """asyncssh, imported on first use (it costs ~0.2 s; the CLI's quick commands never need it)."""
    import asyncssh

    return asyncssh


def _lost_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the connection (or its channel) is gone."""
    a = _asyncssh()
    return (a.ConnectionLost, a.ChannelOpenError, a.DisconnectError, ConnectionError, BrokenPipeError, EOFError)


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
    refused_hint: str = ""   # added when the server refuses our key (a new VM: OS Login by policy)
    #: The address other hosts of the run reach it at (a VM's internal IP); None: ``address``.
    #: Cluster nodes talk to each other over it (GPUWIZARD_NODE_IPS, the dataset fan-out).
    private_address: str | None = None

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


def hosts_from_recipe(recipe: Recipe, accept_new: bool = False) -> list[HostSpec]:
    """The recipe's ``target.ssh.hosts`` with its ``ssh`` defaults applied."""
    ssh = recipe.ssh
    port = ssh.port if ssh.port != 22 else None
    return [replace(parse_host(h, user=ssh.user, port=port, identity=ssh.identity, known_hosts=ssh.known_hosts),
                    accept_new=accept_new)
            for h in recipe.target.ssh.hosts]


def known_hosts_path(spec: HostSpec) -> str:
    return os.path.expanduser(spec.known_hosts or DEFAULT_KNOWN_HOSTS)


_KNOWN_HOSTS_CACHE: dict[str, tuple[tuple[int, int], "asyncssh.SSHKnownHosts"]] = {}


def _known_hosts(path: str, spec: HostSpec) -> "asyncssh.SSHKnownHosts":
    """The parsed known_hosts file, cached while it is unchanged: 32 hosts sharing one
    file would otherwise parse it 64 times. A file that is not a known_hosts file
    (binary, another format) is a HostKeyError naming the file, not a raw decode error."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _KNOWN_HOSTS_CACHE.get(path)
    if hit is None or hit[0] != stamp:
        try:
            parsed = _asyncssh().read_known_hosts(path)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HostKeyError(f"{spec.name}: cannot read the known_hosts file {path} ({_first_line(exc)}); fix or "
                               f"remove that file, then add the host's key with ssh-keyscan -p {spec.port or 22} "
                               f"{spec.address} >> {path} (after checking it).") from None
        hit = _KNOWN_HOSTS_CACHE[path] = (stamp, parsed)
    return hit[1]


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not text: byte {exc.start} is not UTF-8"
    return (str(exc) or type(exc).__name__).splitlines()[0]


def _listed(spec: HostSpec, path: str) -> bool:
    """True when known_hosts has any key for this host (so a failure means "changed" or "revoked")."""
    try:
        trusted, _, revoked, *_ = _known_hosts(path, spec).match(spec.address, "", spec.port or 22)
    except OSError:
        return False
    return bool(trusted or revoked)


def _remember_key(spec: HostSpec, path: str, key: "asyncssh.SSHKey") -> None:
    """Append a newly accepted host key (``accept_new``), like StrictHostKeyChecking=accept-new."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    line = f"{spec.key_host} {key.export_public_key('openssh').decode().strip()}\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def _key_message(spec: HostSpec, path: str, listed: bool, revoked: bool = False) -> str:
    if revoked:
        return (f"{spec.name}: the host's key is marked @revoked in {path}, so the connection was refused. "
                f"Someone decided not to trust that key: give the host a new key, or remove the @revoked "
                f"line if the key is trusted again.")
    if listed:
        return (f"{spec.name}: the host key does not match the one in {path}, so the connection was refused "
                f"(the host may have been reinstalled, or someone is in between). If you trust the new key, "
                f"remove the old one with: ssh-keygen -R {shlex.quote(spec.key_host)} -f {shlex.quote(path)}")
    return (f"{spec.name}: its host key is not in {path}. Add it (ssh-keyscan -p {spec.port or 22} "
            f"{spec.address} >> {path}, after checking it), or run with --accept-new-host-key.")


def _is_retryable(exc: BaseException) -> bool:
    a = _asyncssh()
    if isinstance(exc, (a.HostKeyNotVerifiable, a.PermissionDenied, a.KeyImportError,
                        FileNotFoundError, PermissionError, IsADirectoryError)):
        return False  # a local problem: waiting will not fix it
    return isinstance(exc, (OSError, asyncio.TimeoutError, a.Error, EOFError))


@dataclass(frozen=True)
class Completed:
    """How a remote command ended: ``exit_signal`` is the signal's name when it was killed."""

    exit_status: int | None
    exit_signal: str | None = None
    stdout: str = ""
    stderr: str = ""


def _completed(r: "asyncssh.SSHCompletedProcess") -> Completed:
    sig = r.exit_signal[0] if r.exit_signal else None
    out, err = r.stdout, r.stderr
    return Completed(r.exit_status, sig, out if isinstance(out, str) else (out or b"").decode("utf-8", "replace"),
                     err if isinstance(err, str) else (err or b"").decode("utf-8", "replace"))


class Process:
    """A running remote command with binary stdin/stdout/stderr (one step)."""

    def __init__(self, proc: "asyncssh.SSHClientProcess[bytes]"):
        self._proc = proc

    def feed_stdin(self, data: bytes) -> None:
        """Write ``data`` to the command's stdin and close it (steps get no other input)."""
        try:
            if data:
                self._proc.stdin.write(data)
            self._proc.stdin.write_eof()
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    async def read(self, stream: str, n: int) -> bytes:
        """Up to ``n`` bytes of ``stream`` ("stdout"/"stderr"); b"" at its end."""
        reader = self._proc.stdout if stream == "stdout" else self._proc.stderr
        try:
            return await reader.read(n)
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    async def wait(self) -> Completed:
        try:
            return _completed(await self._proc.wait())
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    def close(self) -> None:
        self._proc.close()


class Connection:
    """One SSH connection to a host: what the executor needs of it, and nothing of asyncssh's types."""

    def __init__(self, conn: "asyncssh.SSHClientConnection"):
        self._conn = conn

    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())

    def close(self) -> None:
        self._conn.close()

    def abort(self) -> None:
        """Drop the connection at once (tests: an attempt that dies without cleaning up)."""
        self._conn.abort()

    async def wait_closed(self) -> None:
        await self._conn.wait_closed()

    async def run(self, command: str, *, timeout: float | None = None, stdin: str = "") -> Completed:
        """Run a short command to completion; its output is returned, not streamed.
        Raises ConnectionLost, or CommandTimeout past ``timeout`` seconds."""
        a = _asyncssh()
        try:
            io: dict[str, Any] = {"input": stdin} if stdin else {"stdin": a.DEVNULL}
            r = await self._conn.run(command, check=False, timeout=timeout, **io)
        except a.TimeoutError:
            raise CommandTimeout(f"the command did not finish within {timeout:g}s") from None
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        return _completed(r)

    async def start(self, command: str) -> Process:
        """Start a command whose output is read as bytes, chunk by chunk (a step)."""
        try:
            return Process(await self._conn.create_process(command, encoding=None))
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    async def upload(self, files: list[tuple[str, bytes, int]]) -> None:
        """SFTP each ``(remote path, content, mode)``: written to a temporary name with its
        mode, then renamed, so the content never sits on disk readable by others, even for
        a moment. Paths are relative to the login user's home. Raises SshError naming the
        path on an SFTP error."""
        a = _asyncssh()
        remote = ""
        try:
            async with self._conn.start_sftp_client() as sftp:
                for remote, data, mode in files:
                    parent = os.path.dirname(remote)
                    if parent and parent not in (".", "/"):
                        await sftp.makedirs(parent, exist_ok=True)
                    tmp = f"{remote}.gwtmp{os.getpid()}"
                    async with sftp.open(tmp, "wb", attrs=a.SFTPAttrs(permissions=mode)) as f:
                        await f.write(data)
                    await sftp.chmod(tmp, mode)
                    await sftp.posix_rename(tmp, remote)
        except a.SFTPError as exc:
            raise SshError(f"uploading to {remote} failed: {exc.reason}") from None
        except _lost_errors() as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None


async def connect_once(spec: HostSpec, *, keepalive: float = 15.0, timeout: float = 20.0) -> Connection:
    """One connection attempt with host key verification. Raises HostKeyError,
    AuthError, or the underlying OSError/asyncssh error (retryable)."""
    a = _asyncssh()
    path = known_hosts_path(spec)
    listed = _listed(spec, path)
    if not listed and not spec.accept_new:
        if not os.path.exists(path):
            raise HostKeyError(f"{spec.name}: no known_hosts file at {path} to verify the host key with. "
                               f"Add the host's key there (ssh-keyscan), or run with --accept-new-host-key.")
    kwargs: dict[str, Any] = dict(
        known_hosts=None if (spec.accept_new and not listed) else _known_hosts(path, spec),
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
        conn = await a.connect(spec.address, **kwargs)
    except a.HostKeyNotVerifiable as exc:
        raise HostKeyError(_key_message(spec, path, listed, revoked="revoked" in str(exc))) from None
    except a.PermissionDenied:
        who = f"{spec.user}@" if spec.user else ""
        how = f"the key {spec.identity}" if spec.identity else "your ssh-agent and ~/.ssh keys"
        raise AuthError(f"{spec.name}: the server refused {how} for {who}{spec.address}. "
                        f"Check ssh.user and ssh.identity in the recipe."
                        + (f" {spec.refused_hint}" if spec.refused_hint else "")) from None
    if kwargs["known_hosts"] is None:
        key = conn.get_server_host_key()
        if key is not None:
            _remember_key(spec, path, key)
    return Connection(conn)


@dataclass(frozen=True)
class Attempt:
    """One connection attempt about to start: its number, and why the previous one failed
    with how long the caller keeps trying (``reason`` is empty on the first attempt)."""

    n: int
    reason: str = ""
    seconds_left: float = 0.0

    @property
    def message(self) -> str:
        """``connection refused; retrying for 8m more`` (empty on the first attempt)."""
        if not self.reason:
            return ""
        return f"{self.reason}; retrying for {_duration(self.seconds_left)} more"


def _duration(seconds: float, exact: bool = False) -> str:
    """``8m``, ``45s``; ``exact`` gives tenths under 10 s (a short wait reads "1.6s", not "2s")."""
    if exact and seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    s = max(0, int(round(seconds)))
    if s >= 90:
        return f"{(s + 30) // 60}m"
    return f"{s}s"


async def connect(spec: HostSpec, *, deadline: float, on_attempt: Callable[[Attempt], None] | None = None,
                  keepalive: float = 15.0, retry_auth: bool = False,
                  first_delay: float = 0.2, max_delay: float = 5.0) -> Connection:
    """Connect, retrying refused/timed-out/dropped attempts with backoff until
    ``deadline`` (a ``time.monotonic()`` value): a booting or rebooting host is
    waited for. Host key problems fail at once; auth failures too unless
    ``retry_auth`` (a fresh VM may install our key a little after sshd starts).
    ``on_attempt`` hears each attempt with the previous one's failure and the time
    left, so a wait of minutes always says what it waits for."""
    attempt = 0
    delay = first_delay
    t0 = time.monotonic()
    reason = ""
    refused_since: float | None = None
    while True:
        attempt += 1
        if on_attempt is not None:
            on_attempt(Attempt(attempt, reason, max(0.0, deadline - time.monotonic())))
        left = deadline - time.monotonic()
        try:
            return await connect_once(spec, keepalive=keepalive, timeout=max(1.0, min(20.0, left)))
        except HostKeyError:
            raise
        except AuthError as exc:
            now = time.monotonic()
            refused_since = now if refused_since is None else refused_since
            if (not retry_auth or "does not exist" in str(exc) or now + delay > deadline
                    or (spec.refused_hint and now - refused_since >= AUTH_GRACE)):
                raise
            reason = "the server refused our key (a new VM installs it late" + (
                f"; after {AUTH_GRACE:.0f} s of refusals OS Login is taken as the reason)" if spec.refused_hint else ")")
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_retryable(exc):
                raise
            reason = _describe(exc)
            if time.monotonic() + delay > deadline:
                raise SshError(f"{spec.name}: {reason} after {attempt} attempts over "
                               f"{_duration(time.monotonic() - t0, exact=True)}; is the host up and is port {spec.port or 22} "
                               f"open to this machine?") from None
        await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
        delay = min(max_delay, delay * 1.6)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "connection timed out"
    return text.splitlines()[0]


def new_keypair(comment: str) -> tuple[bytes, bytes]:
    """A fresh ed25519 key pair: (OpenSSH private key, public key line). For keys gpuwizard
    makes for one purpose (a cluster's node-to-node copies), generated here, never reused."""
    key = _asyncssh().generate_private_key("ssh-ed25519", comment=comment)
    return key.export_private_key("openssh"), key.export_public_key("openssh")


def trusted_keys(spec: HostSpec) -> list[str]:
    """The host keys (``type base64`` lines) that known_hosts trusts for ``spec``: what
    gpuwizard verifies the host against, handed on to hosts that reach it themselves."""
    try:
        trusted, *_ = _known_hosts(known_hosts_path(spec), spec).match(spec.address, "", spec.port or 22)
    except OSError:
        return []
    return [" ".join(k.export_public_key("openssh").decode().split()[:2]) for k in trusted]
