"""The command line as a user meets it: real subprocesses, exit codes, no tracebacks."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SSH_RECIPE = ROOT / "tests" / "data" / "ssh-recipe.yaml"


def gw(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuwizard.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, **kw)


def test_help_lists_every_command() -> None:
    p = gw("--help")
    assert p.returncode == 0
    for c in ("new", "edit", "validate", "plan", "run", "logs", "down", "status", "quota", "zones", "catalog",
              "rclone", "schema"):
        assert c in p.stdout


def test_version() -> None:
    from gpuwizard import __version__

    assert gw("--version").stdout.strip() == f"gpuwizard {__version__}"


def test_usage_error_exits_2() -> None:
    p = gw("plan")
    assert p.returncode == 2 and "RECIPE" in p.stderr


def test_validate_ok_and_bad_together(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\nstepz: []\n")
    p = gw("validate", str(SSH_RECIPE), str(bad))
    assert p.returncode == 2
    assert f"{SSH_RECIPE}: ok (ssh-demo)" in p.stdout
    assert p.stderr.strip() == f"{bad}:4:1: stepz: unknown key 'stepz'; did you mean 'steps'?"


def test_validate_warning_keeps_exit_0(tmp_path: pathlib.Path) -> None:
    r = tmp_path / "r.yaml"
    r.write_text("version: 1\nname: x\ntarget:\n  gcp:\n    zones: [europe-north1-a]\n"
                 "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n")
    p = gw("validate", str(r))
    assert p.returncode == 0, p.stderr
    assert "5:13: warning: target.gcp.zones[0]: europe-north1-a does not offer nvidia-tesla-t4" in p.stderr


def test_plan_prints_steps_and_json() -> None:
    p = gw("plan", str(SSH_RECIPE))
    assert p.returncode == 0, p.stderr
    assert "## hosts: ubuntu@203.0.113.7, ubuntu@203.0.113.8:2222" in p.stdout
    assert "user.hello: hello" in p.stdout
    j = json.loads(gw("plan", "--json", str(SSH_RECIPE)).stdout)
    assert j["recipe"] == "ssh-demo"
    assert j["steps"][-1]["id"] == "user.hello"
    assert j["steps"][-1]["run"].endswith('\n# the step\necho "hello from $(hostname)"')


def test_plan_only_selects_by_prefix() -> None:
    j = json.loads(gw("plan", "--json", "--only", "user", str(SSH_RECIPE)).stdout)
    assert [s["id"] for s in j["steps"]] == ["user.hello"]


def test_plan_of_gcp_recipe_shows_cost(tmp_path: pathlib.Path) -> None:
    r = tmp_path / "r.yaml"
    r.write_text("version: 1\nname: x\ntarget:\n  gcp:\n    zones: [us-central1-a, us-west1-b]\n"
                 "    machine_type: n1-standard-4\n    gpu: {type: nvidia-tesla-t4, count: 1}\n    count: 2\n")
    p = gw("plan", str(r))
    assert p.returncode == 0, p.stderr
    assert "create 2 x n1-standard-4 with 1 x nvidia-tesla-t4 (on-demand)" in p.stdout
    assert "~$0.55/hour per VM, ~$1.11/hour in all (n1-standard-4 + 1 x T4 + 100 GB pd-balanced" in p.stdout
    assert "zones, tried in order: us-central1-a, us-west1-b" in p.stdout


def test_schema_is_json() -> None:
    s = json.loads(gw("schema").stdout)
    assert s["title"] == "gpuwizard recipe"


def test_catalog_tables() -> None:
    p = gw("catalog", "gpus", "--gpu", "T4")
    assert p.returncode == 0 and "nvidia-tesla-t4" in p.stdout and "nvidia-l4" not in p.stdout
    p = gw("catalog", "machines", "--gpu", "nvidia-l4")
    assert "g2-standard-24" in p.stdout and "n1-standard-4" not in p.stdout
    assert gw("catalog", "zones", "--gpu", "bogus").returncode == 2


def test_catalog_lists_the_shipped_recipes() -> None:
    p = gw("catalog", "recipes")
    assert p.returncode == 0
    for name in ("stgcn-t4", "l4-pytorch", "dlvm-quickstart", "existing-host"):
        assert name in p.stdout
    assert "gpuwizard new --from NAME" in p.stdout


def test_new_from_unknown_template_is_a_usage_error() -> None:
    p = gw("new", "--from", "no-such-recipe")
    assert p.returncode == 2 and "no shipped recipe 'no-such-recipe'" in p.stderr
