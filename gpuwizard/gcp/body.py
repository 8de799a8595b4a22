"""What a recipe's VM looks like to Compute Engine: its names, labels and Instance body (pure)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuwizard import catalog
from gpuwizard.autostop.settings import recipe_token as autostop_token
from gpuwizard.gcp import consumption
from gpuwizard.gcp.errors import GcpError

if TYPE_CHECKING:
    from gpuwizard.recipe import Recipe

LABEL_RECIPE = "gpuwizard-recipe"
LABEL_RUN = "gpuwizard-run"
# Which recipe *file* made the VM (two files may share a recipe name): a short hash of
# its real path. VMs made before this label existed, or without a known path, lack it.
LABEL_RECIPE_ID = "gpuwizard-recipe-id"
DEFAULT_USER = "gpuwizard"


#: Machine series that only run with gVNIC (docs/facts/gcp-cluster.md): every VM of these
#: gets ``nicType: GVNIC``, a cluster node or not.
GVNIC_REQUIRED = frozenset({"a3", "a4", "a4x", "c3", "c3d", "c4", "g4", "h3"})


def series(machine_type: str) -> str:
    """``n1-standard-8`` -> ``n1``; ``a4x-highgpu-4g`` -> ``a4x``."""
    return machine_type.split("-", 1)[0].lower()


def label_value(s: str) -> str:
    """A string as a valid label value (lower-case letters, digits, _ and -, at most 63)."""
    return re.sub(r"[^a-z0-9_-]", "-", s.lower())[:63]


def recipe_id(recipe_path: str) -> str:
    """The ``gpuwizard-recipe-id`` label value of a recipe file: 12 hex digits of the
    SHA-256 of its real path (the same file by any relative path or symlink)."""
    real = os.path.realpath(os.path.expanduser(recipe_path))
    return hashlib.sha256(real.encode("utf-8")).hexdigest()[:12]


def instance_names(recipe: Recipe, run_id: str, generations: list[int] | None = None) -> list[str]:
    """VM names: ``<prefix>-<run>`` (``-<i>`` per VM when count > 1), valid GCE names.

    ``generations`` (one per VM, default all 0): generation ``g`` > 0 names the g-th
    replacement of a VM that was deleted (``-r<g>`` at the end), a new host for the run.
    Over 63 characters the *prefix* is shortened: the run part (the end of the run id,
    which carries its random tag), the VM index and the generation always survive, so
    two runs, or two VMs of one run, never share a name.
    """
    g = recipe.target.gcp
    assert g is not None
    prefix = re.sub(r"-+", "-", g.name_prefix or recipe.name).strip("-")
    if not re.match(r"^[a-z]", prefix):
        prefix = "g" + prefix
    run = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[-20:].strip("-") or "run"
    n = node_count(recipe)
    tails = [f"-{run}"] if n == 1 else [f"-{run}-{i}" for i in range(n)]
    if generations:
        tails = [t + (f"-r{gen}" if gen else "") for t, gen in zip(tails, list(generations) + [0] * n)]
    out = []
    for tail in tails:
        tail = re.sub(r"-+", "-", tail)
        out.append(prefix[: 63 - len(tail)].rstrip("-") + tail)
    return out


def node_count(recipe: Recipe) -> int:
    """How many VMs a run creates: ``cluster.nodes`` for a cluster, else ``target.gcp.count``."""
    c = getattr(recipe, "cluster", None)
    if c is not None and c.nodes:
        return int(c.nodes)
    g = recipe.target.gcp
    return max(1, int((g.count if g else 1) or 1))


@dataclass(frozen=True)
class NodeNet:
    """What a cluster node's body adds (gcp/cluster_spec.py decides it): the vNIC type, the
    cluster's network tag (its firewall rule matches it) and the compact placement policy
    (a name in the zone's region; None where the machine family does not take one)."""

    nic_type: str | None = None
    tag: str | None = None
    placement: str | None = None


COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"


def _source_image(image: str) -> str:
    if image.startswith(("projects/", "https://", "global/")):
        return image
    img = catalog.image(image)
    if img is None:
        raise GcpError(f"Unknown image '{image}': use an image family from `gpuwizard catalog images` "
                       f"or a full projects/P/global/images/NAME path.", kind="usage")
    return f"projects/{img.project}/global/images/family/{img.family}"


DLVM_PROJECT = "deeplearning-platform-release"


def is_dlvm(image: str) -> bool:
    """Whether ``image`` is a Deep Learning VM image: a catalog family marked ``dlvm``, or a
    path in Google's ``deeplearning-platform-release`` project."""
    img = catalog.image(image)
    return bool(img and img.dlvm) or f"projects/{DLVM_PROJECT}/" in image


def instance_body(recipe: Recipe, zone: str, name: str, run_id: str, ssh_user: str, public_key: str,
                  *, bare: bool = False, recipe_id: str | None = None, os_login: bool = False,
                  net: NodeNet | None = None) -> dict[str, Any]:
    """The Instance resource (proto-plus field names). ``bare``: names instead of zone paths,
    as bulkInsert's instanceProperties wants them (SkyPilot: a prefix there gives a 503).
    ``os_login``: the project enforces OS Login, so no ``ssh-keys`` metadata (it would be
    ignored); ``enable-oslogin`` is never set either way. ``net``: a cluster node's vNIC
    type, network tag and placement policy (InstanceProperties takes the policy's name,
    an Instance its path)."""
    g = recipe.target.gcp
    assert g is not None
    mt = g.machine_type if bare else f"zones/{zone}/machineTypes/{g.machine_type}"
    disk_type = g.disk_type if bare else f"zones/{zone}/diskTypes/{g.disk_type}"
    key = public_key.split()
    key_line = f"{ssh_user}:{key[0]} {key[1]} {ssh_user}" if len(key) >= 2 else f"{ssh_user}:{public_key}"
    body: dict[str, Any] = {
        "machine_type": mt,
        "labels": {LABEL_RECIPE: label_value(recipe.name), LABEL_RUN: label_value(run_id),
                   **({LABEL_RECIPE_ID: recipe_id} if recipe_id else {})},
        "disks": [{"boot": True, "auto_delete": True, "initialize_params": {
            "source_image": _source_image(g.image), "disk_size_gb": int(g.disk_gb), "disk_type": disk_type}}],
        "network_interfaces": [{"network": "global/networks/default",
                                "access_configs": [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]}],
        "metadata": {"items": ([] if os_login else [{"key": "ssh-keys", "value": key_line}])
                     + [{"key": "enable-guest-attributes", "value": "TRUE"}]
                     # A DLVM image installs the driver at first boot only when asked; harmless
                     # where the driver is baked in (docs/facts/gcp-provisioning-anchors.md).
                     + ([{"key": "install-nvidia-driver", "value": "True"}] if is_dlvm(g.image) else [])},
        # GPUs cannot live-migrate: TERMINATE is the only valid maintenance policy.
        "scheduling": {"on_host_maintenance": "TERMINATE", "automatic_restart": not g.spot},
    }
    if not bare:
        body["name"] = name
    if net is None and series(g.machine_type) in GVNIC_REQUIRED:
        body["network_interfaces"][0]["nic_type"] = "GVNIC"
    if net is not None:
        if net.nic_type:
            body["network_interfaces"][0]["nic_type"] = net.nic_type
        if net.tag:
            body["tags"] = {"items": [net.tag]}
        if net.placement:
            region = catalog.region_of(zone)
            body["resource_policies"] = [net.placement if bare else
                                         f"projects/{{project}}/regions/{region}/resourcePolicies/{net.placement}"]
    if recipe.autostop is not None:
        # The on-VM agent acts only on a VM carrying this (gpuwizard/autostop/agent.py guard).
        body["metadata"]["items"].append({"key": "gpuwizard-autostop", "value": autostop_token(recipe)})
        if recipe.autostop.action == "delete":
            # Deleting itself needs the VM's own token with the Compute scope; only then is
            # the VM given one (the default service account, as `gcloud` would).
            body["service_accounts"] = [{"email": "default", "scopes": [COMPUTE_SCOPE]}]
    if g.spot:
        # STOP keeps the disk (and the data) on preemption; `gpuwizard down` deletes it.
        body["scheduling"].update({"provisioning_model": "SPOT", "instance_termination_action": "STOP"})
    gpu = catalog.gpu(g.gpu.type) if g.gpu else None
    mtype = catalog.machine_type(g.machine_type)
    if g.gpu and (mtype is None or mtype.gpu_type is None) and (gpu is None or gpu.attachable):
        acc = g.gpu.type if bare else f"projects/{{project}}/zones/{zone}/acceleratorTypes/{g.gpu.type}"
        body["guest_accelerators"] = [{"accelerator_type": acc, "accelerator_count": int(g.gpu.count)}]
    consumption.apply(body, g)   # reservation affinity, flex-start (gcp/consumption.py)
    return body


def fill_project(body: dict[str, Any], project: str) -> None:
    """Put the project into the accelerator and policy paths (unknown when the body was built)."""
    for acc in body.get("guest_accelerators") or []:
        acc["accelerator_type"] = acc["accelerator_type"].replace("{project}", project)
    if body.get("resource_policies"):
        body["resource_policies"] = [r.replace("{project}", project) for r in body["resource_policies"]]
