"""Helpers shared by the GCP test modules: recipes, a provisioning run, the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

from gpuwizard import recipe as R
from gpuwizard.events import Output
from gpuwizard.gcp.provision import ProvisionedHost, provision

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def make_recipe(zones: list[str], *, name: str = "exp", count: int = 1, gpus: int = 1, spot: bool = False,
                extra: str = "") -> R.Recipe:
    return R.loads(f"""
version: 1
name: {name}
target:
  gcp:
    zones: [{", ".join(zones)}]
    machine_type: n1-standard-4
    gpu: {{type: nvidia-tesla-t4, count: {gpus}}}
    spot: {str(spot).lower()}
    count: {count}
{extra}
""")


def run(recipe: R.Recipe, tmp_path: pathlib.Path, **kw: Any) -> tuple[list[ProvisionedHost], list[str]]:
    """Provision ``recipe`` as run ``run-1``; (hosts, progress lines)."""
    lines: list[str] = []

    def sink(ev: Output) -> None:
        assert isinstance(ev, Output) and ev.host == "gcp" and ev.step == "provision"
        lines.append(ev.data.rstrip("\n"))

    kw.setdefault("known_hosts_path", str(tmp_path / "known_hosts"))
    hosts = asyncio.run(provision(recipe, "run-1", sink=sink, **kw))
    return hosts, lines


def write_recipe(path: pathlib.Path, host: Any, run: str) -> None:
    """A target.gcp recipe whose VM is the test sshd ``host`` (see :func:`point_fake_at`)."""
    path.write_text(f"""version: 1
name: e2e
target:
  gcp:
    zones: [us-central1-a, us-central1-b]
    machine_type: n1-standard-4
    gpu: {{type: nvidia-tesla-t4, count: 1}}
ssh:
  user: {host.user}
  port: {host.port}
  identity: {host.client_key}
steps:
  - name: hello
    run: {json.dumps(run)}
""")


def gw(*args: str, state: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, with its own state directory."""
    full = dict(os.environ, XDG_STATE_HOME=str(state), CI="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "gpuwizard.cli", *args], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)


def point_fake_at(fake: Any, host: Any) -> None:
    """Make the fake's VMs be the test sshd: its address, and its host key published."""
    _, ktype, key = host.host_key_line.split()[:3]
    fake.host_keys = {ktype: key}
    fake.nat_ip = host.address


def e2e_vms(fake: Any) -> list[dict[str, Any]]:
    return [i for i in fake.state()["instances"] if i["labels"].get("gpuwizard-recipe") == "e2e"]
