"""The per-node plan of a cluster recipe: ``on:``, the GPUWIZARD_* values, the torchrun
helper and gang steps, the resume fingerprint, and what ``gpuwizard plan`` shows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from gpuwizard import plan
from gpuwizard.cluster import env
from gpuwizard.cluster.plan import split
from gpuwizard.executor import fingerprint
from gpuwizard.recipe import parse
from gpuwizard.ssh import HostSpec

GCP = """\
version: 1
name: ddp
target:
  gcp:
    zones: [us-central1-a]
    machine_type: g2-standard-24
    gpu: {type: nvidia-l4, count: 2}
env: {torch: '2.9.1'}
steps:
  - {name: prep, on: head, run: echo prep}
  - {name: pull, on: workers, run: echo pull}
  - {name: train, run: "gpuwizard torchrun -- train.py --lr 0.1"}
  - {name: eval, run: python eval.py}
cluster: {nodes: 3, master_port: 29777}
"""


def recipe(text: str = GCP):
    r, problems = parse(textwrap.dedent(text), "r.yaml")
    assert r is not None and not [p for p in problems if not p.warning], problems
    return r


def vms(*private: str) -> list[HostSpec]:
    return [HostSpec(name=f"ddp-run-{i}", address=f"34.0.0.{i}", private_address=ip) for i, ip in enumerate(private)]


def test_steps_per_node_follow_on_and_carry_the_node_values():
    r = recipe()
    layout = split(r, plan.build(r), vms("10.0.0.5", "10.0.0.6", "10.0.0.7"))
    assert layout is not None and layout.ranks == {"ddp-run-0": 0, "ddp-run-1": 1, "ddp-run-2": 2}
    ids = {h: [s.id for s in steps if s.id.startswith("user.")] for h, steps in layout.steps.items()}
    assert ids == {"ddp-run-0": ["user.prep", "user.train", "user.eval"],
                   "ddp-run-1": ["user.pull", "user.train", "user.eval"],
                   "ddp-run-2": ["user.pull", "user.train", "user.eval"]}
    for rank, (host, steps) in enumerate(layout.steps.items()):
        for s in steps:  # every step, set-up included
            assert dict(s.node_env) == {
                env.NODE_RANK: str(rank), env.NUM_NODES: "3", env.NODE_IPS: "10.0.0.5,10.0.0.6,10.0.0.7",
                env.MASTER_ADDR: "10.0.0.5", env.MASTER_PORT: "29777", env.GPUS_PER_NODE: "2"}
            assert not s.run.startswith(env.DETECT_SH)  # the count is known: nothing to detect
    train = next(s for s in layout.steps["ddp-run-1"] if s.id == "user.train")
    evaluate = next(s for s in layout.steps["ddp-run-1"] if s.id == "user.eval")
    assert train.gang and not evaluate.gang
    assert 'export PATH="$HOME/.gpuwizard/bin:$PATH"' in train.run


def test_a_replaced_node_does_not_make_finished_steps_run_again():
    r = recipe()
    before = split(r, plan.build(r), vms("10.0.0.5", "10.0.0.6", "10.0.0.7"))
    after = split(r, plan.build(r), vms("10.0.0.5", "10.0.0.9", "10.0.0.7"))  # node 1 replaced: a new IP
    assert before is not None and after is not None
    for host in before.steps:
        old = {s.id: fingerprint(s) for s in before.steps[host]}
        new = {s.id: fingerprint(s) for s in after.steps[host]}
        assert old == new
        assert before.steps[host][0].node_env != after.steps[host][0].node_env


def test_ssh_nodes_detect_their_gpu_count_and_use_their_addresses():
    r = recipe("""\
        version: 1
        name: ddp
        target: {ssh: {hosts: [u@10.1.0.1, u@10.1.0.2]}}
        steps: [{name: a, run: hostname, check: 'false'}]
        cluster: {}
        """)
    hosts = [HostSpec(name="u@10.1.0.1", address="10.1.0.1"), HostSpec(name="u@10.1.0.2", address="10.1.0.2")]
    layout = split(r, plan.build(r), hosts)
    assert layout is not None
    for steps in layout.steps.values():
        (a,) = [s for s in steps if s.id == "user.a"]
        assert dict(a.node_env)[env.GPUS_PER_NODE] == env.DETECT
        assert dict(a.node_env)[env.NODE_IPS] == "10.1.0.1,10.1.0.2"
        assert a.run.startswith(env.DETECT_SH) and a.check.startswith(env.DETECT_SH)
    # the helper only comes with a step that could call it, and only with the torchrun launcher
    assert "cluster.helper" in [s.id for s in plan.build(r)]
    r.cluster.launcher = None
    assert "cluster.helper" not in [s.id for s in plan.build(r)]


def test_no_cluster_no_split_and_steps_unchanged():
    r = recipe(GCP.replace("cluster: {nodes: 3, master_port: 29777}\n", "")
               .replace("gpuwizard torchrun -- train.py", "python train.py")
               .replace("on: head, ", "").replace("on: workers, ", ""))
    steps = plan.build(r)
    assert split(r, steps, vms("10.0.0.5")) is None
    assert not any(s.gang or s.node_env for s in steps) and "cluster.helper" not in [s.id for s in steps]


def test_plan_command_lists_nodes_and_where_each_step_runs(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(GCP)
    out = subprocess.run([sys.executable, "-m", "gpuwizard.cli", "plan", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "create 3 x g2-standard-24" in text
    assert "## cluster\n   3 nodes, launcher torchrun, rendezvous on node 0 port 29777\n" in text
    assert "   node 0 (head): the VM ddp-RUN-0, created by `gpuwizard run`\n" in text
    assert "   node 2: the VM ddp-RUN-2, created by `gpuwizard run`\n" in text
    assert "GPUWIZARD_GPUS_PER_NODE: 2 (target.gcp.gpu.count)" in text
    sections = text.split("\n## ")
    where = {s.split(":", 1)[0].split(". ", 1)[-1]: s for s in sections if s[:1].isdigit()}
    assert "on: node 0 (head)\n" in where["user.prep"]
    assert "on: nodes 1-2 (workers)\n" in where["user.pull"]
    assert "on: all 3 nodes; all at once: one node failing stops it on every node\n" in where["user.train"]
    assert "on: all 3 nodes\n" in where["user.eval"]


def test_only_a_torchrun_step_brings_the_helper_step():
    r = recipe()
    every = plan.build(r)
    assert [s.id for s in plan.select(every, ["user.train"])] == ["cluster.helper", "user.train"]
    assert [s.id for s in plan.select(every, ["user.eval"])] == ["user.eval"]


def test_a_step_nodes_take_together_is_done_for_all_or_for_none():
    """A replaced node (a new host, nothing done) must not meet nodes that skip the gang step
    as finished: it would wait alone at the rendezvous. Such steps run again on every node,
    with the head step that serves the fan-out; plain steps keep their own records."""
    from gpuwizard.cluster.plan import collective_done
    from gpuwizard.steps import Step

    train = Step(id="user.train", title="t", run="gpuwizard torchrun -- t.py", gang=True)
    close = Step(id="dataset.fanout.close", title="c", run="true", barrier=True)
    prepare = Step(id="dataset.fanout.prepare", title="p", run="true", on="head")
    setup = Step(id="env.venv", title="v", run="true")
    per_host = {"n0": [setup, prepare, close, train], "n1": [setup, close, train], "n2-r1": [setup, close, train]}
    done = {"n0": {"env.venv": "a", "dataset.fanout.prepare": "b", "dataset.fanout.close": "c", "user.train": "d"},
            "n1": {"env.venv": "a", "dataset.fanout.close": "c", "user.train": "d"}}
    got = collective_done(per_host, done)
    assert got == {"n0": {"env.venv": "a"}, "n1": {"env.venv": "a"}}
    # every node finished them: nothing is forgotten
    done["n2-r1"] = {"env.venv": "a", "dataset.fanout.close": "c", "user.train": "d"}
    assert collective_done(per_host, done) == done


def test_the_shipped_cluster_recipe_validates_and_trains_on_both_nodes_at_once():
    """recipes/l4-ddp-cluster.yaml is what `gpuwizard new --from l4-ddp-cluster` starts from:
    it must validate, and its DDP step must be a gang step on both nodes, after the all-reduce."""
    import pathlib

    from gpuwizard.validate import load_checked

    path = pathlib.Path(__file__).resolve().parent.parent / "recipes" / "l4-ddp-cluster.yaml"
    r, problems = load_checked(str(path))
    assert r is not None and not problems, problems
    layout = split(r, plan.build(r), vms("10.0.0.5", "10.0.0.6"))
    assert layout is not None
    for steps in layout.steps.values():
        ids = [s.id for s in steps]
        smoke = steps[ids.index("user.ddp-smoke")]
        assert smoke.gang and "gpuwizard torchrun -- ~/ddp_smoke.py" in smoke.run
        assert ids.index("verify.allreduce") < ids.index("user.ddp-smoke")
