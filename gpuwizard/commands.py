"""Handlers for the offline subcommands: validate, plan, schema, catalog.

None of them imports Textual, asyncssh or google-cloud-compute; `validate` and `plan`
must stay fast enough to run in an editor's save hook.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any, Iterable

from gpuwizard import catalog, drivers, exit_codes, plan
from gpuwizard.catalog import stack as S
from gpuwizard.recipe import RecipeError, json_schema
from gpuwizard.secretcheck import secret_name
from gpuwizard.shipped import shipped, summary
from gpuwizard.validate import load_checked


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 with warnings (if any) on stderr, or every problem and exit 2."""
    status = exit_codes.OK
    for path in args.recipe:
        try:
            recipe, warnings = load_checked(path)
        except RecipeError as exc:
            for line in exc.lines():
                _stderr(line)
            status = exit_codes.USAGE
            continue
        for p in warnings:
            _stderr(p.format(path))
        print(f"{path}: ok ({recipe.name})")
    return status


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the steps and the exact shell each runs (or JSON); exit 2 on a bad recipe."""
    try:
        recipe, warnings = load_checked(args.recipe)
    except RecipeError as exc:
        for line in exc.lines():
            _stderr(line)
        return exit_codes.USAGE
    for p in warnings:
        _stderr(p.format(args.recipe))
    every = plan.build(recipe)
    steps = plan.select(every, args.only)
    if args.only and not steps:
        _stderr(f"gpuwizard: no step matches {', '.join(args.only)}; the steps are: {', '.join(s.id for s in every)}")
        return exit_codes.USAGE
    prov = plan.describe_provision(recipe)
    if args.json:
        out: dict[str, Any] = {
            "recipe": recipe.name,
            "hosts": recipe.hosts,
            "provision": prov.__dict__ if prov else None,
            "cluster": plan.describe_cluster(recipe) or None,
            "steps": [
                {"id": s.id, "title": s.title, "run": s.run, "check": s.check, "sudo": s.sudo, "reboot": s.reboot,
                 "timeout": s.timeout, "retries": s.retries,
                 "env": {k: ("..." if secret_name(k) else v) for k, v in s.env},
                 "uploads": [{"local": u.local, "remote": u.remote, "mode": oct(u.mode)} for u in s.uploads],
                 "progress": s.progress, **({"on": s.on, "gang": s.gang, "barrier": s.barrier}
                                             if recipe.cluster is not None else {})}
                for s in steps
            ],
        }
        print(json.dumps(out, indent=2))
        return exit_codes.OK
    print(f"# plan for {recipe.name}: {len(steps)} steps")
    if prov:
        print("\n## provision (Compute Engine)")
        for line in prov.lines():
            print(f"   {line}")
    else:
        print(f"\n## hosts: {', '.join(recipe.hosts)}")
    if recipe.cluster is not None:
        print("\n## cluster")
        for line in plan.describe_cluster(recipe):
            print(f"   {line}")
    for i, s in enumerate(steps, 1):
        flags = [f for f, on in (("sudo", s.sudo), ("reboot after", s.reboot)) if on]
        flags.append(f"timeout {_seconds(s.timeout)}")
        if s.retries:
            flags.append(f"{s.retries} retries")
        print(f"\n## {i}. {s.id}: {s.title}  [{', '.join(flags)}]")
        on = plan.step_where(recipe, s)
        if on:
            print(f"   on: {on}")
        for u in s.uploads:
            print(f"   upload {u.local} -> {u.remote} (mode {u.mode:o})")
        if s.env:
            print("   env: " + " ".join(f"{k}=..." if secret_name(k) else f"{k}={v}" for k, v in s.env))
        if s.check:
            print("   skip when this succeeds:")
            print(textwrap.indent(s.check.rstrip(), "     | "))
        print("   run:")
        print(textwrap.indent(s.run.rstrip(), "     | "))
    return exit_codes.OK


def _seconds(t: float) -> str:
    t = int(t)
    if t % 3600 == 0:
        return f"{t // 3600}h"
    if t % 60 == 0:
        return f"{t // 60}m"
    return f"{t}s"


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the recipe JSON Schema (docs/recipe.schema.json is this output)."""
    print(json.dumps(json_schema(), indent=2))
    return exit_codes.OK


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    """A plain aligned text table (no dependency: it must print in a pipe, too)."""
    rows = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cmd_catalog(args: argparse.Namespace) -> int:
    gpu_filter = None
    if args.gpu:
        g = catalog.gpu(args.gpu) or catalog.gpu_by_label(args.gpu)
        if g is None:
            _stderr(f"gpuwizard: unknown GPU {args.gpu!r}; known: {', '.join(catalog.gpus())}")
            return exit_codes.USAGE
        gpu_filter = g.name
    if args.what == "gpus":
        rows = []
        for g in catalog.gpus().values():
            if gpu_filter and g.name != gpu_filter:
                continue
            price = f"${g.price_hour:.2f}" if g.price_hour else "in machine"
            rows.append([g.label, g.name, f"{g.memory_gb} GB", f"{g.arch} {g.cc}", "/".join(g.families).upper(),
                         ",".join(map(str, g.counts)), g.quota_metric, price, "retired" if g.retired else ""])
        print(table(["GPU", "accelerator type", "memory", "arch/cc", "machines", "counts", "quota metric",
                     "$/GPU-h", ""], rows))
        _source(catalog.meta("gpus"))
    elif args.what == "machines":
        rows = []
        for m in catalog.machine_types().values():
            if gpu_filter:
                g = catalog.gpu(gpu_filter)
                if not (m.gpu_type == gpu_filter or (m.gpu_type is None and g and m.family in g.families)):
                    continue
            gpu = f"{m.gpu_count} x {m.gpu_type}" if m.gpu_type else "attach"
            rows.append([m.name, m.vcpus, f"{m.memory_gb:g} GB", gpu, _dollars(m.price_hour),
                         _dollars(m.spot_price_hour), "spot only" if m.spot_only else ""])
        print(table(["machine type", "vCPUs", "memory", "GPUs", "$/h", "spot $/h", ""], rows))
        _source(catalog.meta("machines"))
    elif args.what == "zones":
        rows = []
        for name, g in catalog.gpus().items():
            if gpu_filter and name != gpu_filter:
                continue
            zones = catalog.zones_for(name)
            rows.append([g.label, len(zones), ", ".join(zones) if gpu_filter else _abbrev(zones)])
        print(table(["GPU", "zones", "where"], rows))
        _source(catalog.meta("zones"))
    elif args.what == "images":
        rows = [[i.family, i.project, i.os, "preinstalled " + (i.driver or "") if i.dlvm else "installed by gpuwizard",
                 i.label] for i in catalog.images().values()]
        print(table(["family", "project", "os", "driver", "what"], rows))
        _source(catalog.meta("images"))
    elif args.what == "recipes":
        rows = [[name, summary(path), path] for name, path in shipped().items()]
        print(table(["recipe", "what it is for", "file"], rows))
        print("\nStart from one: gpuwizard new --from NAME -o my.yaml   (or copy the file)")
    elif args.what == "drivers":
        print(drivers_table(gpu_filter))
    return exit_codes.OK


def drivers_table(gpu_filter: str | None = None) -> str:
    """`gpuwizard catalog drivers`: the proposed stack per GPU on Ubuntu 22.04, and why."""
    rows = []
    notes = []
    for name, g in catalog.gpus().items():
        if gpu_filter and name != gpu_filter:
            continue
        st = drivers.propose(name, "ubuntu-2204-lts")
        rows.append([g.label, g.arch, g.cc, st.branch and f"R{st.branch}", st.flavor, st.cuda, st.cudnn,
                     st.tensorrt, st.torch and f"{st.torch} {st.torch_index}"])
        notes += [f"{g.label}: {n}" for n in st.notes]
    out = table(["GPU", "arch", "cc", "driver", "modules", "CUDA", "cuDNN", "TensorRT", "PyTorch"], rows)
    if notes:
        out += "\n\n" + "\n".join(dict.fromkeys(notes))
    m = S.meta()
    out += f"\n\nsnapshot {m.get('snapshot')}; sources: " + "; ".join(m.get("sources", []))
    return out


def _dollars(price: float | None) -> str:
    return "unknown" if price is None else f"${price:.2f}"


def _abbrev(zones: list[str]) -> str:
    shown = ", ".join(zones[:4])
    return shown + (f", ... (+{len(zones) - 4})" if len(zones) > 4 else "")


def _source(meta: dict[str, Any]) -> None:
    if meta:
        print(f"\nsnapshot {meta.get('snapshot')}; sources: " + "; ".join(meta.get("sources", [])))
        if meta.get("notes"):
            print(meta["notes"])
