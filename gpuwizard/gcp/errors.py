"""Compute Engine errors as values: what happened, and what gpuwizard does about it.

Failover needs to know, for *every* error an operation carries (not only the first),
whether to move to the next zone, skip the whole region, stop, or retry. The
taxonomy follows SkyPilot's blocking granularity (see docs/facts/gcp-provisioning-anchors.md),
plus the ``zonesAvailable`` hint of ``ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`` that
neither SkyPilot nor dstack follows. This module imports nothing from Google so it can be
tested, and used by the UI, without the 2 s client import.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable

# Kinds, from the mildest to the most final. The order matters: an operation with
# several errors is judged by its most final one.
TRANSIENT = "transient"        # 5xx, rate limit: retry the same zone with backoff
STOCKOUT = "stockout"          # no capacity in this zone: next zone
ZONE = "zone"                  # anything else tied to the zone (bad accelerator there ...)
REGION_QUOTA = "region_quota"  # regional quota exhausted: skip every zone of the region
GLOBAL_QUOTA = "global_quota"  # GPUS_ALL_REGIONS: no zone anywhere can work; stop
PERMISSION = "permission"      # IAM / API disabled: stop
EXISTS = "exists"              # the VM name is taken (409 alreadyExists): stop; another zone
#                                would only make a second VM of the same name
OS_LOGIN = "os_login"          # (GcpError kind only) the project enforces OS Login and the recipe
#                                names no OS Login user: metadata ssh-keys would be ignored
UNFINISHED = "unfinished"     # (GcpError kind only) an operation did not finish within its budget
_RANK = {TRANSIENT: 0, STOCKOUT: 1, ZONE: 2, REGION_QUOTA: 3, GLOBAL_QUOTA: 4, PERMISSION: 5, EXISTS: 6}

#: VM_MIN_COUNT_NOT_REACHED: a bulkInsert (a cluster) whose zone could not make minCount VMs,
#: often the only error it gives, with HTTP 503 (docs/facts/gcp-cluster.md): the next zone, not
#: a retry in this one.
STOCKOUT_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                  "insufficientCapacity", "RESOURCE_NOT_FOUND", "UNSUPPORTED_OPERATION", "VM_MIN_COUNT_NOT_REACHED"}
PERMISSION_CODES = {"IAM_PERMISSION_DENIED", "forbidden", "accessNotConfigured", "PERMISSION_DENIED",
                    "SERVICE_DISABLED", "insufficientPermissions"}
EXISTS_CODES = {"alreadyExists", "RESOURCE_ALREADY_EXISTS"}
TRANSIENT_CODES = {"rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_OPERATION_RATE_EXCEEDED",
                   "backendError", "internalError", "UNAVAILABLE", "INTERNAL_ERROR"}

QUOTA_CONSOLE = "https://console.cloud.google.com/iam-admin/quotas"


class GcpError(Exception):
    """A Compute Engine problem told as one or two sentences that say what to do next."""

    def __init__(self, message: str, *, kind: str = "error", link: str | None = None,
                 vm_exists: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.link = link
        #: the run owns a VM that is running (and billed) although this error ended it
        self.vm_exists = vm_exists

    def __str__(self) -> str:
        return self.message


class ApiError(Exception):
    """A failed Compute request, as the client adaptor (:mod:`.client`) reports it.

    Carries what google.api_core's exceptions carry (HTTP status, the ``errors`` and
    ``details`` of the JSON error body) without this module importing Google, so the
    classification below stays pure. ``transport``: no HTTP answer (connection refused,
    reset, the request's timeout) or a retry budget that ran out.
    """

    def __init__(self, message: str, *, code: int | None = None, errors: list[dict[str, Any]] | None = None,
                 details: list[Any] | None = None, transport: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.errors = list(errors or [])
        self.details = list(details or [])
        self.transport = transport

    @property
    def not_found(self) -> bool:
        return self.code == 404


def console_link(metric: str, region: str | None = None, project: str | None = None) -> str:
    """The Cloud console page where ``metric`` (in ``region``) can be raised.

    The quotas page takes a filter ``pageState``; naming the metric (and region) there
    opens the page on the one row the user has to edit.
    """
    terms = [{"k": "Metric", "t": 10, "v": f'"compute.googleapis.com/{metric.lower()}"', "s": True}]
    if region:
        terms.append({"k": "Dimensions (e.g. location)", "t": 10, "v": f'"region:{region}"', "s": True})
    state = json.dumps({"allQuotasTable": {"f": json.dumps(terms, separators=(",", ":"))}}, separators=(",", ":"))
    q = {"pageState": state}
    if project:
        q["project"] = project
    return f"{QUOTA_CONSOLE}?{urllib.parse.urlencode(q, quote_via=urllib.parse.quote)}"


@dataclass
class ErrorItem:
    """One error of an operation or HTTP response, normalised from either shape."""

    code: str
    message: str
    http_status: int | None = None
    metadatas: dict[str, str] = field(default_factory=dict)
    quota_metric: str | None = None
    quota_region: str | None = None
    quota_limit: float | None = None


@dataclass
class Verdict:
    """What the errors of one attempt mean for failover."""

    kind: str
    items: list[ErrorItem]
    zones_available: list[str] = field(default_factory=list)
    region: str | None = None       # for REGION_QUOTA
    metric: str | None = None       # for quota kinds

    @property
    def not_found(self) -> bool:
        """The request named something that does not exist (HTTP 404)."""
        return bool(self.items) and all(i.http_status == 404 for i in self.items)

    @property
    def reason(self) -> str:
        """A short phrase for the log: "stockout (ZONE_RESOURCE_POOL_EXHAUSTED)"."""
        codes = ", ".join(dict.fromkeys(i.code for i in self.items if i.code))
        words = {TRANSIENT: "temporary error", STOCKOUT: "no capacity", ZONE: "zone error",
                 REGION_QUOTA: "regional quota exhausted", GLOBAL_QUOTA: "global quota exhausted",
                 PERMISSION: "permission denied", EXISTS: "name already taken"}
        what = words[self.kind]
        if self.metric:
            what += f" ({self.metric}" + (f" in {self.region}" if self.region else "") + ")"
        return f"{what} [{codes}]" if codes else what


def _get(d: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in d and d[n] not in (None, "", {}, []):
            return d[n]
    return None


_QUOTA_MSG = re.compile(r"Quota '([A-Z0-9_]+)' exceeded\.\s*Limit:\s*([0-9.]+)(?:\s+in region\s+([a-z0-9-]+))?")


def normalise(err: dict[str, Any], http_status: int | None = None) -> ErrorItem:
    """Read one error in Compute's JSON (camelCase) or proto-plus (snake_case) shape."""
    code = str(_get(err, "code", "reason") or "")
    message = str(_get(err, "message") or "")
    item = ErrorItem(code=code, message=message, http_status=http_status)
    for det in _get(err, "errorDetails", "error_details") or []:
        info = _get(det, "errorInfo", "error_info") or {}
        meta = _get(info, "metadatas", "metadata") or {}
        item.metadatas.update({str(k): str(v) for k, v in dict(meta).items()})
        qi = _get(det, "quotaInfo", "quota_info") or {}
        if qi:
            metric = str(_get(qi, "metricName", "metric_name") or "").rsplit("/", 1)[-1].upper()
            item.quota_metric = metric or item.quota_metric
            dims = _get(qi, "dimensions") or {}
            item.quota_region = dict(dims).get("region") or item.quota_region
            lim = _get(qi, "limit")
            item.quota_limit = float(lim) if lim is not None else item.quota_limit
    m = _QUOTA_MSG.search(message)
    if m:
        item.quota_metric = item.quota_metric or m.group(1)
        item.quota_limit = item.quota_limit if item.quota_limit is not None else float(m.group(2))
        item.quota_region = item.quota_region or m.group(3)
        if not code or code in ("forbidden", "quotaExceeded"):
            item.code = "QUOTA_EXCEEDED"
    return item


def kind_of(item: ErrorItem) -> str:
    """The failover kind of a single error."""
    code, msg = item.code, item.message
    if code in ("QUOTA_EXCEEDED", "quotaExceeded") or item.quota_metric:
        if "GPUS_ALL_REGIONS" in (item.quota_metric or "") or "GPUS_ALL_REGIONS" in msg or (
                item.quota_metric or "").endswith("_ALL_REGIONS"):
            return GLOBAL_QUOTA
        return REGION_QUOTA
    if code in EXISTS_CODES or (item.http_status == 409 and "already exists" in msg):
        return EXISTS
    if code in STOCKOUT_CODES or "does not have enough resources" in msg:
        return STOCKOUT
    status = item.http_status or 0
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return TRANSIENT
    if (code in PERMISSION_CODES or "API has not been used in project" in msg or "Policy update access denied" in msg
            or "permission" in msg.lower() and item.http_status == 403):
        return PERMISSION
    return ZONE


def classify(errors: Iterable[dict[str, Any] | ErrorItem], http_status: int | None = None) -> Verdict:
    """Judge all errors of one attempt; the most final kind wins, hints are collected from all."""
    items = [e if isinstance(e, ErrorItem) else normalise(e, http_status) for e in errors]
    if not items:
        items = [ErrorItem(code="", message="unknown error", http_status=http_status)]
    kinds = [kind_of(i) for i in items]
    kind = max(kinds, key=_RANK.__getitem__)
    v = Verdict(kind=kind, items=items)
    for i, k in zip(items, kinds):
        za = i.metadatas.get("zonesAvailable") or i.metadatas.get("zonesWithCapacity") or ""
        for z in (s.strip() for s in za.split(",")):
            if z and z not in v.zones_available:
                v.zones_available.append(z)
        if k == kind and i.quota_metric:
            v.metric, v.region = i.quota_metric, i.quota_region
    return v


ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def _details_as_error_details(details: Iterable[Any]) -> list[dict[str, Any]]:
    """The ``details`` of an HTTP error body in the ``errorDetails`` shape operations use.

    A synchronous error puts ``google.rpc.ErrorInfo`` in ``error.details`` with a
    ``metadata`` map (google/rpc/error_details.proto; api_core's
    ``format_http_response_error`` passes them through as dicts); an operation error puts
    it under ``errorDetails[].errorInfo`` with ``metadatas``. Both carry ``zonesAvailable``.
    """
    out: list[dict[str, Any]] = []
    for det in details:
        if not isinstance(det, dict):
            continue
        if det.get("@type") == ERROR_INFO_TYPE:
            out.append({"errorInfo": {"reason": det.get("reason"), "domain": det.get("domain"),
                                      "metadatas": dict(det.get("metadata") or det.get("metadatas") or {})}})
        elif any(k in det for k in ("errorInfo", "quotaInfo", "error_info", "quota_info")):
            out.append(det)
    return out


def from_api_exception(exc: BaseException) -> Verdict:
    """Classify a failed request (an :class:`ApiError`, or any exception with the same
    ``code`` / ``errors`` / ``details`` attributes): its ``errors`` and its ``details``."""
    status = getattr(exc, "code", None)
    status = int(status) if isinstance(status, int) else None
    errs = list(getattr(exc, "errors", None) or [])
    extra = _details_as_error_details(getattr(exc, "details", None) or [])
    dicts: list[dict[str, Any]] = []
    msg = str(getattr(exc, "message", "") or exc)
    for e in errs:
        if isinstance(e, dict):
            d = dict(e)
            d.setdefault("message", msg)
            dicts.append(d)
    if not dicts:
        dicts = [{"code": "", "message": msg}]
    if extra:
        dicts[0] = dict(dicts[0], errorDetails=list(dicts[0].get("errorDetails") or []) + extra)
    return classify(dicts, status)


def global_quota_error(limit: float, usage: float, need: int, project: str | None) -> GcpError:
    """The stop message for an exhausted GPUS_ALL_REGIONS (every new project has 0)."""
    link = console_link("GPUS_ALL_REGIONS", None, project)
    free = max(0, int(limit - usage))
    return GcpError(
        f"Quota 'GPUS_ALL_REGIONS' is {limit:g} ({free} free, {need} needed): request {int(usage) + need} "
        f"at {link} (approval can take a day or two).", kind=GLOBAL_QUOTA, link=link)


def quota_error(verdict: Verdict, project: str | None, doing: str) -> GcpError:
    """The stop message for a quota an attempt hit, naming *that* quota (CPUS_ALL_REGIONS,
    SSD_TOTAL_GB in a region ...), its limit and the console row that raises it."""
    item = next((i for i in verdict.items if i.quota_metric == verdict.metric), None) or \
        (verdict.items[0] if verdict.items else None)
    metric = verdict.metric or "GPUS_ALL_REGIONS"
    region = verdict.region if verdict.kind == REGION_QUOTA else None
    link = console_link(metric, region, project)
    lim = item.quota_limit if item is not None else None
    where = f" in {region}" if region else " (all regions)"
    limit = "" if lim is None else f" (limit {lim:g})"
    return GcpError(f"Quota '{metric}'{where} is exhausted{limit} while {doing}: request more at {link} "
                    f"(approval can take a day or two), or free some.", kind=verdict.kind, link=link)


def region_quota_message(metric: str, region: str, limit: float | None, usage: float | None,
                         need: int, project: str | None) -> str:
    link = console_link(metric, region, project)
    lim = "unknown" if limit is None else f"{limit:g}"
    used = "" if usage is None else f", {usage:g} in use"
    return f"Quota '{metric}' in {region} is {lim}{used}; {need} needed: request it at {link}"


def os_login_error(project: str, public_key_path: str) -> GcpError:
    """The stop message when a project enforces OS Login and the recipe sets no ``ssh.user``."""
    return GcpError(
        f"Project {project} enforces OS Login (enable-oslogin=TRUE in its metadata), which ignores the SSH key "
        f"gpuwizard puts in VM metadata, so nothing was created or started: either add gpuwizard's key to your "
        f"OS Login profile with `gcloud compute os-login ssh-keys add --key-file={public_key_path}`, set ssh.user "
        f"in the recipe to your OS Login POSIX username (shown by `gcloud compute os-login describe-profile`) "
        f"and run again, or ask a project owner to allow metadata SSH keys (enable-oslogin=FALSE).",
        kind=OS_LOGIN)


def api_error(exc: BaseException, doing: str) -> GcpError:
    """Turn any exception from a client call into one actionable sentence."""
    if isinstance(exc, GcpError):
        return exc
    name = type(exc).__name__
    if getattr(exc, "transport", False) or name in ("ConnectionError", "ConnectTimeout", "ReadTimeout",
                                                     "TransportError", "RetryError") or \
            isinstance(exc, (ConnectionError, TimeoutError)):
        return GcpError(f"Could not reach Compute Engine while {doing} ({exc}); check your network and try again.",
                        kind=TRANSIENT)
    v = from_api_exception(exc)
    msg = v.items[0].message if v.items else str(exc)
    if v.kind == PERMISSION:
        return GcpError(f"Permission denied while {doing}: {msg} Ask for roles/compute.instanceAdmin.v1 on the "
                        f"project, or check that the Compute Engine API is enabled.", kind=PERMISSION)
    if v.kind == TRANSIENT:
        return GcpError(f"Compute Engine had a temporary problem while {doing} ({msg}); try again in a minute.",
                        kind=TRANSIENT)
    if v.kind in (GLOBAL_QUOTA, REGION_QUOTA):
        return quota_error(v, None, doing)
    return GcpError(f"Compute Engine refused {doing}: {msg}", kind=v.kind)
