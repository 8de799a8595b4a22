"""The wizard's plain logic (no terminal), import hygiene and first paint."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


from gpuwizard import recipe as rc
from gpuwizard.gcp.errors import console_link
from screens import choices, live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wizard_and_cli_order_the_same_live_zones_the_same_way(fake_compute, capsys) -> None:
    """One ranking: the wizard's zone list (live, from the fake over HTTP) is the order
    `gpuwizard zones` prints and the provisioner tries. The wizard used to rank zones with
    its own rules and put regions first that the CLI put last."""
    from gpuwizard.cli import main

    fake_compute.set_quota("us-central1", "NVIDIA_T4_GPUS", 4, usage=4)   # full
    wizard = [r.zone for r in live.load_zones(fake_compute.project, "nvidia-tesla-t4", 1, False)]
    assert main(["zones", "--gpu", "nvidia-tesla-t4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["ZONE"])
    cli = [line.split()[0] for line in lines[header + 1:]
           if line.strip() and not set(line) <= set("- ") and not line.startswith("$/HOUR:")]
    assert len(wizard) > 3 and wizard == cli
    full = [z for z in wizard if z.startswith("us-central1-")]
    assert full and wizard[-len(full):] == full  # no free quota: tried last
    # Offline the wizard shows `gpuwizard zones --offline`'s list, in its order.
    assert main(["zones", "--gpu", "nvidia-tesla-t4", "--offline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["ZONE"])
    cli = [line.split()[0] for line in lines[header + 1:]
           if line.strip() and not set(line) <= set("- ") and not line.startswith("$/HOUR:")]
    assert [r.zone for r in live.offline_zones("nvidia-tesla-t4", 1, False)] == cli


def test_zero_quota_advice_names_metric_and_console_link() -> None:
    text = live.zero_quota_advice("my-proj", "nvidia-tesla-t4", spot=True, count=2)
    assert "PREEMPTIBLE_NVIDIA_T4_GPUS >= 2" in text and "GPUS_ALL_REGIONS >= 2" in text
    assert text.endswith(console_link("PREEMPTIBLE_NVIDIA_T4_GPUS", None, "my-proj"))


def test_offline_project_without_credentials(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GPUWIZARD_COMPUTE_ENDPOINT", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    from gpuwizard.gcp import client

    client.reset_cache()
    info = live.load_project()
    assert not info.online and "Offline" in info.message


def test_machine_choices_respect_gpu_limits() -> None:
    names = [c.value for c in choices.machine_choices("nvidia-tesla-v100", 1, False)]
    assert "n1-standard-8" in names and "n1-standard-16" not in names  # V100 x1: <= 12 vCPUs
    assert [c.value for c in choices.machine_choices("nvidia-l4", 1, False)][0].startswith("g2-")


def test_cost_text_adds_gpu_to_n1_price() -> None:
    r = rc.Recipe(target=rc.Target(gcp=rc.GcpTarget(machine_type="n1-standard-4", count=2)))
    text = choices.cost_text(r)
    assert "1 x T4" in text and "x 2 VMs" in text and "/month" in text


def test_driver_reason_comes_from_drivers_check() -> None:
    r = rc.Recipe(target=rc.Target(gcp=rc.GcpTarget(gpu=rc.Gpu("nvidia-tesla-p100", 1))))
    drv = rc.Driver(branch="580", cuda="12.8", flavor="proprietary")
    assert "580" in (choices.driver_reason(r, "branch", "595", drv) or "")
    assert choices.driver_reason(r, "branch", "580", drv) is None


def test_drive_links_are_recognised() -> None:
    from screens.dataset import drive_file_id

    assert drive_file_id("https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view?usp=sharing") == "1AbCdEfGhIjKlMnOp"
    assert drive_file_id("gdrive:data.zip") is None


def test_core_and_app_import_do_not_pull_google_cloud_or_asyncssh() -> None:
    code = ("import sys; import screens.app, screens.quota; "
            "bad = [m for m in sys.modules if m.startswith(('google.cloud', 'asyncssh'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_core_never_imports_textual_or_screens() -> None:
    import pathlib
    import re

    for p in pathlib.Path(ROOT, "gpuwizard").rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(textual|screens)\b", text, re.M), p


def test_first_paint_comes_before_google_cloud() -> None:
    """bench/tui.py's measurement on a real pty; how fast is the bench's to report."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import tui

    res = tui.first_paint(runs=1)
    assert res["runs"] == 1 and res["google_cloud_imported_before_paint"] is False


def test_cmd_edit_reports_bad_recipe(tmp_path, capsys) -> None:
    from screens.app import cmd_edit

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: Bad Name\ntarget: {}\n", encoding="utf-8")
    assert cmd_edit(argparse.Namespace(recipe=str(bad), screen=None)) == 2
    assert "bad.yaml:2:" in capsys.readouterr().err
    assert cmd_edit(argparse.Namespace(recipe=str(bad), screen="nope")) == 2


def test_copy_of_a_shipped_recipe_says_where_its_notes_come_from(tmp_path) -> None:
    """`gpuwizard new --from stgcn-t4`: the copy's header says its prose describes the
    template, and the copy still saves and validates."""
    from gpuwizard.shipped import resolve
    from gpuwizard.validate import load_checked
    from screens.app import _mark_as_copy

    path = resolve("stgcn-t4")
    draft = rc.load(path)
    draft.source = _mark_as_copy(draft.source or "", "stgcn-t4.yaml")
    out = tmp_path / "mine.yaml"
    rc.save(draft, str(out))
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# yaml-language-server: $schema=")
    assert lines[1].startswith("# Started from gpuwizard's recipe stgcn-t4.yaml")
    draft.target.gcp.spot = True  # a changed copy keeps the note in its header
    rc.save(draft, str(out))
    assert "# Started from gpuwizard's recipe stgcn-t4.yaml" in out.read_text()
    load_checked(str(out))


def test_review_cost_counts_a_clusters_nodes() -> None:
    """The Review screen priced one VM for a 3-node cluster (it read target.gcp.count, which a
    cluster leaves at 1); it now says what `plan` and `run` say: the nodes, all of them."""
    r = rc.Recipe(target=rc.Target(gcp=rc.GcpTarget(machine_type="n1-standard-4", count=1)),
                  cluster=rc.Cluster(nodes=3))
    text = choices.cost_text(r)
    from gpuwizard.plan import describe_provision

    s = describe_provision(r)
    assert s is not None and s.vms == 3 and "x 3 nodes" in text
    assert f"-> ${s.hourly * 3:.2f}/h" in text
