"""Ways to get a GPU besides on-demand: Spot, a reservation, DWS flex-start (pure).

What each one means for the Instance body, which combinations Compute Engine refuses, and
the one-line explanation the plan and the wizard show, decided here once. The facts, with
their sources, are in docs/facts/gcp-flex-start-reservations.md:

* flex-start (``scheduling.provisioningModel: FLEX_START``) needs ``maxRunDuration``
  (10 minutes to 7 days) and a termination action; gpuwizard asks for DELETE, so the VM
  cannot outlive its run. It runs on accelerator-optimized machines except A4X and G4
  (here: A2, A3, A4, G2), not on N1 with attached T4/V100/P100/P4. It consumes no
  reservation (``reservationAffinity: NO_RESERVATION``) and draws on preemptible quota.
* a reservation is consumed through ``reservationAffinity``: ``SPECIFIC_RESERVATION`` with
  key ``compute.googleapis.com/reservation-name`` and the name, or ``ANY_RESERVATION`` /
  ``NO_RESERVATION``. Spot VMs and flex-start VMs cannot consume reservations.

No Google import: the body uses proto-plus field names as :mod:`.body` does, and the
checks run in ``gpuwizard validate`` without the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpuwizard.autostop.settings import format_duration, parse_duration

if TYPE_CHECKING:
    from gpuwizard.recipe import GcpTarget, Problem, Recipe

#: Machine families (the part of the type before the first dash) that take flex-start.
FLEX_START_FAMILIES = ("a2", "a3", "a4", "g2")
#: maxRunDuration bounds for flex-start, in seconds: 10 minutes to seven days.
FLEX_MIN_RUN = 10 * 60
FLEX_MAX_RUN = 7 * 24 * 3600
RESERVATION_KEY = "compute.googleapis.com/reservation-name"

FACTS = "docs/facts/gcp-flex-start-reservations.md"

#: One line per choice, for the wizard's Machine screen and `gpuwizard plan`.
EXPLAIN = {
    "on-demand": "On-demand: full price, runs until you delete it; needs free capacity in a zone now.",
    "spot": "Spot: 60-91% cheaper, but Compute Engine may stop it at any time (preemption).",
    "reservation": "Reservation: capacity your project (or a shared one) already reserved; billed as reserved.",
    "flex-start": "Flex-start (DWS): discounted GPUs found when available, runs at most max_run, then is deleted.",
}


def model(g: GcpTarget) -> str:
    """``on-demand``, ``spot``, ``reservation`` or ``flex-start``."""
    if g.flex_start is not None:
        return "flex-start"
    if g.spot:
        return "spot"
    if g.reservation and g.reservation != "none":
        return "reservation"
    return "on-demand"


def describe(g: GcpTarget) -> str:
    """The provisioning model in a few words, for ``gpuwizard plan`` and the run's cost line."""
    m = model(g)
    if m == "flex-start":
        assert g.flex_start is not None
        return f"flex-start, runs at most {g.flex_start.max_run} then is deleted"
    if m == "reservation":
        what = "any matching reservation" if g.reservation == "any" else f"reservation {g.reservation}"
        return f"on-demand from {what}"
    if g.reservation == "none":
        return f"{m}, consuming no reservation"
    return m


def max_run_seconds(g: GcpTarget) -> int | None:
    """flex-start's ``max_run`` in seconds (None without flex-start)."""
    return parse_duration(g.flex_start.max_run) if g.flex_start is not None else None


def affinity(g: GcpTarget) -> dict[str, Any] | None:
    """The ``reservation_affinity`` of the body, or None to leave Compute Engine's default."""
    if g.flex_start is not None:
        return {"consume_reservation_type": "NO_RESERVATION"}
    if not g.reservation:
        return None
    if g.reservation == "any":
        return {"consume_reservation_type": "ANY_RESERVATION"}
    if g.reservation == "none":
        return {"consume_reservation_type": "NO_RESERVATION"}
    return {"consume_reservation_type": "SPECIFIC_RESERVATION", "key": RESERVATION_KEY, "values": [g.reservation]}


def apply(body: dict[str, Any], g: GcpTarget) -> None:
    """Put the reservation and flex-start fields into an Instance body (or bulkInsert's
    instanceProperties) that :func:`gpuwizard.gcp.body.instance_body` built."""
    aff = affinity(g)
    if aff is not None:
        body["reservation_affinity"] = aff
    seconds = max_run_seconds(g)
    if seconds is not None:
        body["scheduling"].update({
            "provisioning_model": "FLEX_START",
            "max_run_duration": {"seconds": seconds},
            # DELETE: a VM whose time is up is gone with its disk; nothing keeps billing.
            "instance_termination_action": "DELETE",
            # Like Spot, a flex-start VM is not restarted by Compute Engine (see FACTS).
            "automatic_restart": False,
        })


def conflicts(g: GcpTarget) -> list[tuple[str, str]]:
    """Combinations Compute Engine refuses, as (field under ``target.gcp``, what + fix):
    the one rule that ``validate`` locates in the file and the wizard's Machine screen shows."""
    out: list[tuple[str, str]] = []
    family = g.machine_type.split("-", 1)[0]
    if g.flex_start is not None:
        if g.spot:
            out.append(("flex_start", "flex-start and spot exclude each other: remove spot: true "
                                      "(flex-start is already discounted) or remove flex_start"))
        if g.reservation and g.reservation != "none":
            out.append(("flex_start", "a flex-start VM cannot consume a reservation: remove reservation "
                                      "(or flex_start to use the reservation)"))
        if family not in FLEX_START_FAMILIES:
            out.append(("flex_start", f"{g.machine_type} cannot be flex-start: flex-start runs on A2, A3, A4 and "
                                      f"G2 machines (e.g. a2-highgpu-1g with an A100, g2-standard-8 with an L4); "
                                      f"use spot or on-demand for {g.machine_type}"))
        try:
            seconds: int | None = parse_duration(g.flex_start.max_run)
        except ValueError as exc:
            seconds = None
            out.append(("flex_start.max_run", str(exc)))
        if seconds is not None and not FLEX_MIN_RUN <= seconds <= FLEX_MAX_RUN:
            out.append(("flex_start.max_run", f"max_run must be 10m to 168h (7 days); got "
                                              f"{format_duration(seconds)}"))
    elif g.spot and g.reservation and g.reservation != "none":
        out.append(("reservation", "Spot VMs cannot consume a reservation: remove reservation, or set spot: "
                                   "false to use it"))
    return out


def problems(r: Recipe) -> list[Problem]:
    """:func:`conflicts`, each at its field of the recipe file."""
    g = r.target.gcp
    if g is None:
        return []
    return [r.problem(f"target.gcp.{where}", what) for where, what in conflicts(g)]
