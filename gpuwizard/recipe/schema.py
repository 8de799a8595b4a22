"""The recipe's JSON Schema (``gpuwizard schema``, docs/recipe.schema.json), generated
from the model's dataclasses so editors check the same fields the loader does."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from gpuwizard.recipe.model import SCHEMA_URL, Driver, Recipe, Remote, model_fields, type_hints, yaml_key
from gpuwizard.secretcheck import SECRET_KEYS


def json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (draft 2020-12), generated from the dataclasses."""
    defs: dict[str, Any] = {}

    def of(tp: Any, meta: dict[str, Any]) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            alts = [of(a, meta) for a in non_none]
            if type(None) in args:
                alts.append({"type": "null"})
            return alts[0] if len(alts) == 1 else {"anyOf": alts}
        if origin is list:
            item_meta = {"pattern": meta["item_pattern"]} if "item_pattern" in meta else {}
            return {"type": "array", "items": of(args[0], item_meta)}
        if origin is dict:
            s: dict[str, Any] = {"type": "object", "additionalProperties": of(args[1], {})}
            if "key_pattern" in meta:
                s["propertyNames"] = {"pattern": meta["key_pattern"]}
            return s
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}
                defs[name] = obj(tp)
            ref = {"$ref": f"#/$defs/{name}"}
            if tp is Driver:
                return {"anyOf": [ref, {"const": "preinstalled"}]}
            return ref
        base = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
                str: {"type": "string"}}.get(tp, {"type": ["string", "number", "boolean"]})
        s = dict(base)
        for k in ("pattern", "minimum", "maximum", "enum"):
            if k in meta:
                s[k] = meta[k]
        if "max_length" in meta:
            s["maxLength"] = meta["max_length"]
        s.update(meta.get("schema", {}))
        return s

    def obj(cls: type) -> dict[str, Any]:
        props: dict[str, Any] = {}
        required = []
        hints = type_hints(cls)
        for f in model_fields(cls):
            if f.metadata.get("inline"):
                continue
            s = of(hints[f.name], dict(f.metadata))
            s = {**s, "description": f.metadata.get("doc", "")}
            props[yaml_key(f)] = s
            if f.metadata.get("required"):
                required.append(yaml_key(f))
        out: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip().split("\n\n")[0],
                               "properties": props, "additionalProperties": cls is Remote}
        if cls is Remote:
            out["additionalProperties"] = {"type": ["string", "number", "boolean"]}
            out["propertyNames"] = {"not": {"enum": sorted(SECRET_KEYS)}}
        if required:
            out["required"] = required
        return out

    root = obj(Recipe)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_URL,
            "title": "gpuwizard recipe", **root, "$defs": defs}
