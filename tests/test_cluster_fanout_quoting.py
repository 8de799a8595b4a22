"""The fan-out's scripts quote every recipe value and pass shellcheck.

Hostile payloads in the datasets' sources and destinations; every fan-out script (run and
check, on the head's branch and a worker's) is run by bash with no programs on PATH, as
tests/test_plan_quoting.py does for the single-host plan: if a value were ever expanded as
code, its redirection would create the marker file.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from gpuwizard import datasets_fanout as fanout
from gpuwizard import recipe as RR

MARKER = f"/tmp/gpuwizard-fanout-pwned-{os.getpid()}"
PAYLOADS = [f"$(echo x >> {MARKER})", f"`echo x >> {MARKER}`", f"; echo x >> {MARKER};",
            f"' ; echo x >> {MARKER} ; '", f'" ; echo x >> {MARKER} ; "', f"~/$(echo x >> {MARKER})",
            f"a\n echo x >> {MARKER}\n", f"${{IFS}}>{MARKER}"]


def hostile(p: str) -> RR.Recipe:
    return RR.Recipe(name="q", target=RR.Target(ssh=RR.SshTarget(hosts=["u@10.0.0.1:2222", "u@10.0.0.2:2222"])),
                     rclone=RR.Rclone(remotes={"m": RR.Remote(type="http", options={"url": "http://x/"})}),
                     datasets=[RR.Dataset(from_=f"m:{p}", to=p), RR.Dataset(from_="m:plain", to=f"~/{p}/x")],
                     cluster=RR.Cluster(nodes=2))


def run_script(script: str, home: str, rank: str) -> None:
    env = {"PATH": "/nonexistent", "HOME": home, "USER": "nobody", "LANG": "C.UTF-8",
           "GPUWIZARD_NODE_RANK": rank, "GPUWIZARD_NODE_IPS": "10.0.0.1,10.0.0.2",
           "GPUWIZARD_MASTER_ADDR": "10.0.0.1"}
    prelude = "command_not_found_handle() { return 0; }\nsudo() { \"$@\"; }\n"
    subprocess.run(["/bin/bash", "-c", prelude + script], env=env, cwd=home, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)


@pytest.mark.parametrize("n", range(len(PAYLOADS)))
def test_no_dataset_value_is_ever_executed(n: int) -> None:
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    steps = [s for s in fanout.steps(hostile(PAYLOADS[n])) if s.id.startswith("dataset.fanout")]
    assert len(steps) >= 6
    with tempfile.TemporaryDirectory() as home:
        for s in steps:
            for script in filter(None, (s.check, s.run)):
                for rank in ("0", "1"):
                    run_script(script, home, rank)
                    assert not os.path.exists(MARKER), f"step {s.id} executed a recipe value:\n{script}"


def test_every_fanout_script_passes_bash_n_and_shellcheck(tmp_path: pathlib.Path) -> None:
    steps = [s for s in fanout.steps(hostile("data dir/it's")) if s.id.startswith("dataset.fanout")]
    paths = []
    for s in steps:
        for kind, script in (("run", s.run), ("check", s.check)):
            if script:
                p = tmp_path / f"{s.id}.{kind}.sh"
                p.write_text("#!/bin/bash\nset -euo pipefail\n" + script)
                subprocess.run(["bash", "-n", str(p)], check=True)
                paths.append(str(p))
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", "-s", "bash", "-S", "info", *paths], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_an_ipv6_head_is_logged_in_to_by_its_bare_address(tmp_path: pathlib.Path) -> None:
    # rsync takes ``user@[::1]:path``, but ssh takes the brackets as part of the name
    # ("Could not resolve hostname [::1]"): the worker's login check must pass the bare
    # address. The real ssh client parses the line (-G: print what it would connect to).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -G "$@" > "$HOME/ssh-G.out"\n')
    (bindir / "ssh").chmod(0o755)
    step = fanout.barrier_step(fanout.HeadLogin("u", 2222))
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "GPUWIZARD_NODE_RANK": "1", "GPUWIZARD_MASTER_ADDR": "fd00::1"}
    r = subprocess.run(["/bin/bash", "-c", step.run], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    parsed = dict(line.split(" ", 1) for line in (tmp_path / "ssh-G.out").read_text().splitlines() if " " in line)
    assert (parsed["hostname"], parsed["user"], parsed["port"]) == ("fd00::1", "u", "2222")
