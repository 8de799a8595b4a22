"""A fake Cloud Quotas API (v1, REST) for tests: the real google-cloud-quotas client talks to it.

Stateful and small: QuotaInfos of compute.googleapis.com (listed in pages), and
QuotaPreferences (create / get / list / patch) that stay ``reconciling`` until a test
decides them (:meth:`FakeCloudQuotas.decide`: granted, partially granted or denied
with a reason). Faults: ``SERVICE_DISABLED`` and ``PERMISSION_DENIED`` in the real
``google.rpc.Status`` JSON shape with a ``google.rpc.ErrorInfo`` detail.

No discovery document ships for Cloud Quotas, so every request body and every answer
is checked against the proto messages of google-cloud-quotas itself
(``from_json(..., ignore_unknown_fields=False)`` raises on a field the message lacks)
plus the field rules the protos' docs state (required, output-only); each break is a
:attr:`violations` entry and the fixture fails the test on any.

Paths are those of ``cloudquotas_v1/services/cloud_quotas/transports/rest_base.py``.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import urllib.parse
from typing import Any

from google.cloud import cloudquotas_v1 as cq
from tests.fake_http import FakeServer, JsonHandler

SERVICE = "compute.googleapis.com"
_P = r"/v1/projects/(?P<project>[^/]+)/locations/global"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_P + r"/services/(?P<service>[^/]+)/quotaInfos$"), "infos"),
    ("GET", re.compile(_P + r"/services/(?P<service>[^/]+)/quotaInfos/(?P<id>[^/]+)$"), "info"),
    ("POST", re.compile(_P + r"/quotaPreferences$"), "create"),
    ("GET", re.compile(_P + r"/quotaPreferences$"), "prefs"),
    ("GET", re.compile(_P + r"/quotaPreferences/(?P<id>[^/]+)$"), "pref"),
    ("PATCH", re.compile(_P + r"/quotaPreferences/(?P<id>[^/]+)$"), "patch"),
]
#: QuotaPreference fields a client must not send (Output only, per resources.py).
OUTPUT_ONLY = ("createTime", "updateTime", "reconciling")
OUTPUT_ONLY_CONFIG = ("stateDetail", "grantedValue", "traceId", "requestOrigin")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_error(code: int, status: str, message: str, reason: str | None = None,
                 metadata: dict[str, str] | None = None, domain: str = "googleapis.com") -> dict[str, Any]:
    """A ``google.rpc.Status`` error body as Google's REST front end writes it."""
    details: list[dict[str, Any]] = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain,
                        "metadata": dict(metadata or {})})
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


class FakeCloudQuotas(FakeServer):
    """State and HTTP server of the fake. Thread-safe."""

    def __init__(self, project: str = "test-project", page_size: int = 3) -> None:
        self.project = project
        self.page_size = page_size
        self.lock = threading.Lock()
        self.infos: dict[str, dict[str, Any]] = {}
        self.preferences: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []  # (method, path, body)
        self.violations: list[str] = []
        self.faults: dict[str, str] = {}   # route name or "*" -> "disabled" | "denied"
        #: Answer a request that carries a bearer token but no ``x-goog-user-project`` as
        #: Google answers user (``gcloud auth application-default login``) credentials
        #: without a quota project: 403 "... requires a quota project ...", with the
        #: request billed to gcloud's own project, where the API is off (docs/facts/cloud-quotas.md).
        self.require_quota_project = False
        self.headers: list[dict[str, str]] = []   # each request's headers (lower-case names)
        self.set_quota("GPUS-ALL-REGIONS-per-project", {}, 16, ["global"])
        self.set_quota("NVIDIA-T4-GPUS-per-project-region", {}, 8, ["us-central1", "us-east1", "us-west1"])
        self.set_quota("PREEMPTIBLE-NVIDIA-T4-GPUS-per-project-region", {}, 8,
                       ["us-central1", "us-east1", "us-west1"])
        self.set_quota("GPUS-PER-GPU-FAMILY-per-project-region", {"gpu_family": "NVIDIA_H100"}, 8,
                       ["us-central1", "us-east1", "us-west1", "europe-west4", "asia-northeast1"])

    # ------------------------------------------------------------------ scenario knobs

    def set_quota(self, quota_id: str, dimensions: dict[str, str], value: int,
                  locations: list[str] | None = None) -> None:
        """Set the value of ``quota_id`` for exactly ``dimensions`` (adding the entry if new)."""
        with self.lock:
            info = self.infos.setdefault(quota_id, self._info(quota_id))
            for k in dimensions:
                if k not in info["dimensions"]:
                    info["dimensions"].append(k)
            entry = next((d for d in info["dimensionsInfos"] if d.get("dimensions", {}) == dimensions), None)
            if entry is None:
                entry = {"dimensions": dict(dimensions), "details": {}, "applicableLocations": []}
                info["dimensionsInfos"].append(entry)
                # most specific first, as the API orders them
                info["dimensionsInfos"].sort(key=lambda d: -len(d.get("dimensions") or {}))
            if value:
                entry["details"]["value"] = str(int(value))   # int64: a string in proto3 JSON; 0 is left out
            else:
                entry["details"].pop("value", None)
            region = dimensions.get("region")
            entry["applicableLocations"] = [region] if region else list(locations or ["global"])

    def _info(self, quota_id: str) -> dict[str, Any]:
        regional = quota_id.endswith("per-project-region")
        return {"name": f"projects/{self.project}/locations/global/services/{SERVICE}/quotaInfos/{quota_id}",
                "quotaId": quota_id, "metric": f"{SERVICE}/" + quota_id.split("-per-")[0].lower().replace("-", "_"),
                "service": SERVICE, "isPrecise": True, "containerType": "PROJECT",
                "dimensions": ["region"] if regional else [], "metricDisplayName": quota_id,
                "quotaDisplayName": quota_id, "metricUnit": "1",
                "quotaIncreaseEligibility": {"isEligible": True}, "isFixed": False, "dimensionsInfos": [],
                "isConcurrent": False, "serviceRequestQuotaUri": "https://console.cloud.google.com/iam-admin/quotas"}

    def fail(self, kind: str, route: str = "*") -> None:
        """Answer ``route`` (``infos``, ``create`` ... or ``*``) with ``disabled`` or ``denied``."""
        with self.lock:
            self.faults[route] = kind

    def decide(self, name_or_id: str, granted: int | None, detail: str = "") -> dict[str, Any]:
        """Google's decision on a preference: stop reconciling, set grantedValue and stateDetail;
        what is granted becomes the quota's value."""
        with self.lock:
            pref = self._find(name_or_id)
            pref["reconciling"] = False
            cfg = pref["quotaConfig"]
            if granted is not None:
                cfg["grantedValue"] = str(granted)
            if detail:
                cfg["stateDetail"] = detail
            pref["updateTime"] = _now()
        if granted:
            self.set_quota(pref["quotaId"], dict(pref.get("dimensions") or {}), granted)
        return pref

    def _find(self, name_or_id: str) -> dict[str, Any]:
        for name, p in self.preferences.items():
            if name == name_or_id or name.rsplit("/", 1)[-1] == name_or_id:
                return p
        raise KeyError(name_or_id)

    def created(self) -> list[dict[str, Any]]:
        """The bodies of the create requests received."""
        return [b for m, p, b in self.requests if m == "POST" and b is not None]

    # ------------------------------------------------------------------ contract checks

    def _check(self, msg: type, data: dict[str, Any], where: str) -> None:
        try:
            msg.from_json(json.dumps(data), ignore_unknown_fields=False)
        except Exception as exc:  # noqa: BLE001 - recorded as a violation
            self.violations.append(f"{where}: not a {msg.__name__}: {exc}")

    def check_request_pref(self, body: dict[str, Any], where: str, create: bool) -> None:
        self._check(cq.QuotaPreference, body, where)
        for f in OUTPUT_ONLY:
            if f in body:
                self.violations.append(f"{where}: output-only field {f} sent")
        for f in OUTPUT_ONLY_CONFIG:
            if f in (body.get("quotaConfig") or {}):
                self.violations.append(f"{where}: output-only field quotaConfig.{f} sent")
        if create:
            for f in ("service", "quotaId"):
                if not body.get(f):
                    self.violations.append(f"{where}: required field {f} missing")
            if "preferredValue" not in (body.get("quotaConfig") or {}):
                self.violations.append(f"{where}: required field quotaConfig.preferredValue missing")
            if not body.get("contactEmail"):
                self.violations.append(f"{where}: contactEmail is required for an increase")
        for k in (body.get("dimensions") or {}):
            if k in ("user", "resource"):
                self.violations.append(f"{where}: dimension {k} must not be set")

    # ------------------------------------------------------------------ server

    def start(self) -> "FakeCloudQuotas":
        self.serve(_Handler, "state", "fake-cloudquotas")
        return self


class _Handler(JsonHandler):
    state: FakeCloudQuotas

    def _send(self, code: int, body: dict[str, Any], msg: type | None = None) -> None:
        if msg is not None and code == 200:
            with self.state.lock:
                self.state._check(msg, body, f"answer {self.command} {self.path}")
        self.send_json(code, body)

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        body = json.loads(raw) if raw.strip() else None
        st = self.state
        with st.lock:
            st.requests.append((method, url.path, body))
            st.headers.append({k.lower(): v for k, v in self.headers.items()})
        if st.require_quota_project and self.headers.get("Authorization") and \
                not self.headers.get("x-goog-user-project"):
            self._send(403, status_error(
                403, "PERMISSION_DENIED",
                "Your application is authenticating by using local Application Default Credentials. The "
                "cloudquotas.googleapis.com API requires a quota project, which is not set by default. To learn how "
                "to set your quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds .",
                "SERVICE_DISABLED", {"service": "cloudquotas.googleapis.com", "consumer": "projects/764086051850"}))
            return
        for m, rx, name in ROUTES:
            match = rx.match(url.path)
            if m == method and match:
                break
        else:
            self._send(404, status_error(404, "NOT_FOUND", f"no route {method} {url.path}"))
            return
        if match["project"] != st.project:
            self._send(403, status_error(403, "PERMISSION_DENIED", f"Permission denied on project {match['project']}",
                                         "IAM_PERMISSION_DENIED", {"resource": f"projects/{match['project']}"}))
            return
        fault = st.faults.get(name) or st.faults.get("*")
        if fault:
            self._fault(fault, name)
            return
        getattr(self, "_" + name)(match, query, body)

    def _fault(self, kind: str, route: str) -> None:
        p = self.state.project
        if kind == "disabled":
            url = f"https://console.developers.google.com/apis/api/cloudquotas.googleapis.com/overview?project={p}"
            self._send(403, status_error(
                403, "PERMISSION_DENIED",
                f"Cloud Quotas API has not been used in project {p} before or it is disabled. Enable it by "
                f"visiting {url} then retry.", "SERVICE_DISABLED",
                {"service": "cloudquotas.googleapis.com", "consumer": f"projects/{p}", "activationUrl": url,
                 "serviceTitle": "Cloud Quotas API", "containerInfo": p}))
        else:
            perm = "cloudquotas.quotas.update" if route in ("create", "patch") else "cloudquotas.quotas.get"
            self._send(403, status_error(
                403, "PERMISSION_DENIED", f"Permission '{perm}' denied on resource 'projects/{p}' (or it may not exist).",
                "IAM_PERMISSION_DENIED", {"permission": perm, "resource": f"projects/{p}"},
                domain="cloudquotas.googleapis.com"))

    # -- quotaInfos ---------------------------------------------------------------

    def _infos(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        st = self.state
        with st.lock:
            infos = [json.loads(json.dumps(i)) for i in st.infos.values()] if match["service"] == SERVICE else []
        size = int(query.get("pageSize") or 0) or st.page_size
        start = int(query.get("pageToken") or 0)
        page = infos[start:start + size]
        out: dict[str, Any] = {"quotaInfos": page}
        if start + size < len(infos):
            out["nextPageToken"] = str(start + size)
        self._send(200, out, cq.ListQuotaInfosResponse)

    def _info(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        with self.state.lock:
            info = self.state.infos.get(match["id"])
        if info is None:
            self._send(404, status_error(404, "NOT_FOUND", f"QuotaInfo {match['id']} not found"))
        else:
            self._send(200, info, cq.QuotaInfo)

    # -- quotaPreferences ---------------------------------------------------------

    def _create(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        st = self.state
        pid = query.get("quotaPreferenceId") or ""
        with st.lock:
            st.check_request_pref(body or {}, f"create {pid}", create=True)
            if pid and not ID_RE.match(pid):
                st.violations.append(f"create: quotaPreferenceId {pid!r} is not a valid id")
            name = f"projects/{st.project}/locations/global/quotaPreferences/{pid or len(st.preferences) + 1}"
            dims = dict((body or {}).get("dimensions") or {})
            clash = name in st.preferences or any(
                p["quotaId"] == body.get("quotaId") and dict(p.get("dimensions") or {}) == dims
                for p in st.preferences.values())
            if not clash and body.get("quotaId") not in st.infos:
                err: dict[str, Any] | None = status_error(400, "INVALID_ARGUMENT",
                                                          f"Quota {body.get('quotaId')} not found in {SERVICE}")
            elif clash:
                err = status_error(409, "ALREADY_EXISTS", f"QuotaPreference for {body.get('quotaId')} {dims} "
                                   "already exists")
            else:
                err = None
                now = _now()
                pref = {"name": name, "dimensions": dims, "service": body["service"], "quotaId": body["quotaId"],
                        "quotaConfig": {"preferredValue": str(body["quotaConfig"]["preferredValue"]),
                                        "traceId": f"trace-{len(st.preferences) + 1}", "requestOrigin": "ORIGIN_UNSPECIFIED"},
                        "etag": "e1", "createTime": now, "updateTime": now, "reconciling": True,
                        "justification": body.get("justification", "")}
                st.preferences[name] = pref
        if err:
            self._send(int(err["error"]["code"]), err)
        else:
            self._send(200, pref, cq.QuotaPreference)

    def _prefs(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        st = self.state
        with st.lock:
            prefs = [json.loads(json.dumps(p)) for p in st.preferences.values()]
        size = int(query.get("pageSize") or 0) or st.page_size
        start = int(query.get("pageToken") or 0)
        out: dict[str, Any] = {"quotaPreferences": prefs[start:start + size]}
        if start + size < len(prefs):
            out["nextPageToken"] = str(start + size)
        self._send(200, out, cq.ListQuotaPreferencesResponse)

    def _pref(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        with self.state.lock:
            try:
                pref = json.loads(json.dumps(self.state._find(match["id"])))
            except KeyError:
                pref = None
        if pref is None:
            self._send(404, status_error(404, "NOT_FOUND", f"QuotaPreference {match['id']} not found"))
        else:
            self._send(200, pref, cq.QuotaPreference)

    def _patch(self, match: re.Match[str], query: dict[str, str], body: Any) -> None:
        st = self.state
        mask = [f for f in (query.get("updateMask") or "").split(",") if f]
        with st.lock:
            st.check_request_pref(body or {}, f"patch {match['id']}", create=False)
            try:
                pref = st._find(match["id"])
            except KeyError:
                pref = None
            err = None
            if pref is None:
                err = status_error(404, "NOT_FOUND", f"QuotaPreference {match['id']} not found")
            elif body.get("etag") and body["etag"] != pref["etag"]:
                err = status_error(409, "ABORTED", "etag mismatch")
            else:
                for f in mask or ["quotaConfig", "justification", "contactEmail"]:
                    f = {"quota_config": "quotaConfig", "contact_email": "contactEmail"}.get(f.split(".")[0],
                                                                                         f.split(".")[0])
                    if f == "quotaConfig":
                        pref["quotaConfig"]["preferredValue"] = str(body["quotaConfig"]["preferredValue"])
                        pref["quotaConfig"].pop("grantedValue", None)
                        pref["quotaConfig"].pop("stateDetail", None)
                    elif f == "justification":
                        pref["justification"] = body.get("justification", "")
                pref["reconciling"] = True
                pref["etag"] = f"e{int(pref['etag'][1:]) + 1}"
                pref["updateTime"] = _now()
                pref = json.loads(json.dumps(pref))
        if err:
            self._send(int(err["error"]["code"]), err)
        else:
            self._send(200, pref, cq.QuotaPreference)
