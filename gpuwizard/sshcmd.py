"""``gpuwizard ssh RECIPE [HOST] [-- COMMAND]``: a shell on a host of the recipe's latest run.

The dev loop SkyPilot users expect (``ssh <cluster>``): OpenSSH's own client, exec'd,
so the terminal, agent forwarding and escape keys behave as they always do. It trusts
exactly the host keys the run trusted: the run records how it reached each host (address,
port, user, identity, known_hosts: for a VM, the keys pinned from its guest attributes in
the run directory), and ``StrictHostKeyChecking=yes`` refuses any other key.
"""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

from gpuwizard.errors import UsageError
from gpuwizard.runlog import RunDir, list_runs


def latest_run(recipe_path: str) -> RunDir:
    """The newest run of this recipe file, or a UsageError saying how to make one."""
    want = os.path.abspath(recipe_path)
    runs = [r for r in list_runs() if r.state.get("recipe_path") == want]
    if not runs:
        raise UsageError(f"{recipe_path} has no run yet; start one with `gpuwizard run {recipe_path}`")
    return runs[-1]


def pick_host(rd: RunDir, want: str | None) -> tuple[str, dict[str, Any]]:
    """The host ``want`` names (exactly, or a unique part of its name); the only one without it."""
    hosts = {h: v["ssh"] for h, v in rd.state.get("hosts", {}).items() if isinstance(v.get("ssh"), dict)}
    if not hosts:
        raise UsageError(f"run {rd.run_id} never reached a host (or predates `gpuwizard ssh`); "
                         "run the recipe again first")
    if want is None:
        if len(hosts) > 1:
            raise UsageError(f"run {rd.run_id} has {len(hosts)} hosts; name one: {', '.join(hosts)}")
        return next(iter(hosts.items()))
    picked = [h for h in hosts if h == want] or [h for h in hosts if want in h]
    if len(picked) != 1:
        hint = "several hosts match" if picked else "no host matches"
        raise UsageError(f"{hint} {want!r} in run {rd.run_id}; its hosts: {', '.join(hosts)}")
    return picked[0], hosts[picked[0]]


def ssh_argv(spec: dict[str, Any], command: list[str]) -> list[str]:
    """The OpenSSH client command line for one recorded host."""
    known_hosts = os.path.expanduser(spec.get("known_hosts") or "~/.ssh/known_hosts")
    argv = ["ssh", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if spec.get("identity"):
        argv += ["-i", os.path.expanduser(str(spec["identity"])), "-o", "IdentitiesOnly=yes"]
    if spec.get("port"):
        argv += ["-p", str(int(spec["port"]))]
    user = f"{spec['user']}@" if spec.get("user") else ""
    argv.append(f"{user}{spec['address']}")
    if command:
        argv += ["--", *command]
    return argv


def cmd_ssh(args: argparse.Namespace) -> int:
    """Replace this process with ``ssh`` to the chosen host (never returns on success)."""
    command = list(getattr(args, "remote", None) or [])
    rd = latest_run(args.recipe)
    _name, spec = pick_host(rd, args.host)
    if shutil.which("ssh") is None:
        raise UsageError("the OpenSSH client `ssh` is not installed; install it (e.g. `apt install openssh-client`)")
    argv = ssh_argv(spec, command)
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover - execvp does not return
