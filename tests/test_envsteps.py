"""Environment steps: generated commands, their "already done" checks, and a real run
(twice) against an sshd test host as the unprivileged ``gwtest`` user.

The live run uses the system python3.11 venv, ``six`` from the machine's local PyPI
mirror and a local bare git repository standing in for GitHub. PyTorch is too big to
install here: its step is checked as text, and its check runs against a fake
``torch-X+cuYYY.dist-info`` in a real venv.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from gpuwizard import envsteps, events as ev, recipe
from tests.builders.drivers import make_recipe


def ssh_recipe(env: str) -> recipe.Recipe:
    return recipe.loads(f"version: 1\nname: envtest\ntarget: {{ssh: {{hosts: ['gwtest@127.0.0.1']}}}}\nenv: {env}\n")


def by_id(r: recipe.Recipe) -> dict:
    return {s.id: s for s in envsteps.steps(r)}


def test_step_order_and_privileges() -> None:
    r = make_recipe("nvidia-tesla-t4", env="{torch: '2.9.1', packages: [six, 'torchvision'], "
                    "repo: {url: 'https://github.com/open-mmlab/mmskeleton.git', setup: [make, 'make test']}}")
    steps = envsteps.steps(r)
    assert [s.id for s in steps] == ["env.system", "env.create", "env.torch", "env.packages", "env.repo",
                                     "env.setup.1", "env.setup.2"]
    assert not any(s.sudo for s in steps)
    assert all(s.check for s in steps)


def test_torch_command_uses_the_cuda_index_and_companions() -> None:
    # torch 2.11's cu128 wheels dropped Volta (sm_70): a V100 gets cu126; in 2.9 cu128 still had it
    r = make_recipe("nvidia-tesla-v100", driver="{}", env="{torch: '2.11.0', packages: [six, torchvision]}")
    s = by_id(r)
    assert ("-m pip install --index-url https://download.pytorch.org/whl/cu126 torch==2.11.0 torchvision"
            in s["env.torch"].run)
    r29 = make_recipe("nvidia-tesla-v100", driver="{}", env="{torch: '2.9.1'}")
    assert "whl/cu128 " in by_id(r29)["env.torch"].run
    assert "torchvision" not in s["env.packages"].run
    assert "PIP_CONSTRAINT" in s["env.packages"].run
    r2 = make_recipe("nvidia-l4", env="{torch: '2.14', torch_index: cu130}")
    assert "torch==2.14.*" in by_id(r2)["env.torch"].run and "whl/cu130" in by_id(r2)["env.torch"].run


def test_recipe_strings_are_quoted() -> None:
    # A valid requirement full of shell syntax (the loader refuses invalid ones).
    r = ssh_recipe("{path: '~/my envs/x', packages: ['six>=1; python_version>\"3$(echo pwned)\"'], "
                   "repo: {url: 'https://x/y z.git', ref: v1, dir: '~/a b'}}")
    s = by_id(r)
    assert "'six>=1; python_version>\"3$(echo pwned)\"'" in s["env.packages"].run
    assert "\"$HOME\"/'my envs/x'/bin/python" in s["env.create"].run
    assert "url='https://x/y z.git'" in s["env.repo"].run and "dir=\"$HOME\"/'a b'" in s["env.repo"].run


def test_conda_manager() -> None:
    s = by_id(ssh_recipe("{manager: conda, python: '3.12'}"))
    assert list(s) == ["env.system", "env.conda", "env.create"]
    assert "conda\" create -y -q -p" in s["env.create"].run and "python=3.12" in s["env.create"].run


def _bash(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c", script],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_torch_check_logic_against_a_fake_install(tmp_path: pathlib.Path) -> None:
    """The torch step's check accepts exactly the wanted version from the wanted index."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    r = ssh_recipe(f"{{path: '{venv}', torch: '2.9', torch_index: cu126, packages: [torchvision]}}")
    check = by_id(r)["env.torch"].check

    def fake(dist: str, version: str) -> None:
        d = site / f"{dist}-{version}.dist-info"
        d.mkdir()
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")

    assert _bash(check).returncode != 0                      # nothing installed
    fake("torch", "2.9.1+cu126")
    fake("torchvision", "0.24.1+cu126")
    (venv / envsteps.CONSTRAINTS).write_text("torch==2.9.1+cu126\n")
    assert _bash(check).returncode == 0, _bash(check).stderr
    shutil.rmtree(site / "torch-2.9.1+cu126.dist-info")
    fake("torch", "2.9.1")                                   # a PyPI wheel slipped in
    res = _bash(check)
    assert res.returncode != 0 and "not the cu126 build" in res.stderr


def test_packages_check_logic(tmp_path: pathlib.Path) -> None:
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    r = ssh_recipe(f"{{path: '{venv}', packages: ['pip>=1', 'six>=1.0']}}")
    check = by_id(r)["env.packages"].check
    res = _bash(check)
    assert res.returncode != 0 and "six is not installed" in res.stderr
    r2 = ssh_recipe(f"{{path: '{venv}', packages: ['pip>=1', 'pip<1', './local']}}")
    assert _bash(by_id(r2)["env.packages"].check).returncode != 0
    r3 = ssh_recipe(f"{{path: '{venv}', packages: ['pip>=1', 'nothere; python_version < \"3\"']}}")
    assert _bash(by_id(r3)["env.packages"].check).returncode == 0


# ---------------------------------------------------------------------------- live run


def _bare_repo(owner: str) -> tuple[str, str]:
    """A bare repo with a tag v1 and one commit after it; returns (path, v1 sha)."""
    base = tempfile.mkdtemp(prefix="gw-envrepo-")
    os.chmod(base, 0o755)
    work, bare = os.path.join(base, "work"), os.path.join(base, "demo.git")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", work], check=True)
    pathlib.Path(work, "setup.txt").write_text("v1\n")
    subprocess.run([*git, "-C", work, "add", "."], check=True)
    subprocess.run([*git, "-C", work, "commit", "-qm", "one"], check=True)
    subprocess.run([*git, "-C", work, "tag", "v1"], check=True)
    sha = subprocess.run(["git", "-C", work, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    pathlib.Path(work, "setup.txt").write_text("v2\n")
    subprocess.run([*git, "-C", work, "commit", "-qam", "two"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", work, bare], check=True)
    subprocess.run(["chown", "-R", owner, base], check=True)
    return bare, sha


@pytest.mark.timeout(120)
def test_env_steps_run_twice_for_real_as_unprivileged_user(sshd_user_host) -> None:
    from gpuwizard.executor import ExecOptions, Executor
    from gpuwizard.ssh import HostSpec

    h = sshd_user_host
    bare, v1 = _bare_repo(h.user)
    tag = uuid.uuid4().hex[:8]
    root = f"~/gw-envtest-{tag}"
    r = ssh_recipe(f"{{python: '3.11', path: '{root}/venv', packages: ['six>=1.10'], "
                   f"repo: {{url: '{bare}', ref: v1, dir: '{root}/demo', "
                   "setup: ['python -c \"import six\" && cp setup.txt built.txt', 'echo second >>built.txt']}}")
    steps = envsteps.steps(r)
    spec = HostSpec(name="u", address=h.address, port=h.port, user=h.user, identity=h.client_key,
                    known_hosts=h.known_hosts)

    def run() -> list[tuple[str, str, str]]:
        events: list[ev.Event] = []
        ex = Executor([spec], steps, events.append, ExecOptions(connect_timeout=15))
        assert asyncio.run(ex.run()), [(e.step, e.message) for e in events if isinstance(e, ev.StepFinished)]
        return [(e.step, e.status, e.message) for e in events if isinstance(e, ev.StepFinished)]

    home = os.path.expanduser(f"~{h.user}")
    try:
        first = run()
        assert [(s, st) for s, st, _ in first] == [
            ("env.system", "skipped"),      # python3.11 -m venv and git work: no sudo needed
            ("env.create", "ok"), ("env.packages", "ok"), ("env.repo", "ok"),
            ("env.setup.1", "ok"), ("env.setup.2", "ok")]
        demo = pathlib.Path(home, f"gw-envtest-{tag}", "demo")
        assert (demo / "built.txt").read_text() == "v1\nsecond\n"
        head = subprocess.run(["git", "-c", f"safe.directory={demo}", "-C", str(demo), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert head == v1
        assert list(pathlib.Path(home, f"gw-envtest-{tag}", "venv", "lib").glob("python3.11/site-packages/six.py"))
        second = run()
        assert [st for _, st, _ in second] == ["skipped"] * len(steps), second
        assert (demo / "built.txt").read_text() == "v1\nsecond\n"
    finally:
        shutil.rmtree(os.path.join(home, f"gw-envtest-{tag}"), ignore_errors=True)
        shutil.rmtree(os.path.dirname(bare), ignore_errors=True)


# ---------------------------------------------------------------- interrupted env.create


def _home_bash(script: str, home: pathlib.Path) -> subprocess.CompletedProcess:
    """Run a step script the way the executor does, with HOME at a scratch directory and
    this interpreter's python3.11 first on PATH (pyenv shims need the real HOME)."""
    bindir = os.path.dirname(os.path.realpath(sys.executable))
    return _bash(script, HOME=str(home), PATH=f"{bindir}:{os.environ['PATH']}")


@pytest.mark.timeout(120)
def test_half_built_venv_fails_the_check_and_the_run_repairs_it(tmp_path: pathlib.Path) -> None:
    """Ctrl-C during `python -m venv` leaves bin/python but no pip (ensurepip runs last):
    the check must not call that done, and the run (a resume, or a --fresh run) must
    finish it rather than refuse it as "not a Python 3.11 environment"."""
    home = tmp_path / "home"
    home.mkdir()
    venv = home / "venvs" / "half"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert (venv / "pyvenv.cfg").exists() and (venv / "bin" / "python").exists()
    step = by_id(ssh_recipe("{python: '3.11', path: '~/venvs/half', packages: [six]}"))["env.create"]
    assert _home_bash(step.check, home).returncode != 0, "a venv without pip passed the check"
    res = _home_bash(step.run, home)
    assert res.returncode == 0, res.stderr
    assert _home_bash(step.check, home).returncode == 0, _home_bash(step.check, home).stderr
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"],
                          capture_output=True).returncode == 0
    # A path that is not a venv at all is still refused, untouched.
    other = home / "venvs" / "notavenv"
    other.mkdir()
    (other / "keep.txt").write_text("mine\n")
    step2 = by_id(ssh_recipe("{python: '3.11', path: '~/venvs/notavenv'}"))["env.create"]
    res = _home_bash(step2.run, home)
    assert res.returncode != 0 and "is not a Python 3.11 environment" in res.stderr
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_half_built_venv_makes_the_system_step_probe_venv_support(tmp_path: pathlib.Path) -> None:
    """A venv left without pip because ensurepip is missing (Debian without python3.X-venv)
    must not let env.system skip: the repair needs ensurepip."""
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "v")], check=True)
    check = by_id(ssh_recipe("{python: '3.11', path: '~/v'}"))["env.system"].check
    # python3.99 does not exist: a check that still probes fails, one that skips passes
    check = check.replace("python3.11", "python3.99")
    assert _home_bash(check, home).returncode != 0


def test_half_built_conda_env_is_completed(tmp_path: pathlib.Path) -> None:
    """conda's analogue: a prefix with conda-meta/ whose pip never got linked is completed
    with `conda install`, not refused. conda itself is a stand-in script here."""
    home = tmp_path / "home"
    fake_conda = home / "miniforge3" / "bin" / "conda"
    fake_conda.parent.mkdir(parents=True)
    log = tmp_path / "conda.log"
    fake_conda.write_text(f"""#!/bin/bash
echo "$@" >>{log}
[ "$1" = install ] || exit 9
while [ $# -gt 0 ]; do [ "$1" = -p ] && prefix=$2; shift; done
"$prefix/bin/python" -m ensurepip --default-pip >/dev/null
""")
    fake_conda.chmod(0o755)
    env = home / "envs" / "c"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    (env / "conda-meta").mkdir()
    s = by_id(ssh_recipe("{manager: conda, python: '3.11', path: '~/envs/c'}"))["env.create"]
    assert _home_bash(s.check, home).returncode != 0
    res = _home_bash(s.run, home)
    assert res.returncode == 0, res.stderr
    assert log.read_text().startswith("install ") and "python=3.11" in log.read_text()
    assert _home_bash(s.check, home).returncode == 0
