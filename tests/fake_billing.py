"""A fake Cloud Billing Catalog API over HTTP, for the real ``google-cloud-billing`` client.

It answers the one REST call gpuwizard makes, ``GET /v1/services/{service}/skus`` (as the
client's REST transport sends it: ``currencyCode``, ``pageSize``, ``pageToken`` query
parameters), with pages of at most :attr:`FakeBilling.page_size` SKUs and a
``nextPageToken`` between them. Every SKU and every page it serves is checked against the
client's own proto messages (``Sku`` / ``ListSkusResponse.from_json`` with
``ignore_unknown_fields=False``); what they reject is counted in ``violations`` (tests
assert 0), so the fake cannot drift from what Google sends.

Set ``fail_with`` to an HTTP status (403, 500) to answer every request with Google's JSON
error body instead. ``requests`` records each request path (with query), in order.

Run alone: ``python -m tests.fake_billing`` prints its URL (for trying ``gpuwizard zones``
by hand with ``GPUWIZARD_BILLING_ENDPOINT``).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from typing import Any

from tests.fake_http import FakeServer, JsonHandler

COMPUTE = "6F81-5844-456A"
_SKUS = re.compile(r"^/v1/services/(?P<service>[^/]+)/skus$")
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE"}


def money(usd: float) -> dict[str, Any]:
    """google.type.Money as the REST API writes it (units is an int64: a string in JSON)."""
    units = int(usd)
    return {"currencyCode": "USD", "units": str(units), "nanos": int(round((usd - units) * 1e9))}


def sku(sku_id: str, description: str, family: str, group: str, usage: str, regions: list[str], usd: float,
        unit: str = "h") -> dict[str, Any]:
    """One SKU in the shape of the real API (see docs/facts/billing-catalog.md)."""
    return {
        "name": f"services/{COMPUTE}/skus/{sku_id}", "skuId": sku_id, "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": family, "resourceGroup": group,
                     "usageType": usage},
        "serviceRegions": regions,
        "pricingInfo": [{
            "effectiveTime": "2026-11-29T08:00:00.000Z", "summary": "",
            "pricingExpression": {
                "usageUnit": unit, "displayQuantity": 1, "usageUnitDescription": unit,
                "baseUnit": "s" if unit == "h" else unit, "baseUnitDescription": "second",
                "baseUnitConversionFactor": 3600 if unit == "h" else 1,
                "tieredRates": [{"startUsageAmount": 0, "unitPrice": money(usd)}]},
            "currencyConversionRate": 1}],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "REGIONAL", "regions": regions},
    }


#: Two regions with different prices (T4 and N1 vCPU/memory, on-demand and spot, and the
#: balanced disk), plus SKUs gpuwizard must skip (a commitment, a sole-tenancy premium).
PRICES: dict[str, dict[str, float]] = {
    "us-central1": {"t4": 0.35, "t4s": 0.16, "core": 0.031611, "cores": 0.0102, "ram": 0.004237, "rams": 0.00137,
                    "pd": 0.10},
    "europe-west1": {"t4": 0.41, "t4s": 0.19, "core": 0.034773, "cores": 0.0121, "ram": 0.004661, "rams": 0.00162,
                     "pd": 0.11},
}
AREA = {"us-central1": "Americas", "europe-west1": "Belgium"}


def default_skus() -> list[dict[str, Any]]:
    out = []
    for i, (region, p) in enumerate(PRICES.items()):
        where = f"running in {AREA[region]}"
        out += [
            sku(f"T4{i}-OD", f"Nvidia Tesla T4 GPU {where}", "Compute", "GPU", "OnDemand", [region], p["t4"]),
            sku(f"T4{i}-SP", f"Spot Preemptible Nvidia Tesla T4 GPU {where}", "Compute", "GPU", "Preemptible",
                [region], p["t4s"]),
            sku(f"N1C{i}-OD", f"N1 Predefined Instance Core {where}", "Compute", "N1Standard", "OnDemand", [region],
                p["core"]),
            sku(f"N1R{i}-OD", f"N1 Predefined Instance Ram {where}", "Compute", "N1Standard", "OnDemand", [region],
                p["ram"], "GiBy.h"),
            sku(f"N1C{i}-SP", f"Spot Preemptible N1 Predefined Instance Core {where}", "Compute", "N1Standard",
                "Preemptible", [region], p["cores"]),
            sku(f"N1R{i}-SP", f"Spot Preemptible N1 Predefined Instance Ram {where}", "Compute", "N1Standard",
                "Preemptible", [region], p["rams"], "GiBy.h"),
            sku(f"PD{i}", f"Balanced PD Capacity in {AREA[region]}", "Storage", "SSD", "OnDemand", [region], p["pd"],
                "GiBy.mo"),
            sku(f"CUD{i}", f"Commitment v1: Nvidia Tesla T4 GPU {where} for 1 Year", "Compute", "GPU", "Commit1Yr",
                [region], p["t4"] / 2),
            sku(f"ST{i}", f"Sole Tenancy Instance Core Premium {where}", "Compute", "CPU", "OnDemand", [region], 9.0),
        ]
    return out


class FakeBilling(FakeServer):
    """The server's state (thread-safe); :meth:`start` binds 127.0.0.1 on a free port."""

    def __init__(self, skus: list[dict[str, Any]] | None = None, page_size: int = 4) -> None:
        self.skus = list(default_skus() if skus is None else skus)
        self.page_size = page_size
        self.fail_with: int | None = None
        self.requests: list[str] = []
        self.violations: list[str] = []
        self.lock = threading.Lock()

    def sku_requests(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if "/skus" in r)

    def start(self) -> "FakeBilling":
        self.serve(_Handler, "fake", "fake-billing")
        return self

    def page(self, service: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if service != COMPUTE:
            return 404, _error(404, f"Service services/{service} not found.")
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        size = min(self.page_size, int((query.get("pageSize") or [str(self.page_size)])[0] or self.page_size))
        chunk = self.skus[start:start + size]
        body: dict[str, Any] = {"skus": chunk, "nextPageToken": str(start + size) if start + size < len(self.skus)
                                else ""}
        self._check(body)
        return 200, body

    def _check(self, body: dict[str, Any]) -> None:
        """Every SKU and the page itself must parse as the client's proto messages."""
        from google.cloud import billing_v1

        problems = []
        for s in body["skus"]:
            try:
                billing_v1.Sku.from_json(json.dumps(s), ignore_unknown_fields=False)
            except Exception as exc:  # noqa: BLE001 - each rejection is one violation
                problems.append(f"Sku {s.get('skuId')}: {exc}")
        try:
            billing_v1.ListSkusResponse.from_json(json.dumps(body), ignore_unknown_fields=False)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"ListSkusResponse: {exc}")
        with self.lock:
            self.violations += problems


def _error(code: int, message: str) -> dict[str, Any]:
    """Google's JSON error body."""
    return {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}}


class _Handler(JsonHandler):
    fake: FakeBilling
    _send = JsonHandler.send_json

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parsed = urllib.parse.urlsplit(self.path)
        with self.fake.lock:
            self.fake.requests.append(self.path)
            fail = self.fake.fail_with
        if fail is not None:
            msg = ("The caller does not have permission" if fail == 403 else "Internal error encountered.")
            self._send(fail, _error(fail, msg))
            return
        m = _SKUS.match(parsed.path)
        if m is None:
            self._send(404, _error(404, f"No route for GET {parsed.path}"))
            return
        code, body = self.fake.page(m["service"], urllib.parse.parse_qs(parsed.query))
        self._send(code, body)


if __name__ == "__main__":  # pragma: no cover - manual use
    f = FakeBilling().start()
    print(f.url, flush=True)
    threading.Event().wait()
