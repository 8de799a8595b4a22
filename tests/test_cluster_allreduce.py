"""The cluster's all-reduce check without torch: its arithmetic (bus bandwidth as nccl-tests
define it), the expected network figures, the verdict's words, where the plan puts it, that
the program sent to the nodes needs nothing but the standard library and torch, and the
step as planned on 3 sshd nodes whose environment lacks torch.

The real all-reduce (torch.distributed, gloo, 3 sshd nodes) is the opt-in
tests/test_cluster_allreduce_torch.py.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shlex
import subprocess
import sys

import pytest

from gpuwizard import allreduce, allreduce_probe as P, plan
from gpuwizard import events as ev
from gpuwizard import recipe as RR
from gpuwizard.cluster import plan as cluster_plan
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec


def test_bus_bandwidth_is_nccl_tests_definition() -> None:
    # doc/PERFORMANCE.md: busbw = algbw * 2 (n - 1) / n for all-reduce
    alg, bus = P.bus_bandwidth(1_000_000_000, 1.0, 2)
    assert alg == 1e9 and bus == 1e9                      # 2 ranks: each sends S once
    alg, bus = P.bus_bandwidth(256 << 20, 0.5, 4)
    assert alg == (256 << 20) / 0.5 and bus == pytest.approx(alg * 1.5)
    assert P.bus_bandwidth(1 << 20, 0.1, 8)[1] == pytest.approx((1 << 20) / 0.1 * 14 / 8)
    assert P.gbps(1.25e9) == pytest.approx(10.0)          # 1.25 GB/s is 10 Gbit/s
    with pytest.raises(ValueError):
        P.bus_bandwidth(1, 0.0, 2)


def test_verdict_warns_plainly_when_far_below_the_network() -> None:
    line, slow = P.verdict(2.0, 24.0, "a2-highgpu-1g")
    assert slow and line.startswith("warning: ")
    assert "2.00 Gbit/s" in line and "about 24 Gbit/s" in line and "No gVNIC / no compact placement?" in line
    line, slow = P.verdict(20.0, 24.0, "a2-highgpu-1g")
    assert not slow and "warning" not in line and "(83%)" in line
    line, slow = P.verdict(1.0, None, "")
    assert not slow and "no network figure" in line


def test_node_env_needs_the_cluster_variables() -> None:
    env = {"GPUWIZARD_NODE_RANK": "2", "GPUWIZARD_NUM_NODES": "3", "GPUWIZARD_MASTER_ADDR": "10.0.0.2",
           "GPUWIZARD_MASTER_PORT": "29500"}
    assert P.node_env(env) == (2, 3, "tcp://10.0.0.2:29500", 0)
    assert P.node_env({**env, "GPUWIZARD_MASTER_ADDR": "fd00::2"})[2] == "tcp://[fd00::2]:29500"
    # under torchrun (bench/device_nccl.sh): its variables and its rendezvous, one GPU per process
    assert P.node_env({"TORCHELASTIC_RUN_ID": "x", "RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}) == (3, 8, "env://", 3)
    with pytest.raises(SystemExit, match="GPUWIZARD_NODE_RANK, _NUM_NODES"):
        P.node_env({k: v for k, v in env.items() if k != "GPUWIZARD_MASTER_ADDR"})
    with pytest.raises(SystemExit, match="outside 0..2"):
        P.node_env({**env, "GPUWIZARD_NODE_RANK": "3"})


def test_expected_bandwidth_from_the_catalog() -> None:
    assert allreduce.expected_gbps("n1-standard-8") == 16            # 2 Gbit/s per vCPU (Google's example)
    assert allreduce.expected_gbps("n1-standard-64") == 32           # N1's cap
    assert allreduce.expected_gbps("n1-standard-64", "nvidia-tesla-t4") == 100   # T4/V100: up to 100
    assert allreduce.expected_gbps("n1-standard-32", "nvidia-tesla-v100") == 64
    assert allreduce.expected_gbps("a2-highgpu-1g") == 24            # 12 vCPUs
    assert allreduce.expected_gbps("no-such-type") is None and allreduce.expected_gbps(None) is None


def _cluster(**env) -> RR.Recipe:
    return RR.Recipe(name="c", target=RR.Target(ssh=RR.SshTarget(hosts=["a@10.0.0.1", "a@10.0.0.2"])),
                     env=RR.Env(**env), cluster=RR.Cluster(nodes=2),
                     steps=[RR.UserStep(name="train", run="echo train")])


def test_plan_runs_it_on_every_node_after_the_checks_before_the_users_steps() -> None:
    steps = plan.build(_cluster(torch="2.9.1", torch_index="cpu"))
    ids = [s.id for s in steps]
    ar = steps[ids.index("verify.allreduce")]
    assert ar.gang and ar.on == "all" and ar.phase == "verify" and ar.retries == 0
    assert ids.index("verify.allreduce") < ids.index("user.train")
    assert ids.index("verify.allreduce") > max(i for i, s in enumerate(steps) if s.id.startswith("env."))
    # the JSON argument the nodes get
    words = shlex.split(ar.run[ar.run.index("python -W "):])
    assert words[:4] == ["python", "-W", "ignore:Failed to initialize NumPy", "-c"]
    assert words[4] == allreduce.probe_program()
    cfg = json.loads(words[5])
    assert cfg["sizes"][0] == 1 << 20 and cfg["sizes"][-1] == 256 << 20 and cfg["expected_gbps"] is None
    # no torch in the recipe, or no cluster: no all-reduce
    assert "verify.allreduce" not in [s.id for s in plan.build(_cluster())]
    single = RR.Recipe(name="s", target=RR.Target(ssh=RR.SshTarget(hosts=["a@10.0.0.1"])), env=RR.Env(torch="2.9.1"))
    assert "verify.allreduce" not in [s.id for s in plan.build(single)]


def test_expected_figure_reaches_the_nodes_for_a_gcp_cluster() -> None:
    r = RR.Recipe(name="g", target=RR.Target(gcp=RR.GcpTarget(project="p", zones=["us-central1-a"],
                                                              machine_type="g2-standard-8",
                                                              gpu=RR.Gpu(type="nvidia-l4", count=1))),
                  env=RR.Env(torch="2.9.1"), cluster=RR.Cluster(nodes=2))
    cfg = allreduce.config(r)
    assert cfg["machine"] == "g2-standard-8" and cfg["expected_gbps"] == 16


def test_the_probe_needs_only_the_standard_library_and_torch() -> None:
    tree = ast.parse(allreduce.probe_program())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= {"json", "os", "sys", "time", "datetime", "torch"}, mods
    compile(allreduce.probe_program(), "probe", "exec", dont_inherit=True)


def test_on_sshd_nodes_without_torch_every_node_says_what_is_missing(sshd_factory, tmp_path) -> None:
    """The step as planned, on 3 real nodes, in an environment without torch: it fails on
    every node (a gang step), each saying torch is missing and where to put it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    hosts = sshd_factory.start(3)
    specs = [HostSpec(name=f"node{i}", address=h.address, port=h.port, user=h.user, identity=h.client_key,
                      known_hosts=h.known_hosts) for i, h in enumerate(hosts)]
    r = RR.Recipe(name="c", target=RR.Target(ssh=RR.SshTarget(hosts=[h.host_string for h in hosts])),
                  env=RR.Env(path=str(venv), torch="2.9.1", torch_index="cpu"), cluster=RR.Cluster(nodes=3))
    layout = cluster_plan.split(r, [allreduce.step(r)], specs)
    events: list[ev.Event] = []
    ok = asyncio.run(Executor(specs, layout.steps, events.append,
                              ExecOptions(connect_timeout=15, ranks=layout.ranks)).run())
    assert not ok
    for s in specs:
        err = "".join(e.data for e in events if isinstance(e, ev.Output) and e.host == s.name)
        assert f"torch is not installed in {venv}/bin/python" in err, err
        assert next(e for e in events if isinstance(e, ev.StepFinished) and e.host == s.name).status == "failed"
