#!/usr/bin/env python3
"""gpuwizard's auto-stop agent: runs ON the VM and stops it when nobody uses it.

This file is shipped verbatim to the host (read with ``importlib.resources``) and runs
there under systemd as root, with the host's own ``python3`` and nothing else: standard
library only, no import of gpuwizard.

Why the VM decides for itself: a laptop that is closed or a control server that is lost
must not leave a GPU billing all night. Every tick (``interval_s``, 20-60 s) the agent
samples every signal that means "someone is using me":

* a gpuwizard step running (the executor's ``bash --norc --noprofile -euo pipefail -c``);
* any TCP connection to sshd: terminals, ``ssh -N`` tunnels and port forwards alike;
* the GPU busy: utilisation averaged over a window above ``gpu_busy_percent`` AND memory
  activity where NVML reports it (one busy-looping kernel shows 100 % with no memory
  traffic and must not keep a VM alive forever);
* a Jupyter kernel busy (or active since the last tick), from the servers' REST API;
* a keep-alive file the user touches (``~/.gpuwizard-keepalive``).

After ``idle_s`` without any of them it runs ``before`` (bounded by ``before_timeout_s``)
and then stops the VM from inside (``poweroff``; Compute Engine stops a VM that powers
off) or deletes it (Compute API, with the VM's own service-account token from the
metadata server). ``max_runtime_s`` stops it regardless of activity: it is the cap that
catches a stalled loop. The idle clock never starts before the boot, so a VM that just
rebooted (the driver install reboots) is never stopped at once.

Spot VMs: a thread long-polls the metadata server's ``instance/preempted`` and runs
``before`` inside GCP's 30 s notice.

Safety: the agent acts only on a VM gpuwizard created with ``autostop`` set (the
instance's ``gpuwizard-autostop`` metadata attribute must equal the config's ``token``
and its name the config's ``instance``), or, for an existing SSH host, only where the
recipe asked for it (``target: ssh`` with ``allow_poweroff: true`` in the config).

State (last activity, why it is kept awake, when it will stop) goes to ``state_path``
and, on Compute Engine, to the guest attribute ``gpuwizard/autostop`` so that
``gpuwizard status`` can show the countdown without SSH.

Why one file of this size: it is shipped and run alone, so parsers, decision and actions
travel together; the decision (:class:`Brain`) is pure and tested apart from the I/O.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
import urllib.parse
import urllib.request
from typing import Any, Callable, Deque, Iterable, Sequence

CONFIG_PATH = "/etc/gpuwizard/autostop.json"
STATE_PATH = "/var/lib/gpuwizard/autostop-state.json"
METADATA = os.environ.get("GPUWIZARD_METADATA_ENDPOINT", "http://metadata.google.internal").rstrip("/")
COMPUTE = os.environ.get("GPUWIZARD_COMPUTE_ENDPOINT", "https://compute.googleapis.com").rstrip("/")
#: How long the GPU must look busy on average before it counts (seconds).
GPU_WINDOW_S = 300.0
#: GCP gives a preempted Spot VM 30 s; ``before`` gets this much of it.
PREEMPT_BEFORE_S = 25.0
#: argv prefix of every gpuwizard step (see gpuwizard/executor: the remote wrapper).
STEP_ARGV = ["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c"]


@dataclasses.dataclass
class Config:
    """What gpuwizard wrote to ``/etc/gpuwizard/autostop.json`` (no secrets in it)."""

    idle_s: float = 1800.0
    action: str = "stop"                      # stop | delete
    max_runtime_s: float | None = None
    gpu_busy_percent: float = 10.0
    before: str | None = None
    before_timeout_s: float = 300.0
    before_user: str | None = None            # run ``before`` as this user (the SSH user)
    started_at: float = 0.0                   # when gpuwizard first installed the agent
    target: str = "gcp"                       # gcp | ssh
    instance: str | None = None               # the VM's name (gcp)
    token: str | None = None                  # must equal the VM's gpuwizard-autostop metadata
    allow_poweroff: bool = False              # ssh targets: the recipe asked for it
    ssh_ports: tuple[int, ...] = (22,)
    keepalive_files: tuple[str, ...] = ()
    jupyter_runtime: tuple[str, ...] = ("/home/*/.local/share/jupyter/runtime/jpserver-*.json",
                                        "/root/.local/share/jupyter/runtime/jpserver-*.json")
    interval_s: float = 30.0
    poweroff_command: tuple[str, ...] = ("systemctl", "poweroff")
    enabled: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("ssh_ports", "keepalive_files", "poweroff_command", "jupyter_runtime"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def load_config(path: str) -> Config:
    with open(path, encoding="utf-8") as fh:
        return Config.from_dict(json.load(fh))


@dataclasses.dataclass
class GpuReading:
    util: float                  # utilization.gpu, percent
    mem_util: float | None       # utilization.memory, percent; None where NVML does not say


@dataclasses.dataclass
class Sample:
    """Everything one tick saw. Each field is parsed from real command output or /proc."""

    now: float
    boot_time: float
    steps_running: int = 0
    ssh_connections: int = 0
    gpus: list[GpuReading] | None = None
    jupyter_busy: int = 0
    jupyter_last_activity: float | None = None
    keepalive_mtime: float | None = None


def _num(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_nvidia_smi(text: str) -> list[GpuReading]:
    """``nvidia-smi --query-gpu=utilization.gpu,utilization.memory --format=csv,noheader,nounits``."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        util = _num(parts[0])
        if util is None:
            continue
        out.append(GpuReading(util=util, mem_util=_num(parts[1])))
    return out


def parse_ss(text: str, ports: Iterable[int]) -> int:
    """Established TCP connections whose local port is sshd's, from ``ss -Htn state established``
    (columns: Recv-Q Send-Q Local:Port Peer:Port)."""
    ports = set(ports)
    n = 0
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        local = cols[-2]
        try:
            port = int(local.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        if port in ports:
            n += 1
    return n


def proc_net_tcp(text: str, ports: Iterable[int]) -> tuple[int, set[str]]:
    """From ``/proc/net/tcp``/``tcp6`` (hex ports; state 01 ESTABLISHED, 0A LISTEN; inode in
    column 10): connections established to ``ports`` (where ``ss`` is missing) and the inodes
    of the sockets listening on them (to find sshd's pid)."""
    ports, n, inodes = set(ports), 0, set()
    for line in text.splitlines()[1:]:
        cols = line.split()
        try:
            mine = len(cols) >= 10 and int(cols[1].rsplit(":", 1)[1], 16) in ports
        except (IndexError, ValueError):
            continue
        if mine and cols[3] == "01":
            n += 1
        elif mine and cols[3] == "0A":
            inodes.add(cols[9])
    return n, inodes


def parse_kernels(text: str) -> tuple[int, float | None]:
    """A Jupyter server's ``GET /api/kernels``: (busy kernels, newest last_activity)."""
    try:
        kernels = json.loads(text)
    except ValueError:
        return 0, None
    busy, newest = 0, None
    for k in kernels if isinstance(kernels, list) else []:
        if not isinstance(k, dict):
            continue
        if k.get("execution_state") == "busy":
            busy += 1
        t = _iso_time(k.get("last_activity"))
        if t is not None and (newest is None or t > newest):
            newest = t
    return busy, newest


def _iso_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def count_steps(procs: Iterable[tuple[int, int, Sequence[str]]], roots: set[int]) -> int:
    """gpuwizard steps started through this machine's sshd: processes whose argv is the
    executor's wrapper (``sudo -n -- bash ...`` counts once, as its bash) and that descend
    from one of ``roots`` (the sshd listening on ``ssh_ports``). ``procs`` is
    (pid, ppid, argv) for every process."""
    parent = {pid: ppid for pid, ppid, _ in procs}

    def under_root(pid: int) -> bool:
        seen = set()
        while pid and pid not in seen:
            if pid in roots:
                return True
            seen.add(pid)
            pid = parent.get(pid, 0)
        return False

    return sum(1 for pid, _, argv in procs
               if list(argv[:len(STEP_ARGV)]) == STEP_ARGV and under_root(pid))


@dataclasses.dataclass
class Decision:
    stop: bool
    why: str                 # why it stops, or what keeps it awake / how long until it stops
    idle_for: float
    stops_at: float | None   # epoch when it will stop if nothing happens


class Brain:
    """The decision, fed one :class:`Sample` a tick. Pure: no clock, no I/O, so it is tested
    with recorded signals."""

    def __init__(self, cfg: Config, last_active: float = 0.0) -> None:
        self.cfg = cfg
        self.last_active = last_active
        self.gpu_window: Deque[tuple[float, float, float | None]] = collections.deque()
        self.seen_jupyter: float | None = None

    def gpu_busy(self, s: Sample) -> str | None:
        if s.gpus:
            util = max(g.util for g in s.gpus)
            mems = [g.mem_util for g in s.gpus if g.mem_util is not None]
            self.gpu_window.append((s.now, util, max(mems) if mems else None))
        while self.gpu_window and self.gpu_window[0][0] < s.now - GPU_WINDOW_S:
            self.gpu_window.popleft()
        if not self.gpu_window or not s.gpus:
            return None
        avg = sum(u for _, u, _ in self.gpu_window) / len(self.gpu_window)
        mems = [m for _, _, m in self.gpu_window if m is not None]
        if avg < self.cfg.gpu_busy_percent:
            return None
        if mems and max(mems) <= 0:
            return None  # 100 % with no memory traffic: a spinning kernel, not work
        return f"GPU busy ({avg:.0f}% average over {len(self.gpu_window)} samples)"

    def activity(self, s: Sample) -> list[str]:
        why = []
        if s.steps_running:
            why.append(f"{s.steps_running} gpuwizard step(s) running")
        if s.ssh_connections:
            why.append(f"{s.ssh_connections} SSH connection(s)")
        gpu = self.gpu_busy(s)
        if gpu:
            why.append(gpu)
        if s.jupyter_busy:
            why.append(f"{s.jupyter_busy} Jupyter kernel(s) busy")
        elif s.jupyter_last_activity is not None and self.seen_jupyter is not None \
                and s.jupyter_last_activity > self.seen_jupyter:
            why.append("Jupyter kernel active")
        if s.jupyter_last_activity is not None:
            self.seen_jupyter = max(self.seen_jupyter or 0.0, s.jupyter_last_activity)
        if s.keepalive_mtime is not None and s.now - s.keepalive_mtime < self.cfg.idle_s:
            why.append(f"keep-alive file touched {_dur(s.now - s.keepalive_mtime)} ago")
        return why

    def tick(self, s: Sample) -> Decision:
        cfg = self.cfg
        # The idle clock never starts before this boot or before the install.
        self.last_active = max(self.last_active, s.boot_time, cfg.started_at)
        why = self.activity(s)
        if why:
            self.last_active = s.now
        idle_for = max(0.0, s.now - self.last_active)
        cap_at = cfg.started_at + cfg.max_runtime_s if cfg.max_runtime_s else None
        if cap_at is not None and s.now >= cap_at:
            return Decision(True, f"max_runtime {_dur(cfg.max_runtime_s or 0)} reached", idle_for, cap_at)
        if not cfg.enabled:
            return Decision(False, "auto-stop is off", idle_for, cap_at)
        idle_at = self.last_active + cfg.idle_s
        stops_at = min(idle_at, cap_at) if cap_at else idle_at
        if why:
            return Decision(False, "kept awake: " + "; ".join(why), 0.0, stops_at)
        if idle_for >= cfg.idle_s:
            return Decision(True, f"idle for {_dur(idle_for)}", idle_for, idle_at)
        return Decision(False, f"idle for {_dur(idle_for)}; stops in {_dur(idle_at - s.now)}",
                        idle_for, stops_at)


def _dur(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m" if not s else f"{m}m{s:02d}s"
    return f"{s}s"


def _run(argv: Sequence[str], timeout: float = 10.0) -> str | None:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _boot_time() -> float:
    with open("/proc/uptime", encoding="ascii") as fh:
        return time.time() - float(fh.read().split()[0])


def _processes() -> list[tuple[int, int, list[str]]]:
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/cmdline", "rb") as fh:
                raw = fh.read()
            with open(f"{d}/stat", "rb") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        out.append((int(d[6:]), ppid, [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]))
    return out


def _sshd_pids(ports: Sequence[int]) -> set[int]:
    """The processes holding a socket that listens on one of ``ports`` (sshd)."""
    text = ""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as fh:
                text += fh.read() if not text else fh.read().split("\n", 1)[-1]
        except OSError:
            pass
    inodes = {f"socket:[{i}]" for i in proc_net_tcp(text, ports)[1]}
    pids = set()
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in inodes:
                pids.add(int(fd.split("/")[2]))
        except (OSError, ValueError):
            continue
    return pids


def _ssh_connections(ports: Sequence[int]) -> int:
    out = _run(["ss", "-Htn", "state", "established"])
    if out is not None:
        return parse_ss(out, ports)
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as fh:
                n += proc_net_tcp(fh.read(), ports)[0]
        except OSError:
            pass
    return n


def _jupyter(patterns: Sequence[str]) -> tuple[int, float | None]:
    busy, newest = 0, None
    for path in [p for pattern in patterns for p in glob.glob(os.path.expanduser(pattern))]:
        try:
            with open(path, encoding="utf-8") as fh:
                info = json.load(fh)
            url = info["url"].rstrip("/") + "/api/kernels"
            req = urllib.request.Request(url, headers={"Authorization": f"token {info.get('token', '')}"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                b, t = parse_kernels(resp.read().decode("utf-8", "replace"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        busy += b
        if t is not None and (newest is None or t > newest):
            newest = t
    return busy, newest


def sample(cfg: Config) -> Sample:
    """One look at the machine (each probe fails soft: a missing tool is no activity)."""
    s = Sample(now=time.time(), boot_time=_boot_time())
    s.steps_running = count_steps(_processes(), _sshd_pids(cfg.ssh_ports))
    s.ssh_connections = _ssh_connections(cfg.ssh_ports)
    smi = _run(["nvidia-smi", "--query-gpu=utilization.gpu,utilization.memory",
                "--format=csv,noheader,nounits"])
    s.gpus = parse_nvidia_smi(smi) if smi else None
    s.jupyter_busy, s.jupyter_last_activity = _jupyter(cfg.jupyter_runtime)
    mtimes = []
    for path in cfg.keepalive_files:
        try:
            mtimes.append(os.stat(os.path.expanduser(path)).st_mtime)
        except OSError:
            pass
    s.keepalive_mtime = max(mtimes) if mtimes else None
    return s


def metadata(path: str, timeout: float = 5.0) -> str:
    req = urllib.request.Request(f"{METADATA}/computeMetadata/v1/{path}",
                                 headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode("utf-8")


def publish(state: dict[str, Any]) -> None:
    """Guest attribute ``gpuwizard/autostop`` (``gpuwizard status`` reads it through the
    Compute API); failures are ignored (guest attributes may be off)."""
    req = urllib.request.Request(f"{METADATA}/computeMetadata/v1/instance/guest-attributes/gpuwizard/autostop",
                                 data=json.dumps(state, sort_keys=True).encode(), method="PUT",
                                 headers={"Metadata-Flavor": "Google"})
    try:
        urllib.request.urlopen(req, timeout=3).close()
    except (OSError, ValueError):
        pass


def guard(cfg: Config) -> str | None:
    """None when this agent may stop this machine, else why not."""
    if cfg.target == "ssh":
        return None if cfg.allow_poweroff else "this host's recipe did not ask for auto-stop"
    try:
        attr = metadata("instance/attributes/gpuwizard-autostop")
        name = metadata("instance/name")
    except (OSError, ValueError) as exc:
        return f"cannot confirm this VM was created by gpuwizard with autostop ({exc})"
    if not cfg.token or attr.strip() != cfg.token:
        return "this VM's gpuwizard-autostop metadata does not match the agent's config"
    if cfg.instance and name.strip() != cfg.instance:
        return f"this VM is {name.strip()!r}, not {cfg.instance!r}"
    return None


def delete_self(timeout: float = 30.0) -> str:
    """instances.delete for this VM, with its own service-account token."""
    token = json.loads(metadata("instance/service-accounts/default/token"))["access_token"]
    project = metadata("project/project-id").strip()
    zone = metadata("instance/zone").strip().rsplit("/", 1)[-1]
    name = metadata("instance/name").strip()
    url = (f"{COMPUTE}/compute/v1/projects/{urllib.parse.quote(project)}/zones/"
           f"{urllib.parse.quote(zone)}/instances/{urllib.parse.quote(name)}")
    req = urllib.request.Request(url, method="DELETE", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
    return f"asked Compute Engine to delete {name} in {zone}"


def run_before(cfg: Config, budget: float | None = None, log: Callable[[str], None] = print) -> bool:
    """Runs ``before`` in its own process group, killed after its budget. True if it finished."""
    if not cfg.before:
        return True
    limit = cfg.before_timeout_s if budget is None else min(budget, cfg.before_timeout_s)
    argv = ["bash", "-lc", cfg.before]
    if cfg.before_user and os.geteuid() == 0 and cfg.before_user != "root":
        argv = ["runuser", "-u", cfg.before_user, "--"] + argv
    log(f"running before: {cfg.before} (at most {_dur(limit)})")
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log(f"before did not finish in {_dur(limit)}: stopped it; going on")
        return False
    log(f"before exited {rc}")
    return rc == 0


def act(cfg: Config) -> str:
    """Stop or delete this machine (after :func:`guard` said yes)."""
    if cfg.action == "delete" and cfg.target == "gcp":
        return delete_self()
    subprocess.run(list(cfg.poweroff_command), check=False)
    return "powered off (" + shlex.join(cfg.poweroff_command) + ")"


def watch_preemption(cfg_path: str, state_path: str, log: Callable[[str], None],
                     stop: threading.Event) -> None:
    """Long-polls ``instance/preempted``; on TRUE runs ``before`` inside the 30 s notice."""
    while not stop.is_set():
        try:
            value = metadata("instance/preempted?wait_for_change=true", timeout=3600)
        except (OSError, ValueError):
            if stop.wait(10):
                return
            continue
        if value.strip().upper() == "TRUE":
            log("Compute Engine is preempting this Spot VM")
            run_before(load_config(cfg_path), budget=PREEMPT_BEFORE_S, log=log)
            _write_json(state_path, {"preempted_at": time.time(), "why": "preempted"}, merge=True)
            return


def _write_json(path: str, data: dict[str, Any], merge: bool = False) -> None:
    if merge:
        try:
            with open(path, encoding="utf-8") as fh:
                old = json.load(fh)
            if isinstance(old, dict):
                data = {**old, **data}
        except (OSError, ValueError):
            pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True)
    os.replace(tmp, path)


def _read_last_active(path: str) -> float:
    try:
        with open(path, encoding="utf-8") as fh:
            v = json.load(fh).get("last_active", 0.0)
        return float(v)
    except (OSError, ValueError, AttributeError, TypeError):
        return 0.0


def loop(cfg_path: str, state_path: str, once: bool = False,
         sampler: Callable[[Config], Sample] = sample, log: Callable[[str], None] = print) -> int:
    """The agent's life: tick until it stops the machine (returns 0) or ``once``."""
    cfg = load_config(cfg_path)
    brain = Brain(cfg, last_active=_read_last_active(state_path))
    stop = threading.Event()
    if cfg.target == "gcp":
        threading.Thread(target=watch_preemption, args=(cfg_path, state_path, log, stop), daemon=True).start()
    while True:
        try:
            brain.cfg = cfg = load_config(cfg_path)   # `gpuwizard autostop` edits apply live
        except (OSError, ValueError) as exc:
            log(f"config unreadable ({exc}); keeping the previous one")
        d = brain.tick(sampler(cfg))
        state = {"last_active": brain.last_active, "why": d.why, "idle_for": round(d.idle_for),
                 "stops_at": d.stops_at, "updated": time.time(), "action": cfg.action,
                 "idle_s": cfg.idle_s, "enabled": cfg.enabled}
        _write_json(state_path, state, merge=True)
        if cfg.target == "gcp":
            publish(state)
        if d.stop:
            refused = guard(cfg)
            if refused:
                log(f"would stop ({d.why}) but will not: {refused}")
            else:
                log(f"stopping: {d.why}")
                run_before(cfg, log=log)
                log(act(cfg))
                _write_json(state_path, {"stopped_at": time.time(), "why": d.why}, merge=True)
                stop.set()
                return 0
        if once:
            stop.set()
            return 0
        time.sleep(max(0.2, cfg.interval_s))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpuwizard-autostop", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=CONFIG_PATH)
    ap.add_argument("--state", default=STATE_PATH)
    ap.add_argument("--once", action="store_true", help="one tick, then exit")
    args = ap.parse_args(argv)
    return loop(args.config, args.state, once=args.once,
                log=lambda text: print(f"gpuwizard-autostop: {text}", flush=True))


if __name__ == "__main__":
    sys.exit(main())
