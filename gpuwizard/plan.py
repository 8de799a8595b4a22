"""Recipe -> ordered Steps. Pure functions: nothing here touches a host or the network.

Order on every host: the NVIDIA stack (``drivers``) -> the Python environment
(``envsteps``) -> rclone and the datasets (``rclone``) -> verification (``verify``) ->
the user's own steps. Each part builds its steps from the recipe and quotes every
recipe string that reaches the shell (:mod:`gpuwizard.shell`). For a ``target.gcp``
recipe, provisioning happens before these steps run; :func:`describe_provision` says
what will be created and what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuwizard import catalog, drivers, envsteps, rclone, verify
from gpuwizard.autostop import settings as autostop
from gpuwizard.cluster import env as cluster_env
from gpuwizard.cluster import torchrun
from gpuwizard.cluster.nodes import rank_label
from gpuwizard.cluster.plan import gpus_per_node, where
from gpuwizard.gcp import consumption
from gpuwizard.recipe import Recipe, UserStep
from gpuwizard.steps import Step


# Runs before every user step, so a step sees what a person at the VM would after
# logging in: CUDA on PATH (the executor's shells skip /etc/profile.d on purpose).
CUDA_PROFILE = (f"if [ -r {drivers.PROFILE_FILE} ]; then set +u; . {drivers.PROFILE_FILE}; "
                "set -u; fi\n")


def user_step(s: UserStep, recipe: Recipe | None = None) -> Step:
    """The recipe's own step. Its ``run`` is the user's shell code, run with CUDA on PATH,
    the recipe's environment active and, when it cloned a repository, inside the clone.
    In a ``launcher: torchrun`` cluster the ``gpuwizard torchrun`` helper is on PATH too,
    and a step that calls it is a gang step (every node at once; one rank failing
    stops it everywhere)."""
    prelude = ""
    helper = recipe is not None and has_helper(recipe)
    if recipe is not None:
        prelude = "# gpuwizard: CUDA on PATH, the environment active, inside the clone\n" + CUDA_PROFILE
        prelude += envsteps.activation(recipe)
        if helper:
            prelude += "# gpuwizard: the `gpuwizard torchrun` helper on PATH\n" + torchrun.PATH_SH.rstrip("; ") + "\n"
        prelude += "# the step\n"
    return Step(id=f"user.{s.name}", title=s.name, run=prelude + s.run, check=s.check, sudo=s.sudo,
                reboot=s.reboot, timeout=s.timeout, retries=s.retries,
                env=tuple(sorted(s.env.items())), phase="user", on=s.on,
                gang=helper and torchrun.uses_torchrun(s.run))


def has_helper(recipe: Recipe) -> bool:
    """Whether the nodes get the ``gpuwizard torchrun`` helper (``launcher: torchrun``)."""
    return recipe.cluster is not None and recipe.cluster.launcher == "torchrun"


def helper_step() -> Step:
    """Writes the ``gpuwizard torchrun`` helper on every node (skipped when it is there)."""
    return Step(id=torchrun.STEP_ID, title="gpuwizard torchrun helper", run=torchrun.install_script(),
                check=torchrun.check_script(), timeout=60.0, phase="user")


def build(recipe: Recipe) -> list[Step]:
    """The full ordered step list for each host of ``recipe``.

    The auto-stop agent comes first, so a VM is never left billing by a run that fails or
    is abandoned later. A preinstalled driver is checked next: an environment built on a
    host whose GPU does not work is time (and money) wasted."""
    checks = verify.steps(recipe)
    first, last = (checks[:1], checks[1:]) if drivers.is_verify_only(recipe) else ([], checks)
    agent = autostop.from_recipe(recipe)
    steps: list[Step] = [autostop.install_step(agent)] if agent is not None else []
    steps += first
    steps += drivers.steps(recipe)
    steps += envsteps.steps(recipe)
    steps += rclone.steps(recipe)
    steps += last
    if has_helper(recipe) and recipe.steps:
        steps.append(helper_step())
    steps += [user_step(s, recipe) for s in recipe.steps]
    seen: set[str] = set()
    for st in steps:
        if st.id in seen:  # pragma: no cover - a planner bug, not a user error
            raise ValueError(f"duplicate step id {st.id}")
        seen.add(st.id)
    return steps


def cluster_size(recipe: Recipe) -> int:
    """How many nodes a cluster recipe has (0 without ``cluster``)."""
    c = recipe.cluster
    if c is None:
        return 0
    return c.nodes if c.nodes is not None else len(recipe.hosts)


def describe_cluster(recipe: Recipe) -> list[str]:
    """``plan``'s cluster section: the nodes by rank, the variables every step gets."""
    c = recipe.cluster
    if c is None:
        return []
    n = cluster_size(recipe)
    launcher = f"launcher {c.launcher}" if c.launcher else "no launcher"
    lines = [f"{n} nodes, {launcher}, rendezvous on node 0 port {c.master_port}"]
    hosts = recipe.hosts
    prefix = recipe.target.gcp.name_prefix or recipe.name if recipe.target.gcp is not None else ""
    for r in range(n):
        host = hosts[r] if r < len(hosts) else f"the VM {prefix}-RUN-{r}, created by `gpuwizard run`"
        lines.append(f"{rank_label(r)}: {host}")
    gpus = gpus_per_node(recipe)
    count = (f"{gpus} (target.gcp.gpu.count)" if gpus is not None
             else "counted on each node (nvidia-smi -L; 0 without GPUs)")
    lines.append("every step gets " + ", ".join(cluster_env.NAMES[:-1]) + f"; {cluster_env.GPUS_PER_NODE}: {count}")
    if recipe.target.gcp is not None:
        lines.append(f"{cluster_env.NODE_IPS} / {cluster_env.MASTER_ADDR}: the VMs' internal IPs, known once they exist")
    return lines


def step_where(recipe: Recipe, step: Step) -> str | None:
    """Where a step runs in a cluster, in words, with how the nodes take it together;
    None without ``cluster``."""
    if recipe.cluster is None:
        return None
    text = where(step, cluster_size(recipe))
    if step.gang:
        text += "; all at once: one node failing stops it on every node"
    elif step.barrier:
        text += "; starts once every node has reached it"
    return text


def select(steps: list[Step], only: list[str] | None) -> list[Step]:
    """Steps whose id equals or starts with one of ``only`` (``--only driver`` takes all driver.*).
    A step that calls ``gpuwizard torchrun`` brings the step that puts the helper on the
    nodes (skipped where it is there already)."""
    if not only:
        return steps
    picked = [s for s in steps if any(s.id == o or s.id.startswith(o + ".") for o in only)]
    helper = [s for s in steps if s.id == torchrun.STEP_ID]
    if helper and helper[0] not in picked and any(s.gang and s.phase == "user" for s in picked):
        first = next(i for i, s in enumerate(picked) if s.gang and s.phase == "user")
        picked.insert(first, helper[0])
    return picked


@dataclass(frozen=True)
class ProvisionSummary:
    """What ``gpuwizard run`` will create on Compute Engine, in words and dollars."""

    vms: int
    machine_type: str
    gpu: str
    zones: list[str]
    spot: bool
    image: str
    disk_gb: int
    hourly: float | None      # catalog.vm_price: machine + GPUs + boot disk; None: unknown
    cost_assumes: str = ""    # what the figure assumes (region, model, disk, snapshot)
    cost_unknown: str | None = None   # why there is no figure
    autostop: str = "auto-stop: off"  # settings.describe(recipe)
    model: str = ""           # the provisioning model in words (gcp/consumption.describe); "" from spot
    wait: str | None = None   # how long a stockout is waited out ("for up to 6h (target.gcp.wait)"); None: not

    def lines(self) -> list[str]:
        if self.hourly is None:
            cost = f"price unknown: {self.cost_unknown}"
        else:
            total = f", ~${self.hourly * self.vms:.2f}/hour in all" if self.vms > 1 else ""
            cost = f"~${self.hourly:.2f}/hour per VM{total} ({self.cost_assumes})"
        model = self.model or ("spot" if self.spot else "on-demand")
        wait = (f"on stockout: keep trying the zones {self.wait}" if self.wait else
                "on stockout: try each zone once, then stop (`gpuwizard run --wait` keeps trying)")
        return [
            f"create {self.vms} x {self.machine_type} with {self.gpu} ({model}), {self.image}, {self.disk_gb} GB disk",
            f"zones, tried in order: {', '.join(self.zones) or '(none)'}",
            wait,
            f"cost: {cost}; delete with `gpuwizard down`",
            self.autostop_line(),
        ]

    def autostop_line(self) -> str:
        """The auto-stop setting; without one, what a VM forgotten for a day costs."""
        if self.autostop != "auto-stop: off":
            return self.autostop
        if self.hourly is None:
            return ("warning: no autostop in this recipe: the VMs run (and bill) until `gpuwizard down`; "
                    "add `autostop: {idle: 30m}`")
        return (f"warning: no autostop in this recipe: a VM forgotten for a day costs ~${self.hourly * self.vms * 24:.0f}; "
                "add `autostop: {idle: 30m}`")


def describe_provision(recipe: Recipe) -> ProvisionSummary | None:
    g = recipe.target.gcp
    if g is None:
        return None
    gpu = f"{g.gpu.count} x {g.gpu.type}" if g.gpu else "no GPU"
    price = catalog.vm_price(g.machine_type, g.gpu.type if g.gpu else None, g.gpu.count if g.gpu else 0, g.spot,
                             disk_gb=g.disk_gb, disk_type=g.disk_type,
                             region=catalog.region_of(g.zones[0]) if g.zones else None)
    vms = cluster_size(recipe) if recipe.cluster is not None else g.count  # a cluster counts its VMs in nodes
    return ProvisionSummary(vms=vms, machine_type=g.machine_type, gpu=gpu, zones=list(g.zones), spot=g.spot,
                            image=g.image, disk_gb=g.disk_gb, hourly=price.per_hour, cost_assumes=price.assumes,
                            cost_unknown=price.why, autostop=autostop.describe(recipe),
                            model=consumption.describe(g),
                            wait=f"for up to {g.wait} (target.gcp.wait; `run --no-wait` fails at once)" if g.wait
                            else None)
