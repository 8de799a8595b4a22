"""`gpuwizard down` / `status`: find a recipe's VMs by label, delete all and only those."""

from __future__ import annotations

import argparse
import asyncio
import io

import pytest

from gpuwizard.gcp.provision import delete_recipe_vms, list_recipe_vms

RECIPE = """version: 1
name: exp
target:
  gcp:
    zones: [us-central1-a]
    machine_type: n1-standard-4
    gpu: {type: nvidia-tesla-t4, count: 1}
"""


@pytest.fixture
def populated(fake_compute):
    f = fake_compute
    f.add_instance("us-central1-a", "exp-r1", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r1"}, "nvidia-tesla-t4", 1)
    f.add_instance("us-west1-b", "exp-r2", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r2"}, "nvidia-tesla-t4", 1)
    f.add_instance("us-central1-a", "other-r1", {"gpuwizard-recipe": "other", "gpuwizard-run": "r1"})
    f.add_instance("us-central1-b", "exp-handmade", {})
    f.add_instance("us-central1-b", "prefix", {"gpuwizard-recipe": "exp-2"})
    return f


def test_list_finds_recipe_vms_by_label(populated):
    vms = asyncio.run(list_recipe_vms(None, "exp"))
    assert [(v.zone, v.name) for v in vms] == [("us-central1-a", "exp-r1"), ("us-west1-b", "exp-r2")]
    assert vms[0].price_hour == pytest.approx(0.54) and vms[0].status == "RUNNING" and vms[0].address
    only = asyncio.run(list_recipe_vms(None, "exp", run_id="r2"))
    assert [v.name for v in only] == ["exp-r2"]
    gets = [p for _, m, p in populated.requests]
    assert gets == ["/compute/v1/projects/test-project/aggregated/instances"] * 2


def test_down_removes_all_and_only_the_recipes_vms(populated):
    gone = asyncio.run(delete_recipe_vms(None, "exp"))
    assert sorted(gone) == ["us-central1-a/exp-r1", "us-west1-b/exp-r2"]
    assert sorted(n for _, n in populated.instances) == ["exp-handmade", "other-r1", "prefix"]


def _args(path: str, **kw) -> argparse.Namespace:
    return argparse.Namespace(recipe=path, yes=kw.get("yes", False))


def test_cmd_down_needs_yes_without_a_tty(populated, tmp_path, monkeypatch, capsys):
    from gpuwizard.gcp.commands import cmd_down

    path = tmp_path / "exp.yaml"
    path.write_text(RECIPE)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cmd_down(_args(str(path))) == 2
    assert "--yes" in capsys.readouterr().err
    assert len(populated.instances) == 5
    assert cmd_down(_args(str(path), yes=True)) == 0
    out = capsys.readouterr().out
    assert "Deleted 2 VM(s)." in out and "us-west1-b/exp-r2: deleted" in out
    assert len(populated.instances) == 3
    assert cmd_down(_args(str(path), yes=True)) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_cmd_status_lists_zone_state_ip_cost(populated, tmp_path, capsys):
    from gpuwizard.gcp.commands import cmd_status

    path = tmp_path / "exp.yaml"
    path.write_text(RECIPE)
    assert cmd_status(_args(str(path))) == 0
    out = capsys.readouterr().out
    assert "exp-r1" in out and "us-west1-b" in out and "RUNNING" in out and "0.54" in out
    assert "other-r1" not in out and "2 running at ~$1.08/hour" in out


# ------------------------------------------------- two recipe files, one recipe name


def _two_recipes(tmp_path):
    from gpuwizard import recipe as R
    from gpuwizard.gcp.provision import provision

    paths = []
    for d, run in (("a", "run-a"), ("b", "run-b")):
        (tmp_path / d).mkdir()
        p = tmp_path / d / "exp.yaml"
        p.write_text(RECIPE)
        asyncio.run(provision(R.load(str(p)), run, known_hosts_path=str(tmp_path / f"kh-{d}"),
                              recipe_path=str(p)))
        paths.append(str(p))
    return paths


def test_down_deletes_only_the_vms_of_its_recipe_file(fake_compute, tmp_path, capsys):
    """Two recipe files both say `name: exp`: `down` on one must not delete the other's VM."""
    from gpuwizard.gcp.commands import cmd_down, cmd_status

    a, b = _two_recipes(tmp_path)
    assert sorted(n for _, n in fake_compute.instances) == ["exp-run-a", "exp-run-b"]
    ids = {i["name"]: i["labels"].get("gpuwizard-recipe-id") for i in fake_compute.instances.values()}
    assert ids["exp-run-a"] and ids["exp-run-b"] and ids["exp-run-a"] != ids["exp-run-b"]
    capsys.readouterr()
    assert cmd_status(_args(b)) == 0
    out = capsys.readouterr().out
    assert "exp-run-b" in out and "exp-run-a" not in out
    assert cmd_down(_args(a, yes=True)) == 0
    out = capsys.readouterr().out
    assert "Deleted 1 VM(s)." in out and "exp-run-b" not in out
    assert [n for _, n in fake_compute.instances] == ["exp-run-b"]


def test_vm_without_recipe_id_is_matched_by_name_with_a_note(fake_compute, tmp_path, capsys):
    from gpuwizard.gcp.commands import cmd_down

    a, _b = _two_recipes(tmp_path)
    fake_compute.add_instance("us-central1-a", "exp-old", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r0"})
    capsys.readouterr()
    assert cmd_down(_args(a, yes=True)) == 0
    out = capsys.readouterr().out
    assert "exp-old" in out and "gpuwizard-recipe-id" in out
    assert sorted(n for _, n in fake_compute.instances) == ["exp-run-b"]


def test_down_deletes_exactly_the_confirmed_list(populated, tmp_path, monkeypatch, capsys):
    """A VM that appears while the user reads the prompt was not confirmed: it stays."""
    from gpuwizard.gcp.commands import cmd_down

    path = tmp_path / "exp.yaml"
    path.write_text(RECIPE)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def answer(prompt: str) -> str:
        assert "exp-r1" in prompt and "exp-late" not in prompt
        populated.add_instance("us-central1-a", "exp-late", {"gpuwizard-recipe": "exp", "gpuwizard-run": "r9"})
        return "y"

    monkeypatch.setattr("sys.stdin", Tty(""))
    monkeypatch.setattr("builtins.input", answer)
    assert cmd_down(_args(str(path))) == 0
    assert "Deleted 2 VM(s)." in capsys.readouterr().out
    assert sorted(n for _, n in populated.instances) == ["exp-handmade", "exp-late", "other-r1", "prefix"]


def test_status_prices_a_vm_as_plan_does_boot_disk_included(fake_compute, tmp_path):
    """One price rule: the $/hour `status` shows for a VM a recipe created is the figure `plan`
    printed for it (machine + GPU + the boot disk read back from the instance)."""
    from gpuwizard import plan
    from tests.builders.gcp import make_recipe, run

    r = make_recipe(["us-central1-a"], name="exp", extra="")
    run(r, tmp_path)
    (vm,) = asyncio.run(list_recipe_vms(None, "exp"))
    assert vm.price_hour == pytest.approx(plan.describe_provision(r).hourly)
    assert vm.price_hour > 0.54  # the machine and GPU alone
