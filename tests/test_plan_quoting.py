"""Every recipe string that reaches a shell is quoted: property tests on the whole plan.

Hypothesis puts shell payloads into every free-text field of a recipe, builds the plan
and *runs* each generated script with bash, with no programs on PATH (a
``command_not_found_handle`` makes every external command a no-op). Only bash itself
can then write files, so if any payload is ever expanded as code - ``$(...)``,
backticks, ``;``, a closed quote - its redirection creates the marker file and the
test fails. Scripts run without ``-e`` so one failing line does not hide later ones.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuwizard import plan
from gpuwizard import recipe as R
from gpuwizard.shell import q, qpath

# One marker per process: pytest-xdist workers must not see each other's (a leak in one
# worker would otherwise be reported by another test, or deleted before it is seen).
MARKER = f"/tmp/gpuwizard-pwned-{os.getpid()}"


def payloads(marker: str) -> list[str]:
    return [
        f"$(echo x >> {marker})",
        f"`echo x >> {marker}`",
        f"; echo x >> {marker};",
        f"' ; echo x >> {marker} ; '",
        f'" ; echo x >> {marker} ; "',
        f"\n echo x >> {marker}\n",
        f"a && echo x >> {marker}",
        f"| tee -a {marker}",
        f"$(<{marker}) > {marker}",
        f"~/$(echo x >> {marker})",
        f"x\\'; echo x >> {marker} #",
        f"${{IFS}}>{marker}",
    ]


def evil(marker: str) -> st.SearchStrategy[str]:
    return st.sampled_from(payloads(marker)) | st.builds(
        lambda a, p, b: a + p + b, st.text("abc ./-_~'\"\\", max_size=5), st.sampled_from(payloads(marker)),
        st.text("abc ./-_'\"\\", max_size=5))


def recipe_with(s: dict[str, str]) -> R.Recipe:
    return R.Recipe(
        name="quoting",
        target=R.Target(ssh=R.SshTarget(hosts=["u@h"])),
        env=R.Env(manager="venv", python="3.11", path=s["env_path"], packages=[s["package"]],
                  repo=R.Repo(url=s["repo_url"], dir=s["repo_dir"], setup=["true"])),
        rclone=R.Rclone(remotes={"mirror": R.Remote(type="http", options={"url": s["remote_url"]})}),
        datasets=[R.Dataset(from_=f"mirror:{s['dataset_path']}", to=s["dataset_to"], unzip=True)],
        steps=[R.UserStep(name="mine", run="true", env={"SAFE": s["step_env"]})],
    )


FIELDS = ["env_path", "package", "repo_url", "repo_dir", "remote_url", "dataset_path", "dataset_to", "step_env"]


def run_script(script: str, home: str) -> None:
    env = {"PATH": "/nonexistent", "HOME": home, "USER": "nobody", "LANG": "C.UTF-8"}
    prelude = "command_not_found_handle() { return 0; }\nsudo() { \"$@\"; }\n"
    subprocess.run(["/bin/bash", "-c", prelude + script], env=env, cwd=home, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({f: evil(MARKER) for f in FIELDS}))
def test_no_field_is_ever_executed(values: dict[str, str]) -> None:
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    steps = plan.build(recipe_with(values))
    with tempfile.TemporaryDirectory() as home:
        for s in steps:
            if s.phase == "user":
                continue  # the user's own `run` is code by design; its env is tested below
            for script in filter(None, (s.check, s.run)):
                run_script(script, home)
                assert not os.path.exists(MARKER), f"step {s.id} executed a recipe value:\n{script}"


def test_user_step_env_is_data_not_code() -> None:
    r = recipe_with({f: "x" for f in FIELDS})
    r.steps[0].env["SAFE"] = f"$(echo x >> {MARKER})"
    st_ = [s for s in plan.build(r) if s.id == "user.mine"][0]
    assert st_.env == (("SAFE", f"$(echo x >> {MARKER})"),)  # passed as data to the executor


# The test ids name a placeholder, not this process's marker: pytest-xdist needs every
# worker to collect the same ids.
@pytest.mark.parametrize("template", payloads("@MARKER@") + ["plain", "~", "~/x y", "-rf", "--help"])
def test_quote_helpers(template: str, tmp_path: pathlib.Path) -> None:
    value = template.replace("@MARKER@", MARKER)
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    out = subprocess.run(["/bin/bash", "-c", f"printf %s {q(value)}"], capture_output=True, text=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    assert out == value
    out = subprocess.run(["/bin/bash", "-c", f"printf %s {qpath(value)}"], capture_output=True, text=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    expected = str(tmp_path) + value[1:] if value == "~" or value.startswith("~/") else value
    assert out == expected
    assert not os.path.exists(MARKER)
    assert shlex.split(q(value)) == [value]
