"""The Recipe: what a user wants, written down as YAML they can read, diff and commit.

The model is a tree of plain dataclasses. Loading walks the YAML *node* tree (not the
plain Python values) so every problem can be reported as ``FILE:LINE:COL: field.path:
message`` at the node that is wrong, and every problem is collected before reporting:
the user fixes a recipe in one pass, not one error per run.

The dataclass fields double as the schema: their type hints drive parsing, the JSON
Schema (``gpuwizard schema``) and saving, so the three cannot drift apart. Field
metadata carries the documentation and constraints.

Cross-field checks against the catalog (GPU vs machine family, driver vs GPU ...) live
in :mod:`gpuwizard.validate`; this module checks shape, types and secrets.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from gpuwizard.drive_scopes import DEFAULT_SCOPE, DRIVE_SCOPES

SCHEMA_URL = "https://raw.githubusercontent.com/gpuwizard/gpuwizard/main/docs/recipe.schema.json"
MAX_RECIPE_BYTES = 1_000_000

# ---------------------------------------------------------------------------- errors


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a recipe, located at a YAML node (1-based line and column)."""

    line: int
    col: int
    path: str
    message: str
    warning: bool = False

    def format(self, filename: str) -> str:
        where = f"{self.path}: " if self.path else ""
        level = "warning: " if self.warning else ""
        return f"{filename}:{self.line}:{self.col}: {level}{where}{self.message}"


class RecipeError(Exception):
    """Raised by :func:`load` with every problem found, sorted by position."""

    def __init__(self, filename: str, problems: list[Problem]):
        self.filename = filename
        self.problems = sorted(set(problems))
        super().__init__("\n".join(p.format(filename) for p in self.problems))

    def lines(self) -> list[str]:
        return [p.format(self.filename) for p in self.problems]


# ---------------------------------------------------------------------------- helpers


def doc(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: a description plus constraints (pattern, minimum, maximum, key)."""
    return {"doc": text, **extra}


NAME_RE = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
STEP_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Remote names become RCLONE_CONFIG_<NAME>_* variables on the host: letters, digits, _.
REMOTE_NAME_RE = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
ZONE_RE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"
ENV_VAR_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Option keys that hold secrets in rclone backends (and OAuth in general). A recipe
# may name a file (KEY_file) or an environment variable (KEY_env) holding them instead.
SECRET_KEYS = {
    "token", "access_token", "refresh_token", "client_secret", "pass", "password",
    "secret_access_key", "service_account_credentials", "private_key", "key", "bearer_token",
    "session_token", "api_key", "sas_url", "account_key", "password2",
}
_SECRET_VALUE_RES = [
    re.compile(r'"(access|refresh)_token"\s*:'),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bya29\.[A-Za-z0-9_-]{20,}"),          # Google OAuth access token
    re.compile(r"\b1//0[A-Za-z0-9_-]{20,}"),            # Google OAuth refresh token
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),                # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),      # GitHub token
]


def looks_secret(value: str) -> bool:
    """True when a string value carries a credential (OAuth token JSON, private key ...)."""
    return any(r.search(value) for r in _SECRET_VALUE_RES)


# ---------------------------------------------------------------------------- the model


@dataclass
class Gpu:
    """A GPU attachment: the Compute Engine accelerator type and how many per VM."""

    type: str = field(default="nvidia-tesla-t4", metadata=doc(
        "Compute Engine accelerator type, e.g. nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100.", always=True))
    count: int = field(default=1, metadata=doc("GPUs per VM.", minimum=1, maximum=16, always=True))


@dataclass
class GcpTarget:
    """Provision VMs on Compute Engine, trying zones in order until one has capacity."""

    project: str | None = field(default=None, metadata=doc(
        "Google Cloud project id. Default: the Application Default Credentials project, "
        "then $GOOGLE_CLOUD_PROJECT.", pattern=r"^[a-z][-a-z0-9:.]{4,62}[a-z0-9]$"))
    zones: list[str] = field(default_factory=list, metadata=doc(
        "Zones in preference order; provisioning fails over to the next one on a stockout.",
        item_pattern=ZONE_RE, always=True))
    machine_type: str = field(default="n1-standard-4", metadata=doc(
        "Machine type, e.g. n1-standard-4 (T4/V100/P100/P4), g2-standard-8 (L4), a2-highgpu-1g (A100).",
        pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]+$", always=True))
    gpu: Gpu | None = field(default_factory=Gpu, metadata=doc("The GPU to attach; null for a CPU-only VM.", always=True))
    spot: bool = field(default=False, metadata=doc("Spot VM: much cheaper, can be preempted at any time.", always=True))
    image: str = field(default="ubuntu-2204-lts", metadata=doc(
        "Image family: ubuntu-2204-lts, ubuntu-2404-lts-amd64, debian-12, or a Deep Learning VM "
        "family (driver preinstalled), or projects/P/global/images/NAME.", always=True))
    disk_gb: int = field(default=100, metadata=doc("Boot disk size in GB.", minimum=10, maximum=65536, always=True))
    disk_type: str = field(default="pd-balanced", metadata=doc(
        "Boot disk type: pd-balanced, pd-ssd, pd-standard or hyperdisk-balanced.",
        enum=["pd-balanced", "pd-ssd", "pd-standard", "hyperdisk-balanced"]))
    count: int = field(default=1, metadata=doc("How many identical VMs to create.", minimum=1, maximum=64))
    name_prefix: str | None = field(default=None, metadata=doc(
        "Prefix of the VM names; default: the recipe name.", pattern=NAME_RE))


@dataclass
class SshTarget:
    """Run on machines that already exist."""

    hosts: list[str] = field(default_factory=list, metadata=doc(
        "Hosts as [user@]host[:port].", item_pattern=r"^([A-Za-z0-9._-]+@)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$"))


@dataclass
class Target:
    """Where the recipe runs: exactly one of gcp or ssh."""

    gcp: GcpTarget | None = field(default=None, metadata=doc("Provision on Compute Engine."))
    ssh: SshTarget | None = field(default=None, metadata=doc("Use existing hosts."))


@dataclass
class Ssh:
    """How to reach the hosts."""

    user: str | None = field(default=None, metadata=doc(
        "Login user; default: the user in the host string, else 'gpuwizard' on GCE, else your local user.",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$"))
    port: int = field(default=22, metadata=doc("SSH port.", minimum=1, maximum=65535))
    identity: str | None = field(default=None, metadata=doc(
        "Private key file; default: ssh-agent and ~/.ssh/id_*, or gpuwizard's own key for GCE VMs.", path=True))
    known_hosts: str | None = field(default=None, metadata=doc(
        "known_hosts file used to verify host keys; default ~/.ssh/known_hosts.", path=True))
    reboot_command: str = field(default="sudo -n systemctl reboot", metadata=doc(
        "Command that reboots a host when a step needs it."))
    connect_timeout: float = field(default=600.0, metadata=doc(
        "Seconds to keep retrying a connection to a booting host.", minimum=1, maximum=7200))


@dataclass
class Driver:
    """The NVIDIA stack, installed from NVIDIA's CUDA apt repository and pinned."""

    branch: str | None = field(default=None, metadata=doc(
        "Driver branch, e.g. '580'. Default: the newest branch that supports the GPU.",
        pattern=r"^[0-9]{3}$"))
    cuda: str | None = field(default=None, metadata=doc(
        "CUDA toolkit major.minor, e.g. '12.8'; null: driver only.", pattern=r"^[0-9]{2}\.[0-9]$"))
    cudnn: str | None = field(default=None, metadata=doc("cuDNN major, e.g. '9'; null: none.", pattern=r"^[0-9]+(\.[0-9]+)*$"))
    tensorrt: bool | str = field(default=False, metadata=doc(
        "Install TensorRT: false, true (newest for the CUDA) or a version such as '10.4'."))
    flavor: str | None = field(default=None, metadata=doc(
        "Kernel modules: open or proprietary. Default: open where the GPU supports it.",
        enum=["open", "proprietary"]))
    preinstalled: bool = field(default=False, metadata=doc(
        "The image already has the driver (Deep Learning VM): only verify it. "
        "Written as `driver: preinstalled`."))


@dataclass
class Repo:
    """A git repository to clone on the host, with the commands that set it up."""

    url: str = field(default="", metadata=doc("Clone URL (https, ssh or a path on the host).", required=True,
                                               path=True))
    ref: str | None = field(default=None, metadata=doc("Branch, tag or commit; default: the default branch.",
                                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"))
    dir: str | None = field(default=None, metadata=doc("Where to clone; default ~/<repo name>.", path=True))
    setup: list[str] = field(default_factory=list, metadata=doc(
        "Shell commands run once inside the clone with the environment active."))


@dataclass
class Env:
    """The Python environment the experiment runs in."""

    manager: str = field(default="venv", metadata=doc("venv (fast, default) or conda.", enum=["venv", "conda"], always=True))
    python: str = field(default="3.10", metadata=doc("Python version, e.g. '3.10'.", pattern=r"^3\.[0-9]{1,2}$", always=True))
    path: str | None = field(default=None, metadata=doc("Environment location; default ~/venvs/<recipe name>.",
                                                         path=True))
    torch: str | None = field(default=None, metadata=doc(
        "PyTorch version, e.g. '2.9.1'; null: no PyTorch.", pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"))
    torch_index: str | None = field(default=None, metadata=doc(
        "PyTorch wheel index, e.g. cu126 or cu128. Default: chosen for the GPU and CUDA.",
        pattern=r"^(cu[0-9]{3}|cpu)$"))
    packages: list[str] = field(default_factory=list, metadata=doc("Extra pip requirement specifiers."))
    repo: Repo | None = field(default=None, metadata=doc("A repository to clone and set up."))


@dataclass
class Remote:
    """An rclone remote: a backend type plus that backend's options.

    Secrets are never inline: name a file (``token_file``, ``service_account_file``)
    or an environment variable (``client_secret_env``, ``pass_env``).
    """

    type: str = field(default="drive", metadata=doc(
        "rclone backend: drive, http, webdav, s3, sftp, ...", pattern=r"^[a-z][a-z0-9]*$", required=True))
    options: dict[str, Any] = field(default_factory=dict, metadata=doc(
        "Backend options, written beside type (scope, url, root_folder_id ...).", inline=True))


@dataclass
class Rclone:
    """rclone remotes the datasets copy from."""

    remotes: dict[str, Remote] = field(default_factory=dict, metadata=doc(
        "Remotes by name.", key_pattern=REMOTE_NAME_RE))
    version: str | None = field(default=None, metadata=doc(
        "rclone version to install when the host's is older than 1.56, e.g. '1.68.2'.",
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$"))


@dataclass
class Dataset:
    """Something to fetch onto the host: REMOTE:path, or a Google Drive share link."""

    from_: str = field(default="", metadata=doc(
        "REMOTE:path, or a Google Drive share link (then `remote` names the drive remote).",
        key="from", required=True))
    to: str = field(default="~/data/", metadata=doc("Destination directory on the host.", required=True, path=True))
    remote: str | None = field(default=None, metadata=doc("The remote a share link is fetched through."))
    unzip: bool = field(default=False, metadata=doc("Extract .zip / .tar* archives after the copy."))
    checksum: bool = field(default=True, metadata=doc("Verify sizes and hashes after the copy."))


@dataclass
class UserStep:
    """A command of your own, run after the environment and datasets are ready."""

    name: str = field(default="", metadata=doc("Step name, unique in the recipe.", pattern=STEP_NAME_RE, required=True))
    run: str = field(default="", metadata=doc(
        "Bash to run (under bash -euo pipefail), with CUDA on PATH, the recipe's environment active "
        "and, when env.repo is set, inside the clone.", required=True))
    timeout: float = field(default=3600.0, metadata=doc("Seconds before the step is stopped.", minimum=1, maximum=604800))
    check: str | None = field(default=None, metadata=doc("Bash that exits 0 when the step is already done."))
    sudo: bool = field(default=False, metadata=doc("Run as root (through sudo -n for other users)."))
    reboot: bool = field(default=False, metadata=doc("Reboot the host after the step."))
    retries: int = field(default=0, metadata=doc("Extra attempts after a failure.", minimum=0, maximum=10))
    env: dict[str, str] = field(default_factory=dict, metadata=doc(
        "Environment variables for the step.", key_pattern=ENV_VAR_RE))


@dataclass
class Recipe:
    """A whole recipe. ``version`` is the format version; only 1 exists."""

    version: int = field(default=1, metadata=doc("Recipe format version.", enum=[1], required=True))
    name: str = field(default="my-experiment", metadata=doc(
        "Recipe name: lower-case letters, digits and dashes (it becomes VM names and labels).",
        pattern=NAME_RE, required=True))
    description: str | None = field(default=None, metadata=doc("What this recipe is for."))
    target: Target = field(default_factory=Target, metadata=doc("Where to run.", required=True))
    ssh: Ssh = field(default_factory=Ssh, metadata=doc("How to reach the hosts."))
    driver: Driver | None = field(default=None, metadata=doc(
        "NVIDIA driver + CUDA stack, or `preinstalled`; omit for no driver work."))
    env: Env | None = field(default=None, metadata=doc("Python environment."))
    rclone: Rclone | None = field(default=None, metadata=doc("rclone remotes."))
    datasets: list[Dataset] = field(default_factory=list, metadata=doc("Datasets to fetch."))
    steps: list[UserStep] = field(default_factory=list, metadata=doc("Your own steps, run last."))

    # Positions of every loaded node ("target.gcp.zones[1]" -> (line, col)) for
    # cross-field errors, and the text it came from (saving an unchanged recipe writes
    # it back byte for byte). Neither takes part in equality.
    marks: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    source: str | None = field(default=None, compare=False, repr=False)
    pristine: Any = field(default=None, compare=False, repr=False)

    # ---------------------------------------------------------------- conveniences

    def mark(self, path: str) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest loaded parent, else (1, 1)."""
        p = path
        while p:
            if p in self.marks:
                return self.marks[p]
            p = re.sub(r"(\.[^.\[]+|\[[0-9]+\])$", "", p) if re.search(r"(\.[^.\[]+|\[[0-9]+\])$", p) else ""
        return (1, 1)

    def problem(self, path: str, message: str, warning: bool = False) -> Problem:
        line, col = self.mark(path)
        return Problem(line, col, path, message, warning)

    @property
    def hosts(self) -> list[str]:
        return list(self.target.ssh.hosts) if self.target.ssh else []


_MODEL_CLASSES = (Gpu, GcpTarget, SshTarget, Target, Ssh, Driver, Repo, Env, Remote, Rclone,
                  Dataset, UserStep, Recipe)
_SKIP_FIELDS = {"marks", "source", "pristine"}


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _model_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in _SKIP_FIELDS]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# ---------------------------------------------------------------------------- loading


class _Loader:
    """Turns a YAML node tree into the model, collecting problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.marks: dict[str, tuple[int, int]] = {}

    @staticmethod
    def pos(node: Any) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def err(self, node: Any, path: str, message: str) -> None:
        line, col = self.pos(node)
        self.problems.append(Problem(line, col, path, message))

    # -- scalars

    def scalar(self, node: Any, path: str, tp: Any, meta: dict[str, Any]) -> Any:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            self.err(node, path, f"expected {_type_word(tp)}, got a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
            return _BAD
        if not node.tag.startswith("tag:yaml.org,2002:") or node.tag.rsplit(":", 1)[-1] not in _STD_TAGS:
            self.err(node, path, "YAML tags (!something) are not allowed in a recipe; write a plain value")
            return _BAD
        tag = node.tag.rsplit(":", 1)[-1]
        raw = node.value
        if tag == "null" and tp is not type(None):
            self.err(node, path, f"expected {_type_word(tp)}, got null")
            return _BAD
        if tp is bool:
            if tag != "bool":
                self.err(node, path, f"expected true or false, got {raw!r}")
                return _BAD
            return raw.lower() in ("true", "yes", "on")
        if tp is int:
            if tag != "int":
                self.err(node, path, f"expected a whole number, got {raw!r}")
                return _BAD
            value: Any = int(raw.replace("_", ""), 0)
        elif tp is float:
            if tag not in ("int", "float"):
                self.err(node, path, f"expected a number, got {raw!r}")
                return _BAD
            value = float(raw.replace("_", ""))
        elif tp is str:
            if tag not in ("str", "int", "float"):
                self.err(node, path, f"expected a string, got {raw!r}")
                return _BAD
            if tag != "str" and meta.get("pattern") and not node.style:
                # Versions such as `branch: 580` or `cuda: 12.8` mean the string; accept them.
                pass
            value = raw
            if "\x00" in value:
                self.err(node, path, "contains a NUL byte")
                return _BAD
        else:  # Any scalar (rclone options)
            import yaml as _y

            value = _y.safe_load(_y.serialize(node)) if tag not in ("str",) else raw
        self.check_constraints(node, path, value, meta)
        return value

    def check_constraints(self, node: Any, path: str, value: Any, meta: dict[str, Any]) -> None:
        if meta.get("path") and isinstance(value, str):
            if not value.strip():
                self.err(node, path, "empty path")
            elif re.search(r"[\x00-\x1f\x7f]", value):
                self.err(node, path, "a path or URL must be one line, without line breaks or other "
                                     "control characters")
        if "enum" in meta and value not in meta["enum"]:
            choices = ", ".join(str(c) for c in meta["enum"])
            self.err(node, path, f"must be one of {choices} (got {value!r})")
        if "pattern" in meta and isinstance(value, str) and not re.match(meta["pattern"], value):
            self.err(node, path, _pattern_message(path, value))
        if "minimum" in meta and isinstance(value, (int, float)) and value < meta["minimum"]:
            self.err(node, path, f"must be at least {meta['minimum']} (got {value})")
        if "maximum" in meta and isinstance(value, (int, float)) and value > meta["maximum"]:
            self.err(node, path, f"must be at most {meta['maximum']} (got {value})")

    # -- generic

    def value(self, node: Any, path: str, tp: Any, meta: dict[str, Any]) -> Any:
        import yaml

        self.marks[path] = self.pos(node)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                return None
            if len(non_none) == 1:
                return self.value(node, path, non_none[0], meta)
            if set(non_none) == {bool, str}:  # tensorrt: true | "10.4"
                if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool"):
                    return self.scalar(node, path, bool, {})
                return self.scalar(node, path, str, {"pattern": r"^[0-9]+(\.[0-9]+)*$"})
            raise TypeError(tp)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                self.err(node, path, f"expected a list, got {_node_word(node)}")
                return _BAD
            out = []
            item_meta = {"pattern": meta["item_pattern"]} if "item_pattern" in meta else {}
            for i, child in enumerate(node.value):
                v = self.value(child, f"{path}[{i}]", args[0], item_meta)
                if v is not _BAD:
                    out.append(v)
            return out
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.err(node, path, f"expected a mapping, got {_node_word(node)}")
                return _BAD
            out_d: dict[str, Any] = {}
            for knode, vnode in node.value:
                key = knode.value if isinstance(knode, yaml.ScalarNode) else None
                if key is None:
                    self.err(knode, path, "keys must be plain strings")
                    continue
                kp = f"{path}.{key}"
                if key in out_d:
                    self.err(knode, kp, "duplicate key")
                    continue
                if "key_pattern" in meta and not re.match(meta["key_pattern"], key):
                    what = {REMOTE_NAME_RE: "a remote name is a letter then letters, digits or _ (it becomes "
                                            "an environment variable name on the host)",
                            ENV_VAR_RE: "an environment variable name is letters, digits and _, not starting "
                                        "with a digit"}.get(meta["key_pattern"], "unexpected characters")
                    self.err(knode, kp, f"{key!r} is not a valid name: {what}")
                    continue
                v = self.value(vnode, kp, args[1], {})
                if v is not _BAD:
                    out_d[key] = v
            return out_d
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, path, tp)
        if tp is Any:
            if not isinstance(node, yaml.ScalarNode):
                self.err(node, path, f"expected a plain value, got {_node_word(node)}")
                return _BAD
            return self.scalar(node, path, Any, meta)
        return self.scalar(node, path, tp, meta)

    def dataclass(self, node: Any, path: str, cls: type) -> Any:
        import yaml

        if cls is Driver and isinstance(node, yaml.ScalarNode) and node.value == "preinstalled":
            return Driver(preinstalled=True)
        if not isinstance(node, yaml.MappingNode):
            hint = " (or `preinstalled`)" if cls is Driver else ""
            self.err(node, path, f"expected a mapping{hint}, got {_node_word(node)}")
            return _BAD
        flds = {_yaml_key(f): f for f in _model_fields(cls)}
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        seen: set[str] = set()
        extra: dict[str, Any] = {}
        bad = False
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.err(knode, path, "keys must be plain strings")
                continue
            key = knode.value
            kp = f"{path}.{key}" if path else key
            if key in seen:
                self.err(knode, kp, f"duplicate key {key!r}; remove one of them")
                continue
            seen.add(key)
            if key == "<<":
                self.err(knode, kp, "merge keys (<<) are not supported; write the fields out")
                continue
            f = flds.get(key)
            if f is None or f.metadata.get("inline"):
                if cls is Remote:
                    extra[key] = (knode, vnode)
                    continue
                self.err(knode, kp, _unknown_key(key, list(flds)))
                bad = True
                continue
            v = self.value(vnode, kp, hints[f.name], dict(f.metadata))
            if v is _BAD:
                bad = True
                continue
            kwargs[f.name] = v
        misspelt = {difflib.get_close_matches(k, list(flds), n=1, cutoff=0.6)[0]
                    for k in seen if k not in flds and difflib.get_close_matches(k, list(flds), n=1, cutoff=0.6)}
        for key, f in flds.items():
            if key in misspelt:
                continue  # "unknown key 'traget'; did you mean 'target'?" already says it
            if f.metadata.get("required") and key not in seen and not f.metadata.get("inline"):
                self.err(node, f"{path}.{key}" if path else key,
                         f"missing required field {key!r}: {f.metadata['doc']}")
                bad = True
        if cls is Remote:
            kwargs["options"] = self.remote_options(path, extra)
        if bad and path == "":
            # Keep going to collect everything; the top-level caller discards the value.
            pass
        try:
            return cls(**kwargs)
        except TypeError:  # pragma: no cover - defensive
            return _BAD

    def remote_options(self, path: str, extra: dict[str, Any]) -> dict[str, Any]:
        import yaml

        opts: dict[str, Any] = {}
        for key, (knode, vnode) in extra.items():
            kp = f"{path}.{key}"
            self.marks[kp] = self.pos(vnode)
            if not re.match(r"^[a-z][a-z0-9_]*$", key):
                self.err(knode, kp, f"{key!r} is not an rclone option name (lower_case_with_underscores)")
                continue
            if not isinstance(vnode, yaml.ScalarNode):
                self.err(vnode, kp, f"expected a plain value, got {_node_word(vnode)}")
                continue
            if key in SECRET_KEYS:
                self.err(knode, kp, f"secrets are not allowed in a recipe: put it in a file and use "
                                    f"{key}_file, or in an environment variable and use {key}_env")
                continue
            value = self.scalar(vnode, kp, Any, {})
            if isinstance(value, str) and looks_secret(value):
                self.err(vnode, kp, "this looks like a credential; secrets are not allowed in a recipe: "
                                    f"use {key}_file or {key}_env")
                continue
            opts[key] = value
        return opts


_STD_TAGS = {"str", "int", "float", "bool", "null", "timestamp", "binary"}


class _Bad:
    def __repr__(self) -> str:
        return "<bad>"


_BAD: Any = _Bad()


def _node_word(node: Any) -> str:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if node.tag.endswith(":null"):
        return "null"
    return repr(node.value)


def _type_word(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(tp, "a plain value")


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; expected one of: {', '.join(known)}"


def _pattern_message(path: str, value: str) -> str:
    leaf = path.rsplit(".", 1)[-1].split("[")[0]
    shown = value if len(value) <= 60 else value[:57] + "..."
    hints = {
        "name": "use lower-case letters, digits and dashes, starting with a letter (max 63)",
        "name_prefix": "use lower-case letters, digits and dashes, starting with a letter (max 63)",
        "zones": "zones look like us-central1-a",
        "hosts": "hosts look like user@host or user@host:2222",
        "branch": "a driver branch is three digits, e.g. '580'",
        "cuda": "CUDA is major.minor, e.g. '12.8'",
        "python": "Python is 3.minor, e.g. '3.10'",
        "torch": "PyTorch is a version such as '2.9.1'",
        "torch_index": "the index is cuXYZ (e.g. cu126) or cpu",
        "user": "a Linux user name: lower-case letters, digits, _ and -",
        "ref": "a branch, tag or commit name",
        "machine_type": "machine types look like n1-standard-4",
        "project": "project ids are 6-30 lower-case letters, digits and dashes",
        "type": "a backend type is a lower-case word such as drive or http",
        "version": "a version such as 1.68.2",
        "cudnn": "cuDNN is a version such as '9'",
        "tensorrt": "use true, false or a TensorRT version such as '10.4'",
    }
    return f"{shown!r} is not valid: {hints.get(leaf, 'unexpected characters')}"


def _problem_for_yaml_error(exc: Exception) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None) or ""
    problem = getattr(exc, "problem", None) or str(exc)
    if "quoted scalar" in context and getattr(exc, "context_mark", None) is not None:
        m = exc.context_mark  # type: ignore[attr-defined]
        return Problem(m.line + 1, m.column + 1, "", "YAML syntax error: the quoted string that starts here is never closed")
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    msg = f"YAML syntax error: {problem}"
    if "did not find expected key" in problem or "expected <block end>" in problem:
        msg += " (check the indentation of this line: it must line up with its siblings)"
    if "\t" in problem or "tab" in problem:
        msg = "YAML syntax error: a tab character; indent with spaces"
    elif "mapping values are not allowed" in problem:
        msg += " (a value containing ': ' needs quotes)"
    elif "could not find expected ':'" in problem:
        msg += " (a key is missing its colon, or a quote is not closed)"
    elif "found undefined tag" in problem or "could not determine a constructor" in problem:
        msg = "YAML tags (!something) are not allowed in a recipe"
    return Problem(line, col, "", msg)


def loads(text: str | bytes, filename: str = "<recipe>") -> Recipe:
    """Parse a recipe, raising :class:`RecipeError` with every problem found."""
    recipe, problems = parse(text, filename)
    if recipe is None or any(not p.warning for p in problems):
        raise RecipeError(filename, problems or [Problem(1, 1, "", "invalid recipe")])
    return recipe


def parse(text: str | bytes, filename: str = "<recipe>") -> tuple[Recipe | None, list[Problem]]:
    """Parse a recipe and collect every shape problem without raising.

    The recipe comes back even when some fields were wrong (they keep their defaults),
    so later checks (:mod:`gpuwizard.validate`) can add their problems to the same
    report; it is None only when the text is not a YAML mapping at all.
    """
    try:
        return _parse(text, filename)
    except RecipeError as exc:
        return None, exc.problems


def _parse(text: str | bytes, filename: str) -> tuple[Recipe | None, list[Problem]]:
    import yaml

    if isinstance(text, bytes):
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(filename, [Problem(1, 1, "", f"file is {len(text):,} bytes; a recipe must be under {MAX_RECIPE_BYTES:,}")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = text[: exc.start]
            line = before.count(b"\n") + 1
            col = exc.start - (before.rfind(b"\n") + 1) + 1
            raise RecipeError(filename, [Problem(line, col, "", "not UTF-8 text: is this a recipe file?")]) from None
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(filename, [Problem(1, 1, "", f"file is {len(text):,} characters; a recipe must be under {MAX_RECIPE_BYTES:,}")])
    bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    if bad:
        before = text[: bad.start()]
        line = before.count("\n") + 1
        col = bad.start() - (before.rfind("\n") + 1) + 1
        raise RecipeError(filename, [Problem(line, col, "", f"control character {bad.group()!r} in the file: is this a recipe?")])
    tab = re.search(r"^( *)\t", text, re.M)
    if tab:
        before = text[: tab.start()]
        line = before.count("\n") + 1
        raise RecipeError(filename, [Problem(line, len(tab.group(1)) + 1, "", "a tab character in the indentation; indent with spaces")])
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader_cls)
    except yaml.YAMLError as exc:
        raise RecipeError(filename, [_problem_for_yaml_error(exc)]) from None
    if node is None:
        raise RecipeError(filename, [Problem(1, 1, "", "the file is empty; start from `gpuwizard` or a recipe in recipes/")])
    if not isinstance(node, yaml.MappingNode):
        raise RecipeError(filename, [Problem(node.start_mark.line + 1, node.start_mark.column + 1, "",
                                             f"a recipe is a mapping of fields (version, name, target, ...), got {_node_word(node)}")])
    _check_aliases(node, filename)
    ld = _Loader()
    recipe = ld.dataclass(node, "", Recipe)
    if recipe is _BAD:
        return None, ld.problems or [Problem(1, 1, "", "invalid recipe")]
    recipe.marks = ld.marks
    recipe.source = text
    problems = merge_problems(ld.problems, structural_problems(recipe))
    recipe.pristine = to_data(recipe)
    return recipe, problems


def _related(a: str, b: str) -> bool:
    """True when one path is the other or lies under it (``x`` and ``x.y`` / ``x[0]``)."""
    return a == b or a.startswith(b + ".") or a.startswith(b + "[") or b.startswith(a + ".") or b.startswith(a + "[") or not a or not b


def merge_problems(first: list[Problem], later: list[Problem]) -> list[Problem]:
    """Add later-stage problems unless an earlier one already covers that part of the
    recipe: a field that failed to parse was replaced by its default, so checks on it
    would only add noise."""
    return first + [p for p in later if not any(_related(p.path, q.path) for q in first)]


def _check_aliases(root: Any, filename: str) -> None:
    """Refuse YAML anchors/aliases: they make recipes hard to read and enable entity bombs."""
    import yaml

    seen: set[int] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise RecipeError(filename, [Problem(n.start_mark.line + 1, n.start_mark.column + 1, "",
                                                 "YAML anchors and aliases (&x / *x) are not allowed; write the value out")])
        seen.add(id(n))
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))


def read(path: str) -> bytes:
    """The bytes of a recipe file, or :class:`RecipeError` saying why they can't be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(path, [Problem(1, 1, "", f"cannot read the file: {exc.strerror}")]) from None


def load(path: str) -> Recipe:
    """Read and parse a recipe file (see :func:`loads`)."""
    return loads(read(path), path)


def structural_problems(r: Recipe) -> list[Problem]:
    """Checks that need more than one field but no catalog."""
    out: list[Problem] = []
    t = r.target
    if t.gcp is None and t.ssh is None and ("target" in r.marks or not r.marks):
        out.append(r.problem("target", "set target.gcp (provision VMs) or target.ssh.hosts (existing machines)"))
    if t.gcp is not None and t.ssh is not None:
        out.append(r.problem("target.ssh", "target.gcp and target.ssh exclude each other; keep one"))
    if t.ssh is not None and not t.ssh.hosts:
        out.append(r.problem("target.ssh.hosts", "list at least one host, e.g. ubuntu@203.0.113.7"))
    if t.ssh is not None and len(set(t.ssh.hosts)) != len(t.ssh.hosts):
        seen: set[str] = set()
        for i, h in enumerate(t.ssh.hosts):
            if h in seen:
                out.append(r.problem(f"target.ssh.hosts[{i}]", f"{h} is listed twice"))
            seen.add(h)
    names: dict[str, int] = {}
    for i, s in enumerate(r.steps):
        if s.name in names:
            out.append(r.problem(f"steps[{i}].name", f"step name {s.name!r} is already used by steps[{names[s.name]}]"))
        names.setdefault(s.name, i)
        if not s.run.strip():
            out.append(r.problem(f"steps[{i}].run", "empty command"))
        for key, val in s.env.items():
            if looks_secret(val):
                out.append(r.problem(f"steps[{i}].env.{key}", "this looks like a credential; secrets are not "
                                     "allowed in a recipe: read it from a file on the host or an uploaded file"))
    for i, s in enumerate(r.steps):
        if looks_secret(s.run):
            out.append(r.problem(f"steps[{i}].run", "this command embeds a credential; secrets are not allowed in a recipe"))
    remotes = r.rclone.remotes if r.rclone else {}
    for i, d in enumerate(r.datasets):
        p = f"datasets[{i}]"
        if not d.from_:
            out.append(r.problem(f"{p}.from", "empty source; write REMOTE:path or a Google Drive link"))
            continue
        if d.from_.startswith(("http://", "https://")):
            if "drive.google.com" in d.from_ or "docs.google.com" in d.from_ or "drive.usercontent.google.com" in d.from_:
                if d.remote is None:
                    out.append(r.problem(f"{p}.remote", "a Google Drive link is fetched through a drive remote: "
                                         "add `remote: NAME` naming one of rclone.remotes"))
                elif d.remote not in remotes:
                    out.append(r.problem(f"{p}.remote", _missing_remote(d.remote, remotes)))
            continue
        if ":" not in d.from_:
            out.append(r.problem(f"{p}.from", f"{d.from_!r} names no remote; write REMOTE:path (e.g. gdrive:data.zip)"))
            continue
        name = d.from_.split(":", 1)[0]
        if name.startswith(":"):
            continue
        if name not in remotes:
            out.append(r.problem(f"{p}.from", _missing_remote(name, remotes)))
    for name, rem in remotes.items():
        if rem.type == "drive":
            scope = rem.options.get("scope", DEFAULT_SCOPE)
            ok = set(DRIVE_SCOPES)
            if any(s not in ok for s in str(scope).split(",")):
                out.append(r.problem(f"rclone.remotes.{name}.scope", f"unknown Drive scope {scope!r}; use one of {', '.join(sorted(ok))}"))
    return out


def _missing_remote(name: str, remotes: dict[str, Any]) -> str:
    if not remotes:
        return f"remote {name!r} is not defined; add it under rclone.remotes (or run `gpuwizard rclone`)"
    close = difflib.get_close_matches(name, list(remotes), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(remotes)}"
    return f"remote {name!r} is not defined under rclone.remotes{hint}"


# ---------------------------------------------------------------------------- saving


def to_data(obj: Any) -> Any:
    """The recipe as plain YAML-ready data, leaving out fields still at their default."""
    if isinstance(obj, Driver) and obj.preinstalled:
        return "preinstalled"
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in _model_fields(type(obj)):
            v = getattr(obj, f.name)
            if f.metadata.get("inline"):
                out.update({k: to_data(x) for k, x in v.items()})
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)  # type: ignore[misc]
            if v == default and not (f.metadata.get("required") or f.metadata.get("always")):
                continue
            out[_yaml_key(f)] = to_data(v)
        return out
    if isinstance(obj, list):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def dumps(recipe: Recipe, header: str | None = None) -> str:
    """Serialize to YAML. An unchanged loaded recipe is returned as its original text,
    so opening and saving a recipe never rewrites a user's comments or layout."""
    import yaml

    data = to_data(recipe)
    if recipe.source is not None and recipe.pristine == data:
        return recipe.source
    if header is None and recipe.source is not None:
        header = _leading_comments(recipe.source)
    if header is None:
        header = f"# yaml-language-server: $schema={SCHEMA_URL}\n"

    class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
        pass

    def _str(dumper: Any, s: str) -> Any:
        style = "|" if "\n" in s else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    _Dumper.add_representer(str, _str)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or not line.strip():
            lines.append(line)
        else:
            break
    return "".join(lines)


def save(recipe: Recipe, path: str) -> None:
    """Write atomically: a crash mid-save never leaves half a recipe behind."""
    import os
    import tempfile

    text = dumps(recipe)
    d = os.path.dirname(os.path.abspath(path))
    try:  # a recipe is meant to be shared: keep the file's mode, or the umask's default
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".recipe-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------- schema


def json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (draft 2020-12), generated from the dataclasses."""
    defs: dict[str, Any] = {}

    def of(tp: Any, meta: dict[str, Any]) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            alts = [of(a, meta) for a in non_none]
            if type(None) in args:
                alts.append({"type": "null"})
            return alts[0] if len(alts) == 1 else {"anyOf": alts}
        if origin is list:
            item_meta = {"pattern": meta["item_pattern"]} if "item_pattern" in meta else {}
            return {"type": "array", "items": of(args[0], item_meta)}
        if origin is dict:
            s: dict[str, Any] = {"type": "object", "additionalProperties": of(args[1], {})}
            if "key_pattern" in meta:
                s["propertyNames"] = {"pattern": meta["key_pattern"]}
            return s
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}
                defs[name] = obj(tp)
            ref = {"$ref": f"#/$defs/{name}"}
            if tp is Driver:
                return {"anyOf": [ref, {"const": "preinstalled"}]}
            return ref
        base = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
                str: {"type": "string"}}.get(tp, {"type": ["string", "number", "boolean"]})
        s = dict(base)
        for k in ("pattern", "minimum", "maximum", "enum"):
            if k in meta:
                s[k] = meta[k]
        return s

    def obj(cls: type) -> dict[str, Any]:
        props: dict[str, Any] = {}
        required = []
        hints = _hints(cls)
        for f in _model_fields(cls):
            if f.metadata.get("inline"):
                continue
            s = of(hints[f.name], dict(f.metadata))
            s = {**s, "description": f.metadata.get("doc", "")}
            props[_yaml_key(f)] = s
            if f.metadata.get("required"):
                required.append(_yaml_key(f))
        out: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip().split("\n\n")[0],
                               "properties": props, "additionalProperties": cls is Remote}
        if cls is Remote:
            out["additionalProperties"] = {"type": ["string", "number", "boolean"]}
            out["propertyNames"] = {"not": {"enum": sorted(SECRET_KEYS)}}
        if required:
            out["required"] = required
        return out

    root = obj(Recipe)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_URL,
            "title": "gpuwizard recipe", **root, "$defs": defs}
