"""The auto-stop agent's decision, fed recorded signals (tests/data/autostop/).

The Brain is pure (no clock, no I/O), so each case is a timeline of samples built from the
tools' real output formats, and the assertion is the decision at each tick."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest

from gpuwizard.autostop import agent as A

DATA = pathlib.Path(__file__).parent / "data" / "autostop"
T0 = 1_800_000_000.0  # an arbitrary epoch: the VM booted here


def read(name: str) -> str:
    return (DATA / name).read_text()


def cfg(**kw) -> A.Config:
    base = dict(idle_s=1800, started_at=T0, interval_s=30, gpu_busy_percent=10)
    base.update(kw)
    return A.Config(**base)


def idle_sample(now: float, **kw) -> A.Sample:
    return A.Sample(now=now, boot_time=T0, gpus=A.parse_nvidia_smi(read("nvidia-smi-idle.csv")), **kw)


def run_timeline(brain: A.Brain, samples: list[A.Sample]) -> list[A.Decision]:
    return [brain.tick(s) for s in samples]


# -- parsers, on the recorded outputs -------------------------------------------------------

def test_ss_counts_the_tunnel_to_sshd_and_nothing_else():
    assert A.parse_ss(read("ss-tunnel.txt"), [22]) == 1
    assert A.parse_ss(read("ss-none.txt"), [22]) == 0
    assert A.parse_ss(read("ss-tunnel.txt"), [2222]) == 0


def test_proc_net_tcp_counts_established_only_and_finds_the_listener():
    text = read("proc-net-tcp.txt")
    assert A.proc_net_tcp(text, [22]) == (1, {"18231"})   # the TIME_WAIT row does not count


def test_nvidia_smi_readings():
    assert [(g.util, g.mem_util) for g in A.parse_nvidia_smi(read("nvidia-smi-training.csv"))] == [(97, 41)]
    assert len(A.parse_nvidia_smi(read("nvidia-smi-4gpu-one-busy.csv"))) == 4
    assert A.parse_nvidia_smi(read("nvidia-smi-na.csv")) == []


def test_jupyter_kernel_list():
    busy, newest = A.parse_kernels(read("kernels-busy.json"))
    assert busy == 1 and newest == pytest.approx(A._iso_time("2026-11-29T18:00:05.123456Z"))
    assert A.parse_kernels(read("kernels-idle.json"))[0] == 0
    assert A.parse_kernels("<html>login</html>") == (0, None)


def test_steps_count_only_under_the_sshd_and_only_the_wrapper():
    procs = [
        (100, 1, ["sshd: /usr/sbin/sshd -D [listener]"]),
        (200, 100, ["sshd: ubuntu@notty"]),
        (201, 200, A.STEP_ARGV + ["python train.py"]),
        (202, 201, ["python", "train.py"]),
        (300, 1, A.STEP_ARGV + ["not through sshd"]),           # another service's bash
        (400, 200, ["bash", "-c", "echo hi"]),                   # not the executor's wrapper
    ]
    assert A.count_steps(procs, {100}) == 1
    assert A.count_steps(procs, set()) == 0


# -- decisions --------------------------------------------------------------------------------

def test_idle_stops_after_idle_and_says_when_before():
    brain = A.Brain(cfg())
    d = brain.tick(idle_sample(T0 + 600))
    assert not d.stop and d.stops_at == T0 + 1800 and "stops in 20m" in d.why
    d = brain.tick(idle_sample(T0 + 1800))
    assert d.stop and d.why == "idle for 30m"


def test_reboot_grace_a_vm_that_just_booted_is_not_stopped():
    # Last activity long ago (before the driver-install reboot); the VM booted 1 minute ago.
    brain = A.Brain(cfg(started_at=T0 - 7200), last_active=T0 - 7200)
    booted = T0 + 3600
    d = brain.tick(A.Sample(now=booted + 60, boot_time=booted))
    assert not d.stop and d.idle_for == 60


def test_a_running_step_keeps_it_up_then_idle_counts_from_its_end():
    brain = A.Brain(cfg())
    ds = run_timeline(brain, [idle_sample(T0 + t, steps_running=1) for t in (1000, 2000, 3000)])
    assert not any(d.stop for d in ds) and "1 gpuwizard step(s) running" in ds[-1].why
    assert not brain.tick(idle_sample(T0 + 3000 + 1799)).stop
    assert brain.tick(idle_sample(T0 + 3000 + 1800)).stop


def test_tunnel_only_keeps_it_up():
    brain = A.Brain(cfg())
    n = A.parse_ss(read("ss-tunnel.txt"), [22])
    d = brain.tick(idle_sample(T0 + 5000, ssh_connections=n))
    assert not d.stop and "1 SSH connection(s)" in d.why


def test_gpu_busy_with_memory_traffic_keeps_it_up():
    brain = A.Brain(cfg())
    gpus = A.parse_nvidia_smi(read("nvidia-smi-4gpu-one-busy.csv"))
    ds = [brain.tick(A.Sample(now=T0 + 1800 + 30 * i, boot_time=T0, gpus=gpus)) for i in range(10)]
    assert not any(d.stop for d in ds) and "GPU busy" in ds[-1].why


def test_a_spinning_kernel_alone_does_not_keep_it_up():
    brain = A.Brain(cfg())
    spin = A.parse_nvidia_smi(read("nvidia-smi-spin.csv"))
    d = brain.tick(A.Sample(now=T0 + 1800, boot_time=T0, gpus=spin))
    assert d.stop and "GPU" not in d.why


def test_gpu_below_threshold_on_average_is_idle():
    brain = A.Brain(cfg(gpu_busy_percent=50))
    busy = A.parse_nvidia_smi(read("nvidia-smi-training.csv"))
    idle = A.parse_nvidia_smi(read("nvidia-smi-idle.csv"))
    # the last of five samples is busy: 19 % on average over the window, under 50 %
    samples = [A.Sample(now=T0 + 1800 + 20 * i, boot_time=T0, gpus=busy if i == 4 else idle) for i in range(5)]
    assert run_timeline(brain, samples)[-1].stop


def test_busy_jupyter_kernel_keeps_it_up_and_new_activity_counts():
    brain = A.Brain(cfg())
    busy, last = A.parse_kernels(read("kernels-busy.json"))
    assert not brain.tick(idle_sample(T0 + 1800, jupyter_busy=busy, jupyter_last_activity=last)).stop
    # idle kernel, no newer activity: the idle clock runs from the last busy tick
    _, old = A.parse_kernels(read("kernels-idle.json"))
    assert not brain.tick(idle_sample(T0 + 1900, jupyter_last_activity=old)).stop
    assert brain.tick(idle_sample(T0 + 1800 + 1800, jupyter_last_activity=old)).stop


def test_keepalive_file_touched_recently_keeps_it_up():
    brain = A.Brain(cfg())
    d = brain.tick(idle_sample(T0 + 4000, keepalive_mtime=T0 + 3000))
    assert not d.stop and "keep-alive file touched 16m40s ago" in d.why
    assert brain.tick(idle_sample(T0 + 4000 + 1800)).stop


def test_max_runtime_stops_it_regardless_of_activity():
    brain = A.Brain(cfg(max_runtime_s=12 * 3600))
    d = brain.tick(idle_sample(T0 + 12 * 3600 - 1, steps_running=1, ssh_connections=2))
    assert not d.stop and d.stops_at == T0 + 12 * 3600
    d = brain.tick(idle_sample(T0 + 12 * 3600, steps_running=1, ssh_connections=2))
    assert d.stop and d.why == "max_runtime 12h00m reached"


def test_off_never_stops_for_idle():
    brain = A.Brain(cfg(enabled=False))
    d = brain.tick(idle_sample(T0 + 10 * 3600))
    assert not d.stop and d.why == "auto-stop is off"


# -- before, bounded; the guard --------------------------------------------------------------

def test_before_runs_and_is_bounded(tmp_path):
    marker = tmp_path / "saved"
    ok = A.run_before(cfg(before=f"echo saved > {marker}"), log=lambda _: None)
    assert ok and marker.read_text() == "saved\n"
    logs: list[str] = []
    child = tmp_path / "child.pid"
    ok = A.run_before(cfg(before=f"sleep 30 & echo $! > {child}; wait", before_timeout_s=0.5), log=logs.append)
    assert not ok
    assert any("did not finish" in line for line in logs)
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pathlib.Path(f"/proc/{pid}").exists() \
            and "Z" not in pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2]:
        time.sleep(0.05)
    alive = pathlib.Path(f"/proc/{pid}").exists() and "Z" not in pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not alive, "before's children must be stopped with it"


def test_guard_refuses_ssh_hosts_that_did_not_ask():
    assert A.guard(cfg(target="ssh")) is not None
    assert A.guard(cfg(target="ssh", allow_poweroff=True)) is None


def test_guard_refuses_a_vm_without_our_metadata(monkeypatch):
    def fake_metadata(path, timeout=5.0):
        return {"instance/attributes/gpuwizard-autostop": "other-run", "instance/name": "vm-1"}[path]
    monkeypatch.setattr(A, "metadata", fake_metadata)
    assert "does not match" in A.guard(cfg(token="run-1", instance="vm-1"))
    assert A.guard(cfg(token="other-run", instance="vm-1")) is None
    assert "not 'vm-2'" in A.guard(cfg(token="other-run", instance="vm-2"))


def test_guard_refuses_when_metadata_is_unreachable(monkeypatch):
    def down(path, timeout=5.0):
        raise OSError("no route to host")
    monkeypatch.setattr(A, "metadata", down)
    assert "cannot confirm" in A.guard(cfg(token="t"))


def test_agent_is_stdlib_only_and_runs_under_plain_python(tmp_path):
    """The file is shipped alone: it must run with no gpuwizard and no third-party module."""
    src = pathlib.Path(A.__file__)
    (tmp_path / "agent.py").write_text(src.read_text())
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"target": "ssh", "idle_s": 3600, "ssh_ports": [1], "interval_s": 1, "started_at": time.time(),
                                "keepalive_files": [], "jupyter_runtime": []}))
    r = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "agent.py"), "--config", str(conf),
                        "--state", str(tmp_path / "s.json"), "--once"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "s.json").read_text())
    assert state["why"].startswith("idle for") and state["stops_at"] > time.time()
