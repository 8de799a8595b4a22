"""``gpuwizard run`` on a cluster of real sshd "nodes" (127.0.0.1, one port and one
HOME per node): the GPUWIZARD_* variables, ``on:``, the exact torchrun line of
``gpuwizard torchrun``, and one rank dying failing the step on every node.

A fake ``torchrun`` (and ``nvidia-smi`` reporting two GPUs) on the step's PATH records
what it was given; the real engine's run (torch gloo) is the opt-in
test_cluster_allreduce test.
"""

from __future__ import annotations

import os
import pathlib
import stat

import pytest
import yaml

from tests.builders.cluster import separate_homes
from tests.builders.runs import gw, pids_running

pytestmark = pytest.mark.timeout(120)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = -L ] || exit 9
echo "GPU 0: Fake GPU (UUID: GPU-0)"
echo "GPU 1: Fake GPU (UUID: GPU-1)"
"""

# Records its argv (one per line) and the GPUWIZARD_ variables of its node.
FAKE_TORCHRUN = """#!/bin/bash
out={out}
r=$GPUWIZARD_NODE_RANK
printf '%s\\n' "$@" > "$out/argv-$r"
env | grep -E '^GPUWIZARD_(NODE|NUM|MASTER|GPUS)' | sort > "$out/torchrun-env-$r"
{behaviour}
"""


def fake_bin(tmp: pathlib.Path, out: pathlib.Path, behaviour: str = "") -> pathlib.Path:
    d = tmp / "fakebin"
    d.mkdir()
    for name, text in (("nvidia-smi", FAKE_NVIDIA_SMI),
                       ("torchrun", FAKE_TORCHRUN.format(out=out, behaviour=behaviour))):
        p = d / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return d


def cluster_recipe(path: pathlib.Path, hosts, steps: list[dict], **cluster) -> pathlib.Path:
    h0 = hosts[0]
    data = {"version": 1, "name": "cluster-test",
            "target": {"ssh": {"hosts": [h.host_string for h in hosts]}},
            "ssh": {"identity": h0.client_key, "known_hosts": h0.known_hosts, "connect_timeout": 10},
            "cluster": {"launcher": "torchrun", **cluster},
            "steps": steps}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def env_file(p: pathlib.Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in p.read_text().splitlines())


def test_env_vars_on_and_the_torchrun_line(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    homes = separate_homes(hosts, tmp_path / "homes")
    out = tmp_path / "out"
    out.mkdir()
    fake = fake_bin(tmp_path, out)
    path_env = {"PATH": f"{fake}:{PATH}"}
    steps = [
        {"name": "envs", "env": dict(path_env),
         "run": f'env | grep -E "^GPUWIZARD_(NODE|NUM|MASTER|GPUS)" | sort > {out}/env-$GPUWIZARD_NODE_RANK'},
        {"name": "head-only", "on": "head", "run": f"touch {out}/head-$GPUWIZARD_NODE_RANK"},
        {"name": "workers-only", "on": "workers", "run": f"touch {out}/workers-$GPUWIZARD_NODE_RANK"},
        {"name": "train", "env": dict(path_env), "run": "gpuwizard torchrun -- train.py --lr 0.1 'two words' '$HOME'"},
    ]
    recipe = cluster_recipe(tmp_path / "r.yaml", hosts, steps, master_port=29611)
    proc = gw(tmp_path, "run", str(recipe), "--headless")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all nodes ok in" in proc.stdout   # a cluster's summary speaks of nodes

    ips = "127.0.0.1,127.0.0.1,127.0.0.1"
    for r in range(3):
        assert env_file(out / f"env-{r}") == {
            "GPUWIZARD_GPUS_PER_NODE": "2", "GPUWIZARD_MASTER_ADDR": "127.0.0.1", "GPUWIZARD_MASTER_PORT": "29611",
            "GPUWIZARD_NODE_IPS": ips, "GPUWIZARD_NODE_RANK": str(r), "GPUWIZARD_NUM_NODES": "3"}
        assert (out / f"argv-{r}").read_text().splitlines() == [
            "--nnodes=3", f"--node_rank={r}", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            "--master_port=29611", "train.py", "--lr", "0.1", "two words", "$HOME"]
        assert env_file(out / f"torchrun-env-{r}")["GPUWIZARD_NODE_RANK"] == str(r)
        assert (homes[r] / ".gpuwizard" / "bin" / "gpuwizard").exists()  # the helper, in each node's own HOME
    assert sorted(p.name for p in out.glob("head-*")) == ["head-0"]
    assert sorted(p.name for p in out.glob("workers-*")) == ["workers-1", "workers-2"]
    # the summary names nodes by rank; the helper step was skipped nowhere the first time
    assert "node 0 (head)" in proc.stdout


def test_one_rank_dying_fails_the_step_on_every_node_naming_it(sshd_factory, tmp_path):
    hosts = sshd_factory.start(3)
    separate_homes(hosts, tmp_path / "homes")
    out = tmp_path / "out"
    out.mkdir()
    marker = f"gwfakerank{os.getpid()}x"
    behaviour = (f'if [ "$r" = 1 ]; then\n'
                 f'  i=0; while {{ [ ! -e "$out/up-0" ] || [ ! -e "$out/up-2" ]; }} && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n'
                 f'  echo "rank 1: CUDA error" >&2; exit 1\n'
                 f'fi\n'
                 f'touch "$out/up-$r"; exec -a {marker} sleep 300\n')
    fake = fake_bin(tmp_path, out, behaviour)
    steps = [{"name": "train", "env": {"PATH": f"{fake}:{PATH}"}, "run": "gpuwizard torchrun -- train.py"},
             {"name": "after", "run": f"touch {out}/after-$GPUWIZARD_NODE_RANK"}]
    recipe = cluster_recipe(tmp_path / "r.yaml", hosts, steps)
    proc = gw(tmp_path, "run", str(recipe), "--headless")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [ln for ln in proc.stdout.splitlines() if "user.train: " in ln and ("FAILED" in ln or "TIMED" in ln)]
    assert len(failed) == 3, proc.stdout
    names = {h.host_string for h in hosts}
    for line in failed:
        assert "node 1 root@" in line and "failed first (exit code 1)" in line, line
    assert any(n in failed[0] for n in names)
    assert not list(out.glob("after-*"))
    assert pids_running(marker) == []  # ranks 0 and 2 were stopped, not left sleeping
