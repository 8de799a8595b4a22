"""The recipes that ship with gpuwizard (the ``recipes`` package): templates to start from.

``pip install`` puts them in site-packages, where nobody finds them by hand, so they are
reachable by name: ``gpuwizard catalog recipes`` lists them and ``gpuwizard new --from
NAME`` opens the wizard on one.
"""

from __future__ import annotations

import os
import re

import recipes

from gpuwizard.errors import UsageError


def recipes_dir() -> str:
    return os.path.dirname(os.path.abspath(recipes.__file__))


def shipped() -> dict[str, str]:
    """Shipped recipe name (file stem) -> path, sorted by name."""
    d = recipes_dir()
    return {f[:-5]: os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".yaml")}


def resolve(name_or_path: str) -> str:
    """A shipped recipe's path by name, or the path itself when it is a file."""
    if os.path.isfile(name_or_path):
        return name_or_path
    found = shipped().get(name_or_path.removesuffix(".yaml"))
    if found is None:
        raise UsageError(f"no shipped recipe {name_or_path!r}; choose one of {', '.join(shipped())} "
                         "(`gpuwizard catalog recipes`), or give a file path")
    return found


def summary(path: str, width: int = 90) -> str:
    """The first sentence of the recipe's comment header (what it is for), at most ``width``."""
    words: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            text = line.lstrip("#").strip()
            if text and not text.startswith("yaml-language-server"):
                words.append(text)
    header = " ".join(words)
    m = re.match(r"(.+?[.])(\s|$)", header)
    first = m.group(1) if m else header
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."
