"""Loading a recipe: YAML text -> the model, with every problem at its FILE:LINE:COL.

Loading walks the YAML *node* tree (not the plain Python values) so every problem can be
reported as ``FILE:LINE:COL: field.path: message`` at the node that is wrong, and every
problem is collected before reporting: the user fixes a recipe in one pass, not one error
per run. Why one module of ~440 lines: the node walker, its scalar rules (tags, types,
constraints) and the file-level guards (what kind of file, size, encoding, anchors) are
one pipeline, each step relying on the one before; YAML 1.1 numbers are in :mod:`.numbers`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import types
import typing
from typing import Any, Union

import yaml

from gpuwizard.recipe.checks import merge_problems, structural_problems
from gpuwizard.recipe.model import (
    MAX_RECIPE_BYTES, VERSION_RE, Driver, Problem, Recipe, RecipeError, Remote, model_fields, type_hints, yaml_key,
)
from gpuwizard.recipe.numbers import yaml_number
from gpuwizard.recipe.save import to_data
from gpuwizard.secretcheck import SECRET_KEYS, looks_secret


class _Loader:
    """Turns a YAML node tree into the model, collecting problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.marks: dict[str, tuple[int, int]] = {}

    @staticmethod
    def pos(node: Any) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def err(self, node: Any, path: str, message: str) -> None:
        line, col = self.pos(node)
        self.problems.append(Problem(line, col, path, message))

    # -- scalars

    def scalar(self, node: Any, path: str, tp: Any, meta: dict[str, Any]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, path, f"expected {_type_word(tp)}, got a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
            return _BAD
        if not node.tag.startswith("tag:yaml.org,2002:") or node.tag.rsplit(":", 1)[-1] not in _STD_TAGS:
            self.err(node, path, "YAML tags (!something) are not allowed in a recipe; write a plain value")
            return _BAD
        tag = node.tag.rsplit(":", 1)[-1]
        raw = node.value
        if tag == "null" and tp is not type(None):
            self.err(node, path, f"expected {_type_word(tp)}, got null")
            return _BAD
        value: Any
        if tp is bool:
            if tag != "bool":
                self.err(node, path, f"expected true or false, got {raw!r}")
                return _BAD
            return raw.lower() in ("true", "yes", "on")
        if tp in (int, float):
            if tag != "int" and not (tp is float and tag == "float"):
                self.err(node, path, f"expected {_type_word(tp)}, got {raw!r}" + _seconds_hint(raw, meta))
                return _BAD
            value, reason = yaml_number(raw, tag)
            if reason is not None:
                self.err(node, path, reason.format(range=_range_clause(meta)))
                return _BAD
            if tp is float:
                value = float(value)
        elif tp is str:
            # Versions such as `branch: 580` or `cuda: 12.8` mean the text as written.
            if tag not in ("str", "int", "float"):
                self.err(node, path, f"expected a string, got {raw!r}")
                return _BAD
            value = raw
            if "\x00" in value:
                self.err(node, path, "contains a NUL byte")
                return _BAD
        elif tag == "str":  # Any scalar (rclone options)
            value = raw
        elif tag in ("int", "float"):
            number, reason = yaml_number(raw, tag)
            value = raw if reason is not None else number  # rclone reads the text as written
        else:
            value = yaml.safe_load(yaml.serialize(node))
        self.check_constraints(node, path, value, meta)
        return value

    def check_constraints(self, node: Any, path: str, value: Any, meta: dict[str, Any]) -> None:
        before = len(self.problems)
        if meta.get("path") and isinstance(value, str):
            if not value.strip():
                self.err(node, path, "empty path")
            elif re.search(r"[\x00-\x1f\x7f]", value):
                self.err(node, path, "a path or URL must be one line, without line breaks or other "
                                     "control characters")
        if "enum" in meta and value not in meta["enum"]:
            choices = ", ".join(str(c) for c in meta["enum"])
            self.err(node, path, f"must be one of {choices} (got {value!r})")
        if isinstance(value, str) and "max_length" in meta and len(value) > meta["max_length"]:
            self.err(node, path, f"{_shown(value)!r} is {len(value)} characters long; {meta.get('hint', '')}")
        elif "pattern" in meta and isinstance(value, str) and not re.fullmatch(meta["pattern"], value):
            self.err(node, path, f"{_shown(value)!r} is not valid: {meta.get('hint', 'unexpected characters')}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(value, meta):
            self.err(node, path, f"must be {_range_words(meta)} (got {value})")
        if "check" in meta and len(self.problems) == before:
            problem = meta["check"](value)
            if problem:
                self.err(node, path, problem)

    # -- generic

    def value(self, node: Any, path: str, tp: Any, meta: dict[str, Any]) -> Any:
        self.marks[path] = self.pos(node)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                return None
            if len(non_none) == 1:
                return self.value(node, path, non_none[0], meta)
            if set(non_none) == {bool, str}:  # tensorrt: true | "10.4"
                if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool"):
                    return self.scalar(node, path, bool, {})
                return self.scalar(node, path, str, _TENSORRT_VERSION)
            raise TypeError(tp)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                self.err(node, path, f"expected a list, got {_node_word(node)}")
                return _BAD
            out = []
            item_meta = {k[len("item_"):]: v for k, v in meta.items() if k.startswith("item_")}
            for i, child in enumerate(node.value):
                v = self.value(child, f"{path}[{i}]", args[0], item_meta)
                if v is not _BAD:
                    out.append(v)
            return out
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.err(node, path, f"expected a mapping, got {_node_word(node)}")
                return _BAD
            out_d: dict[str, Any] = {}
            for knode, vnode in node.value:
                key = knode.value if isinstance(knode, yaml.ScalarNode) else None
                if key is None:
                    self.err(knode, path, "keys must be plain strings")
                    continue
                kp = f"{path}.{key}"
                if key in out_d:
                    self.err(knode, kp, "duplicate key")
                    continue
                if "key_pattern" in meta and not re.fullmatch(meta["key_pattern"], key):
                    self.err(knode, kp, f"{key!r} is not a valid name: {meta.get('key_hint', 'unexpected characters')}")
                    continue
                v = self.value(vnode, kp, args[1], {})
                if v is not _BAD:
                    out_d[key] = v
            return out_d
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, path, tp)
        if tp is Any:
            if not isinstance(node, yaml.ScalarNode):
                self.err(node, path, f"expected a plain value, got {_node_word(node)}")
                return _BAD
            return self.scalar(node, path, Any, meta)
        return self.scalar(node, path, tp, meta)

    def dataclass(self, node: Any, path: str, cls: type) -> Any:
        if cls is Driver and isinstance(node, yaml.ScalarNode) and node.value == "preinstalled":
            return Driver(preinstalled=True)
        if not isinstance(node, yaml.MappingNode):
            hint = " (or `preinstalled`)" if cls is Driver else ""
            self.err(node, path, f"expected a mapping{hint}, got {_node_word(node)}")
            return _BAD
        flds = {yaml_key(f): f for f in model_fields(cls)}
        hints = type_hints(cls)
        kwargs: dict[str, Any] = {}
        seen: set[str] = set()
        extra: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.err(knode, path, "keys must be plain strings")
                continue
            key = knode.value
            kp = f"{path}.{key}" if path else key
            if key in seen:
                self.err(knode, kp, f"duplicate key {key!r}; remove one of them")
                continue
            seen.add(key)
            if key == "<<":
                self.err(knode, kp, "merge keys (<<) are not supported; write the fields out")
                continue
            f = flds.get(key)
            if f is None or f.metadata.get("inline"):
                if cls is Remote:
                    extra[key] = (knode, vnode)
                    continue
                self.err(knode, kp, _unknown_key(key, list(flds)))
                continue
            v = self.value(vnode, kp, hints[f.name], dict(f.metadata))
            if v is not _BAD:
                kwargs[f.name] = v
        misspelt = {difflib.get_close_matches(k, list(flds), n=1, cutoff=0.6)[0]
                    for k in seen if k not in flds and difflib.get_close_matches(k, list(flds), n=1, cutoff=0.6)}
        for key, f in flds.items():
            if key in misspelt:
                continue  # "unknown key 'traget'; did you mean 'target'?" already says it
            if f.metadata.get("required") and key not in seen and not f.metadata.get("inline"):
                self.err(node, f"{path}.{key}" if path else key,
                         f"missing required field {key!r}: {f.metadata['doc']}")
        if cls is Remote:
            kwargs["options"] = self.remote_options(path, extra)
        return cls(**kwargs)

    def remote_options(self, path: str, extra: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key, (knode, vnode) in extra.items():
            kp = f"{path}.{key}"
            self.marks[kp] = self.pos(vnode)
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                self.err(knode, kp, f"{key!r} is not an rclone option name (lower_case_with_underscores)")
                continue
            if not isinstance(vnode, yaml.ScalarNode):
                self.err(vnode, kp, f"expected a plain value, got {_node_word(vnode)}")
                continue
            if key in SECRET_KEYS:
                self.err(knode, kp, f"secrets are not allowed in a recipe: put it in a file and use "
                                    f"{key}_file, or in an environment variable and use {key}_env")
                continue
            value = self.scalar(vnode, kp, Any, {})
            if isinstance(value, str) and looks_secret(value):
                self.err(vnode, kp, "this looks like a credential; secrets are not allowed in a recipe: "
                                    f"use {key}_file or {key}_env")
                continue
            opts[key] = value
        return opts


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when present: 10x faster
_STD_TAGS = {"str", "int", "float", "bool", "null", "timestamp", "binary"}


class _Bad:
    def __repr__(self) -> str:
        return "<bad>"


_BAD: Any = _Bad()


def _node_word(node: Any) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if node.tag.endswith(":null"):
        return "null"
    return repr(node.value)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds_hint(raw: str, meta: dict[str, Any]) -> str:
    """For a field in seconds written as a duration (`2h`, as `gpuwizard plan` prints and the
    wizard's Steps screen accepts): the number to write instead."""
    m = _DURATION.fullmatch(raw.strip().lower())
    if m is None or not str(meta.get("doc", "")).lower().startswith("seconds"):
        return ""
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not meta.get("minimum", 0) <= seconds <= meta.get("maximum", float("inf")):
        return f"; this value is in seconds{_range_clause(meta)}"
    return f"; this value is in seconds: write {seconds:g} for {raw.strip()}"


def _type_word(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(tp, "a plain value")


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; expected one of: {', '.join(known)}"


_TENSORRT_VERSION = {"pattern": VERSION_RE, "hint": "use true, false or a TensorRT version such as '10.4'"}
def _shown(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


def _in_range(value: float, meta: dict[str, Any]) -> bool:
    return meta.get("minimum", value) <= value <= meta.get("maximum", value)


def _range_words(meta: dict[str, Any]) -> str:
    if "minimum" in meta and "maximum" in meta:
        return f"{meta['minimum']} to {meta['maximum']}"
    if "minimum" in meta:
        return f"at least {meta['minimum']}"
    return f"at most {meta['maximum']}"


def _range_clause(meta: dict[str, Any]) -> str:
    return f"; it must be {_range_words(meta)}" if "minimum" in meta or "maximum" in meta else ""


def _problem_for_yaml_error(exc: Exception) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None) or ""
    problem = getattr(exc, "problem", None) or str(exc)
    if "quoted scalar" in context and getattr(exc, "context_mark", None) is not None:
        m = exc.context_mark  # type: ignore[attr-defined]
        return Problem(m.line + 1, m.column + 1, "", "YAML syntax error: the quoted string that starts here is never closed")
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    msg = f"YAML syntax error: {problem}"
    if "did not find expected key" in problem or "expected <block end>" in problem:
        msg += " (check the indentation of this line: it must line up with its siblings)"
    if "\t" in problem or "tab" in problem:
        msg = "YAML syntax error: a tab character; indent with spaces"
    elif "mapping values are not allowed" in problem:
        msg += " (a value containing ': ' needs quotes)"
    elif "could not find expected ':'" in problem:
        msg += " (a key is missing its colon, or a quote is not closed)"
    elif "found undefined tag" in problem or "could not determine a constructor" in problem:
        msg = "YAML tags (!something) are not allowed in a recipe"
    return Problem(line, col, "", msg)


def loads(text: str | bytes, filename: str = "<recipe>") -> Recipe:
    """Parse a recipe, raising :class:`RecipeError` with every problem found."""
    recipe, problems = parse(text, filename)
    if recipe is None or any(not p.warning for p in problems):
        raise RecipeError(filename, problems or [Problem(1, 1, "", "invalid recipe")])
    return recipe


def parse(text: str | bytes, filename: str = "<recipe>") -> tuple[Recipe | None, list[Problem]]:
    """Parse a recipe and collect every shape problem without raising.

    The recipe comes back even when some fields were wrong (they keep their defaults),
    so later checks (:mod:`gpuwizard.validate`) can add their problems to the same
    report; it is None only when the text is not a YAML mapping at all.
    """
    try:
        return _parse(text, filename)
    except RecipeError as exc:
        return None, exc.problems


def _parse(text: str | bytes, filename: str) -> tuple[Recipe | None, list[Problem]]:
    if isinstance(text, bytes):
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(filename, [Problem(1, 1, "", f"file is {len(text):,} bytes; a recipe must be under {MAX_RECIPE_BYTES:,}")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = text[: exc.start]
            line = before.count(b"\n") + 1
            col = exc.start - (before.rfind(b"\n") + 1) + 1
            raise RecipeError(filename, [Problem(line, col, "", "not UTF-8 text: is this a recipe file?")]) from None
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(filename, [Problem(1, 1, "", f"file is {len(text):,} characters; a recipe must be under {MAX_RECIPE_BYTES:,}")])
    bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    if bad:
        before = text[: bad.start()]
        line = before.count("\n") + 1
        col = bad.start() - (before.rfind("\n") + 1) + 1
        raise RecipeError(filename, [Problem(line, col, "", f"control character {bad.group()!r} in the file: is this a recipe?")])
    tab = re.search(r"^( *)\t", text, re.M)
    if tab:
        before = text[: tab.start()]
        line = before.count("\n") + 1
        raise RecipeError(filename, [Problem(line, len(tab.group(1)) + 1, "", "a tab character in the indentation; indent with spaces")])
    try:
        node = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise RecipeError(filename, [_problem_for_yaml_error(exc)]) from None
    if node is None:
        raise RecipeError(filename, [Problem(1, 1, "", "the file is empty; start from `gpuwizard` or a recipe in recipes/")])
    if not isinstance(node, yaml.MappingNode):
        raise RecipeError(filename, [Problem(node.start_mark.line + 1, node.start_mark.column + 1, "",
                                             f"a recipe is a mapping of fields (version, name, target, ...), got {_node_word(node)}")])
    _check_aliases(node, filename)
    ld = _Loader()
    recipe = ld.dataclass(node, "", Recipe)
    if recipe is _BAD:
        return None, ld.problems or [Problem(1, 1, "", "invalid recipe")]
    recipe.marks = ld.marks
    recipe.source = text
    problems = merge_problems(ld.problems, structural_problems(recipe))
    recipe.pristine = to_data(recipe)
    return recipe, problems


def _check_aliases(root: Any, filename: str) -> None:
    """Refuse YAML anchors/aliases: they make recipes hard to read and enable entity bombs."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise RecipeError(filename, [Problem(n.start_mark.line + 1, n.start_mark.column + 1, "",
                                                 "YAML anchors and aliases (&x / *x) are not allowed; write the value out")])
        seen.add(id(n))
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))


def read(path: str) -> bytes:
    """The bytes of a recipe file, or :class:`RecipeError` saying why they can't be read.

    Only a regular file is read: a FIFO would block forever, a device could stream
    without end. The file is opened non-blocking and checked with ``fstat`` on the open
    descriptor, so what is checked is what is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RecipeError(path, [Problem(1, 1, "", f"cannot read the file: {exc.strerror}")]) from None
    kind = _file_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise RecipeError(path, [Problem(1, 1, "", f"this is {kind}, not a file; give the path of a recipe file")])
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read(MAX_RECIPE_BYTES + 1)
        except OSError as exc:
            raise RecipeError(path, [Problem(1, 1, "", f"cannot read the file: {exc.strerror}")]) from None


def _file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def load(path: str) -> Recipe:
    """Read and parse a recipe file (see :func:`loads`)."""
    return loads(read(path), path)
