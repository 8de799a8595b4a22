"""The Recipe: what a user wants, written down as YAML they can read, diff and commit.

A package of small modules, one job each:

- :mod:`.model` the dataclasses (their fields and metadata are the schema), ``Problem``;
- :mod:`.values` checks of single values a regex cannot state (hosts, pip requirements, URLs);
- :mod:`.load` YAML text -> model, every problem at FILE:LINE:COL;
- :mod:`.checks` cross-field checks that need no catalog;
- :mod:`.save` model -> YAML, byte for byte when unchanged;
- :mod:`.schema` the JSON Schema for editors.

Callers import from here (``from gpuwizard import recipe``; ``recipe.loads``,
``recipe.Recipe`` ...); catalog checks live in :mod:`gpuwizard.validate`.
"""

from __future__ import annotations

from gpuwizard.recipe.checks import DRIVE_SCOPES, merge_problems, structural_problems
from gpuwizard.recipe.load import load, loads, parse, read
from gpuwizard.recipe.model import (
    ENV_VAR_RE, HOST_RE, MAX_RECIPE_BYTES, NAME_MAX, NAME_RE, REMOTE_NAME_RE, SCHEMA_URL, STEP_NAME_RE, ZONE_RE,
    Autostop, Cluster, Dataset, Driver, Env, FlexStart, GcpTarget, Gpu, Problem, Rclone, Recipe, RecipeError, Remote, Repo, Ssh, SshTarget, Target,
    UserStep, doc,
)
from gpuwizard.recipe.save import dumps, save, to_data
from gpuwizard.recipe.schema import json_schema
from gpuwizard.recipe.values import HostSpec, host_problem, package_problem, parse_host, repo_url_problem
from gpuwizard.secretcheck import SECRET_KEYS, looks_secret

__all__ = [
    "DRIVE_SCOPES", "ENV_VAR_RE", "HOST_RE", "MAX_RECIPE_BYTES", "NAME_MAX", "NAME_RE", "REMOTE_NAME_RE",
    "SCHEMA_URL", "SECRET_KEYS", "STEP_NAME_RE", "ZONE_RE",
    "Autostop", "Cluster", "Dataset", "Driver", "Env", "FlexStart", "GcpTarget", "Gpu", "HostSpec", "Problem", "Rclone", "Recipe", "RecipeError",
    "Remote", "Repo", "Ssh", "SshTarget", "Target", "UserStep",
    "doc", "dumps", "host_problem", "json_schema", "load", "loads", "looks_secret", "merge_problems",
    "package_problem", "parse", "parse_host", "read", "repo_url_problem", "save", "structural_problems", "to_data",
]
