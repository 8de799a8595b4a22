"""The shipped recipes in recipes/: header, validation and a plan for each."""

from __future__ import annotations

import pathlib

import pytest

from gpuwizard import plan, recipe, validate

RECIPES = sorted((pathlib.Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_the_four_recipes_ship() -> None:
    assert {p.stem for p in RECIPES} >= {"stgcn-t4", "l4-pytorch", "dlvm-quickstart", "existing-host"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates_and_plans(path: pathlib.Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == f"# yaml-language-server: $schema={recipe.SCHEMA_URL}"
    assert lines[1].startswith("# ") and len(lines[1]) > 20          # a header says what it is for
    r = recipe.load(str(path))
    problems = validate.validate(r)
    assert [p for p in problems if not p.warning] == [], problems
    steps = plan.build(r)
    ids = [s.id for s in steps]
    assert "verify.gpu" in ids
    if r.autostop is not None:  # the agent comes first: nothing bills while nobody uses it
        assert ids[0] == "autostop"
        ids = ids[1:]
    if r.driver is not None and r.driver.preinstalled:
        assert not any(i.startswith("driver.") for i in ids)
    else:
        assert ids[:2] == ["driver.secureboot", "driver.prereqs"]


def test_stgcn_recipe_is_the_original_case() -> None:
    r = recipe.load(str(next(p for p in RECIPES if p.stem == "stgcn-t4")))
    assert r.target.gcp.gpu.type == "nvidia-tesla-t4" and r.target.gcp.machine_type.startswith("n1-")
    assert "mmskeleton" in r.env.repo.url and r.datasets[0].unzip
    ids = [s.id for s in plan.build(r)]
    assert {"cuda.toolkit", "cudnn.install", "tensorrt.install", "env.torch", "env.repo", "env.setup.3"} <= set(ids)
