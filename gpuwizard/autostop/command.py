"""``gpuwizard autostop RECIPE DURATION|off``: change auto-stop on the running hosts of a recipe.

It reaches the hosts the recipe's latest run reached, the way that run did (address, user,
identity, the run's pinned known_hosts: see :mod:`gpuwizard.sshcmd`), and edits the agent's
config there; the agent reads it again on its next tick, so nothing restarts and the
``max_runtime`` clock keeps counting from the first install.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gpuwizard import events as ev
from gpuwizard import exit_codes
from gpuwizard.autostop.settings import format_duration, parse_duration, update_step
from gpuwizard.errors import UsageError
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec
from gpuwizard.sshcmd import latest_run


def _hosts(recipe_path: str) -> list[HostSpec]:
    rd = latest_run(recipe_path)
    specs = []
    for name, h in rd.state.get("hosts", {}).items():
        s = h.get("ssh") if isinstance(h, dict) else None
        if isinstance(s, dict) and s.get("address"):
            specs.append(HostSpec(name=name, address=str(s["address"]), port=s.get("port"), user=s.get("user"),
                                  identity=s.get("identity"), known_hosts=s.get("known_hosts")))
    if not specs:
        raise UsageError(f"run {rd.run_id} never reached a host; run the recipe first")
    return specs


def cmd_autostop(args: argparse.Namespace) -> int:
    """Apply the new setting on every host; exit 1 if a host could not be changed."""
    if args.setting == "off":
        idle = None
    else:
        try:
            idle = parse_duration(args.setting)
        except ValueError as exc:
            raise UsageError(f"{exc}, or `off`") from None
    hosts = _hosts(args.recipe)
    lines: list[str] = []

    def sink(e: ev.Event) -> None:
        if isinstance(e, ev.Output) and e.data.strip():
            lines.append(f"[{e.host}] {e.data.rstrip()}")
        elif isinstance(e, ev.HostFinished) and not e.ok:
            lines.append(f"[{e.host}] not changed: {e.message}")

    ok = asyncio.run(Executor(hosts, [update_step(idle)], sink, ExecOptions(connect_timeout=30)).run())
    for line in lines:
        print(line)
    what = "off" if idle is None else f"after {format_duration(idle)} without use"
    if ok:
        print(f"gpuwizard: auto-stop is now {what} on {len(hosts)} host(s).")
        return exit_codes.OK
    print("gpuwizard: auto-stop could not be changed everywhere (see above).", file=sys.stderr)
    return exit_codes.FAILED
