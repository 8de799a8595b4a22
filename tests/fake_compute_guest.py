"""What the guest side of a fake instance shows through the Compute API: guest attributes (the
host keys the guest agent publishes, and what other programs on the VM PUT, e.g. the auto-stop
agent's state) and the serial console. A mix-in of :class:`tests.fake_compute.FakeCompute`."""

from __future__ import annotations

import time
from typing import Any

from tests import fake_compute_shapes as shapes
from tests.fake_compute_shapes import http_error as _http_error


class GuestSide:
    """Needs the FakeCompute attributes ``instances``, ``project``, ``host_keys``,
    ``hostkey_delay`` and ``serial_host_keys``."""

    instances: dict[tuple[str, str], dict[str, Any]]
    project: str
    host_keys: dict[str, str]
    hostkey_delay: float
    serial_host_keys: dict[str, str] | None

    def guest_attributes(self, zone: str, name: str, query_path: str) -> tuple[int, dict[str, Any]]:
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        ready = inst["status"] == "RUNNING" and time.monotonic() - inst["_running_since"] >= self.hostkey_delay
        ns = query_path.strip("/")
        values = self.host_keys if ns == "hostkeys" and ready else inst.get("_guest", {}).get(ns)
        if not values:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}/"
                                         f"guestAttributes/{query_path}' was not found", "notFound")
        return 200, shapes.guest_attributes(inst["selfLink"], query_path, ns, values)

    def set_guest_attribute(self, zone: str, name: str, path: str, value: str) -> None:  # a guest's PUT
        ns, key = path.split("/", 1)
        self.instances[(zone, name)].setdefault("_guest", {}).setdefault(ns, {})[key] = value

    def serial_output(self, zone: str, name: str, port: int) -> tuple[int, dict[str, Any]]:
        """``instances.getSerialPortOutput`` (SerialPortOutput: kind, contents, port, start,
        next, selfLink; Compute v1 REST reference). A RUNNING guest prints boot lines and,
        when :attr:`serial_host_keys` is set, its host keys between the BEGIN/END SSH HOST
        KEY KEYS markers, one ``type base64 comment`` line each, as cloud-init and the guest
        agent do (the block format also in docs/facts/gcp-provisioning-anchors.md, item 8)."""
        inst = self.instances.get((zone, name))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                                         f"was not found", "notFound")
        keys = self.serial_host_keys if inst["status"] == "RUNNING" else None
        return 200, shapes.serial_port_output(inst["selfLink"], name, port, keys)
