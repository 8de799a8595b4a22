"""The ``gpuwizard`` command line.

Only argparse is imported here. Each subcommand names its handler as
``"module:function"`` and the module is imported when that subcommand runs, so
``gpuwizard --help``, ``validate`` and ``plan`` never pay for Textual, asyncssh or
google-cloud-compute (which alone costs 1.4-2 s to import). A handler that fails to
import is a bug in gpuwizard and is reported as one (``--debug`` shows the traceback).

This is the layer that reads argparse: ``run`` gets a :class:`gpuwizard.runner.RunRequest`
built here (:func:`run_request`), so no ``Namespace`` travels into the core.
Exit codes: :mod:`gpuwizard.exit_codes`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from gpuwizard import __version__, exit_codes
from gpuwizard.errors import UsageError

if TYPE_CHECKING:
    from gpuwizard.runrequest import RunRequest


def _add_recipe(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", metavar="RECIPE", help="recipe file (YAML)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuwizard",
        description="From a Google Cloud account to a GPU VM that runs your experiment. "
                    "Without a command, opens the wizard that writes a recipe.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 bad recipe or usage, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"gpuwizard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    p = cmd("new", "screens.app:cmd_new", "open the wizard for a new recipe (the default)")
    p.add_argument("-o", "--output", metavar="PATH", help="where to save the recipe")
    p.add_argument("--from", dest="template", metavar="RECIPE",
                   help="start from a shipped recipe (`gpuwizard catalog recipes`) or a recipe file")

    p = cmd("edit", "screens.app:cmd_edit", "open the wizard on an existing recipe")
    _add_recipe(p)
    p.add_argument("--screen", metavar="NAME", help="open this screen first (quota, zone, machine, driver, environment, dataset, steps, review)")

    p = cmd("validate", "gpuwizard.commands:cmd_validate", "check a recipe: exit 0, or FILE:LINE:COL: messages and exit 2")
    p.add_argument("recipe", metavar="RECIPE", nargs="+", help="recipe file(s)")

    p = cmd("plan", "gpuwizard.commands:cmd_plan", "print the steps and the exact shell each runs; nothing is executed")
    _add_recipe(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--only", metavar="STEP", action="append", help="only this step id (repeatable)")

    p = cmd("run", "gpuwizard.runner:cmd_run", "provision (for target.gcp) and run a recipe")
    _add_recipe(p)
    p.add_argument("--headless", action="store_true", help="plain line output even on a terminal")
    p.add_argument("--json", action="store_true", help="one JSON event per line (implies --headless)")
    p.add_argument("--resume", action="store_true", help="resume the last interrupted run of this recipe")
    p.add_argument("--fresh", action="store_true", help="start a new run even if an interrupted one exists")
    p.add_argument("--only", metavar="STEP", action="append", help="run only this step id (repeatable)")
    p.add_argument("--run-dir", metavar="DIR", help="write the run directory here")
    p.add_argument("--accept-new-host-key", action="store_true",
                   help="trust a new VM's host key on first connect when the VM publishes none")
    p.add_argument("--delete-on-failure", action="store_true", help="delete VMs this run created if it fails")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--wait", action="store_true", default=None,
                   help="when every zone is out of capacity, keep trying (growing gaps from 30 s) until one works")
    w.add_argument("--no-wait", dest="wait", action="store_false", help="fail on stockout even if the recipe sets target.gcp.wait")
    p.add_argument("--max-wait", metavar="DURATION", help="give up waiting for capacity after this long (30m, 6h); implies --wait")

    p = cmd("logs", "gpuwizard.logs:cmd_logs", "show a past run's logs")
    p.add_argument("run", metavar="RUN", nargs="?", help="run id or directory; default: the latest")
    p.add_argument("--host", metavar="HOST", help="only this host (in a cluster also: \"node N\")")
    p.add_argument("--step", metavar="STEP", help="only this step")
    p.add_argument("--list", action="store_true", help="list past runs")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing a running run's output until it ends")

    p = cmd("ssh", "gpuwizard.sshcmd:cmd_ssh",
            "open a shell on a host (or VM) of a recipe's latest run, with the run's pinned host keys")
    _add_recipe(p)
    p.add_argument("host", metavar="HOST", nargs="?",
                   help="which host, when the run has several; `-- COMMAND...` after it runs a command instead "
                        "of a shell")

    p = cmd("autostop", "gpuwizard.autostop.command:cmd_autostop",
            "change auto-stop on the running VMs/hosts of a recipe's latest run")
    _add_recipe(p)
    p.add_argument("setting", metavar="DURATION|off", help="idle time before it stops (30m, 2h, 1h30m), or off")

    p = cmd("down", "gpuwizard.gcp.commands:cmd_down", "delete the VMs that runs of a recipe created")
    _add_recipe(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = cmd("status", "gpuwizard.gcp.commands:cmd_status", "list a recipe's VMs with zone, state, IP and running cost")
    _add_recipe(p)

    p = cmd("quota", "gpuwizard.gcp.commands:cmd_quota",
            "show GPU quota: global, per region and per GPU family; `quota request` files an increase")
    p.add_argument("--gpu", metavar="TYPE", help="accelerator type or name (T4, nvidia-l4 ...)")
    p.add_argument("--spot", action="store_true", help="spot (preemptible) quota")
    p.add_argument("--project", metavar="ID")
    p.add_argument("--requests", action="store_true", help="list the project's quota requests and their states")
    qsub = p.add_subparsers(dest="quota_action", metavar="ACTION")
    q = qsub.add_parser("request", help="file a GPU quota increase with Google (preview and confirmation first)",
                        description="File the quota increases a VM of COUNT x GPU in REGION needs: one Cloud Quotas "
                                    "request per quota that blocks it, shown before anything is sent.")
    q.set_defaults(handler="gpuwizard.gcp.quota_commands:cmd_quota_request")
    q.add_argument("--gpu", metavar="TYPE", required=True, help="accelerator type or name (T4, nvidia-h100-80gb ...)")
    q.add_argument("--region", metavar="REGION", required=True, help="region, e.g. us-central1")
    q.add_argument("--count", metavar="N", type=int, required=True, help="GPUs the VM(s) need")
    q.add_argument("--spot", action="store_true", help="for Spot VMs (the preemptible quota)")
    q.add_argument("--email", metavar="ADDRESS", required=True, help="where Google may ask for more information")
    q.add_argument("--justification", metavar="TEXT", required=True, help="what the GPUs are for, in a sentence")
    q.add_argument("--project", metavar="ID")
    q.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = cmd("zones", "gpuwizard.gcp.commands:cmd_zones", "zones offering a GPU, with free quota and price")
    p.add_argument("--gpu", metavar="TYPE", required=True, help="accelerator type or name (T4, nvidia-l4 ...)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="GPUs per VM")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--project", metavar="ID")
    p.add_argument("--offline", action="store_true", help="catalog snapshot only")

    p = cmd("catalog", "gpuwizard.commands:cmd_catalog", "print the embedded catalog")
    p.add_argument("what", choices=["gpus", "drivers", "zones", "machines", "images", "recipes"], help="which table")
    p.add_argument("--gpu", metavar="TYPE", help="filter by GPU")

    cmd("rclone", "gpuwizard.rclone_cli:cmd_rclone", "guided Google Drive remote set-up in a plain terminal")

    p = cmd("schema", "gpuwizard.commands:cmd_schema", "print the recipe JSON Schema (for editors)")
    return parser


def run_request(args: argparse.Namespace) -> "RunRequest":
    """The ``run`` subcommand's flags as the core's typed :class:`RunRequest`."""
    # Imported here, not at the top: dataclasses costs ~12 ms, and `--help` pays every ms.
    from gpuwizard.runrequest import RunRequest

    return RunRequest(recipe=args.recipe, resume=args.resume, fresh=args.fresh, only=tuple(args.only or ()),
                      json=args.json, headless=args.headless, run_dir=args.run_dir,
                      delete_on_failure=args.delete_on_failure, accept_new_host_key=args.accept_new_host_key,
                      wait=args.wait, max_wait=args.max_wait)


def wants_tui(args: argparse.Namespace) -> bool:
    """The split-pane run screen on a terminal; plain lines in pipes, CI and with flags."""
    if args.headless or args.json:
        return False
    if os.environ.get("CI") or os.environ.get("TERM") in (None, "", "dumb"):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def _resolve(handler: str) -> Callable[[Any], int]:
    module, _, func = handler.partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    remote: list[str] = []
    if "ssh" in argv and "--" in argv[argv.index("ssh"):]:  # `ssh RECIPE [HOST] -- COMMAND...`
        cut = argv.index("--", argv.index("ssh"))
        argv, remote = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.remote = remote
    debug = bool(getattr(args, "debug", False)) or os.environ.get("GPUWIZARD_DEBUG") == "1"
    handler = getattr(args, "handler", "screens.app:cmd_new")
    if not hasattr(args, "output"):
        args.output = None
    if not hasattr(args, "template"):
        args.template = None
    try:
        request: Any = args
        if args.command == "run":
            request = run_request(args)
            if wants_tui(args):  # a person at a terminal gets the split-pane run screen
                handler = "screens.runapp:cmd_run"
        code = int(_resolve(handler)(request) or 0)
        if code == exit_codes.INTERRUPTED:
            # leaving after a stop the user asked for: another Ctrl-C must not turn exit 130
            # into "killed by SIGINT" (Python resets SIGINT to the default action while it
            # shuts down; an ignored signal stays ignored)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # more Ctrl-Cs while leaving: still exit 130, not SIGINT
        print("\ngpuwizard: interrupted.", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except UsageError as exc:
        print(f"gpuwizard: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except BrokenPipeError:
        return exit_codes.OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, no traceback
        if debug:
            raise
        print(f"gpuwizard: unexpected error: {type(exc).__name__}: {exc}\n"
              f"Run again with --debug for the traceback, and please report it.", file=sys.stderr)
        return exit_codes.FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
