"""The recipe model: plain dataclasses whose fields double as the schema.

Their type hints drive parsing (:mod:`.load`), saving (:mod:`.save`) and the JSON Schema
(:mod:`.schema`), so the three cannot drift apart. Field metadata (:func:`doc`) carries
the documentation, the constraints and the *hint* a user sees when a value breaks them:
a hint belongs to its field, so two fields that share a name (``name`` of a recipe and
of a step) each explain their own rule.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from gpuwizard.recipe.values import host_problem, package_problem, repo_url_problem

SCHEMA_URL = "https://raw.githubusercontent.com/gpuwizard/gpuwizard/main/docs/recipe.schema.json"
MAX_RECIPE_BYTES = 1_000_000

# ---------------------------------------------------------------------------- errors

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a recipe, located at a YAML node (1-based line and column)."""

    line: int
    col: int
    path: str
    message: str
    warning: bool = False

    def format(self, filename: str) -> str:
        # A key such as "g\n" is wrong, and its path must still print on one line.
        path = _CONTROL.sub(lambda m: repr(m.group())[1:-1], self.path)
        where = f"{path}: " if path else ""
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


# ---------------------------------------------------------------------------- metadata


def doc(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: a description plus constraints.

    Keys the loader and the schema read: ``pattern`` / ``item_pattern`` / ``key_pattern``
    (anchored regexes, matched in full) with ``hint`` / ``item_hint`` / ``key_hint``
    (what a valid value looks like, shown when the pattern fails); ``max_length``;
    ``minimum`` / ``maximum``; ``enum``; ``check`` / ``item_check`` (a function from
    :mod:`.values` returning None or the problem, run once the pattern passed);
    ``path`` (one line, not empty); ``required``;
    ``always`` (saved even at its default); ``key`` (the YAML name); ``inline``;
    ``schema`` (extra JSON Schema keywords the loader leaves to :mod:`gpuwizard.validate`).
    """
    return {"doc": text, **extra}


# A DNS label (RFC 1123): VM names and label values must be one, so at most 63 characters.
NAME_MAX = 63
NAME_RE = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
NAME_HINT = ("use lower-case letters, digits and dashes, starting with a letter and not ending with a dash, "
             f"at most {NAME_MAX} characters (it becomes VM names and labels)")
STEP_NAME_MAX = 64
STEP_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
STEP_NAME_HINT = (f"a step name is letters, digits, '.', '_' and '-', starting with a letter or digit, "
                  f"at most {STEP_NAME_MAX} characters")
# Remote names become RCLONE_CONFIG_<NAME>_* variables on the host: letters, digits, _.
REMOTE_NAME_RE = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
REMOTE_NAME_HINT = ("a remote name is a letter then letters, digits or _, at most 32 characters (it becomes "
                    "an environment variable name on the host)")
ZONE_RE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"
ENV_VAR_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_VAR_HINT = "an environment variable name is letters, digits and _, not starting with a digit"
HOST_RE = r"^([A-Za-z0-9._-]+@)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$"
HOST_HINT = "hosts look like user@host or user@host:2222"
VERSION_RE = r"^[0-9]+(\.[0-9]+)*$"
DURATION_RE = r"^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
DURATION_HINT = "write a duration as 30m, 2h or 1h30m"


# ---------------------------------------------------------------------------- the model

_LAST_PART = re.compile(r"(\.[^.\[]+|\[[0-9]+\])\Z")  # ".name" or "[3]" at the end of a path


@dataclass
class Gpu:
    """A GPU attachment: the Compute Engine accelerator type and how many per VM."""

    type: str = field(default="nvidia-tesla-t4", metadata=doc(
        "Compute Engine accelerator type, e.g. nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100.", always=True))
    count: int = field(default=1, metadata=doc("GPUs per VM.", minimum=1, maximum=16, always=True))


@dataclass
class FlexStart:
    """DWS flex-start: Compute Engine finds the GPUs when it can, at a discount, and the VM runs
    for at most ``max_run``, then is deleted (docs/facts/gcp-flex-start-reservations.md)."""

    max_run: str = field(default="4h", metadata=doc(
        "How long the VM may run before Compute Engine deletes it: 10m to 7 days (168h), e.g. 4h.",
        pattern=DURATION_RE, hint=DURATION_HINT, always=True))


# A reservation by name (same project), or projects/P/reservations/NAME (shared from P),
# or `any` / `none` (docs/facts/gcp-flex-start-reservations.md).
RESERVATION_RE = (r"^(any|none|[a-z]([-a-z0-9]{0,61}[a-z0-9])?|"
                  r"projects/[a-z][-a-z0-9:.]{4,62}[a-z0-9]/reservations/[a-z]([-a-z0-9]{0,61}[a-z0-9])?)$")


@dataclass
class GcpTarget:
    """Provision VMs on Compute Engine, trying zones in order until one has capacity."""

    project: str | None = field(default=None, metadata=doc(
        "Google Cloud project id. Default: the Application Default Credentials project, "
        "then $GOOGLE_CLOUD_PROJECT.", pattern=r"^[a-z][-a-z0-9:.]{4,62}[a-z0-9]$",
        hint="a project id is lower-case letters, digits and dashes starting with a letter, e.g. my-project-123 "
             "(6 to 30 characters; up to 64 with a domain prefix such as example.com:)"))
    zones: list[str] = field(default_factory=list, metadata=doc(
        "Zones in preference order; provisioning fails over to the next one on a stockout.",
        item_pattern=ZONE_RE, item_hint="zones look like us-central1-a", always=True))
    machine_type: str = field(default="n1-standard-4", metadata=doc(
        "Machine type, e.g. n1-standard-4 (T4/V100/P100/P4), g2-standard-8 (L4), a2-highgpu-1g (A100).",
        pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]+$",
        hint="machine types look like n1-standard-4", always=True))
    gpu: Gpu | None = field(default_factory=Gpu, metadata=doc("The GPU to attach; null for a CPU-only VM.", always=True))
    spot: bool = field(default=False, metadata=doc("Spot VM: much cheaper, can be preempted at any time.", always=True))
    image: str = field(default="ubuntu-2204-lts", metadata=doc(
        "Image family: ubuntu-2204-lts, ubuntu-2404-lts-amd64, debian-12, or a Deep Learning VM "
        "family (driver preinstalled), or projects/P/global/images/NAME.", always=True))
    disk_gb: int = field(default=100, metadata=doc(
        "Boot disk size in GB; `gpuwizard validate` states the minimum for the image.",
        schema={"minimum": 10, "maximum": 65536}, always=True))
    disk_type: str = field(default="pd-balanced", metadata=doc(
        "Boot disk type: pd-balanced, pd-ssd, pd-standard or hyperdisk-balanced.",
        enum=["pd-balanced", "pd-ssd", "pd-standard", "hyperdisk-balanced"]))
    count: int = field(default=1, metadata=doc("How many identical VMs to create.", minimum=1, maximum=64))
    name_prefix: str | None = field(default=None, metadata=doc(
        "Prefix of the VM names; default: the recipe name.", pattern=NAME_RE, hint=NAME_HINT,
        max_length=NAME_MAX))
    reservation: str | None = field(default=None, metadata=doc(
        "Consume a reservation: its NAME (or projects/P/reservations/NAME for one shared with this "
        "project), `any` (any matching reservation) or `none` (never eat into a reservation).",
        pattern=RESERVATION_RE,
        hint="a reservation is a name such as my-a100-res, projects/P/reservations/NAME, any or none"))
    flex_start: FlexStart | None = field(default=None, metadata=doc(
        "DWS flex-start: discounted GPUs, found when Compute Engine can, running at most max_run "
        "(A2, A3, A4 and G2 machines; not with spot or a reservation)."))
    wait: str | None = field(default=None, metadata=doc(
        "When every zone is out of capacity, keep trying for this long (30m, 6h ...), as "
        "`gpuwizard run --wait --max-wait` does; the command line wins.",
        pattern=DURATION_RE, hint=DURATION_HINT))


@dataclass
class SshTarget:
    """Run on machines that already exist."""

    hosts: list[str] = field(default_factory=list, metadata=doc(
        "Hosts as [user@]host[:port].", item_pattern=HOST_RE, item_hint=HOST_HINT,
        item_check=host_problem))


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
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        hint="a Linux user name: lower-case letters, digits, _ and -, at most 32 characters"))
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
        pattern=r"^[0-9]{3}$", hint="a driver branch is three digits, e.g. '580'"))
    cuda: str | None = field(default=None, metadata=doc(
        "CUDA toolkit major.minor, e.g. '12.8'; null: driver only.", pattern=r"^[0-9]{2}\.[0-9]$",
        hint="CUDA is major.minor, e.g. '12.8'"))
    cudnn: str | None = field(default=None, metadata=doc("cuDNN major, e.g. '9'; null: none.", pattern=VERSION_RE,
                                                         hint="cuDNN is a version such as '9'"))
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
                                               path=True, check=repo_url_problem))
    ref: str | None = field(default=None, metadata=doc("Branch, tag or commit; default: the default branch.",
                                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$",
                                                        hint="a branch, tag or commit name"))
    dir: str | None = field(default=None, metadata=doc("Where to clone; default ~/<repo name>.", path=True))
    setup: list[str] = field(default_factory=list, metadata=doc(
        "Shell commands run once inside the clone with the environment active."))


@dataclass
class Env:
    """The Python environment the experiment runs in."""

    manager: str = field(default="venv", metadata=doc("venv (fast, default) or conda.", enum=["venv", "conda"], always=True))
    python: str = field(default="3.10", metadata=doc("Python version, e.g. '3.10'.", pattern=r"^3\.[0-9]{1,2}$",
                                                     hint="Python is 3.minor, e.g. '3.10'", always=True))
    path: str | None = field(default=None, metadata=doc("Environment location; default ~/venvs/<recipe name>.",
                                                         path=True))
    torch: str | None = field(default=None, metadata=doc(
        "PyTorch version, e.g. '2.9.1'; null: no PyTorch.", pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$",
        hint="PyTorch is a version such as '2.9.1'"))
    torch_index: str | None = field(default=None, metadata=doc(
        "PyTorch wheel index, e.g. cu126 or cu128. Default: chosen for the GPU and CUDA.",
        pattern=r"^(cu[0-9]{3}|cpu)$", hint="the index is cuXYZ (e.g. cu126) or cpu"))
    packages: list[str] = field(default_factory=list, metadata=doc(
        "Extra pip requirement specifiers, e.g. numpy==1.26.4.", item_check=package_problem))
    repo: Repo | None = field(default=None, metadata=doc("A repository to clone and set up."))


@dataclass
class Remote:
    """An rclone remote: a backend type plus that backend's options.

    Secrets are never inline: name a file (``token_file``, ``service_account_file``)
    or an environment variable (``client_secret_env``, ``pass_env``).
    """

    type: str = field(default="drive", metadata=doc(
        "rclone backend: drive, http, webdav, s3, sftp, ...", pattern=r"^[a-z][a-z0-9]*$", required=True,
        hint="a backend type is a lower-case word such as drive or http"))
    options: dict[str, Any] = field(default_factory=dict, metadata=doc(
        "Backend options, written beside type (scope, url, root_folder_id ...).", inline=True))


@dataclass
class Rclone:
    """rclone remotes the datasets copy from."""

    remotes: dict[str, Remote] = field(default_factory=dict, metadata=doc(
        "Remotes by name.", key_pattern=REMOTE_NAME_RE, key_hint=REMOTE_NAME_HINT))
    version: str | None = field(default=None, metadata=doc(
        "rclone version to install when the host's is older than 1.56, e.g. '1.68.2'.",
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$", hint="a version such as 1.68.2"))


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
class Autostop:
    """Stop (or delete) the VM when nobody uses it: an agent on the VM decides, so a closed
    laptop cannot leave a GPU billing. Activity is a gpuwizard step, any SSH connection
    (tunnels too), the GPU busy, a busy Jupyter kernel, or a touch of ~/.gpuwizard-keepalive."""

    idle: str = field(default="30m", metadata=doc(
        "Stop after this long without activity, e.g. 30m, 2h, 1h30m.", pattern=DURATION_RE,
        hint=DURATION_HINT, always=True))
    action: str = field(default="stop", metadata=doc(
        "stop (power off: the disk is kept and billed, the VM is not) or delete (VM and disk are gone). "
        "On existing SSH hosts only stop, which powers the machine off.", enum=["stop", "delete"], always=True))
    max_runtime: str | None = field(default=None, metadata=doc(
        "Stop after this long in any case (catches a stalled loop), e.g. 12h.", pattern=DURATION_RE,
        hint=DURATION_HINT))
    gpu_busy_percent: int = field(default=10, metadata=doc(
        "GPU utilisation (averaged over 5 minutes, with memory activity) that counts as use.",
        minimum=1, maximum=100))
    before: str | None = field(default=None, metadata=doc(
        "Bash run (as the login user, at most 5 minutes; 25 s on a Spot preemption) before the "
        "VM stops, e.g. to copy checkpoints."))


@dataclass
class Cluster:
    """Several nodes trained on as one cluster (torch.distributed): N VMs created together in
    one zone on GCP, or the listed SSH hosts in order. Every step sees GPUWIZARD_NODE_RANK,
    GPUWIZARD_NUM_NODES, GPUWIZARD_NODE_IPS, GPUWIZARD_MASTER_ADDR, GPUWIZARD_MASTER_PORT and
    GPUWIZARD_GPUS_PER_NODE; rank 0 (the first node) is the head."""

    nodes: int | None = field(default=None, metadata=doc(
        "How many nodes. GCP: how many VMs to create, all or none, in one zone. SSH: the listed hosts "
        "are the nodes (default: all of them).", minimum=2, maximum=64))
    launcher: str | None = field(default="torchrun", metadata=doc(
        "torchrun: steps may call `gpuwizard torchrun -- train.py ARGS`, run on every node at once.",
        enum=["torchrun"]))
    master_port: int = field(default=29500, metadata=doc(
        "TCP port of the rendezvous on the head node.", minimum=1024, maximum=65535))


@dataclass
class UserStep:
    """A command of your own, run after the environment and datasets are ready."""

    name: str = field(default="", metadata=doc("Step name, unique in the recipe.", pattern=STEP_NAME_RE, hint=STEP_NAME_HINT,
                                                     max_length=STEP_NAME_MAX, required=True))
    run: str = field(default="", metadata=doc(
        "Bash to run (under bash -euo pipefail), with CUDA on PATH, the recipe's environment active "
        "and, when env.repo is set, inside the clone.", required=True))
    timeout: float = field(default=3600.0, metadata=doc("Seconds before the step is stopped.", minimum=1, maximum=604800))
    check: str | None = field(default=None, metadata=doc("Bash that exits 0 when the step is already done."))
    sudo: bool = field(default=False, metadata=doc("Run as root (through sudo -n for other users)."))
    reboot: bool = field(default=False, metadata=doc("Reboot the host after the step."))
    retries: int = field(default=0, metadata=doc("Extra attempts after a failure.", minimum=0, maximum=10))
    env: dict[str, str] = field(default_factory=dict, metadata=doc(
        "Environment variables for the step.", key_pattern=ENV_VAR_RE, key_hint=ENV_VAR_HINT))
    on: str = field(default="all", metadata=doc(
        "In a cluster: run on all nodes, on the head node (rank 0) only, or on the workers only.",
        enum=["all", "head", "workers"]))


@dataclass
class Recipe:
    """A whole recipe. ``version`` is the format version; only 1 exists."""

    version: int = field(default=1, metadata=doc("Recipe format version.", enum=[1], required=True))
    name: str = field(default="my-experiment", metadata=doc(
        "Recipe name: lower-case letters, digits and dashes (it becomes VM names and labels).",
        pattern=NAME_RE, hint=NAME_HINT, max_length=NAME_MAX, required=True))
    description: str | None = field(default=None, metadata=doc("What this recipe is for."))
    target: Target = field(default_factory=Target, metadata=doc("Where to run.", required=True))
    ssh: Ssh = field(default_factory=Ssh, metadata=doc("How to reach the hosts."))
    driver: Driver | None = field(default=None, metadata=doc(
        "NVIDIA driver + CUDA stack, or `preinstalled`; omit for no driver work."))
    env: Env | None = field(default=None, metadata=doc("Python environment."))
    rclone: Rclone | None = field(default=None, metadata=doc("rclone remotes."))
    datasets: list[Dataset] = field(default_factory=list, metadata=doc("Datasets to fetch."))
    steps: list[UserStep] = field(default_factory=list, metadata=doc("Your own steps, run last."))
    autostop: Autostop | None = field(default=None, metadata=doc(
        "Stop the VM when nobody uses it (an agent on the VM decides); omit for no auto-stop."))
    cluster: Cluster | None = field(default=None, metadata=doc(
        "Train across several nodes with torch.distributed; omit for independent hosts."))

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
            p = _LAST_PART.sub("", p) if _LAST_PART.search(p) else ""
        return (1, 1)

    def problem(self, path: str, message: str, warning: bool = False) -> Problem:
        line, col = self.mark(path)
        return Problem(line, col, path, message, warning)

    @property
    def hosts(self) -> list[str]:
        return list(self.target.ssh.hosts) if self.target.ssh else []


_SKIP_FIELDS = {"marks", "source", "pristine"}


def yaml_key(f: dataclasses.Field) -> str:
    """The name a field has in YAML (``from_`` is written ``from``)."""
    return f.metadata.get("key", f.name)


def model_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a recipe file can hold (not the loader's bookkeeping)."""
    return [f for f in dataclasses.fields(cls) if f.name not in _SKIP_FIELDS]


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved type of each field (``from __future__ import annotations`` leaves strings)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]
