"""The recipe checks of cluster mode: ``cluster`` against the target, ``on:`` and
``gpuwizard torchrun`` against ``cluster``; every problem at its FILE:LINE:COL with the
fix."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from gpuwizard.recipe import RecipeError
from gpuwizard.validate import load_checked

GCP = """\
version: 1
name: ddp
target:
  gcp:
    zones: [us-central1-a]
    machine_type: g2-standard-8
    gpu: {type: nvidia-l4, count: 1}
"""

SSH = """\
version: 1
name: ddp
target:
  ssh:
    hosts: [a@10.0.0.1, a@10.0.0.2, a@10.0.0.3]
"""

TORCH = "env: {torch: '2.9.1'}\n"


def check(tmp_path: pathlib.Path, text: str) -> list[str]:
    """Every problem as ``LINE:COL: [warning: ]path: message``."""
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    try:
        _, warnings = load_checked(str(path))
        lines = [w.format(str(path)) for w in warnings]
    except RecipeError as exc:
        lines = exc.lines()
    return [ln[len(str(path)) + 1:] for ln in lines]


def test_gcp_cluster_needs_nodes(tmp_path):
    assert check(tmp_path, GCP + "cluster: {}\n") == [
        "8:10: cluster.nodes: a GCP cluster needs its size: set cluster.nodes (2 to 64 VMs, created together in one zone)"]
    assert check(tmp_path, GCP + "cluster: {nodes: 4}\n") == []


def test_gcp_cluster_conflicts_with_count(tmp_path):
    text = GCP + "    count: 3\ncluster:\n  nodes: 4\n"
    assert check(tmp_path, text) == [
        "8:12: target.gcp.count: target.gcp.count is 3, but a cluster's VMs are counted by cluster.nodes: "
        "remove target.gcp.count and set cluster.nodes: 4"]
    assert check(tmp_path, GCP + "    count: 1\ncluster:\n  nodes: 4\n") == []


@pytest.mark.parametrize("nodes,expect", [
    (1, "9:10: cluster.nodes: must be 2 to 64 (got 1)"),
    (65, "9:10: cluster.nodes: must be 2 to 64 (got 65)"),
])
def test_node_count_range(tmp_path, nodes, expect):
    assert check(tmp_path, GCP + f"cluster:\n  nodes: {nodes}\n") == [expect]


def test_ssh_nodes_are_the_hosts(tmp_path):
    assert check(tmp_path, SSH + "cluster: {}\n") == []
    assert check(tmp_path, SSH + "cluster: {nodes: 3}\n") == []
    assert check(tmp_path, SSH + "cluster:\n  nodes: 2\n") == [
        "7:10: cluster.nodes: cluster.nodes is 2, but target.ssh.hosts lists 3 hosts and the listed hosts are the "
        "nodes: set nodes: 3, or list 2 hosts"]
    one = SSH.replace("[a@10.0.0.1, a@10.0.0.2, a@10.0.0.3]", "[a@10.0.0.1]")
    assert check(tmp_path, one + "cluster: {}\n") == [
        "5:12: target.ssh.hosts: a cluster needs at least 2 nodes and target.ssh.hosts lists 1: list every node "
        "(the first is the head), or remove `cluster`"]


def test_on_without_a_cluster_is_a_warning(tmp_path):
    text = SSH + "steps:\n  - name: a\n    run: 'true'\n    on: head\n"
    assert check(tmp_path, text) == [
        "9:9: warning: steps[0].on: `on: head` only matters in a cluster; without `cluster:` every step runs on "
        "every host: remove it, or add `cluster: {nodes: N}`"]
    assert check(tmp_path, text + "cluster: {}\n") == []


def test_gpuwizard_torchrun_needs_the_torchrun_launcher(tmp_path):
    step = "steps:\n  - name: train\n    run: cd src && gpuwizard torchrun -- train.py --epochs 3\n"
    assert check(tmp_path, SSH + TORCH + step) == [
        "9:10: steps[0].run: `gpuwizard torchrun` runs only in a cluster with the torchrun launcher: add "
        "`cluster: {nodes: N, launcher: torchrun}`, or call torchrun yourself"]
    assert check(tmp_path, SSH + TORCH + step + "cluster: {launcher: null}\n") == [
        "9:10: steps[0].run: `gpuwizard torchrun` runs only in a cluster with the torchrun launcher: set "
        "cluster.launcher: torchrun, or call torchrun yourself"]
    assert check(tmp_path, SSH + TORCH + step + "cluster: {}\n") == []


def test_torchrun_without_pytorch_in_the_environment_is_a_warning(tmp_path):
    step = "steps:\n  - name: train\n    run: gpuwizard torchrun -- train.py\n"
    assert check(tmp_path, SSH + step + "cluster:\n  launcher: torchrun\n") == [
        "10:13: warning: cluster.launcher: launcher torchrun runs torchrun from the recipe's environment, which "
        "installs no PyTorch: set env.torch (e.g. '2.9.1'), unless your image or steps bring it"]
    assert check(tmp_path, SSH + TORCH + step + "cluster:\n  launcher: torchrun\n") == []
    # a cluster that never calls the helper is not nagged about PyTorch
    assert check(tmp_path, SSH + "steps:\n  - name: a\n    run: hostname\ncluster: {}\n") == []


def test_a_torchrun_step_runs_on_every_node(tmp_path):
    # torchrun --nnodes=N on the head alone waits at the rendezvous for ranks that never come
    step = "steps:\n  - name: train\n    run: gpuwizard torchrun -- train.py\n    on: head\n"
    assert check(tmp_path, SSH + TORCH + step + "cluster: {}\n") == [
        "10:9: steps[0].on: a step that calls `gpuwizard torchrun` runs on every node at once (torchrun waits for "
        "all of them): remove `on: head`"]
    assert check(tmp_path, SSH + TORCH + step.replace("head", "all") + "cluster: {}\n") == []


def test_retries_on_a_torchrun_step_are_said_not_to_apply(tmp_path):
    # a gang step is never retried (one rank cannot re-join the others' job): say so
    step = "steps:\n  - name: train\n    run: gpuwizard torchrun -- train.py\n    retries: 2\n"
    assert check(tmp_path, SSH + TORCH + step + "cluster: {}\n") == [
        "10:14: warning: steps[0].retries: a step that calls `gpuwizard torchrun` is not retried (one node failing "
        "stops it on every node; `gpuwizard run --resume` runs it again): remove `retries`"]
