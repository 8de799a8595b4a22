"""Checks of single recipe values that a regex cannot state well: hosts, pip requirements,
repository URLs and the boot disk.

Each returns None or one sentence that says what is wrong and states the limit once. The
loader calls them through field metadata (``check`` / ``item_check``), the wizard's
screens call the same functions, so a rule and its message exist once.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass


PORT_MIN, PORT_MAX = 1, 65535
DNS_NAME_MAX = 253   # RFC 1035: a DNS name is at most 253 characters ...
DNS_LABEL_MAX = 63   # ... and each dot-separated label at most 63

_PIP_PATH_PREFIXES = ("./", "../", "/", "~/")
_HOST_PARTS = re.compile(r"(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>[0-9]+))?")


@dataclass(frozen=True)
class HostSpec:
    """``[user@]host[:port]`` taken apart; ``port`` None when the string names none."""

    user: str | None
    host: str
    port: int | None

    def identity(self, default_user: str | None, default_port: int) -> tuple[str | None, str, int]:
        """What makes two host strings the same machine and login: ``gw@h:2301`` and
        ``gw@H:02301`` are one host (host names are case-insensitive, ports numbers)."""
        host = self.host.lower()
        bare = host[1:-1] if host.startswith("[") else host
        try:
            host = ipaddress.ip_address(bare).compressed
        except ValueError:
            host = host.rstrip(".")
        return (self.user or default_user, host, self.port if self.port is not None else default_port)


def parse_host(value: str) -> HostSpec:
    """Split a host string that matched :data:`gpuwizard.recipe.model.HOST_RE`."""
    m = _HOST_PARTS.fullmatch(value)
    if m is None:  # the model's pattern was checked first; keep the string whole
        return HostSpec(None, value, None)
    port = m.group("port")
    return HostSpec(m.group("user"), m.group("host"), int(port) if port else None)


def host_problem(value: str) -> str | None:
    """The port range and DNS length limits a host string's shape does not show."""
    spec = parse_host(value)
    if spec.port is not None and not PORT_MIN <= spec.port <= PORT_MAX:
        return f"port {spec.port} is out of range: a port is {PORT_MIN} to {PORT_MAX}"
    if spec.host.startswith("["):
        try:
            ipaddress.IPv6Address(spec.host[1:-1])
        except ValueError:
            return f"{spec.host} is not an IPv6 address; write it like [2001:db8::7]"
        return None
    name = spec.host.rstrip(".")
    if len(name) > DNS_NAME_MAX:
        return f"the host name is {len(name)} characters long; a DNS name is at most {DNS_NAME_MAX}"
    for label in name.split("."):
        if not label:
            return f"{spec.host!r} has an empty part between dots"
        if len(label) > DNS_LABEL_MAX:
            shown = label[:20] + "..."
            return (f"the host name part {shown!r} is {len(label)} characters long; each dot-separated part "
                    f"of a DNS name is at most {DNS_LABEL_MAX}")
    return None


def package_problem(spec: str) -> str | None:
    """Whether ``spec`` is one argument ``pip install`` takes as a package: a requirement
    (PEP 508, parsed by ``packaging``, the parser pip itself uses, rather than a regex that
    would drift from it), a URL, or a path on the host. Each item travels as one quoted
    word, so a pip option (``-r file``) could never work there: it is refused."""
    if spec.lstrip().startswith("-"):
        return (f"{spec!r} is a pip option, not a package; list packages only "
                "(an index or other options belong in a setup command)")
    if spec.startswith(_PIP_PATH_PREFIXES) or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://\S", spec):
        return None
    # packaging costs ~25 ms to import: only recipes that list packages pay it.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(spec)
    except InvalidRequirement as exc:
        lines = str(exc).splitlines()
        caret = next((ln for ln in lines if ln.rstrip().endswith("^")), "")
        where = f" at character {len(caret.rstrip()) - 4}" if caret else ""
        reason = lines[0][0].lower() + lines[0][1:] if lines and lines[0] else "unexpected text"
        hint = " (did you mean '=='?)" if re.search(r"[^=<>!~]=[^=]", spec) else ""
        return (f"{spec!r} is not a pip requirement{where}: {reason}{hint}; write NAME, NAME==VERSION "
                "(e.g. numpy==1.26.4), NAME @ URL, a URL or a path such as ./pkg")
    return None


def repo_url_problem(url: str) -> str | None:
    """A clone URL git can use: https://, http://, ssh://, git@host:path or a path on the host.

    A URL pasted from a web page can carry look-alike characters (a full-width ``ｈ``, a
    curly quote, a non-breaking space); the message names the character and its position
    instead of claiming the URL does not start with https://.
    """
    for i, ch in enumerate(url, 1):
        if ord(ch) > 127 and not url.startswith(("/", "~/", "./")):
            name = unicodedata.name(ch, f"U+{ord(ch):04X}")
            return (f"character {i} is {ch!r} ({name}), which is not plain ASCII: retype the URL "
                    "(or percent-encode that character)")
    if re.match(r"(https?|ssh|git|file)://[^/\s]+", url) or re.match(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:", url):
        return None
    if url.startswith(("/", "~/", "./", "../")):
        return None
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        scheme = url.split("://", 1)[0]
        return f"git cannot clone {scheme}:// URLs; use https://, ssh://, git@HOST:PATH or a path on the host"
    return ("a clone URL starts with https://, http://, ssh://, git@HOST: or is a path on the host "
            "(/..., ~/..., ./...)")
