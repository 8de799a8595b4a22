"""Saving a recipe: plain YAML that leaves out defaults and keeps a user's own text.

Why a module of its own: saving is the one place that decides what a recipe file looks
like (defaults omitted, multi-line commands as ``|`` blocks, the ``$schema`` header) and
that an unchanged recipe is written back byte for byte, comments and all.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import yaml

from gpuwizard.recipe.model import SCHEMA_URL, Driver, Recipe, model_fields, yaml_key


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The safe dumper (libyaml's when present), writing multi-line strings as ``|`` blocks."""


def _represent_str(dumper: Any, s: str) -> Any:
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _represent_str)


def to_data(obj: Any) -> Any:
    """The recipe as plain YAML-ready data, leaving out fields still at their default."""
    if isinstance(obj, Driver) and obj.preinstalled:
        return "preinstalled"
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in model_fields(type(obj)):
            v = getattr(obj, f.name)
            if f.metadata.get("inline"):
                out.update({k: to_data(x) for k, x in v.items()})
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)  # type: ignore[misc]
            if v == default and not (f.metadata.get("required") or f.metadata.get("always")):
                continue
            out[yaml_key(f)] = to_data(v)
        return out
    if isinstance(obj, list):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def dumps(recipe: Recipe, header: str | None = None) -> str:
    """Serialize to YAML. An unchanged loaded recipe is returned as its original text,
    so opening and saving a recipe never rewrites a user's comments or layout."""
    data = to_data(recipe)
    if recipe.source is not None and recipe.pristine == data:
        return recipe.source
    if header is None and recipe.source is not None:
        header = _leading_comments(recipe.source)
    if header is None:
        header = f"# yaml-language-server: $schema={SCHEMA_URL}\n"
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or not line.strip():
            lines.append(line)
        else:
            break
    return "".join(lines)


def save(recipe: Recipe, path: str) -> None:
    """Write atomically: a crash mid-save never leaves half a recipe behind."""
    text = dumps(recipe)
    d = os.path.dirname(os.path.abspath(path))
    try:  # a recipe is meant to be shared: keep the file's mode, or the umask's default
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".recipe-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
