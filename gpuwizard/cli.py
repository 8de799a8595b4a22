"""The ``gpuwizard`` command line.

Only argparse is imported here. Each subcommand names its handler as
``"module:function"`` and the module is imported when that subcommand runs, so
``gpuwizard --help``, ``validate`` and ``plan`` never pay for Textual, asyncssh or
google-cloud-compute (which alone costs 1.4-2 s to import).

Exit codes: 0 success, 1 a step failed, 2 bad recipe or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from gpuwizard import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


from gpuwizard.errors import UsageError  # noqa: E402,F401 - re-exported: handlers raise it


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

    p = cmd("logs", "gpuwizard.runlog:cmd_logs", "show a past run's logs")
    p.add_argument("run", metavar="RUN", nargs="?", help="run id or directory; default: the latest")
    p.add_argument("--host", metavar="HOST", help="only this host")
    p.add_argument("--step", metavar="STEP", help="only this step")
    p.add_argument("--list", action="store_true", help="list past runs")

    p = cmd("down", "gpuwizard.gcp.commands:cmd_down", "delete the VMs that runs of a recipe created")
    _add_recipe(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = cmd("status", "gpuwizard.gcp.commands:cmd_status", "list a recipe's VMs with zone, state, IP and running cost")
    _add_recipe(p)

    p = cmd("quota", "gpuwizard.gcp.commands:cmd_quota", "show GPU quota: global and per region")
    p.add_argument("--gpu", metavar="TYPE", help="accelerator type or name (T4, nvidia-l4 ...)")
    p.add_argument("--spot", action="store_true", help="spot (preemptible) quota")
    p.add_argument("--project", metavar="ID")

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


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = handler.partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("GPUWIZARD_DEBUG") == "1"
    handler = getattr(args, "handler", "screens.app:cmd_new")
    if args.command == "run":
        from gpuwizard.runner import wants_tui

        if wants_tui(args):  # a person at a terminal gets the split-pane run screen
            handler = "screens.runapp:cmd_run"
    if not hasattr(args, "output"):
        args.output = None
    if not hasattr(args, "template"):
        args.template = None
    try:
        fn = _resolve(handler)
    except ModuleNotFoundError as exc:
        if debug:
            raise
        name = exc.name or ""
        if name.startswith(("gpuwizard", "screens")):
            print(f"gpuwizard: '{args.command or 'new'}' is not yet available in this version.", file=sys.stderr)
        else:
            print(f"gpuwizard: a dependency is missing ({name}); reinstall with `pip install gpuwizard`.",
                  file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(fn(args) or 0)
    except KeyboardInterrupt:
        print("\ngpuwizard: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"gpuwizard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, no traceback
        if debug:
            raise
        print(f"gpuwizard: unexpected error: {type(exc).__name__}: {exc}\n"
              f"Run again with --debug for the traceback, and please report it.", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
