"""``gpuwizard run``: recipe -> steps -> hosts -> executor, with a run directory and a renderer.

Why this glue is its own module: the executor only knows hosts and steps; deciding
which hosts (existing ones, or VMs provisioned now), whether this is a resumed run,
which renderer to use and what exit code to return is policy, and it lives here.

Exit codes: 0 all hosts ok, 1 a step failed, 2 bad recipe or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunContext:
    """What provisioning and host resolution need to know about the run."""

    run_id: str
    accept_new_host_key: bool = False
    run_dir: str | None = None


def build_steps(recipe: Any) -> list[Step]:
    """The planner's steps for each host.

    Until every planner part exists (``plan.build`` imports drivers, envsteps, rclone,
    verify), a recipe still runs its own steps: better than refusing to run at all.
    """
    from gpuwizard import plan

    try:
        return list(plan.build(recipe))
    except (NotImplementedError, ImportError):
        return [plan.user_step(u) for u in recipe.steps]


async def resolve_hosts(recipe: Any, run: RunContext, sink: Callable[[Any], None]) -> list[HostSpec]:
    """The hosts to run on: ``target.ssh.hosts``, or VMs provisioned for ``target.gcp``.

    The provisioning hook returns objects with ``name``, ``address``, ``port``, ``user``
    and ``known_hosts`` (a file holding the keys the VM published), so new VMs are
    verified like any other host.
    """
    from gpuwizard.ssh import hosts_from_recipe

    if recipe.target.ssh is not None:
        return hosts_from_recipe(recipe, accept_new=run.accept_new_host_key)
    from gpuwizard.gcp import provision  # lazy: google-cloud-compute costs seconds to import

    vms = await provision.provision(recipe, run_id=run.run_id, sink=sink)
    return [HostSpec(name=getattr(vm, "name"), address=getattr(vm, "address"), port=getattr(vm, "port", None),
                     user=getattr(vm, "user", None) or recipe.ssh.user, identity=recipe.ssh.identity,
                     known_hosts=getattr(vm, "known_hosts", None) or recipe.ssh.known_hosts,
                     accept_new=run.accept_new_host_key)
            for vm in vms]


def _recipe_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def open_run_dir(args: argparse.Namespace, recipe: Any, text: str) -> tuple[Any, bool]:
    """A new run directory, or the interrupted run to resume: ``--resume`` resumes the
    newest unfinished (or failed) run of this recipe file; without flags, a re-run of
    an interrupted run of the unchanged recipe resumes it; ``--fresh`` never resumes."""
    from gpuwizard.cli import UsageError
    from gpuwizard.runlog import RunDir, find_resumable

    if getattr(args, "run_dir", None):
        d = args.run_dir
        if os.path.isfile(os.path.join(d, "state.json")) and not getattr(args, "fresh", False):
            rd = RunDir.open(d)
            if not rd.lock():
                raise UsageError(f"run {rd.run_id} is running in another process")
            return rd, True
        return RunDir.create(args.recipe, text, recipe.name, path=d), False
    if not getattr(args, "fresh", False):
        prev = find_resumable(args.recipe, include_failed=bool(getattr(args, "resume", False)))
        if prev is not None and (getattr(args, "resume", False) or _same_text(prev, text)):
            if prev.lock():
                return prev, True
        elif getattr(args, "resume", False):
            print("gpuwizard: no interrupted run of this recipe to resume; starting a new run.", file=sys.stderr)
    return RunDir.create(args.recipe, text, recipe.name), False


def _same_text(rd: Any, text: str) -> bool:
    try:
        old = (rd.path / "recipe.yaml").read_text(encoding="utf-8")
    except OSError:
        return False
    return hashlib.sha256(old.encode()).digest() == hashlib.sha256(text.encode()).digest()


def _renderer(args: argparse.Namespace) -> Callable[[Any], None]:
    from gpuwizard.headless import JsonRenderer, LineRenderer

    return JsonRenderer() if getattr(args, "json", False) else LineRenderer()


def cmd_run(args: argparse.Namespace) -> int:
    """Entry point of ``gpuwizard run RECIPE``."""
    from gpuwizard.recipe import RecipeError, load

    try:
        recipe = load(args.recipe)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    steps = build_steps(recipe)
    only = getattr(args, "only", None)
    if only:
        from gpuwizard.plan import select

        picked = select(steps, only)
        if not picked:
            from gpuwizard.cli import UsageError

            raise UsageError(f"no step matches {', '.join(only)}; `gpuwizard plan {args.recipe}` lists them")
        steps = picked
    text = _recipe_text(args.recipe)
    rd, resumed = open_run_dir(args, recipe, text)
    if resumed:
        print(f"gpuwizard: resuming run {rd.run_id} (finished steps are skipped; --fresh starts over)",
              file=sys.stderr)
    try:
        return asyncio.run(_run(args, recipe, steps, rd))
    finally:
        rd.close()
        print(f"gpuwizard: run directory {rd.path} (see `gpuwizard logs {rd.run_id}`)", file=sys.stderr)


async def _run(args: argparse.Namespace, recipe: Any, steps: Sequence[Step], rd: Any) -> int:
    from gpuwizard.executor import ExecOptions, Executor
    from gpuwizard.headless import Fanout
    from gpuwizard.ssh import SshError

    render = _renderer(args)
    sink = Fanout(rd, render)
    ctx = RunContext(run_id=rd.run_id, accept_new_host_key=bool(getattr(args, "accept_new_host_key", False)),
                     run_dir=str(rd.path))
    try:
        hosts = await resolve_hosts(recipe, ctx, sink)
    except (SshError, ValueError) as exc:
        print(f"gpuwizard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rd.begin_attempt()
    rd.set_plan({h.name: steps for h in hosts})
    opts = ExecOptions(run_id=rd.run_id, recipe=recipe.name, connect_timeout=float(recipe.ssh.connect_timeout),
                       reboot_command=recipe.ssh.reboot_command, done=rd.done(),
                       retry_auth=recipe.target.gcp is not None)
    executor = Executor(hosts, steps, sink, opts)
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            print("\ngpuwizard: stopping: remote commands are being stopped and the state saved "
                  "(Ctrl-C again to quit at once).", file=sys.stderr)
            executor.cancel()
        else:
            rd.save_state()
            os._exit(EXIT_INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        ok = await executor.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not ok and recipe.target.gcp is not None:
        # --delete-on-failure is the lead's to wire to gcp teardown; until then, say it plainly
        print(f"gpuwizard: the VMs of this run are still running (and billed). Fix and re-run, or delete "
              f"them with `gpuwizard down {args.recipe}`.", file=sys.stderr)
    if executor.interrupted:
        print(f"gpuwizard: interrupted; `gpuwizard run {args.recipe} --resume` continues where it stopped.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if ok else EXIT_FAILED
