"""The real thing: ``verify.allreduce`` with torch.distributed (gloo, CPU) across 3 sshd
"nodes" on this machine, through the real executor, the per-node plan and its GPUWIZARD_*
variables: the ranks find each other at the head's rendezvous, the sum is right on every
node, and each prints its bus bandwidth.

Opt-in (torch is large; about 3.5 GB with the CUDA libraries PyPI's wheel depends on)::

    GPUWIZARD_TORCH_TESTS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_cluster_allreduce_torch.py

The first run makes a virtual environment with ``pip install torch`` (from the package index)
in ``$GPUWIZARD_TORCH_VENV`` (default ~/.cache/gpuwizard-tests/torch-venv) and keeps it; later
runs reuse it. Without ``GPUWIZARD_TORCH_TESTS=1`` the test skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys

import pytest

from gpuwizard import allreduce
from gpuwizard import events as ev
from gpuwizard import recipe as RR
from gpuwizard.cluster import plan as cluster_plan
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.ssh import HostSpec
from tests.fixtures.sshd import free_port

ENABLED = os.environ.get("GPUWIZARD_TORCH_TESTS") == "1"
VENV = pathlib.Path(os.environ.get("GPUWIZARD_TORCH_VENV")
                    or pathlib.Path.home() / ".cache" / "gpuwizard-tests" / "torch-venv")

pytestmark = [pytest.mark.skipif(not ENABLED, reason="set GPUWIZARD_TORCH_TESTS=1 to run (installs torch)"),
              pytest.mark.timeout(3600)]


def _has_torch(python: pathlib.Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", "import torch.distributed as d; "
                                               "assert d.is_gloo_available()"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def torch_venv() -> pathlib.Path:
    python = VENV / "bin" / "python"
    if not _has_torch(python):
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch"], check=True)
    assert _has_torch(python), f"torch with gloo is not importable in {VENV}"
    return VENV


def test_gloo_all_reduce_across_three_sshd_nodes(sshd_factory, torch_venv) -> None:
    hosts = sshd_factory.start(3)
    specs = [HostSpec(name=f"node{i}", address=h.address, port=h.port, user=h.user, identity=h.client_key,
                      known_hosts=h.known_hosts) for i, h in enumerate(hosts)]
    port = free_port()
    version = subprocess.run([str(torch_venv / "bin/python"), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip().split("+")[0]
    r = RR.Recipe(name="allreduce-torch", target=RR.Target(ssh=RR.SshTarget(hosts=[h.host_string for h in hosts])),
                  env=RR.Env(path=str(torch_venv), torch=version, torch_index="cpu"),
                  cluster=RR.Cluster(nodes=3, master_port=port))
    step = allreduce.step(r, sizes=(1 << 20, 16 << 20, 64 << 20))
    layout = cluster_plan.split(r, [step], specs)
    assert layout is not None
    events: list[ev.Event] = []
    ex = Executor(specs, layout.steps, events.append, ExecOptions(connect_timeout=15, ranks=layout.ranks))
    ok = asyncio.run(ex.run())
    out = {s.name: "".join(e.data for e in events if isinstance(e, ev.Output) and e.host == s.name) for s in specs}
    assert ok, out
    for rank, s in enumerate(specs):
        text = out[s.name]
        assert f"node {rank} of 3 meets the others at 127.0.0.1:{port} (gloo)" in text, text
        assert "all-reduce result correct on 3 nodes" in text
        report = json.loads(next(line for line in text.splitlines()
                                 if line.startswith("gpuwizard-allreduce: ")).split(" ", 1)[1])
        assert report["rank"] == rank and report["nodes"] == 3 and report["backend"] == "gloo"
        assert [row["bytes"] for row in report["rows"]] == [1 << 20, 16 << 20, 64 << 20]
        assert all(row["busbw"] == pytest.approx(row["algbw"] * 4 / 3) for row in report["rows"])
        assert "all-reduce bus bandwidth" in text and "no network figure" in text  # SSH hosts: no machine type
    print("\n" + out["node0"])  # the table, for the record (pytest -s)


def test_a_node_left_alone_at_the_rendezvous_says_what_to_check(torch_venv) -> None:
    env = {**os.environ, "GPUWIZARD_NODE_RANK": "1", "GPUWIZARD_NUM_NODES": "2",
           "GPUWIZARD_MASTER_ADDR": "127.0.0.1", "GPUWIZARD_MASTER_PORT": str(free_port())}
    res = subprocess.run([str(torch_venv / "bin/python"), "-c", allreduce.probe_program(), json.dumps({"timeout": 5})],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "node 1 could not meet the other 1 node(s) at 127.0.0.1:" in res.stderr
    assert "firewall" in res.stderr
