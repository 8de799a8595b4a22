"""The ``quota``, ``zones``, ``down`` and ``status`` subcommands.

Each returns an exit code (:mod:`gpuwizard.exit_codes`) and prints one sentence on
failure (no traceback): OK, FAILED when the cloud said no (or the user declined), USAGE
for usage/recipe problems.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Coroutine, Iterable, TypeVar

from gpuwizard import catalog
from gpuwizard.events import Event
from gpuwizard.exit_codes import FAILED, OK, USAGE
from gpuwizard.gcp import cluster_net
from gpuwizard.gcp.body import LABEL_RECIPE_ID, recipe_id
from gpuwizard.gcp.cluster_spec import key as cluster_key
from gpuwizard.gcp.errors import GcpError, console_link
from gpuwizard.gcp.inventory import VmInfo, autostop_states, delete_vms, list_recipe_vms
from gpuwizard.gcp.quota import QuotaReport, fetch_quota
from gpuwizard.gcp.quota_commands import family_advice, print_family, print_requests
from gpuwizard.gcp.zones import machine_for, use_live_prices, zone_price, zones_for_gpu, zones_offline
from gpuwizard.recipe import Recipe, RecipeError, load
from gpuwizard.tables import table

T = TypeVar("T")


def _err(msg: str) -> None:
    print(f"gpuwizard: {msg}", file=sys.stderr)


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def _or_list(items: Iterable[Any]) -> str:
    """[1, 2, 4] -> "1, 2 or 4"."""
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _fail(exc: GcpError) -> int:
    """Print the error once; missing credentials or project are set-up problems (exit 2,
    like a usage error), not a failed step (issue 11)."""
    _err(str(exc))
    return USAGE if exc.kind in ("usage", "project", "credentials") else FAILED


def cmd_quota(args: argparse.Namespace) -> int:
    """Global GPUS_ALL_REGIONS, then each region's GPU quota (limit, usage, free), then the
    GPU-family quotas from Cloud Quotas; ``--requests``: the project's quota requests."""
    if getattr(args, "requests", False):
        return print_requests(getattr(args, "project", None))
    try:
        rep = _run(fetch_quota(getattr(args, "project", None), args.gpu, bool(args.spot)))
    except GcpError as exc:
        return _fail(exc)
    print(f"Project {rep.project}")
    if rep.global_limit is None:
        print("GPUS_ALL_REGIONS: not listed by projects.get (unknown)")
    else:
        print(f"GPUS_ALL_REGIONS: limit {_num(rep.global_limit)}, usage {_num(rep.global_usage)}, "
              f"free {_num(rep.global_free)}")
        if rep.global_limit == 0:
            print("  No GPU can run anywhere until this is raised (every new project starts at 0): request "
                  f"at least 1 at {console_link('GPUS_ALL_REGIONS', None, rep.project)}")
    if not rep.rows:
        what = f"{rep.metric}" if rep.metric else "GPU"
        print(f"No region lists a {what} quota in regions.list (H100-class GPUs use the GPU-family quota "
              f"of Cloud Quotas).")
        return _family_part(rep)
    print()
    print(table(["REGION", "METRIC", "LIMIT", "USAGE", "FREE"],
                [[r.region, r.metric, _num(r.limit), _num(r.usage), _num(r.free)] for r in rep.rows], rule=False))
    asked = [r for r in rep.rows if rep.metric is None or r.metric == rep.metric]
    if rep.fallback:
        print(f"\nSpot VMs use {rep.metric} where it is granted and fall back to {rep.fallback} where it is not: "
              f"a region is out of quota only when both are.")
    zero = [r for r in asked if r.limit == 0
            and not ((fb := rep.fallback_row(r.region or "")) is not None and fb.free > 0)]
    if args.gpu and zero and len(zero) == len(asked):
        r = zero[0]
        print(f"\nQuota '{r.metric}' is 0 in every region: request it for a region near you, e.g. "
              f"{r.link(rep.project)}")
    elif args.gpu and zero:
        print(f"\n{len(zero)} region(s) have {rep.metric} = 0; to raise one, e.g. {zero[0].region}: "
              f"{zero[0].link(rep.project)}")
    return _family_part(rep)


def _family_part(rep: QuotaReport) -> int:
    """The GPU-family quotas and, when one blocks the GPU asked, the request to file."""
    print_family(rep)
    advice = family_advice(rep)
    if advice:
        print("\n" + advice)
    return OK


def cmd_zones(args: argparse.Namespace) -> int:
    """Zones offering --gpu at --count, free quota and price, best first."""
    count = 1 if args.count is None else int(args.count)
    g = catalog.gpu(args.gpu) or catalog.gpu_by_label(args.gpu)
    if g is not None and count not in g.counts:  # (an unknown GPU is reported by the lookup below)
        _err(f"{g.label} takes {_or_list(g.counts)} GPUs per VM.")
        return USAGE
    if g is not None and not args.offline:  # (the --offline fall-back below does not come here again)
        note = use_live_prices()
        if note:
            _err(note)
    try:
        if args.offline:
            opts = zones_offline(args.gpu, count, bool(args.spot))
        else:
            opts = _run(zones_for_gpu(getattr(args, "project", None), args.gpu, count, bool(args.spot)))
    except GcpError as exc:
        if exc.kind == "credentials" and not args.offline:
            _err(f"{exc} Showing the catalog snapshot meanwhile (--offline).")
            args.offline = True
            return cmd_zones(args)
        return _fail(exc)
    if not opts:
        print(f"No zone offers {count} x {args.gpu} per VM.")
        return OK
    src = "catalog snapshot; quota unknown" if args.offline else "live"
    print(f"{len(opts)} zone(s) offering {count} x {args.gpu} ({src}), best first:")
    both = any(o.free_preemptible is not None or o.free_standard is not None for o in opts)
    print(table(["ZONE", "REGION", "MAX/VM", "FREE QUOTA"] + (["PREEMPTIBLE", "STANDARD"] if both else [])
                + ["$/HOUR"],
                [[o.zone, o.region, o.max_count, _num(o.free_quota)]
                 + ([_num(o.free_preemptible), _num(o.free_standard)] if both else [])
                 + ["?" if o.price_hour is None else f"{o.price_hour:.2f}"] for o in opts], rule=False))
    if both:
        print("Spot VMs use the preemptible quota where it is granted, else the standard one (FREE QUOTA: "
              "the larger).")
    gpu, spot = g.name if g else args.gpu, bool(args.spot)
    best = zone_price(gpu, count, spot)
    if best is not None:
        what = best.assumes.split(";")[0]
        machine = machine_for(gpu, count, spot)
        regions = dict.fromkeys(o.region for o in opts)
        src = catalog.sources_of([zone_price(gpu, count, spot, r, machine) for r in regions])
        print(f"$/HOUR: {what}, {'spot' if args.spot else 'on-demand'}, in each zone's region, {src} (the price "
              "`gpuwizard plan` shows for that machine there)")
    return OK


def _load(path: str) -> Recipe | None:
    try:
        return load(path)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return None


def _ssh_target(recipe: Recipe, path: str, doing: str) -> bool:
    """Say so when the recipe runs on existing SSH hosts: gpuwizard made no VM for it, so
    there is nothing to list or delete, and no reason to ask for GCP credentials (issue 11)."""
    if recipe.target.gcp is not None:
        return False
    print(f"{path} runs on existing SSH hosts (target.ssh): gpuwizard created no VMs for it, so there is "
          f"nothing to {doing}.")
    return True


def _project_of(recipe: Recipe) -> str | None:
    return recipe.target.gcp.project if recipe.target.gcp else None


def _cluster_resources(recipe: Recipe, path: str) -> cluster_net.ClusterResources:
    """A cluster recipe's firewall rules and placement policies (none listed for other recipes)."""
    if getattr(recipe, "cluster", None) is None:
        return cluster_net.ClusterResources()
    return _run(cluster_net.list_resources(_project_of(recipe), cluster_key(recipe, recipe_id(path))))


def _unmarked_note(vms: list[VmInfo], recipe: Recipe) -> None:
    """Say which VMs were matched by the recipe name alone (no recipe-id label)."""
    old = [v.name for v in vms if v.recipe_id is None]
    if old:
        print(f"Note: {', '.join(old)} {'has' if len(old) == 1 else 'have'} no {LABEL_RECIPE_ID} label (made "
              f"before gpuwizard labelled recipe files), so only the recipe name {recipe.name} matched: "
              f"another recipe file with that name may have made {'it' if len(old) == 1 else 'them'}.")


def cmd_status(args: argparse.Namespace) -> int:
    """The recipe's VMs with zone, state, IP and running cost."""
    recipe = _load(args.recipe)
    if recipe is None:
        return USAGE
    if _ssh_target(recipe, args.recipe, "list"):
        return OK
    note = use_live_prices()  # before listing: each VM is priced in its region as it is read
    if note:
        _err(note)
    try:
        vms = _run(list_recipe_vms(_project_of(recipe), recipe.name, recipe_path=args.recipe))
        res = _cluster_resources(recipe, args.recipe)
    except GcpError as exc:
        return _fail(exc)
    if res:
        print("Cluster network: " + "; ".join(res.lines()))
    if not vms:
        print(f"No VMs from recipe {recipe.name}." + (" `gpuwizard down` deletes the rest." if res else ""))
        return OK
    _unmarked_note(vms, recipe)
    try:
        autostop = _run(autostop_states(_project_of(recipe), vms))
    except GcpError:
        autostop = {}
    print(table(["NAME", "ZONE", "STATE", "IP", "GPU", "$/HOUR", "SO FAR", "AUTO-STOP"],
                [[v.name, v.zone, v.status, v.address or v.internal_address or "-",
                  f"{v.gpu_count} x {v.gpu_type}" if v.gpu_type else "-",
                  "?" if v.price_hour is None else f"{v.price_hour:.2f}",
                  "?" if v.cost_so_far is None else f"~${v.cost_so_far:.2f}",
                  autostop.get(v.name, "?")] for v in vms], rule=False))
    running = [v for v in vms if v.status == "RUNNING" and v.price_hour]
    if running:
        print(f"\n{len(running)} running at ~${sum(v.price_hour or 0 for v in running):.2f}/hour; "
              f"`gpuwizard down {args.recipe}` deletes them.")
    print("$/HOUR assumes:")
    for v in vms:
        print(f"  {v.name}: {v.price_assumes}")
    return OK


def cmd_down(args: argparse.Namespace) -> int:
    """Delete the VMs that runs of the recipe file created (found by label), after
    confirmation; exactly the VMs listed to the user, never a list fetched afterwards."""
    recipe = _load(args.recipe)
    if recipe is None:
        return USAGE
    if _ssh_target(recipe, args.recipe, "delete"):
        return OK
    project = _project_of(recipe)
    try:
        vms = _run(list_recipe_vms(project, recipe.name, recipe_path=args.recipe))
        res = _cluster_resources(recipe, args.recipe)
    except GcpError as exc:
        return _fail(exc)
    if not vms and not res:
        print(f"No VMs from recipe {recipe.name}: nothing to delete.")
        return OK
    _unmarked_note(vms, recipe)
    names = ", ".join([f"{v.name} ({v.zone})" for v in vms] + res.lines())
    what = f"{len(vms)} VM(s) and their boot disks" + (" and the cluster's network" if res else "")
    if not args.yes:
        if not sys.stdin.isatty():
            _err(f"refusing to delete {what} without confirmation: run again with --yes.")
            return USAGE
        try:
            answer = input(f"Delete {what}: {names}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return FAILED
    print(f"Deleting {names} ...", flush=True)

    def sink(ev: Event) -> None:
        print(getattr(ev, "data", ""), end="", flush=True)

    try:
        gone = _run(delete_vms(project, vms, sink=sink))
        # after the VMs: a placement policy that a VM still names cannot be deleted
        net = _run(cluster_net.delete_resources(project, res, sink=sink)) if res else []
    except GcpError as exc:
        return _fail(exc)
    missing = len(vms) - len(gone)
    print(f"Deleted {len(gone)} VM(s)." + (f" {missing} had already gone." if missing else "")
          + (f" Deleted {', '.join(net)}." if net else ""))
    return OK
