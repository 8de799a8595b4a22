"""Recipe -> ordered Steps. Pure functions: nothing here touches a host or the network.

Order on every host: the NVIDIA stack (``drivers``) -> the Python environment
(``envsteps``) -> rclone and the datasets (``rclone``) -> verification (``verify``) ->
the user's own steps. Each part builds its steps from the recipe and quotes every
recipe string that reaches the shell (:mod:`gpuwizard.shell`). For a ``target.gcp``
recipe, provisioning happens before these steps run; :func:`describe_provision` says
what will be created and what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuwizard import catalog, drivers, envsteps, rclone, verify
from gpuwizard.autostop import settings as autostop
from gpuwizard.gcp import cluster_spec
from gpuwizard.recipe import Recipe, UserStep
from gpuwizard.steps import Step


# Runs before every user step, so a step sees what a person at the VM would after
# logging in: CUDA on PATH (the executor's shells skip /etc/profile.d on purpose).
CUDA_PROFILE = (f"if [ -r {drivers.PROFILE_FILE} ]; then set +u; . {drivers.PROFILE_FILE}; "
                "set -u; fi\n")


def user_step(s: UserStep, recipe: Recipe | None = None) -> Step:
    """The recipe's own step. Its ``run`` is the user's shell code, run with CUDA on PATH,
    the recipe's environment active and, when it cloned a repository, inside the clone."""
    prelude = ""
    if recipe is not None:
        prelude = "# gpuwizard: CUDA on PATH, the environment active, inside the clone\n" + CUDA_PROFILE
        prelude += envsteps.activation(recipe)
        prelude += "# the step\n"
    return Step(id=f"user.{s.name}", title=s.name, run=prelude + s.run, check=s.check, sudo=s.sudo,
                reboot=s.reboot, timeout=s.timeout, retries=s.retries,
                env=tuple(sorted(s.env.items())), phase="user")


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
    steps += [user_step(s, recipe) for s in recipe.steps]
    seen: set[str] = set()
    for st in steps:
        if st.id in seen:  # pragma: no cover - a planner bug, not a user error
            raise ValueError(f"duplicate step id {st.id}")
        seen.add(st.id)
    return steps


def select(steps: list[Step], only: list[str] | None) -> list[Step]:
    """Steps whose id equals or starts with one of ``only`` (``--only driver`` takes all driver.*)."""
    if not only:
        return steps
    return [s for s in steps if any(s.id == o or s.id.startswith(o + ".") for o in only)]


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
    cluster: list[str] = field(default_factory=list)   # a GCP cluster's network (gcp/cluster_spec.plan_notes)

    def lines(self) -> list[str]:
        if self.hourly is None:
            cost = f"price unknown: {self.cost_unknown}"
        else:
            total = f", ~${self.hourly * self.vms:.2f}/hour in all" if self.vms > 1 else ""
            cost = f"~${self.hourly:.2f}/hour per VM{total} ({self.cost_assumes})"
        model = "spot" if self.spot else "on-demand"
        return [
            f"create {self.vms} x {self.machine_type} with {self.gpu} ({model}), {self.image}, {self.disk_gb} GB disk",
            f"zones, tried in order: {', '.join(self.zones) or '(none)'}",
            f"cost: {cost}; delete with `gpuwizard down`",
            self.autostop_line(),
        ] + self.cluster

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
    return ProvisionSummary(vms=cluster_spec.node_count(recipe), machine_type=g.machine_type, gpu=gpu, zones=list(g.zones), spot=g.spot,
                            image=g.image, disk_gb=g.disk_gb, hourly=price.per_hour, cost_assumes=price.assumes,
                            cost_unknown=price.why, autostop=autostop.describe(recipe),
                            cluster=cluster_spec.plan_notes(recipe))
