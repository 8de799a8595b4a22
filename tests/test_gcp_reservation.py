"""Reservations and DWS flex-start: the recipe fields, the checks that refuse impossible
combinations (at FILE:LINE:COL, with the fix), and the Instance bodies, sent through the real
google-cloud-compute client to the fake Compute server, which holds every request to the
Compute v1 discovery document (the fixture fails the test on any violation)."""

from __future__ import annotations

import pathlib

import pytest

from gpuwizard import recipe as R
from gpuwizard.gcp import consumption
from gpuwizard.plan import describe_provision
from gpuwizard.recipe import RecipeError
from gpuwizard.validate import load_checked
from tests.builders.gcp import run

ZONE = "us-central1-a"


def _a100(extra: str, machine: str = "a2-highgpu-1g", gpu: str = "nvidia-tesla-a100") -> str:
    return f"""version: 1
name: exp
target:
  gcp:
    zones: [{ZONE}]
    machine_type: {machine}
    gpu: {{type: {gpu}, count: 1}}
{extra}"""


def _sent(fake) -> dict:
    """The one instance the fake made, as the request body arrived (camelCase)."""
    (inst,) = fake.instances.values()
    return inst


def test_flex_start_body_is_what_compute_engine_asks_for(fake_compute, tmp_path):
    hosts, lines = run(R.loads(_a100("    flex_start: {max_run: 4h}\n")), tmp_path)
    inst = _sent(fake_compute)
    sch = inst["scheduling"]
    assert sch["provisioningModel"] == "FLEX_START"
    assert sch["maxRunDuration"] == {"seconds": str(4 * 3600)}   # int64 travels as a string in JSON
    assert sch["instanceTerminationAction"] == "DELETE"
    assert sch["onHostMaintenance"] == "TERMINATE" and sch["automaticRestart"] is False
    assert inst["reservationAffinity"] == {"consumeReservationType": "NO_RESERVATION"}
    assert any("(flex-start, runs at most 4h then is deleted)" in ln for ln in lines)


def test_a_named_reservation_is_consumed_by_name(fake_compute, tmp_path):
    run(R.loads(_a100("    reservation: team-a100\n")), tmp_path)
    inst = _sent(fake_compute)
    assert inst["reservationAffinity"] == {"consumeReservationType": "SPECIFIC_RESERVATION",
                                           "key": "compute.googleapis.com/reservation-name",
                                           "values": ["team-a100"]}
    assert "provisioningModel" not in inst["scheduling"]


def test_a_shared_reservation_and_any_and_none(fake_compute, tmp_path):
    shared = "projects/other-project/reservations/shared-a100"
    run(R.loads(_a100(f"    reservation: {shared}\n    count: 2\n")), tmp_path)   # bulkInsert's properties
    affs = [i["reservationAffinity"] for i in fake_compute.instances.values()]
    assert affs == [{"consumeReservationType": "SPECIFIC_RESERVATION",
                     "key": "compute.googleapis.com/reservation-name", "values": [shared]}] * 2
    g = R.loads(_a100("    reservation: any\n")).target.gcp
    assert consumption.affinity(g) == {"consume_reservation_type": "ANY_RESERVATION"}
    g = R.loads(_a100("    reservation: none\n")).target.gcp
    assert consumption.affinity(g) == {"consume_reservation_type": "NO_RESERVATION"}
    assert consumption.describe(g) == "on-demand, consuming no reservation"


def test_any_reservation_body_passes_the_discovery_check(fake_compute, tmp_path):
    run(R.loads(_a100("    reservation: any\n", machine="g2-standard-8", gpu="nvidia-l4")), tmp_path)
    assert _sent(fake_compute)["reservationAffinity"] == {"consumeReservationType": "ANY_RESERVATION"}


def _problems(tmp_path: pathlib.Path, text: str) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as ei:
        load_checked(str(path))
    return ei.value.lines()


def test_spot_and_flex_start_exclude_each_other(tmp_path):
    lines = _problems(tmp_path, _a100("    spot: true\n    flex_start: {max_run: 2h}\n"))
    assert lines == [f"{tmp_path / 'r.yaml'}:9:17: target.gcp.flex_start: flex-start and spot exclude each other: "
                     "remove spot: true (flex-start is already discounted) or remove flex_start"]


def test_flex_start_cannot_consume_a_reservation(tmp_path):
    lines = _problems(tmp_path, _a100("    reservation: team-a100\n    flex_start: {max_run: 2h}\n"))
    assert lines == [f"{tmp_path / 'r.yaml'}:9:17: target.gcp.flex_start: a flex-start VM cannot consume a "
                     "reservation: remove reservation (or flex_start to use the reservation)"]


def test_flex_start_on_n1_is_refused_with_the_series_that_take_it(tmp_path):
    lines = _problems(tmp_path, _a100("    flex_start: {max_run: 2h}\n", machine="n1-standard-4",
                                      gpu="nvidia-tesla-t4"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'r.yaml'}:8:17: target.gcp.flex_start: n1-standard-4 cannot be "
                               "flex-start: flex-start runs on A2, A3, A4 and G2 machines")


def test_max_run_is_ten_minutes_to_seven_days(tmp_path):
    lines = _problems(tmp_path, _a100("    flex_start: {max_run: 5m}\n"))
    assert lines == [f"{tmp_path / 'r.yaml'}:8:27: target.gcp.flex_start.max_run: max_run must be 10m to 168h "
                     "(7 days); got 5m"]
    assert _problems(tmp_path, _a100("    flex_start: {max_run: 169h}\n"))[0].endswith("got 169h")
    path = tmp_path / "ok.yaml"
    path.write_text(_a100("    flex_start: {max_run: 168h}\n"))
    load_checked(str(path))   # the bound itself is fine


def test_spot_cannot_consume_a_reservation_but_may_refuse_one(tmp_path):
    t4 = {"machine": "n1-standard-4", "gpu": "nvidia-tesla-t4"}
    lines = _problems(tmp_path, _a100("    spot: true\n    reservation: team-t4\n", **t4))
    assert lines == [f"{tmp_path / 'r.yaml'}:9:18: target.gcp.reservation: Spot VMs cannot consume a reservation: "
                     "remove reservation, or set spot: false to use it"]
    path = tmp_path / "ok.yaml"
    path.write_text(_a100("    spot: true\n    reservation: none\n", **t4))
    load_checked(str(path))


def test_a_spot_only_machine_may_be_flex_start(tmp_path):
    path = tmp_path / "a3.yaml"
    path.write_text(_a100("    flex_start: {max_run: 2h}\n    disk_type: hyperdisk-balanced\n",
                          machine="a3-highgpu-1g", gpu="nvidia-h100-80gb"))
    recipe, warnings = load_checked(str(path))
    assert not [w for w in warnings if "spot" in w.path]


def test_a_bad_reservation_name_says_what_one_looks_like(tmp_path):
    lines = _problems(tmp_path, _a100("    reservation: Team_A100\n"))
    assert lines == [f"{tmp_path / 'r.yaml'}:8:18: target.gcp.reservation: 'Team_A100' is not valid: a reservation "
                     "is a name such as my-a100-res, projects/P/reservations/NAME, any or none"]


def test_plan_names_the_model_and_the_wait():
    s = describe_provision(R.loads(_a100("    flex_start: {max_run: 4h}\n    wait: 6h\n")))
    assert s is not None
    lines = s.lines()
    assert "(flex-start, runs at most 4h then is deleted)" in lines[0]
    assert lines[2] == "on stockout: keep trying the zones for up to 6h (target.gcp.wait; `run --no-wait` fails at once)"
    s = describe_provision(R.loads(_a100("    reservation: team-a100\n")))
    assert "(on-demand from reservation team-a100)" in s.lines()[0]
    assert s.lines()[2].startswith("on stockout: try each zone once, then stop (`gpuwizard run --wait`")


def test_the_recipe_round_trips_the_new_fields():
    text = _a100("    reservation: team-a100\n    wait: 6h\n")
    r = R.loads(text)
    assert (r.target.gcp.reservation, r.target.gcp.wait) == ("team-a100", "6h")
    again = R.loads(R.dumps(r))
    assert (again.target.gcp.reservation, again.target.gcp.wait) == ("team-a100", "6h")
    r = R.loads(_a100("    flex_start: {max_run: 90m}\n"))
    assert consumption.max_run_seconds(r.target.gcp) == 5400
    assert R.loads(R.dumps(r)).target.gcp.flex_start == r.target.gcp.flex_start


def test_flex_start_is_held_to_preemptible_quota_not_the_standard_one(fake_compute, tmp_path):
    """Flex-start VMs consume preemptible quota: a region with no standard A100 quota but
    free preemptible quota is tried (before, its zones were skipped for "no free quota")."""
    fake_compute.set_quota("us-central1", "NVIDIA_A100_GPUS", 0)
    hosts, lines = run(R.loads(_a100("    flex_start: {max_run: 4h}\n")), tmp_path)
    assert [h.zone for h in hosts] == [ZONE]
    assert not any("skipping us-central1" in ln for ln in lines)
