"""The HTTP side of the fake Compute server: routes, request dispatch, injected HTTP faults,
the ``/_fake/*`` control API and one handler per route (see tests/fake_compute.py)."""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from tests.discovery_contract import compute as compute_contract
from tests.fake_compute_shapes import BASE
from tests.fake_compute_shapes import http_error as _http_error
from tests.fake_compute_shapes import region_of as _region
from tests.fake_http import JsonHandler

if TYPE_CHECKING:
    from tests.fake_compute import FakeCompute

_P = r"/compute/v1/projects/(?P<project>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_P + r"$"), "project"),
    ("GET", re.compile(_P + r"/regions$"), "regions"),
    ("GET", re.compile(_P + r"/regions/(?P<region>[^/]+)$"), "region"),
    ("GET", re.compile(_P + r"/zones$"), "zones"),
    ("GET", re.compile(_P + r"/aggregated/acceleratorTypes$"), "acc_agg"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/acceleratorTypes$"), "acc_zone"),
    ("GET", re.compile(_P + r"/aggregated/instances$"), "inst_agg"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances$"), "inst_list"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances$"), "inst_insert"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/bulkInsert$"), "inst_bulk"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$"), "inst_get"),
    ("DELETE", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$"), "inst_delete"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/start$"), "inst_start"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/stop$"), "inst_stop"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/getGuestAttributes$"), "guest"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/serialPort$"), "serial"),
    ("GET", re.compile(_P + r"/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)$"), "op_get"),
    ("POST", re.compile(_P + r"/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)/wait$"), "op_wait"),
    ("GET", re.compile(_P + r"/regions/(?P<region>[^/]+)/operations/(?P<op>[^/]+)$"), "op_get"),
    ("POST", re.compile(_P + r"/regions/(?P<region>[^/]+)/operations/(?P<op>[^/]+)/wait$"), "op_wait"),
    ("GET", re.compile(_P + r"/global/operations/(?P<op>[^/]+)$"), "op_get"),
    ("POST", re.compile(_P + r"/global/operations/(?P<op>[^/]+)/wait$"), "op_wait"),
    ("GET", re.compile(_P + r"/global/images/family/(?P<name>[^/]+)$"), "img_family"),
    ("GET", re.compile(_P + r"/global/images/(?P<name>[^/]+)$"), "img_get"),
    ("GET", re.compile(_P + r"/global/firewalls$"), "fw_list"),
    ("POST", re.compile(_P + r"/global/firewalls$"), "fw_insert"),
    ("GET", re.compile(_P + r"/global/firewalls/(?P<name>[^/]+)$"), "fw_get"),
    ("DELETE", re.compile(_P + r"/global/firewalls/(?P<name>[^/]+)$"), "fw_delete"),
    ("GET", re.compile(_P + r"/aggregated/resourcePolicies$"), "rp_agg"),
    ("GET", re.compile(_P + r"/regions/(?P<region>[^/]+)/resourcePolicies$"), "rp_list"),
    ("POST", re.compile(_P + r"/regions/(?P<region>[^/]+)/resourcePolicies$"), "rp_insert"),
    ("GET", re.compile(_P + r"/regions/(?P<region>[^/]+)/resourcePolicies/(?P<name>[^/]+)$"), "rp_get"),
    ("DELETE", re.compile(_P + r"/regions/(?P<region>[^/]+)/resourcePolicies/(?P<name>[^/]+)$"), "rp_delete"),
]


class Handler(JsonHandler):
    state: "FakeCompute"

    def _send(self, code: int, body: dict[str, Any]) -> None:
        route = getattr(self, "_route", None)
        if route is not None:
            problems = compute_contract().check_response(route[0], route[1], code, body)
            if problems:
                with self.state.lock:
                    self.state.violations += problems
        self.send_json(code, body)

    _body = JsonHandler.read_json

    def _dispatch(self, method: str) -> None:
        st = self.state
        self._route: tuple[str, str] | None = None
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        body = self._body() if method == "POST" else {}
        if body is None:  # a request cut off mid-send is no request: nothing to check or answer
            with self.state.lock:
                self.state.aborted += 1
                self.state.lock.notify_all()
            self.close_connection = True
            return
        if url.path.startswith("/_fake/"):
            return self._control(method, url.path, body)
        # Every request is held to Google's own description of the API (and so is the answer,
        # in _send): the fake cannot drift from the real Compute API unnoticed.
        problems = compute_contract().check_request(method, url.path, urllib.parse.parse_qs(url.query),
                                                     body if method == "POST" else None)
        self._route = (method, url.path)
        with st.lock:
            st.requests.append((time.monotonic(), method, url.path))
            st.authorizations.append(self.headers.get("Authorization"))
            st.violations += problems
        if st.latency:
            time.sleep(st.latency)
        for m, rx, name in ROUTES:
            match = rx.match(url.path) if m == method else None
            if match:
                args = match.groupdict()
                if args.get("project") != st.project and not name.startswith("img_"):  # images: any project
                    return self._send(404, _http_error(404, f"The resource 'projects/{args.get('project')}' "
                                                            f"was not found", "notFound"))
                with st.lock:
                    status = st._http_fault(name)
                if status is not None:
                    reason = {429: "rateLimitExceeded", 500: "internalError", 503: "backendError"}.get(status, "error")
                    return self._send(status, _http_error(status, f"injected HTTP {status}", reason))
                if name == "op_wait":
                    return self._wait(args["op"])
                with st.lock:
                    st._tick()
                    code, out = getattr(self, "_" + name)(args, query, body)
                    st.lock.notify_all()
                return self._send(code, out)
        self._send(404, _http_error(404, f"fake Compute has no route for {method} {url.path}", "notFound"))

    def _wait(self, op_name: str) -> None:
        st = self.state
        deadline = time.monotonic() + st.wait_cap
        with st.lock:
            op = st.ops.get(op_name)
            if op is None:
                return self._send(404, _http_error(404, f"operation {op_name} not found", "notFound"))
            while op.status(time.monotonic()) != "DONE" and time.monotonic() < deadline:
                remaining = min(deadline, op.created + op.duration) - time.monotonic()
                st.lock.wait(timeout=max(0.001, remaining))
            st._tick()
            out = st._op_json(op)
        self._send(200, out)

    def _control(self, method: str, path: str, body: dict[str, Any]) -> None:
        st = self.state
        with st.lock:
            if path == "/_fake/state":
                return self._send(200, st.state())
            if path == "/_fake/fault" and method == "POST":
                zone = body.pop("zone")
                st.add_fault(zone, **body)
                return self._send(200, {"ok": True})
            if path == "/_fake/preempt" and method == "POST":
                return self._send(200, {"preempted": st.preempt(body.get("zone"), body.get("name"),
                                                                run=body.get("run"), action=body.get("action"))})
            if path == "/_fake/metadata" and method == "POST":
                st.set_project_metadata(body["key"], body.get("value"))
                return self._send(200, {"ok": True})
            if path == "/_fake/reset" and method == "POST":
                st.faults.clear()
                return self._send(200, {"ok": True})
        self._send(404, {"error": {"code": 404, "message": "no such control path"}})

    # ---- route handlers (called with the state lock held) ----

    def _project(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        return 200, {"kind": "compute#project", "name": st.project, "id": "1234567890",
                     "quotas": [{"metric": m, "limit": v["limit"], "usage": v["usage"]}
                                for m, v in sorted(st.global_quotas.items())],
                     "commonInstanceMetadata": {
                         "kind": "compute#metadata",
                         "fingerprint": f"fp{abs(hash(tuple(sorted(st.project_metadata.items())))) % 10**8:08d}",
                         "items": [{"key": k, "value": v} for k, v in sorted(st.project_metadata.items())]}}

    def _regions(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"kind": "compute#regionList", "items": self.state.regions_json()}

    def _region(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for r in self.state.regions_json():
            if r["name"] == a["region"]:
                return 200, r
        return 404, _http_error(404, f"region {a['region']} not found", "notFound")

    def _zones(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        return 200, {"kind": "compute#zoneList", "items": [
            {"name": z, "status": "UP", "region": f"{BASE}/projects/{st.project}/regions/{_region(z)}"}
            for z in sorted(st.world)]}

    def _acc_agg(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, self.state.accelerator_types(q.get("filter", ""))

    def _acc_zone(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        agg = self.state.accelerator_types(q.get("filter", ""))
        return 200, {"items": agg["items"].get(f"zones/{a['zone']}", {}).get("acceleratorTypes", [])}

    def _inst_agg(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        st = self.state
        items: dict[str, Any] = {}
        for inst in st.list_instances(None, q.get("filter", "")):
            z = inst["zone"].rsplit("/", 1)[-1]
            items.setdefault(f"zones/{z}", {"instances": []})["instances"].append(inst)
        return 200, {"kind": "compute#instanceAggregatedList", "items": items}

    def _inst_list(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"kind": "compute#instanceList", "items": self.state.list_instances(a["zone"], q.get("filter", ""))}

    def _inst_insert(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.state.policy_links(a["zone"], b)
        return self.state.insert(a["zone"], [b])

    def _inst_bulk(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """At most ``count`` VMs, none when fewer than ``minCount`` can be made (tests/fake_compute_cluster.py)."""
        self.state.bulk_bodies.append(b)
        props = dict(b.get("instanceProperties") or {})
        names = list((b.get("perInstanceProperties") or {}).keys())
        count = int(b.get("count") or 0)
        min_count = int(b.get("minCount") or count)
        if not count or not 1 <= min_count <= count or len(names) > count:
            return 400, _http_error(400, f"Invalid value for field 'resource': count {count}, minCount {min_count}, "
                                         f"{len(names)} perInstanceProperties", "invalid")
        if not names:
            pattern = b.get("namePattern") or "instance-####"
            width = pattern.count("#")
            names = [pattern.replace("#" * width, str(i + 1).zfill(width)) for i in range(count)]
        zone = a["zone"]
        bodies = []
        for n in names:
            body = dict(props, name=n)
            mt = str(body.get("machineType", ""))
            if mt and "/" not in mt:
                body["machineType"] = f"zones/{zone}/machineTypes/{mt}"
            self.state.policy_links(zone, body)
            bodies.append(body)
        return self.state.insert(zone, bodies, min_count=min_count)

    def _img_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.image(a["project"], a["name"], family=False)

    def _img_family(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.image(a["project"], a["name"], family=True)

    def _fw_list(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.fw_list(q.get("filter", ""))

    def _fw_insert(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.fw_insert(b)

    def _fw_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.fw_get(a["name"])

    def _fw_delete(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.fw_delete(a["name"])

    def _rp_agg(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        items: dict[str, Any] = {}
        for pol in self.state.rp_list(None, q.get("filter", "")):
            items.setdefault("regions/" + pol["region"].rsplit("/", 1)[-1], {"resourcePolicies": []})[
                "resourcePolicies"].append(pol)
        return 200, {"kind": "compute#resourcePolicyAggregatedList", "items": items}

    def _rp_list(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"kind": "compute#resourcePolicyList", "items": self.state.rp_list(a["region"], q.get("filter", ""))}

    def _rp_insert(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.rp_insert(a["region"], b)

    def _rp_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.rp_get(a["region"], a["name"])

    def _rp_delete(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.rp_delete(a["region"], a["name"])

    def _inst_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inst = self.state.instances.get((a["zone"], a["name"]))
        if inst is None:
            return 404, _http_error(404, f"The resource 'projects/{a['project']}/zones/{a['zone']}/instances/"
                                         f"{a['name']}' was not found", "notFound")
        return 200, self.state._public(inst)

    def _inst_delete(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.delete(a["zone"], a["name"])

    def _inst_start(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.start_instance(a["zone"], a["name"])

    def _inst_stop(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.stop_instance(a["zone"], a["name"])

    def _guest(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.guest_attributes(a["zone"], a["name"], q.get("queryPath", ""))

    def _serial(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.state.serial_output(a["zone"], a["name"], int(q.get("port") or 1))

    def _op_get(self, a: dict[str, str], q: dict[str, str], b: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        op = self.state.ops.get(a["op"])
        if op is None:
            return 404, _http_error(404, f"operation {a['op']} not found", "notFound")
        return 200, self.state._op_json(op)
