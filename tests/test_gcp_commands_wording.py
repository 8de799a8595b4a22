"""`status`, `down` and `quota` where there is nothing to ask Google (issue 11, wording):
an SSH recipe has no VMs to list or delete (exit 0, no credentials asked); missing
credentials are a set-up problem (exit 2), said once. The real CLI in a subprocess, with
credential look-up made hermetic (no ADC, no gcloud config, no metadata server)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from tests.builders.gcp import ROOT

SSH_RECIPE = """version: 1
name: on-hosts
target:
  ssh: {hosts: ["gw@127.0.0.1:2301"]}
steps:
  - {name: hello, run: "echo hi"}
"""


def _gw(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GPUWIZARD_", "GCE_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
               PYTHONPATH=str(ROOT), CI="1")
    return subprocess.run([sys.executable, "-m", "gpuwizard.cli", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)


def test_status_and_down_of_an_ssh_recipe_have_nothing_to_do(tmp_path):
    r = tmp_path / "hosts.yaml"
    r.write_text(SSH_RECIPE)
    for cmd, verb in (("status", "list"), ("down", "delete")):
        p = _gw(tmp_path, cmd, str(r))
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
        assert f"nothing to {verb}" in p.stdout and "SSH hosts" in p.stdout
        assert "credentials" not in p.stdout + p.stderr


def test_quota_without_credentials_is_a_usage_error_said_once(tmp_path):
    p = _gw(tmp_path, "quota")
    assert p.returncode == 2, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert out.count("No Google Cloud credentials found") == 1, out
    assert "gcloud auth application-default login" in out
