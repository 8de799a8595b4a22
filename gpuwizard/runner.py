"""``gpuwizard run``: recipe -> steps -> hosts -> executor, with a run directory and a renderer.

Why this glue is its own module: the executor only knows hosts and steps; deciding
which hosts (existing ones, or VMs provisioned now), whether this is a resumed run,
which renderer to use and what exit code to return is policy, and it lives here.
Front ends (the CLI, the run screen) hand it a :class:`RunRequest`, never their own
argument objects. Exit codes: :mod:`gpuwizard.exit_codes`.

Why one module of this size: preparing a run, executing it (provisioning, cancellation, the
run directory's record of it) and concluding it (delete on failure, closing advice) share
one Outcome and one RunRequest; split, each part would re-derive the others' state.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from gpuwizard import events as ev
from gpuwizard import datasets_fanout, exit_codes, notify
from gpuwizard.autostop.settings import parse_duration
from gpuwizard.cluster import plan as cluster_plan
from gpuwizard.errors import UsageError
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.gcp import cluster_net, provision  # google.cloud itself loads only in gcp.client, on first use
from gpuwizard.gcp.errors import GcpError
from gpuwizard.gcp.wait import INTERRUPTED as WAIT_STOPPED
from gpuwizard.gcp.wait import WaitPolicy, following, human, policy_for
from gpuwizard.gcp.zones import use_live_prices
from gpuwizard.headless import Fanout, JsonRenderer, LineRenderer
from gpuwizard.plan import build, describe_provision, select
from gpuwizard.recipe import Recipe, RecipeError
from gpuwizard.runlock import RecipeLock
from gpuwizard.runlog import RunDir, find_resumable, list_runs
from gpuwizard.runrequest import RunRequest
from gpuwizard.ssh import HostSpec, SshError, hosts_from_recipe
from gpuwizard.steps import Step
from gpuwizard.validate import load_checked

Sink = Callable[[ev.Event], None]


@dataclass
class RunContext:
    """What provisioning and host resolution need to know about the run."""

    run_id: str
    accept_new_host_key: bool = False
    run_dir: str | None = None
    recipe_path: str | None = None  # labels the VMs with the recipe file, so `down` finds only this file's
    previous_hosts: list[str] = field(default_factory=list)  # host names this run has had (replaced VMs)
    wait: WaitPolicy | None = None  # `--wait`: keep trying zones out of capacity (gcp/wait.py)


def build_steps(recipe: Recipe) -> list[Step]:
    """The planner's steps for each host."""
    return list(build(recipe))


async def resolve_hosts(recipe: Recipe, run: RunContext, sink: Sink) -> list[HostSpec]:
    """The hosts to run on: ``target.ssh.hosts``, or VMs provisioned for ``target.gcp``.

    Provisioning pins each new VM's host keys (read from its guest attributes) in the
    run directory's ``known_hosts``, so new VMs are verified like any other host.
    Re-running with the same run id (resume) finds that run's VMs instead of creating
    more.
    """
    if recipe.target.ssh is not None:
        return hosts_from_recipe(recipe, accept_new=run.accept_new_host_key)
    known_hosts = os.path.join(run.run_dir, "known_hosts") if run.run_dir else None
    vms = await provision.provision(recipe, run_id=run.run_id, sink=sink,
                                         accept_new_host_key=run.accept_new_host_key, known_hosts_path=known_hosts,
                                         recipe_path=run.recipe_path, previous_hosts=run.previous_hosts,
                                         wait=run.wait)
    return [HostSpec(name=vm.name, address=vm.address, port=vm.port, user=vm.user, identity=vm.identity,
                     known_hosts=vm.known_hosts, accept_new=run.accept_new_host_key and not vm.host_key_verified,
                     refused_hint=vm.refused_hint, private_address=vm.internal_address)
            for vm in vms]


@dataclass
class Outcome:
    """How a run ended, for the exit code and the closing advice."""

    ok: bool
    interrupted: bool = False
    error: str | None = None        # a failure before any step ran (provisioning, SSH set-up)
    provisioned: bool = False       # VMs exist for this run (target.gcp)
    fault: str | None = None        # the run directory could not be written (a full disk)


def fault_message(rd: RunDir) -> str | None:
    """One sentence on a failed write of the run directory, naming the path."""
    exc = rd.fault
    if exc is None:
        return None
    where = exc.filename or rd.path
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"the disk holding {where} is full ({exc.strerror}); the remote steps were stopped. "
                "Free some space there, then resume")
    return f"cannot write {where} ({exc.strerror or exc}); the remote steps were stopped"


async def execute(recipe: Recipe, steps: Sequence[Step], rd: RunDir, sink: Sink, *,
                  accept_new_host_key: bool = False, hosts: Sequence[HostSpec] | None = None,
                  cancel: asyncio.Event | None = None, on_executor: Callable[[Executor], None] | None = None,
                  wait: WaitPolicy | None = None, **options: object) -> Outcome:
    """Resolve the hosts (provisioning them for ``target.gcp``) and run ``steps`` on each.

    The one place that turns a recipe into a running executor, shared by ``gpuwizard
    run`` and the Textual run screen. Setting ``cancel`` (Ctrl-C, the screen's Stop)
    stops the run at any point: during provisioning no further request is waited for
    and no step starts; during the steps the executor stops the remote commands.
    A write to the run directory that fails (a full disk) cancels the same way: a run
    that cannot record what it did must not go on doing things.
    Whatever happens, the run directory records how the run ended, and which remote
    process groups are running (a resumed run stops those an earlier attempt left).
    ``on_executor`` is handed the executor once it exists (for a hard exit's last try).
    ``wait`` (:func:`wait_policy`): keep trying zones that are out of capacity.
    """
    cancel = cancel or asyncio.Event()
    rd.on_fault = lambda _exc: cancel.set()
    if rd.fault is not None:  # it failed before anyone listened (creating the directory)
        cancel.set()
    gcp = recipe.target.gcp is not None
    where = "gcp" if gcp else "gpuwizard"

    def ended(outcome: Outcome, message: str | None) -> Outcome:
        outcome.fault = fault_message(rd)
        if outcome.fault:  # the "interruption" was the full disk's
            outcome.interrupted, message = False, None
        if message:
            sink(ev.Output(host=where, step="provision" if gcp else "connect", stream="stderr", data=message + "\n"))
        # A run that owns a running VM but ran no step is unfinished, not failed: a plain
        # re-run resumes onto that VM instead of creating a second one (issue 13).
        sink(ev.RunFinished(ok=False, interrupted=outcome.interrupted or outcome.provisioned))
        return outcome

    ctx = RunContext(run_id=rd.run_id, accept_new_host_key=accept_new_host_key, run_dir=str(rd.path),
                     recipe_path=rd.state.get("recipe_path"), previous_hosts=list(rd.state.get("hosts", {})),
                     wait=wait)
    if hosts is None:
        task = asyncio.ensure_future(resolve_hosts(recipe, ctx, sink))
        stop = asyncio.ensure_future(cancel.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            # let it finish its cleanup: a --wait follows an insert in flight to its end
            stopped = (await asyncio.gather(task, return_exceptions=True))[0]
            if isinstance(stopped, GcpError) and stopped.kind == WAIT_STOPPED:
                return ended(Outcome(ok=False, interrupted=True, provisioned=stopped.vm_exists), str(stopped))
            msg = ("interrupted while provisioning: a VM may already exist; `gpuwizard run RECIPE --resume` "
                   "picks it up, `gpuwizard down RECIPE` deletes it") if gcp else "interrupted before any step ran"
            return ended(Outcome(ok=False, interrupted=True, provisioned=gcp), msg)
        try:
            hosts = task.result()
        except (SshError, ValueError) as exc:
            return ended(Outcome(ok=False, error=str(exc)), str(exc))
        except GcpError as exc:
            # The error says whether the run owns a VM that is running (GcpError.vm_exists),
            # or got as far as pinning its host keys.
            owns = exc.vm_exists or exc.kind == "hostkey"
            return ended(Outcome(ok=False, error=str(exc), provisioned=owns), str(exc))
        except Exception as exc:  # noqa: BLE001 - the client library's own errors: one sentence
            if not type(exc).__module__.startswith("google"):
                raise
            return ended(Outcome(ok=False, error=str(exc)), str(exc))
        if cancel.is_set():
            return ended(Outcome(ok=False, interrupted=True, provisioned=gcp), "interrupted before any step ran")
    rd.begin_attempt()
    rd.record_hosts(hosts)
    layout = cluster_plan.split(recipe, steps, hosts)  # a cluster: a list per node, with its rank
    per_host = layout.steps if layout is not None else {h.name: list(steps) for h in hosts}
    # the dataset fan-out's key files, made once per run in the run directory
    per_host = datasets_fanout.bind(per_host, str(rd.path), rd.run_id, hosts)
    rd.set_plan(per_host)
    opts = ExecOptions(run_id=rd.run_id, recipe=recipe.name, connect_timeout=float(recipe.ssh.connect_timeout),
                       reboot_command=recipe.ssh.reboot_command,
                       done=cluster_plan.collective_done(per_host, rd.done()) if layout is not None else rd.done(),
                       running=rd.running(), on_running=rd.record_running,
                       retry_auth=gcp, ranks=layout.ranks if layout is not None else {},
                       **options)  # type: ignore[arg-type]
    executor = Executor(list(hosts), per_host, sink, opts)
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
    fault = fault_message(rd)
    return Outcome(ok=ok and fault is None, provisioned=gcp, fault=fault,
                   interrupted=fault is None and (executor.interrupted or (cancel.is_set() and not ok)))


async def delete_vms(recipe: Recipe, run_id: str, sink: Sink | None = None,
                     recipe_path: str | None = None) -> list[str]:
    """Delete the VMs one run created (``--delete-on-failure``), then a cluster's firewall
    rule and placement policy (they cost nothing, but a policy in use cannot be deleted,
    so the VMs go first); the names of the VMs deleted."""
    project = recipe.target.gcp.project if recipe.target.gcp else None
    gone = await provision.delete_recipe_vms(project, recipe.name, run_id=run_id, sink=sink)
    if recipe.cluster is not None:
        await cluster_net.delete_run_resources(project, recipe, run_id, recipe_path, sink)
    return gone


async def conclude(req: RunRequest, recipe: Recipe, outcome: Outcome, run_id: str,
                   sink: Sink | None = None) -> list[str]:
    """After a run, whichever front end ran it: apply ``--delete-on-failure`` and return
    the closing advice (how to resume, how to delete what is still billed)."""
    deleted = None
    if not outcome.ok and not outcome.interrupted and outcome.provisioned and req.delete_on_failure:
        deleted = await delete_vms(recipe, run_id, sink, req.recipe)
    summary = describe_provision(recipe)
    hourly = summary.hourly * summary.vms if summary is not None and summary.hourly is not None else None
    return closing_advice(req.recipe, outcome, deleted, hourly=hourly)


def _recipe_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def open_run_dir(req: RunRequest, recipe: Recipe, text: str) -> tuple[RunDir, bool]:
    """The run directory to write, and whether it resumes an earlier run.

    Takes the recipe's lock first (:mod:`gpuwizard.runlock`), so a second run of the
    same recipe, or a second ``--resume``, is refused (exit 2, naming the other run)
    instead of running every step twice; the lock is released when the run directory
    is closed. A run directory that cannot be made is a usage error.
    """
    lock = RecipeLock(req.recipe)
    try:
        lock.acquire()
        rd, resumed = _open_run_dir(req, recipe, text)
    except OSError as exc:
        lock.release()
        where = exc.filename or req.run_dir or "the state directory"
        raise UsageError(f"cannot create the run directory ({where}: {exc.strerror or exc}); "
                         "set XDG_STATE_HOME or --run-dir to a writable folder") from None
    except BaseException:
        lock.release()
        raise
    lock.note(str(rd.path))
    rd.hold(lock.release)
    for note in rd.repaired:
        print(f"gpuwizard: {rd.path}: {note}", file=sys.stderr)
    return rd, resumed


def _open_run_dir(req: RunRequest, recipe: Recipe, text: str) -> tuple[RunDir, bool]:
    """A new run directory, or the interrupted run to resume: ``--resume`` resumes the
    newest unfinished (or failed) run of this recipe file; without flags, a re-run of
    an interrupted run of the unchanged recipe resumes it; ``--fresh`` never resumes."""
    if req.run_dir:
        d = req.run_dir
        if os.path.isfile(os.path.join(d, "state.json")) and not req.fresh:
            rd = RunDir.open(d)
            if not rd.lock():
                raise UsageError(f"run {rd.run_id} is running in another process")
            return rd, True
        return RunDir.create(req.recipe, text, recipe.name, path=d), False
    if not req.fresh:
        prev = find_resumable(req.recipe, include_failed=req.resume)
        if prev is not None and (req.resume or _same_text(prev, text)):
            if prev.lock():
                return prev, True
        elif req.resume:
            print("gpuwizard: no interrupted run of this recipe to resume; starting a new run.", file=sys.stderr)
    rd = RunDir.create(req.recipe, text, recipe.name)
    _inherit_running(rd, req.recipe)
    return rd, False


def _inherit_running(rd: RunDir, recipe_path: str) -> None:
    """A new run (``--fresh``, or a changed recipe) must not start a step beside one that
    an earlier, abandoned run of the same recipe left running: carry that run's record
    of remote process groups over, so the executor stops them before its first step."""
    want = os.path.abspath(recipe_path)
    for prev in reversed(list_runs(warn=False)):
        if prev.run_id == rd.run_id or prev.state.get("recipe_path") != want:
            continue
        if not prev.is_locked():
            for host, proc in prev.running().items():
                rd.record_running(host, proc)
        return


def _same_text(rd: RunDir, text: str) -> bool:
    try:
        old = (rd.path / "recipe.yaml").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    return hashlib.sha256(old.encode()).digest() == hashlib.sha256(text.encode()).digest()


def prepare(req: RunRequest) -> tuple[Recipe, list[Step]]:
    """Load and check the recipe, plan it and apply ``--only``: what both the headless run
    and the Textual run screen start from. Raises RecipeError or UsageError."""
    recipe, warnings = load_checked(req.recipe)
    for w in warnings:
        print(w.format(req.recipe), file=sys.stderr)
    wait_policy(req, recipe)   # a bad --max-wait is a usage error before anything starts
    steps = build_steps(recipe)
    if req.only:
        picked = select(steps, list(req.only))
        if not picked:
            raise UsageError(f"no step matches {', '.join(req.only)}; the steps are: "
                             f"{', '.join(s.id for s in steps)}")
        steps = picked
    return recipe, steps


def wait_policy(req: RunRequest, recipe: Recipe,
                on_ready: Callable[[str], None] | None = None) -> WaitPolicy | None:
    """The capacity wait a run asked for (``--wait``, ``--max-wait``, ``target.gcp.wait``);
    raises UsageError for a bad ``--max-wait``."""
    max_wait = None
    if req.max_wait is not None:
        if req.wait is False:
            raise UsageError("--no-wait and --max-wait contradict each other; keep one")
        try:
            max_wait = float(parse_duration(req.max_wait))
        except ValueError as exc:
            raise UsageError(f"--max-wait: {exc}") from None
    policy = policy_for(recipe, req.wait, max_wait)
    if policy is not None:
        policy.on_ready = on_ready
    return policy


def _ring(message: str) -> None:
    notify.notify("gpuwizard: your VM is up", message)


def cmd_run(req: RunRequest) -> int:
    """Entry point of ``gpuwizard run RECIPE`` without a terminal (or with --headless/--json).

    On a terminal the CLI routes to ``screens.runapp:cmd_run`` instead (the core never
    imports the UI), which starts from the same :func:`prepare` and :func:`execute`.
    """
    try:
        recipe, steps = prepare(req)
    except RecipeError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exit_codes.USAGE
    wait = wait_policy(req, recipe, on_ready=_ring)
    text = _recipe_text(req.recipe)
    rd, resumed = open_run_dir(req, recipe, text)
    if resumed:
        print(f"gpuwizard: resuming run {rd.run_id} (finished steps are skipped; --fresh starts over)",
              file=sys.stderr)
    try:
        _announce_cost(recipe, wait)
        return asyncio.run(_run(req, recipe, steps, rd, wait))
    finally:
        rd.close()
        print(f"gpuwizard: run directory {rd.path} (see `gpuwizard logs {rd.run_id}`)", file=sys.stderr)


def _announce_cost(recipe: Recipe, wait: WaitPolicy | None = None) -> None:
    """Money first: say what will be created and what it costs (in the first zone's region,
    at live list prices where they can be read) before provisioning (and what a stockout
    does, as this run was asked: the command line wins over the recipe)."""
    if recipe.target.gcp is not None:
        note = use_live_prices()
        if note:
            print(f"gpuwizard: {note}", file=sys.stderr)
    summary = describe_provision(recipe)
    if summary is not None:
        if wait is None:
            summary = replace(summary, wait=None)
        elif wait.max_wait is not None:
            summary = replace(summary, wait=f"for up to {human(wait.max_wait)}")
        else:
            summary = replace(summary, wait="until one has capacity (Ctrl-C stops)")
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
    if outcome.fault:
        out.append(f"gpuwizard: {outcome.fault}: `gpuwizard run {recipe_path} --resume` continues where it stopped.")
    if deleted is not None:
        out.append(f"gpuwizard: deleted {len(deleted)} VM(s) of this run (--delete-on-failure): "
                   f"{', '.join(deleted) or 'none found'}")
    elif outcome.provisioned and not outcome.ok:
        out.append(f"gpuwizard: the VMs of this run are still running (and billed). Fix the problem and run "
                   f"`gpuwizard run {recipe_path} --resume`, or delete them with `gpuwizard down {recipe_path}`.")
    if outcome.interrupted:
        out.append(f"gpuwizard: interrupted; `gpuwizard run {recipe_path} --resume` continues where it stopped.")
    return out


async def _run(req: RunRequest, recipe: Recipe, steps: Sequence[Step], rd: RunDir,
               wait: WaitPolicy | None = None) -> int:
    sink = Fanout(rd, JsonRenderer() if req.json else LineRenderer())
    loop = asyncio.get_running_loop()
    presses = 0
    cancel = asyncio.Event()
    executors: list[Executor] = []

    async def quit_now(executor: Executor) -> None:
        try:
            await asyncio.wait_for(executor.kill_now(2.0), 2.0)
        finally:  # leaving either way, whatever happened
            os._exit(exit_codes.INTERRUPTED)

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            what = ("remote commands are being stopped and the state saved" if executors else
                    "no step has started on a host yet")   # (stopping a VM create or a --wait)
            print(f"\ngpuwizard: stopping: {what} (Ctrl-C again to quit at once).", file=sys.stderr)
            cancel.set()
            return
        rd.save_state()
        for what in following():   # quitting at once leaves these unfinished: say so, never silently
            print(f"gpuwizard: quitting with {what} unfinished: it may still create the VM, which is then "
                  f"billed; check with `gpuwizard status {req.recipe}` and delete it with "
                  f"`gpuwizard down {req.recipe}`.", file=sys.stderr)
        if presses == 2 and executors:
            # Quit at once, but first a bounded try (<= 2 s) to TERM the remote steps; what
            # survives stays recorded in the run directory, and the next run stops it.
            print("gpuwizard: quitting; sending TERM to the remote commands (at most 2 s).", file=sys.stderr)
            backstop = threading.Timer(2.5, os._exit, (exit_codes.INTERRUPTED,))
            backstop.daemon = True
            backstop.start()
            asyncio.ensure_future(quit_now(executors[0]))
            return
        os._exit(exit_codes.INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        outcome = await execute(recipe, steps, rd, sink, accept_new_host_key=req.accept_new_host_key,
                                cancel=cancel, on_executor=executors.append, wait=wait)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for line in await conclude(req, recipe, outcome, rd.run_id, sink):
        print(line, file=sys.stderr)
    if outcome.interrupted:
        return exit_codes.INTERRUPTED
    return exit_codes.OK if outcome.ok else exit_codes.FAILED
