"""The fan-out's key on nodes listed by host name, on real sshd hosts.

sshd matches an ``authorized_keys`` ``from=`` list against the client's *address* unless
``UseDNS yes`` (off by default: sshd_config(5), "UseDNS ... If this option is set to no (the
default) then only addresses and not host names may be used in ~/.ssh/authorized_keys
from"). Nodes of an SSH target are often listed by name, so the head authorizes the key from
the names' addresses too, or every worker is refused.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from gpuwizard import datasets_fanout as fanout
from gpuwizard import recipe as RR
from gpuwizard.cluster import plan as cluster_plan
from gpuwizard.cluster.nodes import from_hosts
from gpuwizard.steps import Step
from tests.builders.cluster import finished, node_specs, output, run_nodes

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("getent") is None, reason="getent not installed")]

STEPS = ("dataset.fanout.key", "dataset.fanout.prepare", fanout.BARRIER, fanout.CLOSE)


def test_workers_log_in_to_a_head_listed_by_name(cluster_nodes, tmp_path):
    nodes = cluster_nodes(2)
    # gpuwizard reaches them at 127.0.0.1; the nodes know each other as "localhost"
    specs = [dataclasses.replace(s, private_address="localhost") for s in node_specs(nodes)]
    r = RR.Recipe(name="names", target=RR.Target(ssh=RR.SshTarget(hosts=[n.host_string for n in nodes])),
                  rclone=RR.Rclone(remotes={"m": RR.Remote(type="http", options={"url": "http://x/"})}),
                  datasets=[RR.Dataset(from_="m:set", to="~/data")], cluster=RR.Cluster(nodes=2))
    mine = [s for s in fanout.steps(r) if s.id in STEPS]
    assert [s.id for s in mine] == list(STEPS)
    folder = Step("mk", "the head's dataset folder (the download's place)", "mkdir -p ~/data/.gpuwizard")
    per_node = cluster_plan.per_node([folder, *mine], from_hosts(specs), 29500, 0)
    ok, events, _ = run_nodes(nodes, fanout.bind(per_node, str(tmp_path / "run"), "run-1", specs))
    assert ok, output(events, "n1", fanout.BARRIER, stream="stderr")
    assert finished(events, "n1")[-2:] == [(fanout.BARRIER, "ok"), (fanout.CLOSE, "ok")]
