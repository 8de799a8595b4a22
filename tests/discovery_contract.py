"""Holds the fakes to Google's own machine-readable API descriptions.

google-api-python-client ships Google's discovery documents
(``googleapiclient/discovery_cache/documents/compute.v1.json``); they list every REST
method (path template, HTTP verb, query parameters with types and enums) and every schema
(fields, types, enums, which fields are output only). A fake server calls
:meth:`Contract.check_request` on every request it receives and :meth:`Contract.check_response`
on what it answers: a request the real API would reject (an unknown method, query parameter or
body field, a wrong type or enum value, an output-only field sent) or a response field the real
API does not have is a violation, and the test fails. So the fake cannot drift from Google's API
without a test noticing, and neither can the code that talks to it.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

#: Query parameters every Google API takes (the document's top-level ``parameters``) are read
#: from the document itself; these are sent by the transport, never by our code.
_TRANSPORT = {"$alt", "$.xgafv"}


def document(name: str) -> dict[str, Any]:
    import googleapiclient  # test dependency: only the documents are used
    path = pathlib.Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / name
    return json.loads(path.read_text())


@dataclass
class Method:
    id: str
    verb: str
    regex: re.Pattern[str]
    params: dict[str, dict[str, Any]]
    request: str | None
    response: str | None


@dataclass
class Contract:
    """One API's contract, built from its discovery document."""

    doc: dict[str, Any]
    methods: list[Method] = field(default_factory=list)
    checked: int = 0

    def __post_init__(self) -> None:
        base = self.doc["basePath"]
        self.global_params = set(self.doc.get("parameters", {}))

        def walk(resources: dict[str, Any]) -> None:
            for res in resources.values():
                for m in res.get("methods", {}).values():
                    rx = re.escape(base + m.get("flatPath", m["path"]))
                    rx = re.sub(r"\\\{\\\+[^}]+\\\}", ".+", rx)
                    rx = re.sub(r"\\\{[^}]+\\\}", "[^/]+", rx)
                    self.methods.append(Method(m["id"], m["httpMethod"], re.compile(rx + "$"),
                                               m.get("parameters", {}),
                                               (m.get("request") or {}).get("$ref"),
                                               (m.get("response") or {}).get("$ref")))
                walk(res.get("resources", {}))

        walk(self.doc.get("resources", {}))

    def method(self, verb: str, path: str) -> Method | None:
        for m in self.methods:
            if m.verb == verb and m.regex.match(path):
                return m
        return None

    def check_request(self, verb: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
        self.checked += 1
        m = self.method(verb, path)
        if m is None:
            return [f"{verb} {path}: no such method in {self.doc['name']} {self.doc['version']}"]
        out = []
        for key, values in query.items():
            if key in self.global_params or key in _TRANSPORT:
                continue
            spec = m.params.get(key)
            if spec is None or spec.get("location") != "query":
                out.append(f"{m.id}: unknown query parameter {key!r}")
                continue
            for v in values:
                out += [f"{m.id}: query {key}: {p}" for p in _scalar(spec, v, from_text=True)]
        if m.request:
            if body in (None, b"", {}) and verb in ("POST", "PUT", "PATCH"):
                out.append(f"{m.id}: a request body ({m.request}) is required")
            elif body not in (None, b""):
                out += [f"{m.id}: body{p}" for p in self.value(m.request, body, sending=True)]
        elif body not in (None, b"", {}):
            out.append(f"{m.id}: takes no request body")
        return out

    def check_response(self, verb: str, path: str, code: int, body: Any) -> list[str]:
        m = self.method(verb, path)
        if m is None or code >= 400 or not m.response or body in (None, ""):
            return []
        return [f"{m.id} response{p}" for p in self.value(m.response, body, sending=False)]

    def enum(self, schema: str, prop: str) -> frozenset[str]:
        """The values a schema's field may take (e.g. ``Quota.metric``)."""
        return frozenset(self.doc["schemas"][schema]["properties"][prop].get("enum", ()))

    def value(self, ref: str, value: Any, *, sending: bool, at: str = "") -> list[str]:
        return _check(self.doc["schemas"], {"$ref": ref}, value, sending, at)


def _scalar(spec: dict[str, Any], v: Any, from_text: bool = False) -> list[str]:
    t, fmt = spec.get("type"), spec.get("format")
    if "enum" in spec and v not in spec["enum"]:
        return [f"{v!r} is not one of {spec['enum'][:8]}{'...' if len(spec['enum']) > 8 else ''}"]
    if t == "boolean":
        ok = v in ("true", "false") if from_text else isinstance(v, bool)
    elif t == "integer":
        ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v))
    elif t == "number":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) or (isinstance(v, str) and _is_float(v))
    elif t == "string":
        ok = isinstance(v, str)
        if ok and fmt in ("int64", "uint64"):
            ok = bool(re.fullmatch(r"-?[0-9]+", v))
    else:
        ok = True
    return [] if ok else [f"{v!r} is not a {t}{'/' + fmt if fmt else ''}"]


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _check(schemas: dict[str, Any], spec: dict[str, Any], value: Any, sending: bool, at: str) -> list[str]:
    if "$ref" in spec:
        spec = schemas[spec["$ref"]]
    t = spec.get("type")
    if t == "object" or "properties" in spec or "additionalProperties" in spec:
        if not isinstance(value, dict):
            return [f"{at}: {type(value).__name__} where an object is expected"]
        out = []
        props = spec.get("properties", {})
        extra = spec.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k)
            if sub is None and extra is not None:
                sub = extra
            if sub is None:
                out.append(f"{at}.{k}: no such field")
                continue
            if sending and sub.get("readOnly"):
                out.append(f"{at}.{k}: output only, must not be sent")
            out += _check(schemas, sub, v, sending, f"{at}.{k}")
        return out
    if t == "array":
        if not isinstance(value, list):
            return [f"{at}: {type(value).__name__} where a list is expected"]
        return [p for i, v in enumerate(value) for p in _check(schemas, spec.get("items", {}), v, sending, f"{at}[{i}]")]
    return [f"{at}: {p}" for p in _scalar(spec, value)]


@functools.lru_cache(maxsize=None)
def compute() -> Contract:
    """The Compute Engine v1 contract (cached: the document is 4 MB)."""
    return Contract(document("compute.v1.json"))
