"""Dataset fan-out on a 3-node cluster of real sshd hosts, each node its own user and home.

The head downloads from a local ``rclone serve`` (the stand-in for Google Drive); the
workers copy from the head with rsync over SSH using the run's own key, verified against the
head's host key as gpuwizard pinned it. What must hold: each file is downloaded once (the
server's log counts the opens), every node ends with the same sha256 for every file, the
key is withdrawn at the end, a worker refuses a head whose host key is not the pinned one,
and a copy that differs from the head's files fails the step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from gpuwizard import events as ev
from gpuwizard import recipe as RR
from gpuwizard import datasets_fanout as fanout
from gpuwizard.cluster import plan as cluster_plan
from gpuwizard.executor import ExecOptions, Executor
from gpuwizard.plan import build
from gpuwizard.rclone import dataset_ids
from gpuwizard.ssh import HostSpec
from tests.fixtures.cluster_nodes import home
from tests.fixtures.rclone_servers import RCLONE

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not os.path.exists(RCLONE), reason="rclone binary not installed"),
              pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed (scripts/test installs it)")]


def specs_for(nodes) -> list[HostSpec]:
    return [HostSpec(name=f"node{i}", address=n.address, port=n.port, user=n.user, identity=n.client_key,
                     known_hosts=n.known_hosts) for i, n in enumerate(nodes)]


def recipe_for(served, nodes, datasets: list[RR.Dataset]) -> RR.Recipe:
    return RR.Recipe(name="fanout-e2e", target=RR.Target(ssh=RR.SshTarget(hosts=[n.host_string for n in nodes])),
                     rclone=RR.Rclone(remotes={"srv": RR.Remote(type="http", options=served.remote_options)}),
                     datasets=datasets, cluster=RR.Cluster(nodes=len(nodes)))


def layout(r: RR.Recipe, specs: list[HostSpec], run_dir: pathlib.Path) -> tuple[dict, dict]:
    """What the runner does once it has the hosts: the plan split per node, the fan-out's
    key files made in the run directory."""
    lay = cluster_plan.split(r, fanout.steps(r), specs)
    assert lay is not None
    return fanout.bind(lay.steps, str(run_dir), "run-1", specs), lay.ranks


def run_cluster(specs: list[HostSpec], per_host: dict, ranks: dict, watch=None) -> tuple[bool, list[ev.Event]]:
    """The nodes' lists through the real executor (barriers and all)."""
    events: list[ev.Event] = []

    def sink(e: ev.Event) -> None:
        events.append(e)
        if watch is not None:
            watch(e)

    ex = Executor(specs, per_host, sink, ExecOptions(connect_timeout=15, ranks=ranks))
    return asyncio.run(ex.run()), events


def statuses(events, host: str) -> dict[str, str]:
    return {e.step: e.status for e in events if isinstance(e, ev.StepFinished) and e.host == host}


def out_text(events, host: str, step: str) -> str:
    return "".join(e.data for e in events if isinstance(e, ev.Output) and e.host == host and e.step == step)


def tree_hashes(root: pathlib.Path) -> dict[str, str]:
    """Every file under ``root`` (gpuwizard's own .gpuwizard folder aside) -> sha256."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] != ".gpuwizard":
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_source(root: pathlib.Path) -> dict[str, bytes]:
    files = {"set/a.bin": os.urandom(3 << 20), "set/sub/b.txt": b"labels\n" * 1000,
             "set/odd name 'q'.txt": b"a hostile name travels too\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("unzipped/x.txt", "from the zip\n" * 100)
    (root / "arch.zip").write_bytes(buf.getvalue())
    return files


@pytest.fixture
def three(cluster_nodes, rclone_serve, tmp_path):
    src = tmp_path / "src"
    files = make_source(src)
    served = rclone_serve("http", src, debug=True)
    nodes = cluster_nodes(3)
    specs = specs_for(nodes)
    r = recipe_for(served, nodes, [RR.Dataset(from_="srv:set", to="~/data/"),
                                   RR.Dataset(from_="srv:arch.zip", to="~/data", unzip=True),
                                   RR.Dataset(from_="srv:set/sub", to="~/labels")])
    return src, files, served, nodes, specs, r, tmp_path / "run"


def test_three_nodes_download_once_and_end_identical(three) -> None:
    src, files, served, nodes, specs, r, run_dir = three
    per_host, ranks = layout(r, specs, run_dir)
    kf = fanout.FanoutFiles.under(str(run_dir / "cluster"))
    ok, events = run_cluster(specs, per_host, ranks)
    assert ok, {s.name: statuses(events, s.name) for s in specs}

    # one download of each file, by the head alone (the workers have no rclone step at all)
    downloads = dataset_ids(r)
    assert served.opens("set/a.bin") == 1 and served.opens("arch.zip") == 1
    assert served.opens("set/sub/b.txt") == 2  # two datasets name it (set, and set/sub): once each
    head = statuses(events, "node0")
    assert all(head[d] == "ok" for d in downloads)
    for w in ("node1", "node2"):
        st = statuses(events, w)
        assert not any(k.startswith("rclone.") or k in downloads for k in st), st
        assert st["dataset.fanout.pull"] == "ok" and st["dataset.fanout.pull-2"] == "ok"

    # every node: the same sha256 for every file, equal to the source's
    want = {f"sub/b.txt": hashlib.sha256(files["set/sub/b.txt"]).hexdigest(),
            "a.bin": hashlib.sha256(files["set/a.bin"]).hexdigest(),
            "odd name 'q'.txt": hashlib.sha256(files["set/odd name 'q'.txt"]).hexdigest(),
            "unzipped/x.txt": hashlib.sha256(b"from the zip\n" * 100).hexdigest()}
    homes = [home(n) for n in nodes]
    assert len(set(homes)) == 3
    for h in homes:
        assert tree_hashes(h / "data") == want, h
        assert tree_hashes(h / "labels") == {"b.txt": want["sub/b.txt"]}
    assert "checking the sha256 of every file" in out_text(events, "node1", "dataset.fanout.pull")

    # the key is withdrawn: gone from the head's authorized_keys, deleted on the workers
    body = pathlib.Path(kf.public).read_text().split()[1]
    assert body not in (homes[0] / ".ssh/authorized_keys").read_text()
    for h in homes[1:]:
        assert not (h / ".gpuwizard/cluster/fanout_ed25519").exists()
    assert "from 127.0.0.1 only" in out_text(events, "node0", "dataset.fanout.prepare")

    # a second run downloads nothing and copies nothing: the checks say done
    ok, events = run_cluster(specs, per_host, ranks)
    assert ok
    assert served.opens("set/a.bin") == 1
    for w in ("node1", "node2"):
        assert statuses(events, w)["dataset.fanout.pull"] == "skipped"


def test_worker_refuses_a_head_whose_host_key_is_not_the_pinned_one(three, tmp_path) -> None:
    src, files, served, nodes, specs, r, run_dir = three
    per_host, ranks = layout(r, specs, run_dir)
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    name = fanout.pin_host("127.0.0.1", specs[0].port)
    pin = run_dir / "cluster" / "head_known_hosts"
    assert pin.read_text().startswith(f"{name} ssh-ed25519 ")  # what gpuwizard verified, for the head
    pin.write_text(f"{name} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    ok, events = run_cluster(specs, per_host, ranks)
    assert not ok
    text = out_text(events, "node1", fanout.BARRIER)
    assert "cannot log in to the head" in text and "Host key verification failed" in text
    assert statuses(events, "node1")[fanout.BARRIER] == "failed"
    assert not (home(nodes[1]) / "data" / "a.bin").exists()


def test_a_head_whose_host_key_was_not_known_is_said_plainly(three) -> None:
    """An empty pin (first contact with --accept-new-host-key): the workers stop before any
    login, saying what to do, instead of trusting whatever answers."""
    src, files, served, nodes, specs, r, run_dir = three
    per_host, ranks = layout(r, specs, run_dir)
    (run_dir / "cluster" / "head_known_hosts").write_text("")
    ok, events = run_cluster(specs, per_host, ranks)
    assert not ok
    assert statuses(events, "node1")["dataset.fanout.key"] == "failed"
    assert "no host key of the head was known" in out_text(events, "node1", "dataset.fanout.key")


def test_a_copy_that_differs_from_the_heads_files_fails(three) -> None:
    src, files, served, nodes, specs, r, run_dir = three
    per_host, ranks = layout(r, specs, run_dir)

    def tamper(e: ev.Event) -> None:
        if isinstance(e, ev.StepFinished) and e.host == "node0" and e.step == "dataset.fanout.prepare":
            # the head has listed its files; one changes before the workers copy
            (home(nodes[0]) / "data" / "a.bin").write_bytes(b"changed after the list was made")

    ok, events = run_cluster(specs, per_host, ranks, watch=tamper)
    assert not ok
    text = out_text(events, "node1", "dataset.fanout.pull")
    assert "a.bin: FAILED" in text and "differs from the head's files" in text
    assert not list((home(nodes[1]) / "data" / ".gpuwizard").glob("*.done"))
    # run again: the head lists its files again (one changed since), the workers copy it
    ok, events = run_cluster(specs, per_host, ranks)
    assert ok, {s.name: statuses(events, s.name) for s in specs}
    assert statuses(events, "node0")["dataset.fanout.prepare"] == "ok"
    assert len({json.dumps(tree_hashes(home(n) / "data")) for n in nodes}) == 1
    assert (home(nodes[2]) / "data" / "a.bin").read_bytes() == b"changed after the list was made"


def test_plan_shape_and_secrets(three) -> None:
    src, files, served, nodes, specs, r, run_dir = three
    assert [(s.id, s.on) for s in build(r) if s.phase == "data"] == [
        ("dataset.fanout.rsync", "all"), ("rclone.install", "head"), ("rclone.remote.srv", "head"),
        *((d, "head") for d in dataset_ids(r)), ("dataset.fanout.key", "workers"),
        ("dataset.fanout.prepare", "head"), ("dataset.fanout", "all"), ("dataset.fanout.pull", "workers"),
        ("dataset.fanout.pull-2", "workers"), ("dataset.fanout.close", "all")]
    per_host, ranks = layout(r, specs, run_dir)
    ids = {h: [s.id for s in steps] for h, steps in per_host.items()}
    assert ids["node0"] == ["dataset.fanout.rsync", "rclone.install", "rclone.remote.srv", *dataset_ids(r),
                            "dataset.fanout.prepare", "dataset.fanout", "dataset.fanout.close"]
    assert ids["node1"] == ids["node2"] == ["dataset.fanout.rsync", "dataset.fanout.key", "dataset.fanout",
                                            "dataset.fanout.pull", "dataset.fanout.pull-2", "dataset.fanout.close"]
    for steps in per_host.values():
        assert [s.id for s in steps if s.barrier] == ["dataset.fanout", "dataset.fanout.close"]
    key = run_dir / "cluster" / "fanout_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    secret = key.read_text()
    ups = [u for h in ("node1", "node2") for s in per_host[h] for u in s.uploads if u.local == str(key)]
    assert ups and all(u.secret and u.mode == 0o600 for u in ups)
    assert not any(u.local == str(key) for s in per_host["node0"] for u in s.uploads)  # the head never gets it
    assert not any(secret in s.run or "BEGIN OPENSSH" in s.run for steps in per_host.values() for s in steps)
    assert not any("StrictHostKeyChecking=no" in s.run for steps in per_host.values() for s in steps)
    # the same run directory keeps its key (a resumed run re-uses it)
    again, _ = layout(r, specs, run_dir)
    assert key.read_text() == secret
    # not a cluster: the plain rclone steps, nothing fanned out
    plain = dataclasses.replace(r, cluster=None)
    assert [s.id for s in fanout.steps(plain)] == ["rclone.install", "rclone.remote.srv", *dataset_ids(r)]


def test_gpuwizard_run_fans_out_through_the_runner(cluster_nodes, rclone_serve, tmp_path) -> None:
    """`gpuwizard run` on a 3-node recipe: the runner splits the plan per node and makes the
    fan-out's key in the run directory; one download, the same files everywhere."""
    src = tmp_path / "src"
    files = make_source(src)
    served = rclone_serve("http", src, debug=True)
    nodes = cluster_nodes(3)
    recipe = tmp_path / "cluster.yaml"
    hosts = ", ".join(n.host_string for n in nodes)
    recipe.write_text(f"""version: 1
name: fanout-run
target:
  ssh: {{hosts: [{hosts}]}}
ssh: {{identity: {nodes[0].client_key}, known_hosts: {nodes[0].known_hosts}}}
rclone:
  remotes:
    srv: {{type: http, url: "{served.url}"}}
datasets:
  - {{from: "srv:set", to: "~/data/"}}
cluster: {{}}
""")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-m", "gpuwizard", "run", str(recipe), "--headless"], env=env,
                         capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-2000:])
    assert served.opens("set/a.bin") == 1
    want = {k[len("set/"):]: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    for n in nodes:
        assert tree_hashes(home(n) / "data") == want
    keys = list((tmp_path / "state").rglob("cluster/fanout_ed25519"))
    assert len(keys) == 1 and keys[0].stat().st_mode & 0o777 == 0o600
    for i, n in enumerate(nodes[1:], 1):  # the workers copied; the headless lines name nodes by rank
        assert f"[node {i} {n.host_string}] dataset.fanout.pull: ok" in res.stdout
    assert f"[node 0 (head) {nodes[0].host_string}] dataset.set: ok" in res.stdout
