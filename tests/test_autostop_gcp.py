"""Auto-stop on Compute Engine: what the provisioner asks for (and only when asked), the plan step,
and what `gpuwizard run` says about it; against the fake Compute server (the discovery-document
check runs on every request)."""

from __future__ import annotations

import pathlib

from gpuwizard import plan
from gpuwizard import recipe as R
from gpuwizard.autostop import settings
from tests.builders.gcp import make_recipe, run


def metadata(inst: dict) -> dict[str, str]:
    return {i["key"]: i["value"] for i in inst["metadata"]["items"]}


def test_a_recipe_with_autostop_marks_its_vm_and_installs_the_agent_first(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"], name="idle", extra="autostop: {idle: 45m, max_runtime: 12h}")
    run(r, tmp_path)
    (inst,) = fake_compute.instances.values()
    assert metadata(inst)["gpuwizard-autostop"] == settings.recipe_token(r) == "gpuwizard-idle"
    assert "serviceAccounts" not in inst        # stop needs no token: the VM powers itself off
    steps = plan.build(r)
    assert steps[0].id == "autostop" and steps[0].sudo
    cfg = settings.from_recipe(r)
    assert cfg["idle_s"] == 2700 and cfg["max_runtime_s"] == 43200 and cfg["action"] == "stop"
    assert cfg["token"] == "gpuwizard-idle" and cfg["target"] == "gcp" and not cfg["allow_poweroff"]


def test_delete_action_gives_the_vm_the_compute_scope_and_only_then(fake_compute, tmp_path):
    run(make_recipe(["us-central1-a"], name="del", extra="autostop: {idle: 1h, action: delete}"), tmp_path)
    (inst,) = fake_compute.instances.values()
    assert inst["serviceAccounts"] == [{"email": "default", "scopes": ["https://www.googleapis.com/auth/compute"]}]


def test_no_autostop_no_marker_no_agent(fake_compute, tmp_path):
    r = make_recipe(["us-central1-a"], name="plain")
    run(r, tmp_path)
    (inst,) = fake_compute.instances.values()
    assert "gpuwizard-autostop" not in metadata(inst) and "serviceAccounts" not in inst
    assert all(s.id != "autostop" for s in plan.build(r))


def test_plan_and_run_say_the_setting_or_the_cost_of_a_forgotten_day():
    with_it = make_recipe(["us-central1-a"], extra="autostop: {idle: 30m, max_runtime: 12h}")
    lines = plan.describe_provision(with_it).lines()
    assert lines[-1] == "auto-stop: stops the VM after 30m without use, and after 12h in any case"
    without = plan.describe_provision(make_recipe(["us-central1-a"]))
    assert without.lines()[-1] == (f"warning: no autostop in this recipe: a VM forgotten for a day costs "
                                   f"~${without.hourly * 24:.0f}; add `autostop: {{idle: 30m}}`")


def test_shipped_gcp_recipes_use_autostop():
    for path in sorted((pathlib.Path(__file__).parent.parent / "recipes").glob("*.yaml")):
        r = R.load(str(path))
        if r.target.gcp is not None:
            assert r.autostop is not None and r.autostop.idle == "30m" and r.autostop.action == "stop", path


def test_status_shows_cost_so_far_and_the_agents_countdown(fake_compute, tmp_path, capsys):
    import argparse
    import json
    import time

    from gpuwizard.gcp.commands import cmd_status

    f = fake_compute
    f.add_instance("us-central1-a", "exp-r1", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r1"}, "nvidia-tesla-t4", 1)
    f.add_instance("us-west1-b", "exp-r2", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r2"}, "nvidia-tesla-t4", 1)
    now = time.time()
    f.set_guest_attribute("us-central1-a", "exp-r1", "gpuwizard/autostop", json.dumps(
        {"why": "idle for 18m; stops in 12m", "idle_for": 1080, "stops_at": now + 725, "updated": now}))
    path = tmp_path / "exp.yaml"
    path.write_text("version: 1\nname: exp\ntarget:\n  gcp:\n    zones: [us-central1-a]\n"
                    "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n")
    assert cmd_status(argparse.Namespace(recipe=str(path))) == 0
    out = capsys.readouterr().out
    row1 = next(line for line in out.splitlines() if line.startswith("exp-r1"))
    row2 = next(line for line in out.splitlines() if line.startswith("exp-r2"))
    assert "~$0.00" in row1 and "idle 18m, stops in 12m" in row1
    assert "no auto-stop agent" in row2
    assert "AUTO-STOP" in out and "SO FAR" in out
