"""Checks that need more than one field of a recipe but no catalog: one target, hosts and
step names listed once, datasets naming defined remotes, no credentials inline.

Catalog checks (GPU vs machine type, driver vs GPU ...) live in :mod:`gpuwizard.validate`.
"""

from __future__ import annotations

import difflib
from typing import Any

from gpuwizard.cluster.torchrun import uses_torchrun
from gpuwizard.drive_scopes import DEFAULT_SCOPE, DRIVE_SCOPES
from gpuwizard.recipe.model import Problem, Recipe
from gpuwizard.recipe.values import parse_host
from gpuwizard.secretcheck import looks_secret
from gpuwizard.sharelinks import dataset_source_problem, is_drive_link


def _related(a: str, b: str) -> bool:
    """True when one path is the other or lies under it (``x`` and ``x.y`` / ``x[0]``)."""
    return a == b or a.startswith(b + ".") or a.startswith(b + "[") or b.startswith(a + ".") or b.startswith(a + "[") or not a or not b


def merge_problems(first: list[Problem], later: list[Problem]) -> list[Problem]:
    """Add later-stage problems unless an earlier one already covers that part of the
    recipe: a field that failed to parse was replaced by its default, so checks on it
    would only add noise."""
    return first + [p for p in later if not any(_related(p.path, q.path) for q in first)]


def structural_problems(r: Recipe) -> list[Problem]:
    """Checks that need more than one field but no catalog."""
    out: list[Problem] = []
    t = r.target
    if t.gcp is None and t.ssh is None and ("target" in r.marks or not r.marks):
        out.append(r.problem("target", "set target.gcp (provision VMs) or target.ssh.hosts (existing machines)"))
    if t.gcp is not None and t.ssh is not None:
        out.append(r.problem("target.ssh", "target.gcp and target.ssh exclude each other; keep one"))
    if t.ssh is not None and not t.ssh.hosts:
        out.append(r.problem("target.ssh.hosts", "list at least one host, e.g. ubuntu@203.0.113.7"))
    if t.ssh is not None:
        out += _duplicate_hosts(r, t.ssh.hosts)
    if t.ssh is not None and r.autostop is not None and r.autostop.action == "delete":
        out.append(r.problem("autostop.action", "an existing SSH host cannot be deleted: use `action: stop` "
                                                "(it powers the machine off) or remove autostop"))
    names: dict[str, int] = {}
    for i, s in enumerate(r.steps):
        if s.name in names:
            out.append(r.problem(f"steps[{i}].name", f"step name {s.name!r} is already used by steps[{names[s.name]}]"))
        names.setdefault(s.name, i)
        if not s.run.strip():
            out.append(r.problem(f"steps[{i}].run", "empty command"))
        for key, val in s.env.items():
            if looks_secret(val):
                out.append(r.problem(f"steps[{i}].env.{key}", "this looks like a credential; secrets are not "
                                     "allowed in a recipe: read it from a file on the host or an uploaded file"))
    for i, s in enumerate(r.steps):
        if looks_secret(s.run):
            out.append(r.problem(f"steps[{i}].run", "this command embeds a credential; secrets are not allowed in a recipe"))
    remotes = r.rclone.remotes if r.rclone else {}
    for i, d in enumerate(r.datasets):
        p = f"datasets[{i}]"
        if not d.from_:
            out.append(r.problem(f"{p}.from", "empty source; write REMOTE:path or a Google Drive link"))
            continue
        if d.from_.startswith(("http://", "https://")):
            bad = dataset_source_problem(d.from_)
            if bad:
                out.append(r.problem(f"{p}.from", bad))
                continue
            if is_drive_link(d.from_):
                if d.remote is None:
                    out.append(r.problem(f"{p}.remote", "a Google Drive link is fetched through a drive remote: "
                                         "add `remote: NAME` naming one of rclone.remotes"))
                elif d.remote not in remotes:
                    out.append(r.problem(f"{p}.remote", _missing_remote(d.remote, remotes)))
            continue
        if ":" not in d.from_:
            out.append(r.problem(f"{p}.from", f"{d.from_!r} names no remote; write REMOTE:path (e.g. gdrive:data.zip)"))
            continue
        name = d.from_.split(":", 1)[0]
        if name.startswith(":"):
            continue
        if name not in remotes:
            out.append(r.problem(f"{p}.from", _missing_remote(name, remotes)))
    for name, rem in remotes.items():
        if rem.type == "drive":
            scope = rem.options.get("scope", DEFAULT_SCOPE)
            if any(s not in DRIVE_SCOPES for s in str(scope).split(",")):
                out.append(r.problem(f"rclone.remotes.{name}.scope",
                                     f"unknown Drive scope {scope!r}; use one of {', '.join(sorted(DRIVE_SCOPES))}"))
    out += _cluster_problems(r)
    return out


def _cluster_problems(r: Recipe) -> list[Problem]:
    """``cluster`` against the target, ``on:`` and ``gpuwizard torchrun`` against
    ``cluster`` (issue 16)."""
    out: list[Problem] = []
    c = r.cluster
    if c is None:
        for i, s in enumerate(r.steps):
            if s.on != "all" or f"steps[{i}].on" in r.marks:
                out.append(r.problem(f"steps[{i}].on", f"`on: {s.on}` only matters in a cluster; without `cluster:` "
                                     "every step runs on every host: remove it, or add `cluster: {nodes: N}`",
                                     warning=True))
    torchrun_ok = c is not None and c.launcher == "torchrun"
    for i, s in enumerate(r.steps):
        if uses_torchrun(s.run) and not torchrun_ok:
            fix = ("add `cluster: {nodes: N, launcher: torchrun}`" if c is None
                   else "set cluster.launcher: torchrun")
            out.append(r.problem(f"steps[{i}].run", f"`gpuwizard torchrun` runs only in a cluster with the torchrun "
                                 f"launcher: {fix}, or call torchrun yourself"))
    for i, s in enumerate(r.steps):
        if not (torchrun_ok and uses_torchrun(s.run)):
            continue
        if s.on != "all":  # torchrun --nnodes=N on some nodes waits for ranks that never come
            out.append(r.problem(f"steps[{i}].on", "a step that calls `gpuwizard torchrun` runs on every node at once "
                                 f"(torchrun waits for all of them): remove `on: {s.on}`"))
        if s.retries:  # a gang step: the executor never retries it (gang.py)
            out.append(r.problem(f"steps[{i}].retries", "a step that calls `gpuwizard torchrun` is not retried (one "
                                 "node failing stops it on every node; `gpuwizard run --resume` runs it again): "
                                 "remove `retries`", warning=True))
    if c is None:
        return out
    g, ssh = r.target.gcp, r.target.ssh
    if g is not None:
        if c.nodes is None:
            out.append(r.problem("cluster.nodes", "a GCP cluster needs its size: set cluster.nodes (2 to 64 VMs, "
                                 "created together in one zone)"))
        if g.count != 1:
            n = f"nodes: {c.nodes}" if c.nodes is not None else f"nodes: {g.count}"
            out.append(r.problem("target.gcp.count", f"target.gcp.count is {g.count}, but a cluster's VMs are counted "
                                 f"by cluster.nodes: remove target.gcp.count and set cluster.{n}"))
    elif ssh is not None and ssh.hosts:
        n = len(ssh.hosts)
        if n < 2:
            out.append(r.problem("target.ssh.hosts", f"a cluster needs at least 2 nodes and target.ssh.hosts lists {n}: "
                                 "list every node (the first is the head), or remove `cluster`"))
        elif c.nodes is not None and c.nodes != n:
            out.append(r.problem("cluster.nodes", f"cluster.nodes is {c.nodes}, but target.ssh.hosts lists {n} hosts "
                                 f"and the listed hosts are the nodes: set nodes: {n}, or list {c.nodes} hosts"))
    calls = any(uses_torchrun(s.run) for s in r.steps)
    if torchrun_ok and (calls or "cluster.launcher" in r.marks) and (r.env is None or not r.env.torch):
        out.append(r.problem("cluster.launcher" if "cluster.launcher" in r.marks else "cluster",
                             "launcher torchrun runs torchrun from the recipe's environment, which installs no "
                             "PyTorch: set env.torch (e.g. '2.9.1'), unless your image or steps bring it",
                             warning=True))
    return out


def _missing_remote(name: str, remotes: dict[str, Any]) -> str:
    if not remotes:
        return f"remote {name!r} is not defined; add it under rclone.remotes (or run `gpuwizard rclone`)"
    close = difflib.get_close_matches(name, list(remotes), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(remotes)}"
    return f"remote {name!r} is not defined under rclone.remotes{hint}"


# ---------------------------------------------------------------------------- saving


def _duplicate_hosts(r: Recipe, hosts: list[str]) -> list[Problem]:
    """A host listed twice (after normalising case, port zeros and default user/port) would
    run every step twice on one machine; the message names both lines."""
    out: list[Problem] = []
    first: dict[tuple[str | None, str, int], int] = {}
    for i, h in enumerate(hosts):
        key = parse_host(h).identity(r.ssh.user, r.ssh.port)
        j = first.setdefault(key, i)
        if j == i:
            continue
        line = r.mark(f"target.ssh.hosts[{j}]")[0]
        same = "is listed twice" if hosts[j] == h else f"is the same host as {hosts[j]!r}"
        out.append(r.problem(f"target.ssh.hosts[{i}]", f"{h!r} {same} (target.ssh.hosts[{j}], line {line}); "
                             "list each host once"))
    return out

