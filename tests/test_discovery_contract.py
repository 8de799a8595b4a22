"""The contract check itself: each kind of request the real Compute API would reject is caught.
(The check runs on every request the fake Compute server receives, in every test.)"""

from __future__ import annotations

import socket
import urllib.parse

from tests.builders.runs import wait_for
from tests.discovery_contract import compute

P = "/compute/v1/projects/p/zones/us-central1-a"


def good_body() -> dict:
    return {"name": "vm-1", "machineType": "zones/us-central1-a/machineTypes/n1-standard-4",
            "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"},
            "disks": [{"boot": True, "initializeParams": {"diskSizeGb": "100"}}],
            "labels": {"gpuwizard-recipe": "t"}}


def test_a_valid_insert_passes():
    assert compute().check_request("POST", P + "/instances", {"requestId": ["x"]}, good_body()) == []


def test_unknown_method_path_or_verb():
    assert "no such method" in compute().check_request("POST", P + "/instances/vm-1/explode", {}, {})[0]
    assert "no such method" in compute().check_request("PUT", P + "/instances", {}, {})[0]


def test_unknown_query_parameter_and_bad_enum_query():
    c = compute()
    assert c.check_request("GET", P + "/instances", {"filtr": ["x"]}, None) == \
        ["compute.instances.list: unknown query parameter 'filtr'"]
    assert c.check_request("GET", P + "/instances", {"maxResults": ["ten"]}, None)
    assert c.check_request("GET", P + "/instances", {"maxResults": ["10"], "filter": ["labels.a=b"]}, None) == []


def test_body_unknown_field_wrong_enum_wrong_type_and_output_only():
    body = good_body()
    body["gpus"] = 1
    body["scheduling"]["provisioningModel"] = "CHEAP"
    body["disks"][0]["initializeParams"]["diskSizeGb"] = "a lot"
    body["status"] = "RUNNING"
    problems = "\n".join(compute().check_request("POST", P + "/instances", {}, body))
    assert ".gpus: no such field" in problems
    assert ".scheduling.provisioningModel: 'CHEAP' is not one of" in problems
    assert ".diskSizeGb: 'a lot' is not a string/int64" in problems
    assert ".status: output only, must not be sent" in problems


def test_responses_with_invented_fields_or_values_are_caught():
    c = compute()
    assert c.check_response("GET", "/compute/v1/projects/p/regions/us-central1", 200,
                            {"name": "us-central1", "quotas": [{"metric": "NVIDIA_T4_GPUS", "limit": 4, "usage": 0}]}) == []
    bad = c.check_response("GET", "/compute/v1/projects/p/regions/us-central1", 200,
                           {"name": "us-central1", "quotas": [{"metric": "NVIDIA_H100_GPUS", "limit": 8}],
                            "gpuCount": 3})
    assert any("'NVIDIA_H100_GPUS' is not one of" in p for p in bad) and any("gpuCount: no such field" in p for p in bad)


def test_a_request_cut_off_mid_send_is_dropped_not_judged(fake_compute):
    """A client killed between its headers and its body (Ctrl-C ends gpuwizard's daemon
    request threads) leaves a POST with no body: not a request the real API would judge,
    so the fake neither answers it nor counts it against the contract."""
    u = urllib.parse.urlsplit(fake_compute.url)
    path = f"/compute/v1/projects/{fake_compute.project}/zones/us-central1-a/instances"
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 200\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1024) == b""  # closed unanswered
    wait_for(lambda: fake_compute.aborted == 1, "the fake to drop the cut-off request", timeout=10)
    assert fake_compute.violations == [] and fake_compute.requests == []
