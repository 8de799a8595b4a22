"""The fault harness (issue 13, must show): a recipe under a schedule of faults, audited.

Each case runs the real CLI (``python -m gpuwizard.cli run ... --headless``) against real
OpenSSH sshd hosts (tests/fixtures/sshd.py) and, for the GCP cases, the fake Compute server
through the real google-cloud-compute client; injects its faults; finishes the run (a
``--resume`` where the fault ended it); then audits (tests/builders/harness.py): steps
started/ended per host as the *hosts* saw them, overlapping copies, orphaned remote
process groups, parseable journals, exactly-once completion, and VMs left on the fake
server versus VMs ``gpuwizard status`` and the closing lines report.

Each case asserts its audit. The summary table (case, survived, what was checked) is
printed when the module ends (``pytest tests/test_fault_harness.py -s -p no:xdist`` shows
it whole; under xdist each worker prints its own cases). A full disk is covered by
tests/test_run_faults.py.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Callable, Iterator

import pytest

from tests.builders import harness as H
from tests.builders.gcp import point_fake_at

pytestmark = pytest.mark.timeout(120)

QUICK = "echo ok"
STEPS = ["a", "hold", "c"]


def _steps(hold_body: str = "{hold}") -> list[dict[str, Any]]:
    body = H.hold_first_attempt("{marker}") if hold_body == "{hold}" else hold_body
    return [{"name": "a", "run": QUICK}, {"name": "hold", "run": body}, {"name": "c", "run": QUICK}]


@pytest.fixture(scope="module")
def report() -> Iterator[list[H.Audit]]:
    rows: list[H.Audit] = []
    yield rows
    if rows:
        print("\n\nfault harness summary\n" + H.table(rows))


def _finish(audit: H.Audit, tmp_path, recipe, first: subprocess.CompletedProcess[str] | Any) -> str:
    """Resume when the first run stopped short; the closing output of the final run."""
    out = first.stdout + first.stderr
    audit.notes.append(f"first run rc {first.returncode}")
    if first.returncode != 0:
        if first.returncode > 0:  # (a SIGKILLed gpuwizard cannot say anything)
            audit.need("--resume" in out, "a stopped run says how to resume", out[-300:])
        p = H.cli(tmp_path, "run", str(recipe), "--headless", "--resume")
        audit.need(p.returncode == 0, "the resumed run succeeds", f"rc {p.returncode}: {(p.stdout + p.stderr)[-600:]}")
        audit.need("resuming run" in p.stderr, "the resume continues the same run", p.stderr[-300:])
        return p.stdout + p.stderr
    return out


def _interrupt(sig: int) -> Callable[..., subprocess.CompletedProcess[str]]:
    def fault(tmp_path, recipe, hosts, audit: H.Audit) -> subprocess.CompletedProcess[str]:
        proc = H.start(tmp_path, "run", str(recipe), "--headless")
        H.read_until_all(proc, [f"[{h.host_string}] user.hold | waiting" for h in hosts]
                         if len(hosts) > 1 else ["user.hold | waiting"])
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        want = 130 if sig == signal.SIGINT else -signal.SIGKILL
        audit.need(proc.returncode == want, f"exit {want} on {signal.Signals(sig).name}", f"rc {proc.returncode}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return fault


def _sshd(what: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def fault(tmp_path, recipe, hosts, audit: H.Audit) -> subprocess.CompletedProcess[str]:
        proc = H.start(tmp_path, "run", str(recipe), "--headless")
        H.read_until_all(proc, ["user.hold | waiting"])
        if what == "drop":
            hosts[0].drop_connections()
        else:
            hosts[0].restart(1.0)
        out, err = proc.communicate(timeout=90)
        audit.need("connection lost during user.hold" in out, "the fault hit the step in flight", out[-400:])
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return fault


SSH_CASES: dict[str, tuple[int, Callable[..., subprocess.CompletedProcess[str]], str]] = {
    # case: (hosts, fault, hold body)
    "SIGINT mid-step, resume": (2, _interrupt(signal.SIGINT), "{hold}"),
    "SIGKILL of gpuwizard mid-step, resume": (2, _interrupt(signal.SIGKILL), "{hold}"),
    "sshd drops connections mid-step": (1, _sshd("drop"), "echo waiting; sleep 2"),
    "sshd killed and restarted mid-step": (1, _sshd("restart"), "echo waiting; sleep 2"),
}


@pytest.mark.parametrize("case", list(SSH_CASES))
def test_ssh_fault_schedule(case, sshd_factory, tmp_path, report):
    n, fault, hold = SSH_CASES[case]
    hosts = sshd_factory.start(n)
    recipe = H.ssh_recipe(tmp_path / "r.yaml", hosts, _steps(hold))
    audit = H.Audit(case)
    report.append(audit)
    first = fault(tmp_path, recipe, hosts, audit)
    _finish(audit, tmp_path, recipe, first)
    H.check_hosts(audit, {h.host_string: H.audit_path(tmp_path, h) for h in hosts}, STEPS)
    H.check_journals(audit, tmp_path / "state")
    assert audit.survived, audit.problems


def test_reboot_step(sshd_factory, tmp_path, report):
    (host,) = sshd_factory.start(1)
    host.reboot_delay = 1.0
    steps = [{"name": "a", "run": QUICK, "reboot": True}, {"name": "hold", "run": QUICK}, {"name": "c", "run": QUICK}]
    recipe = H.ssh_recipe(tmp_path / "r.yaml", [host], steps, reboot_command=host.reboot_command)
    audit = H.Audit("reboot step")
    report.append(audit)
    p = H.cli(tmp_path, "run", str(recipe), "--headless")
    audit.need(p.returncode == 0, "the run succeeds across the reboot", (p.stdout + p.stderr)[-600:])
    audit.need(host.reboots == 1, "the host rebooted once", f"{host.reboots} reboots")
    H.check_hosts(audit, {host.host_string: H.audit_path(tmp_path, host)}, STEPS)
    H.check_journals(audit, tmp_path / "state")
    assert audit.survived, audit.problems


def test_two_runs_of_one_recipe_at_once(sshd_factory, tmp_path, report):
    (host,) = sshd_factory.start(1)
    release = tmp_path / "release"
    hold = f"echo waiting; while [ ! -e {release} ]; do sleep 0.05; done"
    recipe = H.ssh_recipe(tmp_path / "r.yaml", [host], _steps(hold))
    audit = H.Audit("two runs of one recipe at once")
    report.append(audit)
    first = H.start(tmp_path, "run", str(recipe), "--headless")
    try:
        H.read_until_all(first, ["user.hold | waiting"])
        second = H.cli(tmp_path, "run", str(recipe), "--headless")
        audit.need(second.returncode == 2 and f"pid {first.pid}" in second.stderr,
                   "the second run is refused naming the first", f"rc {second.returncode}: {second.stderr[-300:]}")
    finally:
        release.touch()
        out, err = first.communicate(timeout=60)
    audit.need(first.returncode == 0, "the first run succeeds", (out + err)[-400:])
    H.check_hosts(audit, {host.host_string: H.audit_path(tmp_path, host)}, STEPS)
    H.check_journals(audit, tmp_path / "state")
    assert audit.survived, audit.problems


def _gcp_500(fake: Any) -> None:
    fake.add_http_fault("inst_get", 500, times=1)


def _gcp_stockout(fake: Any) -> None:
    fake.add_fault("us-central1-a", "stockout")


GCP_CASES: dict[str, tuple[Callable[[Any], None], Callable[[Any], str]]] = {
    "500 on instances.get after insert": (
        _gcp_500, lambda fake: "one insert" if len(fake.inserts()) == 1 else f"inserts {fake.inserts()}"),
    "stockout in the first zone": (
        _gcp_stockout, lambda fake: "one insert per zone, VM in the second"
        if (len(fake.inserts("us-central1-a")), len(fake.inserts("us-central1-b"))) == (1, 1)
        else f"inserts {fake.inserts()}"),
}


@pytest.mark.parametrize("case", list(GCP_CASES))
def test_gcp_fault_schedule(case, fake_compute, sshd_host, tmp_path, report):
    inject, inserts = GCP_CASES[case]
    point_fake_at(fake_compute, sshd_host)
    recipe = H.gcp_recipe(tmp_path / "g.yaml", sshd_host, _steps(QUICK))
    audit = H.Audit(case)
    report.append(audit)
    inject(fake_compute)
    p = H.cli(tmp_path, "run", str(recipe), "--headless")
    audit.need(p.returncode == 0, "the run succeeds", (p.stdout + p.stderr)[-600:])
    verdict = inserts(fake_compute)
    audit.need(verdict.startswith("one insert"), "no second VM (inserts)", verdict)
    H.check_hosts(audit, {"gcp": H.audit_path(tmp_path, sshd_host)}, STEPS)
    H.check_journals(audit, tmp_path / "state")
    H.check_vms(audit, fake_compute, "harness", tmp_path, recipe, p.stdout + p.stderr)
    audit.need(len(audit.vms_left) == 1, "exactly one VM left", str(audit.vms_left))
    assert audit.survived, audit.problems


# ------------------------------------------------------------------ the audit can fail


def test_the_audit_sees_overlaps_orphans_double_runs_and_torn_journals(tmp_path):
    """The checks themselves, on faults made by hand: two copies of a step at once, a step
    still running after "gpuwizard exited", a step never ended, and a torn journal line."""
    audit_file = tmp_path / "audit"
    gate = tmp_path / "gate"
    script = H.audited("hold", f"while [ ! -e {gate} ]; do sleep 0.05; done", audit_file)
    first = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], start_new_session=True)
    assert H.wait_until(lambda: audit_file.exists() and "start hold" in audit_file.read_text(), 20)
    second = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], start_new_session=True)
    assert H.wait_until(lambda: audit_file.read_text().count("start hold") == 2, 20)
    try:
        run = tmp_path / "state" / "gpuwizard" / "runs" / "r1"
        run.mkdir(parents=True)
        (run / "events.jsonl").write_text('{"type": "RunStarted"}\n{"type": "Step')
        audit = H.Audit("self-check")
        H.check_hosts(audit, {"h": audit_file}, ["hold", "never"], orphan_grace=0.2)
        H.check_journals(audit, tmp_path / "state")
    finally:
        gate.touch()
        first.wait(timeout=20)
        second.wait(timeout=20)
    assert not audit.survived
    text = " | ".join(audit.problems)
    assert "no overlapping copies: overlap hold" in text
    assert "no orphaned remote processes" in text and f"pgid {first.pid}" in text and f"pgid {second.pid}" in text
    assert "each step ended exactly once" in text and "'never': 0" in text
    assert "journals parse" in text and "events.jsonl" in text
    after = H.Audit("after")
    H.check_hosts(after, {"h": audit_file}, ["hold"], orphan_grace=5)
    assert "'hold': 2" in " | ".join(after.problems)   # both copies ended: a double run
    assert not after.orphans
