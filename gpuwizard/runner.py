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
import threading
from dataclasses import dataclass, field
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
    recipe_path: str | None = None  # labels the VMs with the recipe file, so `down` finds only this file's
    previous_hosts: list[str] = field(default_factory=list)  # host names this run has had (replaced VMs)


def build_steps(recipe: Any) -> list[Step]:
    """The planner's steps for each host."""
    from gpuwizard import plan

    return list(plan.build(recipe))


async def resolve_hosts(recipe: Any, run: RunContext, sink: Callable[[Any], None]) -> list[HostSpec]:
    """The hosts to run on: ``target.ssh.hosts``, or VMs provisioned for ``target.gcp``.

    Provisioning pins each new VM's host keys (read from its guest attributes) in the
    run directory's ``known_hosts``, so new VMs are verified like any other host.
    Re-running with the same run id (resume) finds that run's VMs instead of creating
    more.
    """
    from gpuwizard.ssh import hosts_from_recipe

    if recipe.target.ssh is not None:
        return hosts_from_recipe(recipe, accept_new=run.accept_new_host_key)
    from gpuwizard.gcp import provision  # lazy: google-cloud-compute costs seconds to import

    known_hosts = os.path.join(run.run_dir, "known_hosts") if run.run_dir else None
    vms = await provision.provision(recipe, run_id=run.run_id, sink=sink,
                                    accept_new_host_key=run.accept_new_host_key, known_hosts_path=known_hosts,
                                    recipe_path=run.recipe_path, previous_hosts=run.previous_hosts)
    return [HostSpec(name=vm.name, address=vm.address, port=vm.port, user=vm.user, identity=vm.identity,
                     known_hosts=vm.known_hosts,
                     accept_new=run.accept_new_host_key and not getattr(vm, "host_key_verified", False))
            for vm in vms]


@dataclass
class Outcome:
    """How a run ended, for the exit code and the closing advice."""

    ok: bool
    interrupted: bool = False
    error: str | None = None        # a failure before any step ran (provisioning, SSH set-up)
    provisioned: bool = False       # VMs exist for this run (target.gcp)


async def execute(recipe: Any, steps: Sequence[Step], rd: Any, sink: Callable[[Any], None], *,
                  accept_new_host_key: bool = False, hosts: Sequence[HostSpec] | None = None,
                  cancel: asyncio.Event | None = None, on_executor: Callable[[Any], None] | None = None,
                  **options: Any) -> Outcome:
    """Resolve the hosts (provisioning them for ``target.gcp``) and run ``steps`` on each.

    The one place that turns a recipe into a running executor, shared by ``gpuwizard
    run`` and the Textual run screen. Setting ``cancel`` (Ctrl-C, the screen's Stop)
    stops the run at any point: during provisioning no further request is waited for
    and no step starts; during the steps the executor stops the remote commands.
    Whatever happens, the run directory records how the run ended, and which remote
    process groups are running (a resumed run stops those an earlier attempt left).
    ``on_executor`` is handed the executor once it exists (for a hard exit's last try).
    """
    from gpuwizard import events as ev
    from gpuwizard.executor import ExecOptions, Executor
    from gpuwizard.ssh import SshError

    cancel = cancel or asyncio.Event()
    gcp = recipe.target.gcp is not None
    where = "gcp" if gcp else "gpuwizard"

    def ended(outcome: Outcome, message: str | None) -> Outcome:
        if message:
            sink(ev.Output(host=where, step="provision" if gcp else "connect", stream="stderr", data=message + "\n"))
        # A run that owns a running VM but ran no step is unfinished, not failed: a plain
        # re-run resumes onto that VM instead of creating a second one (issue 13).
        sink(ev.RunFinished(ok=False, interrupted=outcome.interrupted or outcome.provisioned))
        return outcome

    ctx = RunContext(run_id=rd.run_id, accept_new_host_key=accept_new_host_key, run_dir=str(rd.path),
                     recipe_path=rd.state.get("recipe_path"), previous_hosts=list(rd.state.get("hosts", {})))
    if hosts is None:
        task = asyncio.ensure_future(resolve_hosts(recipe, ctx, sink))
        stop = asyncio.ensure_future(cancel.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            msg = ("interrupted while provisioning: a VM may already exist; `gpuwizard run RECIPE --resume` "
                   "picks it up, `gpuwizard down RECIPE` deletes it") if gcp else "interrupted before any step ran"
            return ended(Outcome(ok=False, interrupted=True, provisioned=gcp), msg)
        try:
            hosts = task.result()
        except (SshError, ValueError) as exc:
            return ended(Outcome(ok=False, error=str(exc)), str(exc))
        except Exception as exc:  # noqa: BLE001 - GcpError and the client's own errors: one sentence
            if type(exc).__name__ != "GcpError" and not type(exc).__module__.startswith("google"):
                raise
            # The error says whether the run owns a VM that is running (GcpError.vm_exists).
            owns = bool(getattr(exc, "vm_exists", False)) or getattr(exc, "kind", "") == "hostkey"
            return ended(Outcome(ok=False, error=str(exc), provisioned=owns), str(exc))
        if cancel.is_set():
            return ended(Outcome(ok=False, interrupted=True, provisioned=gcp), "interrupted before any step ran")
    rd.begin_attempt()
    rd.set_plan({h.name: list(steps) for h in hosts})
    opts = ExecOptions(run_id=rd.run_id, recipe=recipe.name, connect_timeout=float(recipe.ssh.connect_timeout),
                       reboot_command=recipe.ssh.reboot_command, done=rd.done(),
                       running=rd.running(), on_running=rd.record_running,
                       retry_auth=gcp, **options)
    executor = Executor(list(hosts), list(steps), sink, opts)
    if on_executor is not None:
        on_executor(executor)

    async def watch() -> None:
        await cancel.wait()
        executor.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        ok = await executor.run()
    finally:
        watcher.cancel()
    return Outcome(ok=ok, interrupted=executor.interrupted or (cancel.is_set() and not ok), provisioned=gcp)


async def delete_vms(recipe: Any, run_id: str, sink: Callable[[Any], None] | None = None) -> list[str]:
    """Delete the VMs one run created (``--delete-on-failure``)."""
    from gpuwizard.gcp import provision

    return await provision.delete_recipe_vms(recipe.target.gcp.project, recipe.name, run_id=run_id, sink=sink)


async def conclude(args: argparse.Namespace, recipe: Any, outcome: Outcome, run_id: str,
                   sink: Callable[[Any], None] | None = None) -> list[str]:
    """After a run, whichever front end ran it: apply ``--delete-on-failure`` and return
    the closing advice (how to resume, how to delete what is still billed)."""
    deleted = None
    if (not outcome.ok and not outcome.interrupted and outcome.provisioned
            and getattr(args, "delete_on_failure", False)):
        deleted = await delete_vms(recipe, run_id, sink)
    from gpuwizard.plan import describe_provision  # (runner's owner hoists these)

    summary = describe_provision(recipe)
    hourly = summary.hourly * summary.vms if summary is not None and summary.hourly is not None else None
    return closing_advice(args.recipe, outcome, deleted, hourly=hourly)


def _recipe_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def open_run_dir(args: argparse.Namespace, recipe: Any, text: str) -> tuple[Any, bool]:
    """See :func:`_open_run_dir`; a run directory that cannot be made is a usage error."""
    from gpuwizard.errors import UsageError

    try:
        return _open_run_dir(args, recipe, text)
    except OSError as exc:
        where = exc.filename or getattr(args, "run_dir", None) or "the state directory"
        raise UsageError(f"cannot create the run directory ({where}: {exc.strerror or exc}); "
                         "set XDG_STATE_HOME or --run-dir to a writable folder") from None


def _open_run_dir(args: argparse.Namespace, recipe: Any, text: str) -> tuple[Any, bool]:
    """A new run directory, or the interrupted run to resume: ``--resume`` resumes the
    newest unfinished (or failed) run of this recipe file; without flags, a re-run of
    an interrupted run of the unchanged recipe resumes it; ``--fresh`` never resumes."""
    from gpuwizard.errors import UsageError
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
    rd = RunDir.create(args.recipe, text, recipe.name)
    _inherit_running(rd, args.recipe)
    return rd, False


def _inherit_running(rd: Any, recipe_path: str) -> None:
    """A new run (``--fresh``, or a changed recipe) must not start a step beside one that
    an earlier, abandoned run of the same recipe left running: carry that run's record
    of remote process groups over, so the executor stops them before its first step."""
    from gpuwizard.runlog import list_runs

    want = os.path.abspath(recipe_path)
    for prev in reversed(list_runs()):
        if prev.run_id == rd.run_id or prev.state.get("recipe_path") != want:
            continue
        if not prev.is_locked():
            for host, proc in prev.running().items():
                rd.record_running(host, proc)
        return


def _same_text(rd: Any, text: str) -> bool:
    try:
        old = (rd.path / "recipe.yaml").read_text(encoding="utf-8")
    except OSError:
        return False
    return hashlib.sha256(old.encode()).digest() == hashlib.sha256(text.encode()).digest()


def _renderer(args: argparse.Namespace) -> Callable[[Any], None]:
    from gpuwizard.headless import JsonRenderer, LineRenderer

    return JsonRenderer() if getattr(args, "json", False) else LineRenderer()


def prepare(args: argparse.Namespace) -> tuple[Any, list[Step]]:
    """Load and check the recipe, plan it and apply ``--only``: what both the headless run
    and the Textual run screen start from. Raises RecipeError or UsageError."""
    from gpuwizard.validate import load_checked

    recipe, warnings = load_checked(args.recipe)
    for w in warnings:
        print(w.format(args.recipe), file=sys.stderr)
    steps = build_steps(recipe)
    only = getattr(args, "only", None)
    if only:
        from gpuwizard.plan import select

        picked = select(steps, only)
        if not picked:
            from gpuwizard.errors import UsageError

            raise UsageError(f"no step matches {', '.join(only)}; `gpuwizard plan {args.recipe}` lists them")
        steps = picked
    return recipe, steps


def cmd_run(args: argparse.Namespace) -> int:
    """Entry point of ``gpuwizard run RECIPE`` without a terminal (or with --headless/--json).

    On a terminal the CLI routes to ``screens.runapp:cmd_run`` instead (the core never
    imports the UI), which starts from the same :func:`prepare` and :func:`execute`.
    """
    from gpuwizard.recipe import RecipeError

    try:
        recipe, steps = prepare(args)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    text = _recipe_text(args.recipe)
    rd, resumed = open_run_dir(args, recipe, text)
    if resumed:
        print(f"gpuwizard: resuming run {rd.run_id} (finished steps are skipped; --fresh starts over)",
              file=sys.stderr)
    _announce_cost(recipe)
    try:
        return asyncio.run(_run(args, recipe, steps, rd))
    finally:
        rd.close()
        print(f"gpuwizard: run directory {rd.path} (see `gpuwizard logs {rd.run_id}`)", file=sys.stderr)


def wants_tui(args: argparse.Namespace) -> bool:
    """The split-pane run screen on a terminal; plain lines in pipes, CI and with flags."""
    if getattr(args, "headless", False) or getattr(args, "json", False):
        return False
    if os.environ.get("CI") or os.environ.get("TERM") in (None, "", "dumb"):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def _announce_cost(recipe: Any) -> None:
    """Money first: say what will be created and what it costs before provisioning."""
    from gpuwizard.plan import describe_provision

    summary = describe_provision(recipe)
    if summary is not None:
        for line in summary.lines():
            print(f"gpuwizard: {line}", file=sys.stderr)


def closing_advice(recipe_path: str, outcome: Outcome, deleted: list[str] | None = None,
                   hourly: float | None = None) -> list[str]:
    """What to do next, in plain sentences; after a GCP run, what its VMs still cost
    (``hourly``: all of them together, USD/hour, None when the price is unknown)."""
    out = []
    if outcome.ok and outcome.provisioned:
        cost = f" at ~${hourly:.2f}/h" if hourly else " (price unknown)"
        out.append(f"gpuwizard: the VM(s) of this run are still running{cost}; `gpuwizard down {recipe_path}` "
                   f"deletes them when you are done.")
    if outcome.error:
        out.append(f"gpuwizard: {outcome.error}")
    if deleted is not None:
        out.append(f"gpuwizard: deleted {len(deleted)} VM(s) of this run (--delete-on-failure): "
                   f"{', '.join(deleted) or 'none found'}")
    elif outcome.provisioned and not outcome.ok:
        out.append(f"gpuwizard: the VMs of this run are still running (and billed). Fix the problem and run "
                   f"`gpuwizard run {recipe_path} --resume`, or delete them with `gpuwizard down {recipe_path}`.")
    if outcome.interrupted:
        out.append(f"gpuwizard: interrupted; `gpuwizard run {recipe_path} --resume` continues where it stopped.")
    return out


async def _run(args: argparse.Namespace, recipe: Any, steps: Sequence[Step], rd: Any) -> int:
    from gpuwizard.headless import Fanout

    sink = Fanout(rd, _renderer(args))
    loop = asyncio.get_running_loop()
    presses = 0
    cancel = asyncio.Event()
    executors: list[Any] = []

    async def quit_now(executor: Any) -> None:
        try:
            await asyncio.wait_for(executor.kill_now(2.0), 2.0)
        finally:  # leaving either way, whatever happened
            os._exit(EXIT_INTERRUPTED)

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            print("\ngpuwizard: stopping: remote commands are being stopped and the state saved "
                  "(Ctrl-C again to quit at once).", file=sys.stderr)
            cancel.set()
            return
        rd.save_state()
        if presses == 2 and executors:
            # Quit at once, but first a bounded try (<= 2 s) to TERM the remote steps; what
            # survives stays recorded in the run directory, and the next run stops it.
            print("gpuwizard: quitting; sending TERM to the remote commands (at most 2 s).", file=sys.stderr)
            backstop = threading.Timer(2.5, os._exit, (EXIT_INTERRUPTED,))
            backstop.daemon = True
            backstop.start()
            asyncio.ensure_future(quit_now(executors[0]))
            return
        os._exit(EXIT_INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        outcome = await execute(recipe, steps, rd, sink,
                                accept_new_host_key=bool(getattr(args, "accept_new_host_key", False)),
                                cancel=cancel, on_executor=executors.append)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for line in await conclude(args, recipe, outcome, rd.run_id, sink):
        print(line, file=sys.stderr)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if outcome.ok else EXIT_FAILED
