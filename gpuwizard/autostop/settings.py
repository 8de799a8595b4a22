"""From a recipe's ``autostop`` block to the agent's config and the plan step that installs it.

The agent (:mod:`gpuwizard.autostop.agent`) is shipped as its own source text, read with
``importlib.resources``, the way the GPU probe ships: it runs on the host with the host's
``python3`` and nothing of gpuwizard. Under systemd it is a service with ``Restart=always``
(a resident process, because the Spot preemption notice is a long poll on the metadata
server that a timer could miss); on a host without systemd (a container) the step starts it
detached and says that it will not survive a reboot.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from gpuwizard.recipe import Recipe, parse_host
from gpuwizard.steps import Step

_DURATION = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")
AGENT_PATH = "usr/local/lib/gpuwizard/autostop_agent.py"
CONFIG_PATH = "etc/gpuwizard/autostop.json"
STATE_PATH = "var/lib/gpuwizard/autostop-state.json"
UNIT_PATH = "etc/systemd/system/gpuwizard-autostop.service"
PID_PATH = "var/lib/gpuwizard/autostop.pid"
LOG_PATH = "var/log/gpuwizard-autostop.log"
#: The file a user touches to say "I am still here" (any process may touch it).
KEEPALIVE = "~/.gpuwizard-keepalive"


def parse_duration(text: str) -> int:
    """Seconds in ``text`` (``30m``, ``2h``, ``1h30m``, ``45s``); ValueError says the form."""
    m = _DURATION.fullmatch(text.strip()) if text else None
    if not m or not any(m.groupdict().values()):
        raise ValueError(f"{text!r} is not a duration: write it as 30m, 2h or 1h30m")
    return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)


def format_duration(seconds: float) -> str:
    """The short form back: 5400 -> ``1h30m``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out or "0s"


@dataclass(frozen=True)
class Where:
    """What the config needs to know about the machines, known when the plan is built.

    The login user (who runs ``before`` and owns the keep-alive file) is filled in on the
    host, from sudo's ``SUDO_USER``, so one plan serves every host."""

    target: str                  # "gcp" or "ssh"
    ssh_ports: tuple[int, ...] = (22,)
    token: str | None = None     # equal to the VM's gpuwizard-autostop metadata (gcp)
    instance: str | None = None  # the VM's name, where known (tests; the agent also reads it)
    login_user: str | None = None


def agent_source() -> str:
    return importlib.resources.files("gpuwizard.autostop").joinpath("agent.py").read_text(encoding="utf-8")


def agent_config(*, idle_s: int, action: str, max_runtime_s: int | None, gpu_busy_percent: float,
                 before: str | None, where: Where, enabled: bool = True,
                 interval_s: float = 30.0, before_timeout_s: float = 300.0,
                 poweroff_command: tuple[str, ...] = ("systemctl", "poweroff")) -> dict[str, Any]:
    """The JSON the agent reads. ``started_at``, the login user and the keep-alive path are
    added on the host at install (see ``_WRITE_CONFIG``)."""
    cfg: dict[str, Any] = {
        "idle_s": idle_s, "action": action, "max_runtime_s": max_runtime_s,
        "gpu_busy_percent": gpu_busy_percent, "before": before, "before_timeout_s": before_timeout_s,
        "target": where.target, "instance": where.instance, "token": where.token,
        "allow_poweroff": where.target == "ssh", "ssh_ports": list(where.ssh_ports),
        "interval_s": interval_s, "poweroff_command": list(poweroff_command), "enabled": enabled,
    }
    if where.login_user:
        home = "/root" if where.login_user == "root" else f"/home/{where.login_user}"
        cfg["before_user"] = where.login_user
        cfg["keepalive_files"] = [KEEPALIVE.replace("~", home, 1)]
    return cfg


def from_recipe(recipe: Recipe) -> dict[str, Any] | None:
    """The agent's config for ``recipe``, or None when it has no ``autostop``."""
    a = recipe.autostop
    if a is None:
        return None
    if recipe.target.gcp is not None:
        where = Where(target="gcp", ssh_ports=(22,), token=recipe_token(recipe))
    else:
        hosts = recipe.target.ssh.hosts if recipe.target.ssh else []
        ports = {parse_host(h).port or recipe.ssh.port for h in hosts} | {recipe.ssh.port}
        where = Where(target="ssh", ssh_ports=tuple(sorted(ports)))
    return agent_config(idle_s=parse_duration(a.idle), action=a.action,
                        max_runtime_s=parse_duration(a.max_runtime) if a.max_runtime else None,
                        gpu_busy_percent=a.gpu_busy_percent, before=a.before, where=where)


def recipe_token(recipe: Recipe) -> str:
    """The value of the ``gpuwizard-autostop`` metadata the provisioner sets on the VMs of a
    recipe with ``autostop``: the agent acts only on a VM that carries it."""
    return f"gpuwizard-{recipe.name}"


def describe(recipe: Recipe) -> str:
    """One line for ``gpuwizard run``/``plan``: what auto-stop will do."""
    a = recipe.autostop
    if a is None:
        return "auto-stop: off"
    what = "deletes" if a.action == "delete" else ("powers off" if recipe.target.ssh else "stops")
    cap = f", and after {a.max_runtime} in any case" if a.max_runtime else ""
    return f"auto-stop: {what} the VM after {a.idle} without use{cap}"


def _unit(root: str) -> str:
    return (
        "[Unit]\nDescription=gpuwizard auto-stop: stops this machine when nobody uses it\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart=/usr/bin/python3 {root}{AGENT_PATH} --config {root}{CONFIG_PATH} --state {root}{STATE_PATH}\n"
        "Restart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n")


# Keeps ``started_at`` from the first install, so max_runtime and a resumed run agree.
_WRITE_CONFIG = r"""
import json, os, sys, time
path, new = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path) as fh:
        old = json.load(fh)
except (OSError, ValueError):
    old = {}
new["started_at"] = old.get("started_at") or time.time()
if not new.get("before_user"):
    import pwd
    user = os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
    new["before_user"] = user
    new["keepalive_files"] = [os.path.join(pwd.getpwnam(user).pw_dir, ".gpuwizard-keepalive")]
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".tmp", "w") as fh:
    json.dump(new, fh, indent=1, sort_keys=True)
os.replace(path + ".tmp", path)
"""


def install_script(config: dict[str, Any], root: str = "/") -> str:
    """Bash that installs (or updates) the agent and its config, then (re)starts it."""
    root = root.rstrip("/") + "/"
    agent, conf, state = (shlex.quote(root + p) for p in (AGENT_PATH, CONFIG_PATH, STATE_PATH))
    unit, pid, log = (shlex.quote(root + p) for p in (UNIT_PATH, PID_PATH, LOG_PATH))
    marker = "GPUWIZARD_AUTOSTOP_AGENT_EOF"
    source = agent_source()
    assert marker not in source
    return "\n".join([
        f"mkdir -p {shlex.quote(root + 'usr/local/lib/gpuwizard')} {shlex.quote(root + 'etc/gpuwizard')} "
        f"{shlex.quote(root + 'var/lib/gpuwizard')} {shlex.quote(root + 'var/log')}",
        f"cat > {agent}.new <<'{marker}'", source.rstrip("\n"), marker,
        f"mv {agent}.new {agent}",
        f"python3 -c {shlex.quote(_WRITE_CONFIG)} {conf} {shlex.quote(json.dumps(config, sort_keys=True))}",
        "if [ -d /run/systemd/system ] && [ \"$(id -u)\" -eq 0 ]; then",
        f"  printf '%s' {shlex.quote(_unit(root))} > {unit}",
        "  systemctl daemon-reload",
        "  systemctl enable --quiet gpuwizard-autostop.service",
        "  systemctl restart gpuwizard-autostop.service",
        "  echo 'auto-stop agent running (systemd: gpuwizard-autostop.service)'",
        "else",
        f"  if [ -s {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then kill \"$(cat {pid})\" || true; fi",
        f"  setsid nohup python3 {agent} --config {conf} --state {state} >> {log} 2>&1 < /dev/null &",
        f"  echo $! > {pid}",
        "  echo 'auto-stop agent running (no systemd here: it will not start again after a reboot)'",
        "fi",
    ]) + "\n"


_UPDATE_CONFIG = r"""
import json, os, sys
path, change = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path) as fh:
        cfg = json.load(fh)
except OSError:
    sys.exit("no auto-stop agent here (" + path + " is missing): run the recipe with autostop set first")
cfg.update(change)
with open(path + ".tmp", "w") as fh:
    json.dump(cfg, fh, indent=1, sort_keys=True)
os.replace(path + ".tmp", path)
print("auto-stop: " + ("off" if not cfg.get("enabled", True) else "after %ds idle" % cfg["idle_s"]))
"""


def update_step(idle_s: int | None, root: str = "/") -> Step:
    """``gpuwizard autostop RECIPE 45m|off``: edits the agent's config on the host; the agent
    reads it again on its next tick (no restart, and ``started_at`` is kept)."""
    change: dict[str, Any] = {"enabled": False} if idle_s is None else {"enabled": True, "idle_s": idle_s}
    conf = shlex.quote(root.rstrip("/") + "/" + CONFIG_PATH)
    what = "off" if idle_s is None else f"{format_duration(idle_s)} idle"
    return Step(id="autostop-set", title=f"auto-stop: {what}",
                run=f"python3 -c {shlex.quote(_UPDATE_CONFIG)} {conf} {shlex.quote(json.dumps(change))}",
                sudo=True, timeout=60, phase="setup")


def install_step(config: dict[str, Any], root: str = "/") -> Step:
    """The plan step; re-running it only rewrites the same files and restarts the agent."""
    idle = format_duration(config["idle_s"])
    return Step(id="autostop", title=f"auto-stop agent ({config['action']} after {idle} idle)",
                run=install_script(config, root), sudo=True, timeout=120, phase="setup")
