"""Recipe model: load/save round trips (property-based), byte-for-byte saves, schema."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuwizard import recipe as R

# Text that YAML must carry faithfully: quotes, colons, hashes, newlines, unicode,
# leading/trailing spaces, things that look like numbers, booleans and nulls.
tricky_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    st.sampled_from(["yes", "no", "null", "~", "1.0", "0x10", "true", ": x", "# c", "- a", "'", '"', "a\nb",
                     "  lead", "trail  ", "@x", "`x`", "$(id)", "%TAG", "*ref", "&anchor", "!tag"]),
)
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
            spot=draw(st.booleans()), image=draw(tricky_text), disk_gb=draw(st.integers(10, 65536)),
            count=draw(st.integers(1, 64))))
    else:
        target = R.Target(ssh=R.SshTarget(hosts=draw(st.lists(
            st.from_regex(r"^([a-z]{1,8}@)?[a-z0-9.-]{1,20}(:[0-9]{1,5})?$", fullmatch=True), min_size=1, max_size=4))))
    driver = draw(st.none() | st.just(R.Driver(preinstalled=True)) | st.builds(
        R.Driver, branch=st.none() | st.from_regex(r"^[0-9]{3}$", fullmatch=True),
        cuda=st.none() | st.from_regex(r"^[0-9]{2}\.[0-9]$", fullmatch=True),
        tensorrt=st.booleans() | st.from_regex(r"^[0-9]+(\.[0-9]+)*$", fullmatch=True),
        flavor=st.none() | st.sampled_from(["open", "proprietary"])))
    env = draw(st.none() | st.builds(
        R.Env, manager=st.sampled_from(["venv", "conda"]), python=st.from_regex(r"^3\.[0-9]{1,2}$", fullmatch=True),
        path=st.none() | tricky_text, torch=st.none() | versions, packages=st.lists(tricky_text, max_size=3),
        repo=st.none() | st.builds(R.Repo, url=tricky_text, ref=st.none() | st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,20}$", fullmatch=True),
                                   dir=st.none() | tricky_text, setup=st.lists(tricky_text, max_size=3))))
    remotes = draw(st.dictionaries(st.from_regex(r"^[a-z][a-z0-9_]{0,10}$", fullmatch=True), st.builds(
        R.Remote, type=st.sampled_from(["drive", "http", "s3"]),
        options=st.dictionaries(st.sampled_from(["url", "root_folder_id", "token_file", "region", "chunk_size"]),
                                st.one_of(st.integers(-5, 5000), st.booleans(),
                                          st.from_regex(r"^[A-Za-z0-9_./:-]{1,30}$", fullmatch=True)),
                                max_size=3)), max_size=2))
    rclone = R.Rclone(remotes=remotes) if remotes or draw(st.booleans()) else None
    datasets = [R.Dataset(from_=f"{draw(st.sampled_from(sorted(remotes)))}:{draw(tricky_text)}", to=draw(tricky_text),
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
    # Only structural checks may complain about generated data (e.g. a secret-looking
    # string); shape must always round trip.
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
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = R.json_schema()
    recipes_dir = pathlib.Path(__file__).resolve().parent.parent / "recipes"
    files = sorted(recipes_dir.glob("*.yaml"))
    if not files:
        pytest.skip("no shipped recipes yet")
    for f in files:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)


def test_save_writes_a_shareable_file_and_keeps_an_existing_mode(tmp_path: pathlib.Path) -> None:
    import os

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
