"""What a recipe's VM looks like to Compute Engine: its names, labels and Instance body (pure)."""

from __future__ import annotations

import hashlib
import os
import re
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
    n = max(1, int(g.count or 1))
    tails = [f"-{run}"] if n == 1 else [f"-{run}-{i}" for i in range(n)]
    if generations:
        tails = [t + (f"-r{gen}" if gen else "") for t, gen in zip(tails, list(generations) + [0] * n)]
    out = []
    for tail in tails:
        tail = re.sub(r"-+", "-", tail)
        out.append(prefix[: 63 - len(tail)].rstrip("-") + tail)
    return out


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
                  *, bare: bool = False, recipe_id: str | None = None, os_login: bool = False) -> dict[str, Any]:
    """The Instance resource (proto-plus field names). ``bare``: names instead of zone paths,
    as bulkInsert's instanceProperties wants them (SkyPilot: a prefix there gives a 503).
    ``os_login``: the project enforces OS Login, so no ``ssh-keys`` metadata (it would be
    ignored); ``enable-oslogin`` is never set either way."""
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
    """Put the project into the accelerator paths (unknown when the body was built)."""
    for acc in body.get("guest_accelerators") or []:
        acc["accelerator_type"] = acc["accelerator_type"].replace("{project}", project)
