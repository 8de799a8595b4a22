"""The cluster's network check: an all-reduce across every node, its bus bandwidth set
beside what the machine type's network should give.

Runs after the single-node checks (``verify.gpu``), as one step on every node at once
(``gang``: the ranks meet at the head's rendezvous, and one that dies fails them all).
The program that runs on the nodes is :mod:`gpuwizard.allreduce_probe`, read as
package data and sent verbatim (stdlib + torch: NCCL on GPUs, gloo on CPU-only hosts).

Why a check at all: a cluster created without gVNIC or without compact placement works,
only slowly, and the user finds out hours into training (SkyPilot users measured 1.8x with
gVNIC, issue 16). Measured far below expected prints a plain warning; it does not fail the
run (a busy network is not a broken one). Expected figures: ``catalog/network.yaml``,
sourced in docs/facts/gcp-network-bandwidth.md.
"""

from __future__ import annotations

import importlib.resources
import json
from typing import TYPE_CHECKING

from gpuwizard import catalog, envsteps
from gpuwizard.shell import q
from gpuwizard.steps import Step

if TYPE_CHECKING:  # pragma: no cover
    from gpuwizard.recipe import Recipe

#: 1 MiB .. 256 MiB, as nccl-tests' usual sweep starts small and ends where bandwidth is flat.
DEFAULT_SIZES = (1 << 20, 8 << 20, 64 << 20, 256 << 20)
STEP_ID = "verify.allreduce"
#: How long a rank waits at the rendezvous for the others (a slow node still installing).
RENDEZVOUS_S = 600


def probe_program() -> str:
    """The source sent to every node: :mod:`gpuwizard.allreduce_probe`."""
    return importlib.resources.files("gpuwizard").joinpath("allreduce_probe.py").read_text(encoding="utf-8")


def expected_gbps(machine_type: str | None, gpu_type: str | None = None) -> float | None:
    """What one VM of ``machine_type`` should send, Gbit/s: min(2 x vCPUs, the family's
    documented maximum); None for a type the catalog does not know (an SSH host)."""
    if not machine_type:
        return None
    mt = catalog.machine_type(machine_type)
    net = catalog.data("network")
    fam = net["families"].get(machine_type.split("-", 1)[0])
    if mt is None or fam is None:
        return None
    top = float((fam.get("max_with_gpu") or {}).get(gpu_type or "", fam["max"]))
    return min(float(net["per_vcpu"]) * mt.vcpus, top)


def config(recipe: Recipe, sizes: tuple[int, ...] = DEFAULT_SIZES) -> dict:
    """The probe's JSON argument: sizes, iterations, the machine and its expected bandwidth."""
    g = recipe.target.gcp
    machine = g.machine_type if g is not None else ""
    gpu = g.gpu.type if g is not None and g.gpu is not None else None
    return {"sizes": list(sizes), "iters": 5, "warmup": 2, "timeout": RENDEZVOUS_S,
            "machine": machine, "expected_gbps": expected_gbps(machine, gpu)}


def wanted(recipe: Recipe) -> bool:
    """A cluster whose environment has PyTorch: the all-reduce needs torch on every node."""
    return recipe.cluster is not None and recipe.env is not None and bool(recipe.env.torch)


def step(recipe: Recipe, sizes: tuple[int, ...] = DEFAULT_SIZES) -> Step:
    """``verify.allreduce``: the probe in the recipe's environment, on every node at once."""
    run = "# gpuwizard: the recipe's environment (torch)\n" + envsteps.activation(recipe)
    run += "# shellcheck disable=SC2016  # Python source, not shell\n"
    # torch warns on import when numpy is missing (it does not need it here): not the user's problem
    run += (f"python -W {q('ignore:Failed to initialize NumPy')} -c {q(probe_program())} "
            f"{q(json.dumps(config(recipe, sizes), sort_keys=True))}\n")
    # gang: every node at once (the ranks meet at the rendezvous); one rank failing stops all
    return Step(id=STEP_ID, title="All-reduce across the nodes: bus bandwidth against the network's",
                run=run, timeout=RENDEZVOUS_S + 900, retries=0, phase="verify", gang=True)
