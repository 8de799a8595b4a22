"""Cross-field checks of a recipe against the embedded catalog.

:mod:`gpuwizard.recipe` checks shape and types; this module checks that the parts fit
together: the GPU attaches to the machine type, the count is one Compute Engine
offers, an N1 host stays within the GPU's vCPU/memory limits, the zone exists, the
image is one gpuwizard can install drivers on, and (through :mod:`gpuwizard.drivers`)
that the driver, CUDA and PyTorch choices suit the GPU. Each problem names the field
and the fix, located at the YAML node, like every other recipe error.
"""

from __future__ import annotations

import difflib

from gpuwizard import catalog, drivers
from gpuwizard.gcp import consumption
from gpuwizard.recipe import Problem, Recipe, RecipeError, merge_problems, parse, read

SUPPORTED_OS = ("ubuntu2204", "ubuntu2404", "debian12")

# The boot disk rule, stated once (the wizard's Machine screen calls disk_gb_problem too).
# Compute Engine refuses a disk smaller than its image: the plain OS images are 10 GB, the
# Deep Learning VM images 50 GB. On a plain image gpuwizard installs the NVIDIA driver,
# CUDA and PyTorch (~25 GB with pip's cache), so both kinds need 50 GB; a custom image's
# size is unknown offline, so only Compute Engine's own floor applies to it.
DISK_GB_MAX = 65536
DISK_GB_MIN_CUSTOM = 10
DISK_GB_MIN_KNOWN = 50


def disk_gb_minimum(image: str) -> tuple[int, str]:
    """The smallest boot disk for ``image`` and why, in words."""
    img = catalog.image(image)
    if img is None:
        return DISK_GB_MIN_CUSTOM, "Compute Engine's smallest boot disk"
    if img.dlvm:
        return DISK_GB_MIN_KNOWN, f"the {image} image itself is that large"
    return DISK_GB_MIN_KNOWN, "the OS, NVIDIA driver, CUDA and PyTorch take about 25 GB"


def disk_gb_problem(disk_gb: int | str, image: str) -> str | None:
    """None when ``disk_gb`` (a number, or the text of an input box) suits ``image``,
    else one sentence stating the allowed range once."""
    low, why = disk_gb_minimum(image)
    text = str(disk_gb).strip()
    if isinstance(disk_gb, bool) or not text.isdigit() or not low <= int(text) <= DISK_GB_MAX:
        return f"the boot disk must be {low} to {DISK_GB_MAX} GB for {image} ({why}); got {text or 'nothing'}"
    return None


def validate(recipe: Recipe) -> list[Problem]:
    """Every catalog-level problem with ``recipe`` (errors and warnings), sorted."""
    problems: list[Problem] = []
    problems += _gcp_problems(recipe)
    problems += _driver_problems(recipe)
    return sorted(set(problems))


def load_checked(path: str) -> tuple[Recipe, list[Problem]]:
    """Load a recipe and run every check, shape and catalog, reporting all problems at
    once: the one call front ends use. Returns the recipe and its warnings."""
    recipe, problems = parse(read(path), path)
    if recipe is not None:
        problems = merge_problems(problems, validate(recipe))
    if recipe is None or any(not p.warning for p in problems):
        raise RecipeError(path, problems)
    return recipe, problems


def _gcp_problems(r: Recipe) -> list[Problem]:
    g = r.target.gcp
    if g is None:
        return []
    out: list[Problem] = []
    P = "target.gcp"
    mt = catalog.machine_type(g.machine_type)
    fam_name = g.machine_type.split("-", 1)[0]
    if mt is None:
        close = difflib.get_close_matches(g.machine_type, list(catalog.machine_types()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if catalog.family(fam_name) is None:
            out.append(r.problem(f"{P}.machine_type", f"{g.machine_type!r} cannot carry GPUs: GPU VMs use N1 "
                                 f"(T4, V100, P100, P4), G2 (L4), A2 (A100), A3 (H100/H200) or A4 (B200){hint}"))
        else:
            out.append(r.problem(f"{P}.machine_type", f"unknown machine type {g.machine_type!r}{hint}"))
    if mt is not None and mt.spot_only and not g.spot and g.flex_start is None:
        out.append(r.problem(f"{P}.spot", f"{g.machine_type} is only offered as Spot (or Flex-start): set spot: true, "
                             "or use a3-highgpu-8g"))
    out += consumption.problems(r)
    disk = disk_gb_problem(g.disk_gb, g.image)
    if disk is not None:
        out.append(r.problem(f"{P}.disk_gb", disk))
    fam = catalog.family(fam_name)
    if fam is not None and g.disk_type not in fam["disks"]:
        out.append(r.problem(f"{P}.disk_type", f"{fam_name.upper()} machines do not support {g.disk_type}; "
                             f"use one of {', '.join(fam['disks'])}"))

    if g.gpu is None:
        if mt is not None and mt.gpu_type is not None:
            out.append(r.problem(f"{P}.machine_type", f"{g.machine_type} comes with {mt.gpu_count} x "
                                 f"{mt.gpu_type}; set gpu: {{type: {mt.gpu_type}, count: {mt.gpu_count}}}"))
    else:
        out += _gpu_problems(r, mt, fam_name)

    known_regions = set(catalog.data("zones").get("regions", []))
    offered = set(catalog.zones_for(g.gpu.type)) if g.gpu else set()
    seen: set[str] = set()
    for i, zone in enumerate(g.zones):
        zp = f"{P}.zones[{i}]"
        if zone in seen:
            out.append(r.problem(zp, f"{zone} is listed twice"))
        seen.add(zone)
        region = catalog.region_of(zone)
        if region not in known_regions:
            close = difflib.get_close_matches(region, sorted(known_regions), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            out.append(r.problem(zp, f"{zone}: there is no region {region!r}{hint}"))
        elif g.gpu and offered and zone not in offered:
            out.append(r.problem(zp, f"{zone} does not offer {g.gpu.type} in the catalog snapshot "
                                 f"({catalog.meta('zones').get('snapshot')}); check with "
                                 f"`gpuwizard zones --gpu {g.gpu.type}`", warning=True))
    if not g.zones:
        out.append(r.problem(f"{P}.zones", "list at least one zone; `gpuwizard zones --gpu TYPE` shows candidates"))

    img = catalog.image(g.image)
    if img is None and "/" not in g.image:
        known = ", ".join(catalog.images())
        close = difflib.get_close_matches(g.image, list(catalog.images()), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        out.append(r.problem(f"{P}.image", f"unknown image family {g.image!r}; {hint}known: {known} "
                             "(or give a full projects/P/global/images/NAME path)"))
    if img is not None and img.dlvm and r.driver is not None and not r.driver.preinstalled:
        out.append(r.problem("driver", f"{g.image} is a Deep Learning VM image with driver {img.driver} "
                             "preinstalled: write `driver: preinstalled` (gpuwizard then only verifies it)"))
    if img is not None and not img.dlvm and r.driver is not None and r.driver.preinstalled:
        out.append(r.problem("driver", f"{g.image} has no NVIDIA driver; use a Deep Learning VM image "
                             "(e.g. common-cu129-ubuntu-2204-nvidia-580) or set driver.branch"))
    if img is not None and img.os not in SUPPORTED_OS and r.driver is not None and not r.driver.preinstalled:
        out.append(r.problem(f"{P}.image", f"gpuwizard installs drivers on Ubuntu 22.04/24.04 and Debian 12, not {img.os}"))
    return out


def _gpu_problems(r: Recipe, mt: catalog.MachineType | None, fam_name: str) -> list[Problem]:
    g = r.target.gcp
    assert g is not None and g.gpu is not None
    out: list[Problem] = []
    P = "target.gcp"
    gt = catalog.gpu(g.gpu.type)
    if gt is None:
        guess = catalog.gpu_by_label(g.gpu.type)
        if guess is not None:
            hint = f"; write {guess.name!r}"
        else:
            close = difflib.get_close_matches(g.gpu.type, list(catalog.gpus()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(catalog.gpus())}"
        out.append(r.problem(f"{P}.gpu.type", f"unknown accelerator type {g.gpu.type!r}{hint}"))
        return out
    if gt.retired:
        out.append(r.problem(f"{P}.gpu.type", gt.retired))
    if g.gpu.count not in gt.counts:
        counts = ", ".join(str(c) for c in gt.counts)
        out.append(r.problem(f"{P}.gpu.count", f"{gt.label} takes {counts} GPUs per VM (got {g.gpu.count})"))
    if mt is None:
        return out
    if fam_name not in gt.families:
        fams = "/".join(f.upper() for f in gt.families)
        suggestion = catalog.machine_types_for(gt.name, g.gpu.count if g.gpu.count in gt.counts else gt.counts[0])
        hint = f", e.g. {suggestion[0].name}" if suggestion else ""
        out.append(r.problem(f"{P}.machine_type", f"{gt.label} GPUs run only on {fams} machines, not "
                             f"{g.machine_type}{hint}"))
        return out
    if mt.gpu_type is not None:
        if mt.gpu_type != gt.name:
            out.append(r.problem(f"{P}.gpu.type", f"{g.machine_type} comes with {mt.gpu_type}, not {gt.name}"))
        elif mt.gpu_count != g.gpu.count:
            right = [m.name for m in catalog.machine_types_for(gt.name, g.gpu.count)]
            hint = f"; for {g.gpu.count} use {right[0]}" if right else ""
            out.append(r.problem(f"{P}.gpu.count", f"{g.machine_type} comes with {mt.gpu_count} x {gt.label} "
                                 f"(got count {g.gpu.count}){hint}"))
        return out
    limit = gt.n1_limits.get(g.gpu.count)
    if limit is not None:
        max_cpu, max_mem = limit
        if mt.vcpus > max_cpu:
            out.append(r.problem(f"{P}.machine_type", f"{g.gpu.count} x {gt.label} allows at most {max_cpu} vCPUs; "
                                 f"{g.machine_type} has {mt.vcpus}"))
        elif mt.memory_gb > max_mem:
            out.append(r.problem(f"{P}.machine_type", f"{g.gpu.count} x {gt.label} allows at most {max_mem:g} GB of "
                                 f"memory; {g.machine_type} has {mt.memory_gb:g} GB"))
    return out


def _driver_problems(r: Recipe) -> list[Problem]:
    return drivers.check(r)
