"""Review: the one-run-per-recipe lock must see a recipe however its path is written."""

from __future__ import annotations

import os

import pytest

from gpuwizard.runlock import RecipeBusy, RecipeLock


def test_a_symlink_to_a_running_recipe_is_refused(tmp_path, monkeypatch) -> None:
    """`gpuwizard run link.yaml` (a symlink to r.yaml) ran while `gpuwizard run r.yaml` was
    running: every step twice on the same hosts, overlapping (the lock keyed the absolute
    path, not the file)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\n")
    (tmp_path / "sub").mkdir()
    os.symlink(recipe, tmp_path / "link.yaml")
    held = RecipeLock(str(recipe)).acquire()
    try:
        for other in (tmp_path / "link.yaml", tmp_path / "sub" / ".." / "r.yaml"):
            with pytest.raises(RecipeBusy):
                RecipeLock(str(other)).acquire()
    finally:
        held.release()
    RecipeLock(str(tmp_path / "link.yaml")).acquire().release()  # free again once released
