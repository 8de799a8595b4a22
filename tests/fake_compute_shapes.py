"""The JSON shapes the fake Compute server answers with, each next to its source.

Sources: the Compute Engine v1 REST reference (resource and method pages, e.g.
https://cloud.google.com/compute/docs/reference/rest/v1/instances/getSerialPortOutput),
Google's JSON error format (https://cloud.google.com/apis/design/errors#http_mapping and
google/rpc/error_details.proto), and the real errors recorded in
docs/facts/gcp-provisioning-anchors.md (stockout codes and the ``_WITH_DETAILS``
``errorInfo.metadatas``, from GoogleCloudPlatform/ai-on-gke#849).
"""

from __future__ import annotations

import re
from typing import Any

BASE = "https://www.googleapis.com/compute/v1"

# Fake but well-formed host keys (base64 of the OpenSSH wire format), one per type.
FAKE_HOST_KEYS = {
    "ssh-ed25519": "AAAAC3NzaC1lZDI1NTE5AAAAIPOyBbj9pEx7w3tMUzhQ5GEUHJZJ3uO4c3X1xEwZmZ9t",
    "ecdsa-sha2-nistp256": ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPq0D/X1yA5p7iY0m0G7zR1b2xGJ0"
                            "cQeN1oRk0yU2c3B6Pq3mQpC6Xb6oZL8o9z0b8hVt4k5N9d8qZs8o7WjY2Y="),
}


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def http_error(code: int, message: str, reason: str) -> dict[str, Any]:
    """A synchronous error body: ``{"error": {code, message, errors: [{message, domain, reason}]}}``
    (the JSON error format Compute's v1 API answers with; api_core reads ``errors`` and ``details``)."""
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


def _stockout_message(project: str, zone: str) -> str:
    return (f"The zone 'projects/{project}/zones/{zone}' does not have enough resources available "
            f"to fulfill the request.  '(resource type:compute)'.")


def stockout_error(project: str, zone: str, body: dict[str, Any], details: bool, zones_available: list[str],
                   attachment: str) -> dict[str, Any]:
    """An operation error for a stockout. ``_WITH_DETAILS`` carries ``errorDetails[].errorInfo``
    (reason ``resource_availability``, ``metadatas`` {zone, vmType, attachment, zonesAvailable})
    and a help link, as recorded in docs/facts/gcp-provisioning-anchors.md (ai-on-gke#849)."""
    code = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" if details else "ZONE_RESOURCE_POOL_EXHAUSTED"
    err: dict[str, Any] = {"code": code, "message": _stockout_message(project, zone)}
    if details:
        meta = {"zone": zone, "vmType": str(body.get("machineType", "")).rsplit("/", 1)[-1], "attachment": attachment}
        if zones_available:
            meta["zonesAvailable"] = ",".join(zones_available)
        err["errorDetails"] = [
            {"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com", "metadatas": meta}},
            {"help": {"links": [{"description": "Troubleshooting documentation",
                                 "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
        ]
    return err


def stockout_http_error(project: str, zone: str, body: dict[str, Any], zones_available: list[str]) -> dict[str, Any]:
    """A stockout refused synchronously: ``google.rpc.ErrorInfo`` in ``error.details`` with a
    ``metadata`` map (google/rpc/error_details.proto; the JSON error format above), where an
    operation error carries ``errorDetails[].errorInfo.metadatas``."""
    meta = {"zone": zone, "vmType": str(body.get("machineType", "")).rsplit("/", 1)[-1]}
    if zones_available:
        meta["zonesAvailable"] = ",".join(zones_available)
    out = http_error(503, _stockout_message(project, zone), "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
    out["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "resource_availability", "domain": "compute.googleapis.com",
                                "metadata": meta}]
    return out


def quota_error(metric: str, limit: float, region: str | None) -> dict[str, Any]:
    """An operation's QUOTA_EXCEEDED: the message ``Quota 'M' exceeded.  Limit: L in region R.``
    and ``errorDetails[].quotaInfo`` {metricName, limitName, dimensions, limit} (Operation.error
    in the Compute v1 REST reference: ``errorDetails[].quotaInfo``)."""
    where = f"in region {region}" if region else "globally"
    dims = {"region": region} if region else {"global": "global"}
    return {"code": "QUOTA_EXCEEDED",
            "message": f"Quota '{metric}' exceeded.  Limit: {limit:.1f} {where}.",
            "errorDetails": [{"quotaInfo": {"metricName": f"compute.googleapis.com/{metric.lower()}",
                                            "limitName": f"{metric}-per-project" + ("-region" if region else ""),
                                            "dimensions": dims, "limit": limit}}]}


def serial_port_output(self_link: str, name: str, port: int, host_keys: dict[str, str] | None) -> dict[str, Any]:
    """``instances.getSerialPortOutput``: SerialPortOutput {kind, contents, port, start, next,
    selfLink} (Compute v1 REST reference). With ``host_keys`` the console shows the block the
    guest agent and cloud-init print: ``-----BEGIN SSH HOST KEY KEYS-----``, one ``type base64
    comment`` line per key, ``-----END SSH HOST KEY KEYS-----`` (issue 12, item 8)."""
    lines = ["SeaBIOS (version 1.8.2-google)", "Booting from Hard Disk 0...",
             "[    0.000000] Linux version 6.8.0-1015-gcp", f"{name} login: "]
    if host_keys:
        lines[-1:-1] = (["-----BEGIN SSH HOST KEY KEYS-----"] + [f"{t} {k} root@{name}" for t, k in host_keys.items()]
                        + ["-----END SSH HOST KEY KEYS-----"])
    contents = "\r\n".join(lines) + "\r\n"
    return {"kind": "compute#serialPortOutput", "contents": contents, "start": "0",
            "next": str(len(contents)), "selfLink": self_link + f"/serialPort?port={port}"}


def filter_value(flt: str, key: str) -> str | None:
    m = re.search(rf"{re.escape(key)}\s*(?:=|eq)\s*\"?([^\"\s)]+)\"?", flt or "")
    return m.group(1) if m else None


def matches(inst: dict[str, Any], flt: str) -> bool:
    """The subset of the Compute filter language gpuwizard uses: ``labels.K = "V"`` terms (ANDed)."""
    for key, val in re.findall(r"labels\.([A-Za-z0-9_-]+)\s*(?:=|eq)\s*\"?([^\"\s)]+)\"?", flt or ""):
        if (inst.get("labels") or {}).get(key) != val:
            return False
    return True


def guest_attributes(self_link: str, query_path: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    """``instances.getGuestAttributes`` (GuestAttributes: kind, queryPath, selfLink, queryValue.items
    of {namespace, key, value}; Compute v1 REST reference)."""
    return {"kind": "compute#guestAttributes", "queryPath": query_path,
            "selfLink": self_link + "/guestAttributes/" + query_path,
            "queryValue": {"items": [{"namespace": namespace, "key": k, "value": v} for k, v in values.items()]}}


def accelerator_types(project: str, world: dict[str, dict[str, int]], want: str | None) -> dict[str, Any]:
    """``acceleratorTypes.aggregatedList`` (AcceleratorTypeAggregatedList; an empty scope has a warning)."""
    items: dict[str, Any] = {}
    for zone, accs in sorted(world.items()):
        lst = [{"kind": "compute#acceleratorType", "name": a, "description": a,
                "zone": f"{BASE}/projects/{project}/zones/{zone}", "maximumCardsPerInstance": n,
                "selfLink": f"{BASE}/projects/{project}/zones/{zone}/acceleratorTypes/{a}"}
               for a, n in sorted(accs.items()) if want is None or a == want]
        items[f"zones/{zone}"] = {"acceleratorTypes": lst} if lst else {
            "warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope"}}
    return {"kind": "compute#acceleratorTypeAggregatedList", "items": items}


def regions(project: str, world: dict[str, dict[str, int]], region_quotas: dict[str, dict[str, dict[str, float]]],
            known: frozenset[str]) -> list[dict[str, Any]]:
    """``regions.list`` items; only metrics the Quota enum knows (H100/H200/B200 quotas are in Cloud Quotas)."""
    return [{"kind": "compute#region", "name": r, "status": "UP",
             "selfLink": f"{BASE}/projects/{project}/regions/{r}",
             "zones": [f"{BASE}/projects/{project}/zones/{z}" for z in sorted(world) if region_of(z) == r],
             "quotas": [{"metric": m, "limit": q["limit"], "usage": q["usage"]}
                        for m, q in sorted(qs.items()) if m in known]}
            for r, qs in sorted(region_quotas.items())]
