"""The Python environment steps: venv (or conda), PyTorch from its CUDA wheel index, the
recipe's packages, the repository at a ref and its setup commands.

Everything runs as the login user (``sudo=False``). Only installing the OS's venv
support needs root, and that step escalates inside its run (``sudo -n``) rather than
being a sudo step, because its check (a throwaway venv) must run as the user: a user
without sudo rights on a host that already has ``python3.X -m venv`` never needs root. Every step has
an "already done" check that reads state (interpreter version, installed distribution
versions, the clone's HEAD, a stamp written after a setup command succeeded), so a
second run of the same recipe changes nothing.
"""

from __future__ import annotations

import hashlib
import re

from gpuwizard import drivers
from gpuwizard.catalog import stack as S
from gpuwizard.recipe import Env, Recipe
from gpuwizard.shell import q, qpath
from gpuwizard.steps import Step

#: Distributions installed from the PyTorch index together with torch (from PyPI they
#: would pull a torch built for another CUDA).
TORCH_COMPANIONS = ("torchvision", "torchaudio")

MINIFORGE = "$HOME/miniforge3"
MINIFORGE_URL = "https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-$(uname -m).sh"
CONSTRAINTS = "gpuwizard-constraints.txt"
STAMPS = ".gpuwizard"


def env_path(recipe: Recipe) -> str:
    """Where the environment lives: env.path, default ~/venvs/<recipe name>."""
    assert recipe.env is not None
    return recipe.env.path or f"~/venvs/{recipe.name}"


def repo_dir(recipe: Recipe) -> str:
    """Where the clone lives: env.repo.dir, default ~/<repository name>."""
    assert recipe.env is not None and recipe.env.repo is not None
    repo = recipe.env.repo
    if repo.dir:
        return repo.dir
    name = re.sub(r"\.git$", "", repo.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    return f"~/{name}"


def _req_name(spec: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return m.group(1).lower().replace("_", "-") if m else ""


def split_packages(env: Env) -> tuple[list[str], list[str]]:
    """(torch companions, everything else) from env.packages; companions go with torch."""
    if not env.torch:
        return [], list(env.packages)
    comp = [p for p in env.packages if _req_name(p) in TORCH_COMPANIONS]
    return comp, [p for p in env.packages if p not in comp]


def torch_spec(version: str) -> str:
    """'2.9.1' -> 'torch==2.9.1'; '2.9' -> 'torch==2.9.*' (the newest patch release)."""
    return f"torch=={version}" if version.count(".") >= 2 else f"torch=={version}.*"


# A check run by the environment's own interpreter: exit 0 when every requirement given
# as an argument is installed at a version its specifier accepts. Anything it cannot
# judge (URLs, paths, -r files) counts as "not done", and pip then decides.
REQS_SATISFIED = r"""import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for spec in sys.argv[1:]:
    try:
        req = Requirement(spec)
    except Exception:
        sys.exit("cannot judge %r; pip will" % spec)
    if req.marker is not None and not req.marker.evaluate():
        continue
    if req.url:
        sys.exit("%s is a URL requirement" % spec)
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit("%s is not installed" % req.name)
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        sys.exit("%s %s does not satisfy %s" % (req.name, have, spec))
"""

# torch's installed version must match the spec AND come from the chosen index (its
# local version label, e.g. 2.9.1+cu126), or a PyPI wheel for another CUDA slipped in.
TORCH_OK = r"""import sys
from importlib import metadata
want, label = sys.argv[1], sys.argv[2]
try:
    have = metadata.version("torch")
except metadata.PackageNotFoundError:
    sys.exit("torch is not installed")
public, _, local = have.partition("+")
if want.endswith(".*"):
    ok = (public + ".").startswith(want[:-1])
else:
    ok = public == want
if not ok:
    sys.exit("torch %s is installed, the recipe wants %s" % (have, want))
if label and local != label:
    sys.exit("torch %s is not the %s build" % (have, label))
for name in sys.argv[3:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit("%s is not installed" % name)
"""


def _activate(env: Env, path: str, with_constraints: bool) -> str:
    """Bash that puts the environment first on PATH (set -u safe for venv; conda's own
    activate scripts are not, hence the set +u around them)."""
    if env.manager == "conda":
        lines = ["set +u", f'source "{MINIFORGE}/bin/activate" {path}', "set -u"]
    else:
        lines = [f"export VIRTUAL_ENV={path}", 'export PATH="$VIRTUAL_ENV/bin:$PATH"', "unset PYTHONHOME"]
    if with_constraints:
        lines.append(f"export PIP_CONSTRAINT={path}/{CONSTRAINTS}")
    return "\n".join(lines) + "\n"


def _system_step(recipe: Recipe, env: Env, path: str) -> Step:
    py = f"python{env.python}"
    need_git = env.repo is not None
    if env.manager == "venv":
        pkgs = [py, f"{py}-venv"]
        # Probe venv support unless the environment already works, pip included: a venv
        # left without pip (ensurepip missing, or an interrupted creation) is repaired
        # with ensurepip, which Debian ships in python3.X-venv.
        check = (f"if ! {path}/bin/python -m pip --version >/dev/null 2>&1; then\n"
                 f"  command -v {q(py)} >/dev/null\n"
                 '  tmp=$(mktemp -d)\n'
                 "  trap 'rm -rf \"$tmp\"' EXIT\n"
                 f'  {q(py)} -m venv "$tmp/probe" >/dev/null\n'
                 "fi\n")
        title = f"System packages for a Python {env.python} venv (only when missing)"
    else:
        pkgs = ["curl", "ca-certificates"]
        check = "command -v curl >/dev/null\n"
        title = "System packages for Miniforge (only when missing)"
    if need_git:
        pkgs.append("git")
        check += "command -v git >/dev/null\n"
    # sudo=False on purpose: the check must run as the login user (a user without sudo on
    # a host that already has venv support never needs root); only the install escalates.
    run = ('if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo -n --); fi\n'
           '"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q update\n'
           '"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install '
           f"{' '.join(q(p) for p in pkgs)}\n")
    return Step(id="env.system", title=title, run=run, check=check, sudo=False, timeout=900, retries=1, phase="env")


def _conda_step() -> Step:
    run = (f'if [ ! -x "{MINIFORGE}/bin/conda" ]; then\n'
           '  tmp=$(mktemp -d)\n'
           "  trap 'rm -rf \"$tmp\"' EXIT\n"
           f'  curl -fsSL --retry 5 -o "$tmp/miniforge.sh" "{MINIFORGE_URL}"\n'
           f'  bash "$tmp/miniforge.sh" -b -p "{MINIFORGE}"\n'
           "fi\n")
    check = f'[ -x "{MINIFORGE}/bin/conda" ]\n'
    return Step(id="env.conda", title="Miniforge (conda from conda-forge) in ~/miniforge3", run=run, check=check,
                timeout=900, retries=2, phase="env")


def _create_step(env: Env, path: str) -> Step:
    """The venv / conda environment, with a working pip.

    ``python -m venv`` creates bin/python before ensurepip installs pip, and conda links
    python before pip: a Ctrl-C in between leaves an environment whose interpreter works
    but has no pip. So the check asks for pip too, and the run completes such a
    half-built environment it recognises as its own kind (pyvenv.cfg / conda-meta, the
    right Python) instead of refusing it: ensurepip into the venv (never ``--clear``,
    which would wipe packages of a venv made without pip on purpose, e.g. by uv), or
    ``conda install`` into the prefix. Anything else at the path is still refused.
    """
    major, minor = env.python.split(".")
    version_ok = f"{path}/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != ({major}, {minor}))'"
    pip_ok = f"{path}/bin/python -m pip --version >/dev/null"
    wrong = (f"  echo {path} {q('exists but is not a Python ' + env.python + ' environment; remove it or set env.path')} >&2\n"
             "  exit 1\n")
    if env.manager == "conda":
        conda = f'"{MINIFORGE}/bin/conda"'
        pkgs = f"{q('python=' + env.python)} pip"
        # conda-meta/ exists from the first linked package; python may not be linked yet.
        mine = f"[ -d {path}/conda-meta ] && {{ [ ! -e {path}/bin/python ] || {version_ok} 2>/dev/null; }}"
        repair = (f"  echo {path}: {q('an unfinished conda environment (interrupted?); completing it')}\n"
                  f"  {conda} install -y -q -p {path} {pkgs}\n")
        create = f"{conda} create -y -q -p {path} {pkgs}\n"
        title = f"conda environment with Python {env.python}"
    else:
        mine = f"[ -f {path}/pyvenv.cfg ] && {version_ok} 2>/dev/null"
        repair = (f"  echo {path}: {q('a Python ' + env.python + ' venv without a working pip (an interrupted creation?); installing pip into it')}\n"
                  f"  {path}/bin/python -m ensurepip --upgrade --default-pip\n")
        create = f"mkdir -p \"$(dirname {path})\"\n{q('python' + env.python)} -m venv {path}\n"
        title = f"venv with Python {env.python}"
    run = (f"if [ -e {path} ]; then\n"
           f"  if {mine}; then\n" + _indent(repair) + "  else\n" + _indent(wrong) + "  fi\n"
           "else\n" + _indent(create) + "fi\n"
           f"{version_ok}\n{pip_ok}\n")
    return Step(id="env.create", title=title, run=run, check=f"{version_ok}\n{pip_ok}\n", timeout=900, retries=1,
                phase="env")


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


def _torch_step(env: Env, path: str, version: str, index: str, companions: list[str]) -> Step:
    spec = torch_spec(version)
    want = spec.split("==", 1)[1]
    url = S.index_url(index)
    names = [_req_name(c) for c in companions]
    pip = (f"{path}/bin/python -m pip install --index-url {q(url)} {q(spec)}"
           + "".join(f" {q(c)}" for c in companions) + "\n")
    pin = (f"{path}/bin/python -c 'from importlib import metadata; print(\"torch==\" + metadata.version(\"torch\"))' "
           f">{path}/{CONSTRAINTS}\n")
    check = (f"{path}/bin/python -c {q(TORCH_OK)} {q(want)} {q(index)}" + "".join(f" {q(n)}" for n in names) + "\n"
             f"[ -s {path}/{CONSTRAINTS} ]\n")
    return Step(id="env.torch", title=f"PyTorch {version} from the {index} wheel index", run=pip + pin, check=check,
                timeout=3600, retries=2, phase="env")


def _packages_step(env: Env, path: str, pkgs: list[str], constrained: bool) -> Step:
    words = " ".join(q(p) for p in pkgs)
    cons = f"export PIP_CONSTRAINT={path}/{CONSTRAINTS}\n" if constrained else ""
    run = cons + f"{path}/bin/python -m pip install {words}\n"
    check = f"{path}/bin/python -c {q(REQS_SATISFIED)} {words}\n"
    return Step(id="env.packages", title=f"pip install {' '.join(pkgs)}"[:120], run=run, check=check, timeout=3600,
                retries=2, phase="env")


def _repo_step(url: str, ref: str | None, d: str) -> Step:
    head = f"url={q(url)}\ndir={d}\n" + (f"ref={q(ref)}\n" if ref else "")
    run = head + r"""if [ -e "$dir/.git" ]; then
  have=$(git -C "$dir" remote get-url origin)
  if [ "$have" != "$url" ]; then
    echo "$dir is a clone of $have, not $url; move it or set env.repo.dir" >&2
    exit 1
  fi
  git -C "$dir" fetch --quiet --tags origin
elif [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "$dir exists and is not a git clone; move it or set env.repo.dir" >&2
  exit 1
else
  mkdir -p "$(dirname "$dir")"
  git clone --quiet -- "$url" "$dir"
fi
"""
    if ref:
        run += r"""if ! git -C "$dir" -c advice.detachedHead=false checkout --quiet "$ref" 2>/dev/null; then
  git -C "$dir" fetch --quiet origin "$ref"
  git -C "$dir" -c advice.detachedHead=false checkout --quiet FETCH_HEAD
fi
if git -C "$dir" show-ref --verify --quiet "refs/remotes/origin/$ref"; then
  git -C "$dir" merge --ff-only --quiet "origin/$ref"
fi
"""
    run += r"""if [ -f "$dir/.gitmodules" ]; then
  git -C "$dir" submodule update --init --recursive --quiet
fi
echo "$dir at $(git -C "$dir" rev-parse HEAD)"
"""
    check = head + r"""[ -d "$dir/.git" ]
[ "$(git -C "$dir" remote get-url origin)" = "$url" ]
"""
    if ref:
        check += '[ "$(git -C "$dir" rev-parse HEAD)" = "$(git -C "$dir" rev-parse --verify --quiet "$ref^{commit}")" ]\n'
    title = f"Clone {url}" + (f" at {ref}" if ref else "")
    return Step(id="env.repo", title=title, run=run, check=check, timeout=1800, retries=2, phase="env")


def _setup_step(env: Env, path: str, d: str, i: int, command: str, constrained: bool) -> Step:
    digest = hashlib.sha256(command.encode()).hexdigest()[:16]
    stamp = f"{path}/{STAMPS}/setup-{i}"
    key = f'"$(git -C "$dir" rev-parse HEAD) {digest}"'
    run = (f"dir={d}\n"
           f'cd "$dir"\n'
           + _activate(env, path, constrained)
           + "(\n" + command.rstrip("\n") + "\n)\n"
           + f"mkdir -p {path}/{STAMPS}\n"
           + f"printf '%s\\n' {key} >{stamp}\n")
    check = (f"dir={d}\n"
             f'[ "$(cat {stamp} 2>/dev/null)" = {key} ]\n')
    first = command.strip().splitlines()[0] if command.strip() else ""
    return Step(id=f"env.setup.{i}", title=f"In the clone: {first}"[:120], run=run, check=check, timeout=3600,
                phase="env")


def activation(recipe: Recipe) -> str:
    """Bash that enters the recipe's environment the way a person would before running
    the experiment: the environment active and, when a repository was cloned, inside
    the clone. Empty without an env section. Used in front of the user's own steps."""
    env = recipe.env
    if env is None:
        return ""
    out = _activate(env, qpath(env_path(recipe)), False)
    if env.repo is not None and env.repo.url:
        out += f"cd {qpath(repo_dir(recipe))}\n"
    return out


def steps(recipe: Recipe) -> list[Step]:
    """The environment steps for ``recipe`` ([] without an env section)."""
    env = recipe.env
    if env is None:
        return []
    path = qpath(env_path(recipe))
    out = [_system_step(recipe, env, path)]
    if env.manager == "conda":
        out.append(_conda_step())
    out.append(_create_step(env, path))
    companions, rest = split_packages(env)
    constrained = False
    if env.torch:
        st = drivers.resolve(recipe)
        index = env.torch_index or st.torch_index or "cu126"
        out.append(_torch_step(env, path, env.torch, index, companions))
        constrained = True
    if rest:
        out.append(_packages_step(env, path, rest, constrained))
    if env.repo is not None and env.repo.url:
        d = qpath(repo_dir(recipe))
        out.append(_repo_step(env.repo.url, env.repo.ref, d))
        for i, cmd in enumerate(env.repo.setup, 1):
            out.append(_setup_step(env, path, d, i, cmd, constrained))
    return out
