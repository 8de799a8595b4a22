"""Read a new VM's SSH host keys from Compute Engine and pin them in the run's known_hosts.

Two sources, in order (issue 12, item 8):

1. guest attributes ``hostkeys/`` (the guest agent publishes them when metadata
   ``enable-guest-attributes`` is TRUE);
2. the serial console (``getSerialPortOutput``): the guest agent and cloud-init print
   the keys between ``-----BEGIN SSH HOST KEY KEYS-----`` and ``-----END SSH HOST KEY
   KEYS-----``; images with ``set_host_keys=false``, or a restarted spot VM whose agent
   published them only at first boot, leave guest attributes empty.

Whichever pinned the key is said in the progress line. Each poll is one read with a
retry budget no longer than what is left of ``GPUWIZARD_HOSTKEY_TIMEOUT``, so a 503
storm cannot stretch the wait past it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time

from gpuwizard.gcp import budgets, oslogin, sshkeys
from gpuwizard.gcp.client import call
from gpuwizard.gcp.context import ProvisionedHost, Provisioner
from gpuwizard.gcp.errors import ApiError, GcpError
from gpuwizard.gcp.inventory import VmInfo

GUEST_ATTRIBUTES = "guest attributes"
SERIAL_CONSOLE = "the serial console"
_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----\r?\n(.*?)\r?\n-----END SSH HOST KEY KEYS-----", re.S)
_KEY = re.compile(r"(?m)^\s*(" + "|".join(re.escape(t) for t in sshkeys.KEY_TYPES) + r")\s+([A-Za-z0-9+/]+={0,2})")


def _well_formed(ktype: str, blob: str) -> bool:
    """The base64 decodes and names ``ktype`` inside (OpenSSH wire format), so a line
    cut by the console is never pinned."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError:
        return False
    n = int.from_bytes(raw[:4], "big")
    return raw[4:4 + n] == ktype.encode()


def keys_from_serial(output: str) -> list[tuple[str, str]]:
    """(key type, base64) pairs from the last host-key block printed on the serial console."""
    blocks = _BLOCK.findall(output or "")
    if not blocks:
        return []
    out = []
    for ktype, blob in _KEY.findall(blocks[-1]):
        if _well_formed(ktype, blob) and (ktype, blob) not in out:
            out.append((ktype, blob))
    return out


async def read_host_keys(p: Provisioner, vm: VmInfo) -> tuple[list[tuple[str, str]], str]:
    """Poll both sources until keys appear or ``p.host_key_timeout`` passes: (keys, source)."""
    deadline = time.monotonic() + p.host_key_timeout
    announced = False
    start = time.monotonic()
    last_error: str | None = None
    while True:
        left = max(0.5, deadline - time.monotonic())
        try:
            items = await call(p.compute.guest_attributes, vm.zone, vm.name, "hostkeys/", min(budgets.READ_BUDGET, left))
            keys = sshkeys.parse_host_keys(items or [])
            if keys:
                return keys, GUEST_ATTRIBUTES
            left = max(0.5, deadline - time.monotonic())
            serial = await call(p.compute.serial_output, vm.zone, vm.name, 1, min(budgets.READ_BUDGET, left))
            keys = keys_from_serial(serial or "")
            if keys:
                return keys, SERIAL_CONSOLE
        except ApiError as exc:
            last_error = exc.message  # a storm: keep polling until the deadline, then say so
        now = time.monotonic()
        if now + budgets.HOSTKEY_POLL > deadline:
            if last_error:
                p.say(f"{vm.name}: reading its host keys kept failing ({last_error})")
            return [], ""
        if not announced and now - start >= budgets.ANNOUNCE_AFTER:
            p.say(f"{vm.name}: waiting for its SSH host keys (guest attributes, then the serial console; "
                  f"at most {deadline - now:.0f} s more)")
            announced = True
        await asyncio.sleep(budgets.HOSTKEY_POLL)


async def pin(p: Provisioner, vm: VmInfo, host: ProvisionedHost) -> ProvisionedHost:
    """Read ``vm``'s host keys and make them the only ones its addresses have in the
    run's known_hosts (a restarted VM: new external address, same keys, verified again).
    A VM whose own metadata turns OS Login on stops here, before any wait (:mod:`.oslogin`)."""
    oslogin.check_vm(p, vm)
    host.refused_hint = oslogin.refusal_hint(p)
    keys, source = await read_host_keys(p, vm)
    if keys:
        addrs = list(dict.fromkeys(a for a in (vm.address, vm.internal_address) if a))
        lines = sshkeys.known_hosts_lines(addrs, p.port, keys)
        dropped = await call(sshkeys.replace_known_hosts, p.known_hosts, addrs, p.port, lines)
        host.host_key_verified = True
        p.say(f"{vm.name}: pinned {len(keys)} host key(s) from {source} in {p.known_hosts}")
        blobs = {b for _, b in keys}
        if any(ln.split()[2:3] and ln.split()[2] not in blobs for ln in dropped):
            p.say(f"{vm.name}: its host keys differ from the ones pinned before for {', '.join(addrs)}; "
                  f"the new ones, read from Compute Engine, replace them")
    elif p.accept_new:
        p.say(f"{vm.name}: published no host keys in {p.host_key_timeout:.0f} s; "
              f"--accept-new-host-key: the key it presents on first connect will be trusted")
    else:
        raise GcpError(
            f"VM {vm.name} ({vm.zone}) published no SSH host keys in {p.host_key_timeout:.0f} s (neither in guest "
            f"attributes nor on the serial console), so its identity cannot be verified: run again with "
            f"--accept-new-host-key to trust the key it presents on first connect, or delete it with "
            f"`gpuwizard down RECIPE.yaml` (recipe {p.recipe.name}).", kind="hostkey")
    return host
