"""Recipe model: load/save round trips (property-based), byte-for-byte saves, schema,
the single-value rules (hosts, pip requirements, clone URLs, boot disk)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuwizard import recipe as R
from gpuwizard.recipe import model as M
from gpuwizard.validate import DISK_GB_MAX, disk_gb_problem

# Text that YAML must carry faithfully: quotes, colons, hashes, newlines, unicode,
# leading/trailing spaces, things that look like numbers, booleans and nulls.
tricky_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    st.sampled_from(["yes", "no", "null", "~", "1.0", "0x10", "true", ": x", "# c", "- a", "'", '"', "a\nb",
                     "  lead", "trail  ", "@x", "`x`", "$(id)", "%TAG", "*ref", "&anchor", "!tag"]),
)
# Paths and URLs must be one non-empty line; anything else free text may hold.
tricky_line = tricky_text.filter(lambda s: s.strip() and not any(c in s for c in "\n\r\x85\u2028\u2029"))
requirements = st.sampled_from(["numpy", "numpy==1.26.4", "torch>=2,<3", "opencv-python-headless",
                                "pkg[extra]~=1.0", "x @ https://example.org/x-1.0-py3-none-any.whl",
                                "tqdm; python_version >= '3.8'"])
clone_urls = st.sampled_from(["https://github.com/yysijie/st-gcn", "git@github.com:o/r.git", "ssh://git@h/r",
                              "~/src/repo", "/srv/git/repo.git", "http://example.org/r.git"])
names = st.from_regex(R.NAME_RE, fullmatch=True)
zones = st.from_regex(R.ZONE_RE, fullmatch=True)
step_names = st.from_regex(R.STEP_NAME_RE, fullmatch=True)
env_keys = st.from_regex(R.ENV_VAR_RE, fullmatch=True)
versions = st.from_regex(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$", fullmatch=True)


@st.composite
def recipes(draw: st.DrawFn) -> R.Recipe:
    if draw(st.booleans()):
        target = R.Target(gcp=R.GcpTarget(
            project=draw(st.none() | st.from_regex(r"^[a-z][-a-z0-9]{4,20}[a-z0-9]$", fullmatch=True)),
            zones=draw(st.lists(zones, max_size=4)),
            machine_type=draw(st.sampled_from(["n1-standard-4", "g2-standard-8", "a2-highgpu-1g"])),
            gpu=draw(st.none() | st.builds(R.Gpu, type=st.sampled_from(["nvidia-tesla-t4", "nvidia-l4"]),
                                           count=st.integers(1, 16))),
            spot=draw(st.booleans()), image=draw(tricky_text), disk_gb=draw(st.integers(10, DISK_GB_MAX)),
            count=draw(st.integers(1, 64))))
    else:
        target = R.Target(ssh=R.SshTarget(hosts=draw(st.lists(
            st.from_regex(r"^([a-z]{1,8}@)?[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,2}$", fullmatch=True)
            .flatmap(lambda h: st.sampled_from([h, f"{h}:2222", f"{h}:65535"])),
            min_size=1, max_size=4, unique_by=lambda h: R.parse_host(h).identity(None, 22)))))
    driver = draw(st.none() | st.just(R.Driver(preinstalled=True)) | st.builds(
        R.Driver, branch=st.none() | st.from_regex(r"^[0-9]{3}$", fullmatch=True),
        cuda=st.none() | st.from_regex(r"^[0-9]{2}\.[0-9]$", fullmatch=True),
        tensorrt=st.booleans() | st.from_regex(r"^[0-9]+(\.[0-9]+)*$", fullmatch=True),
        flavor=st.none() | st.sampled_from(["open", "proprietary"])))
    env = draw(st.none() | st.builds(
        R.Env, manager=st.sampled_from(["venv", "conda"]), python=st.from_regex(r"^3\.[0-9]{1,2}$", fullmatch=True),
        path=st.none() | tricky_line, torch=st.none() | versions, packages=st.lists(requirements, max_size=3),
        repo=st.none() | st.builds(R.Repo, url=clone_urls, ref=st.none() | st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,20}$", fullmatch=True),
                                   dir=st.none() | tricky_line, setup=st.lists(tricky_text, max_size=3))))
    remotes = draw(st.dictionaries(st.from_regex(r"^[a-z][a-z0-9_]{0,10}$", fullmatch=True), st.builds(
        R.Remote, type=st.sampled_from(["drive", "http", "s3"]),
        options=st.dictionaries(st.sampled_from(["url", "root_folder_id", "token_file", "region", "chunk_size"]),
                                st.one_of(st.integers(-5, 5000), st.booleans(),
                                          st.from_regex(r"^[A-Za-z0-9_./:-]{1,30}$", fullmatch=True)),
                                max_size=3)), max_size=2))
    rclone = R.Rclone(remotes=remotes) if remotes or draw(st.booleans()) else None
    datasets = [R.Dataset(from_=f"{draw(st.sampled_from(sorted(remotes)))}:{draw(tricky_text)}", to=draw(tricky_line),
                          unzip=draw(st.booleans())) for _ in range(draw(st.integers(0, 2)))] if remotes else []
    steps = [R.UserStep(name=f"{draw(step_names)}-{i}", run=draw(tricky_text.filter(lambda s: s.strip())),
                        timeout=float(draw(st.integers(1, 100000))), sudo=draw(st.booleans()),
                        env=draw(st.dictionaries(env_keys, st.from_regex(r"^[a-z0-9 ]{0,10}$", fullmatch=True), max_size=2)))
             for i in range(draw(st.integers(0, 3)))]
    return R.Recipe(name=draw(names), description=draw(st.none() | tricky_text), target=target, driver=driver,
                    env=env, rclone=rclone, datasets=datasets, steps=steps)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_load_of_save_is_identity(r: R.Recipe) -> None:
    text = R.dumps(r)
    back, problems = R.parse(text, "r.yaml")
    assert back is not None
    assert problems == [], text  # the generator makes valid recipes: a problem is a loader bug
    assert back == r, text
    assert R.dumps(back) == text  # unchanged -> byte-for-byte the same text


def test_unchanged_recipe_saves_byte_for_byte(tmp_path: pathlib.Path) -> None:
    src = ("# my notes, kept\nversion: 1\nname: demo   # inline comment\ntarget:\n  ssh:\n"
           "    hosts: [ubuntu@10.0.0.1]   # flow style kept\n")
    p = tmp_path / "r.yaml"
    p.write_text(src)
    r = R.load(str(p))
    R.save(r, str(p))
    assert p.read_text() == src


def test_changed_recipe_keeps_header_comments(tmp_path: pathlib.Path) -> None:
    src = "# header\n# second line\n\nversion: 1\nname: demo\ntarget:\n  ssh: {hosts: [u@h]}\n"
    r = R.loads(src)
    r.name = "other"
    out = R.dumps(r)
    assert out.startswith("# header\n# second line\n\n")
    assert R.loads(out) == r and R.loads(out).name == "other"


def test_new_recipe_carries_schema_line() -> None:
    r = R.Recipe(name="x", target=R.Target(ssh=R.SshTarget(hosts=["u@h"])))
    assert R.dumps(r).startswith(f"# yaml-language-server: $schema={R.SCHEMA_URL}\n")


def test_preinstalled_driver_round_trips() -> None:
    r = R.loads("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\ndriver: preinstalled\n")
    assert r.driver == R.Driver(preinstalled=True)
    assert "driver: preinstalled" in R.dumps(R.Recipe(name="x", target=r.target, driver=r.driver))


def test_numbers_for_versions_are_accepted_as_strings() -> None:
    r = R.loads("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\ndriver: {branch: 580, cuda: 12.8}\n")
    assert r.driver is not None and (r.driver.branch, r.driver.cuda) == ("580", "12.8")


def test_json_schema_covers_every_field_and_refuses_secrets() -> None:
    schema = R.json_schema()
    json.dumps(schema)  # serializable
    props = schema["properties"]
    assert {"version", "name", "target", "ssh", "driver", "env", "rclone", "datasets", "steps"} <= set(props)
    assert schema["$defs"]["Dataset"]["properties"]["from"]["description"]
    assert "token" in schema["$defs"]["Remote"]["propertyNames"]["not"]["enum"]
    assert schema["additionalProperties"] is False


def test_schema_validates_shipped_recipes() -> None:
    schema = R.json_schema()
    recipes_dir = pathlib.Path(__file__).resolve().parent.parent / "recipes"
    files = sorted(recipes_dir.glob("*.yaml"))
    assert files, f"no shipped recipes in {recipes_dir}"
    for f in files:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)


def test_save_writes_a_shareable_file_and_keeps_an_existing_mode(tmp_path: pathlib.Path) -> None:
    r = R.Recipe(name="x", target=R.Target(ssh=R.SshTarget(hosts=["u@h"])))
    old = os.umask(0o022)
    try:
        R.save(r, str(tmp_path / "new.yaml"))
        assert (tmp_path / "new.yaml").stat().st_mode & 0o777 == 0o644
        (tmp_path / "mine.yaml").write_text("")
        (tmp_path / "mine.yaml").chmod(0o640)
        R.save(r, str(tmp_path / "mine.yaml"))
        assert (tmp_path / "mine.yaml").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert list(tmp_path.glob(".recipe-*")) == []


def test_published_schema_file_is_current() -> None:
    """docs/recipe.schema.json is what the shipped recipes' `$schema` line points at."""
    root = pathlib.Path(__file__).resolve().parent.parent
    published = json.loads((root / "docs" / "recipe.schema.json").read_text())
    assert published == R.json_schema(), "regenerate: gpuwizard schema > docs/recipe.schema.json"
    for f in sorted((root / "recipes").glob("*.yaml")):
        assert f.read_text().startswith(f"# yaml-language-server: $schema={R.SCHEMA_URL}\n"), f.name


def test_schema_refuses_what_the_loader_refuses() -> None:
    """The published schema is a real check: an invalid recipe fails it (the test above
    would pass with an empty schema)."""
    bad = {"version": 1, "name": "Bad Name", "target": {"ssh": {"hosts": ["u@h"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, R.json_schema())


def test_every_pattern_has_its_own_hint() -> None:
    """A hint belongs to its field: no field falls back to a message written for another."""
    missing = []
    for cls in (M.Gpu, M.GcpTarget, M.SshTarget, M.Target, M.Ssh, M.Driver, M.Repo, M.Env, M.Remote, M.Rclone,
                M.Dataset, M.UserStep, M.Recipe):
        for f in dataclasses.fields(cls):
            for kind in ("", "item_", "key_"):
                if f"{kind}pattern" in f.metadata and f"{kind}hint" not in f.metadata:
                    missing.append(f"{cls.__name__}.{f.name} ({kind}pattern)")
    assert missing == []


def test_step_name_hint_is_the_step_rule_not_the_recipe_rule() -> None:
    with pytest.raises(R.RecipeError) as info:
        R.loads("version: 1\nname: demo\ntarget: {ssh: {hosts: [h]}}\nsteps: [{name: 'My Step!', run: x}]\n", "r.yaml")
    (line,) = info.value.lines()
    assert "lower-case" not in line and "letters, digits, '.', '_' and '-'" in line
    R.loads("version: 1\nname: demo\ntarget: {ssh: {hosts: [h]}}\nsteps: [{name: My_Step, run: x}]\n")


@pytest.mark.parametrize("value", ["demo\n", "demo\r", "demo\n\n"])
def test_trailing_line_break_never_passes_a_pattern(value: str) -> None:
    text = yaml.safe_dump({"version": 1, "name": value, "target": {"ssh": {"hosts": ["h"]}}})
    with pytest.raises(R.RecipeError):
        R.loads(text)


@pytest.mark.parametrize("host", ["h", "u@h", "u@h:1", "u@h:65535", "u@10.0.0.7:22", "u@[2001:db8::7]:22",
                                  "a" * 63 + ".example.org", ".".join(["a" * 63] * 3) + ".abcdefghi"])
def test_valid_hosts_pass(host: str) -> None:
    assert R.host_problem(host) is None


@pytest.mark.parametrize(("host", "words"), [
    ("u@h:0", "a port is 1 to 65535"), ("u@h:99999", "a port is 1 to 65535"),
    ("u@" + "a" * 64 + ".org", "at most 63"), ("u@" + ".".join(["a" * 60] * 5), "at most 253"),
    ("u@a..b", "empty part"), ("u@[zz::1]", "not an IPv6 address"),
])
def test_invalid_hosts_say_the_limit(host: str, words: str) -> None:
    problem = R.host_problem(host)
    assert problem is not None and words in problem


@pytest.mark.parametrize("spec", ["numpy", "numpy==1.26.4", "torch>=2,<3", "x @ https://e.org/x.whl", "a[b,c]>1",
                                  "./local", "~/src/pkg", "/opt/x.whl", "git+https://github.com/o/r@v1"])
def test_pip_requirements_pass(spec: str) -> None:
    assert R.package_problem(spec) is None


@pytest.mark.parametrize(("spec", "words"), [
    ("numpy=1.0", "did you mean '=='?"), ("--index-url=https://x", "pip option"), ("-e .", "pip option"),
    ("a b", "at character 3"), ("numpy[", "not a pip requirement"), ("local/pkg", "a path such as ./pkg"),
])
def test_bad_pip_requirements_say_what_is_wrong(spec: str, words: str) -> None:
    problem = R.package_problem(spec)
    assert problem is not None and words in problem


@pytest.mark.parametrize(("url", "words"), [
    ("\uff48ttps://github.com/o/r", "FULLWIDTH LATIN SMALL LETTER H"),
    ("https://github.com/o/r\u00a0", "NO-BREAK SPACE"),
    ("\u201chttps://github.com/o/r\u201d", "LEFT DOUBLE QUOTATION MARK"),
    ("ftp://example.org/r", "git cannot clone ftp://"),
    ("github.com/o/r", "a clone URL starts with"),
])
def test_clone_url_problem_names_the_real_fault(url: str, words: str) -> None:
    problem = R.repo_url_problem(url)
    assert problem is not None and words in problem


@pytest.mark.parametrize(("disk", "image", "ok"), [
    (50, "ubuntu-2204-lts", True), (49, "ubuntu-2204-lts", False), ("13", "ubuntu-2204-lts", False),
    (DISK_GB_MAX, "debian-12", True), (DISK_GB_MAX + 1, "debian-12", False), ("abc", "debian-12", False),
    (49, "common-cu129-ubuntu-2204-nvidia-580", False), (10, "projects/p/global/images/mine", True),
    (9, "projects/p/global/images/mine", False),
])
def test_one_boot_disk_rule(disk: int | str, image: str, ok: bool) -> None:
    problem = disk_gb_problem(disk, image)
    assert (problem is None) is ok
    if problem is not None:  # the limit is stated once, as a range
        low = "10" if image.startswith("projects/") else "50"
        assert f"must be {low} to {DISK_GB_MAX} GB" in problem and problem.count(str(DISK_GB_MAX)) == 1


def test_plan_hides_every_secret_looking_env_name(tmp_path: pathlib.Path) -> None:
    """`plan` and the output masker share one rule (gpuwizard.secretcheck)."""
    p = tmp_path / "r.yaml"
    p.write_text("version: 1\nname: demo\ntarget: {ssh: {hosts: [h]}}\n"
                 "steps: [{name: s, run: x, env: {AUTH_HEADER: opensesame, HF_TOKEN: abcdef, TOKEN_TYPE: Bearer, "
                 "PLAIN: visible}}]\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "gpuwizard.cli", "plan", str(p)], capture_output=True, text=True,
                         timeout=120, env=env).stdout
    assert "AUTH_HEADER=..." in out and "HF_TOKEN=..." in out and "opensesame" not in out
    assert "TOKEN_TYPE=Bearer" in out and "PLAIN=visible" in out
