"""Screen 3, Machine: machine type within the GPU's limits, disk, image, live hourly cost."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.validation import Integer
from textual.widgets import Input, Select, Static

from gpuwizard import catalog, validate
from gpuwizard.gcp import consumption
from gpuwizard.recipe import Autostop, Cluster, FlexStart
from screens import choices
from screens.base import WizardScreen


#: Idle times offered (the recipe takes any duration); "off" removes ``autostop``.
AUTOSTOP_CHOICES = (("15m", "stop after 15 minutes without use"),
                    ("30m", "stop after 30 minutes without use (recommended)"),
                    ("1h", "stop after 1 hour without use"), ("2h", "stop after 2 hours without use"),
                    ("off", "off: the VM runs (and bills) until `gpuwizard down`"))

#: What several VMs are: independent copies of the recipe, or one cluster (``cluster:``).
LAYOUT_CHOICES = (("independent", "Independent VMs: each runs every step on its own"),
                  ("cluster", "One cluster: train across them with torchrun (created all or none in one zone)"))

#: A cluster's node count, as the recipe model bounds it (``Cluster.nodes``).
_NODES = next(f for f in dataclasses.fields(Cluster) if f.name == "nodes").metadata
NODES_MIN, NODES_MAX = int(_NODES["minimum"]), int(_NODES["maximum"])

#: How the GPU is obtained, one line each (the lines are the core's: gcp/consumption.py).
MODEL_CHOICES = tuple((m, consumption.EXPLAIN[m]) for m in ("on-demand", "spot", "reservation", "flex-start"))
#: What a stockout in every zone does (``target.gcp.wait``; ``run --wait``/``--no-wait`` override it).
WAIT_CHOICES = (("off", "On stockout: try each zone once, then stop"),
                ("1h", "On stockout: keep trying the zones for up to 1 hour"),
                ("6h", "On stockout: keep trying the zones for up to 6 hours"),
                ("24h", "On stockout: keep trying the zones for up to 24 hours"))


class MachineScreen(WizardScreen):
    """Machine type, VM count, boot disk and image, with the whole VM's hourly cost."""

    NAME = "machine"
    TITLE = "Machine"
    HELP = ("Only machine types that can carry your GPUs are listed (N1 for T4/V100/P100/P4; the GPU is built "
            "into G2, A2, A3 and A4 types). A Deep Learning VM image comes with the NVIDIA driver installed.")

    def compose_body(self) -> ComposeResult:
        yield Static("", id="limits", classes="label")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Machine type", classes="label")
                yield Select([], allow_blank=True, prompt="choose a machine type", id="machine")
            with Vertical(classes="field"):
                yield Static("VMs", classes="label")
                yield Input("1", id="vms", validators=[Integer(1, 64)], type="integer")
        yield Select([(label, value) for value, label in LAYOUT_CHOICES], allow_blank=False, value="independent",
                     id="layout")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Boot disk (GB)", classes="label", id="disk-label")
                yield Input("100", id="disk", validators=[Integer(1, validate.DISK_GB_MAX)], type="integer")
            with Vertical(classes="field"):
                yield Static("Disk type", classes="label")
                yield Select([("pd-balanced", "pd-balanced")], value="pd-balanced", allow_blank=False, id="disk-type")
        yield Static("Image", classes="label")
        yield Select([(c.label, c.value) for c in choices.image_choices()], allow_blank=False,
                     value="ubuntu-2204-lts", id="image")
        yield Static("", id="image-note", classes="note")
        yield Static("How to get the GPU", classes="label")
        yield Select([(label, value) for value, label in MODEL_CHOICES], allow_blank=False,
                     value="on-demand", id="model")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("", classes="label", id="model-detail-label")
                yield Input("", id="model-detail")
            with Vertical(classes="field"):
                yield Static("When every zone is out of capacity", classes="label")
                yield Select([(label, value) for value, label in WAIT_CHOICES], allow_blank=False, value="off",
                             id="wait")
        yield Static("Auto-stop (an agent on the VM stops it when nobody uses it)", classes="label")
        yield Select([(label, value) for value, label in AUTOSTOP_CHOICES], allow_blank=False, value="30m",
                     id="autostop")
        yield Static("", id="cost", classes="cost")

    def _gpu(self) -> tuple[str, int, bool]:
        g = self.draft.target.gcp
        if g is None or g.gpu is None:
            return ("", 0, bool(g.spot) if g else False)
        return (g.gpu.type, g.gpu.count, g.spot)

    def load(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            self.query_one("#limits", Static).update("This recipe runs on existing hosts: no machine to choose.")
            return
        gpu, count, spot = self._gpu()
        self.query_one("#limits", Static).update(choices.machine_limits_text(gpu, count))
        opts = choices.machine_choices(gpu, count, spot, g.disk_gb, g.disk_type,
                                       region=catalog.region_of(g.zones[0]) if g.zones else None)
        sel = self.query_one("#machine", Select)
        sel.set_options([(c.label + (f"  ({c.reason})" if c.reason else ""), c.value) for c in opts])
        values = [c.value for c in opts if c.enabled]
        machine = g.machine_type
        if machine not in values and values:
            # Keep the vCPU count when moving between families if possible, else the cheapest.
            machine = next((v for v in values if v == "n1-standard-4"), values[0])
            self._proposed = True
        if machine in values:
            sel.value = machine
        cluster = self.draft.cluster
        self.query_one("#vms", Input).value = str(cluster.nodes if cluster and cluster.nodes else g.count)
        self.query_one("#layout", Select).value = "cluster" if cluster is not None else "independent"
        self.query_one("#disk", Input).value = str(g.disk_gb)
        self._fill_disk_types(machine, g.disk_type)
        img = self.query_one("#image", Select)
        if g.image not in [c.value for c in choices.image_choices()]:
            img.set_options([(c.label, c.value) for c in choices.image_choices()] + [(g.image, g.image)])
        img.value = g.image
        auto = self.query_one("#autostop", Select)
        idle = self.draft.autostop.idle if self.draft.autostop else "off"
        if idle not in [v for v, _ in AUTOSTOP_CHOICES]:
            auto.set_options([(label, value) for value, label in AUTOSTOP_CHOICES] + [(f"stop after {idle}", idle)])
        auto.value = idle
        self.query_one("#model", Select).value = consumption.model(g)
        self._detail = {"reservation": g.reservation if g.reservation not in (None, "none") else "",
                        "flex-start": g.flex_start.max_run if g.flex_start else "4h"}
        self._show_detail(consumption.model(g))
        wait = self.query_one("#wait", Select)
        if g.wait and g.wait not in [v for v, _ in WAIT_CHOICES]:
            wait.set_options([(label, value) for value, label in WAIT_CHOICES]
                             + [(f"On stockout: keep trying the zones for up to {g.wait}", g.wait)])
        wait.value = g.wait or "off"
        self.changed()

    def _show_detail(self, model: str) -> None:
        """The one field a model needs: the reservation's name, or flex-start's longest run."""
        label = self.query_one("#model-detail-label", Static)
        box = self.query_one("#model-detail", Input)
        if model == "reservation":
            label.update("Reservation: NAME, projects/P/reservations/NAME or any")
        elif model == "flex-start":
            label.update("Runs at most (10m to 168h), then deleted")
        else:
            label.update("Reservation or flex-start run time (not needed)")
        self._shown = model
        box.disabled = model not in ("reservation", "flex-start")
        want = getattr(self, "_detail", {}).get(model, "")
        if box.value != want:
            box.value = want

    def _fill_disk_types(self, machine: str, want: str) -> None:
        types = choices.disk_types_for(machine)
        sel = self.query_one("#disk-type", Select)
        sel.set_options([(t, t) for t in types])
        if want not in types:
            want = types[0]
            self._proposed = True
        sel.value = want

    def snapshot(self) -> Any:
        return (self.query_one("#machine", Select).value, self.query_one("#vms", Input).value,
                self.query_one("#disk", Input).value, self.query_one("#disk-type", Select).value,
                self.query_one("#image", Select).value, self.query_one("#autostop", Select).value,
                self.query_one("#model", Select).value, self.query_one("#model-detail", Input).value,
                self.query_one("#wait", Select).value, self.query_one("#layout", Select).value)

    def _provisioning(self) -> tuple[bool, str | None, FlexStart | None, str | None]:
        """spot, reservation, flex_start and wait as the widgets say."""
        g = self.draft.target.gcp
        model = str(self.query_one("#model", Select).value)
        detail = self.query_one("#model-detail", Input).value.strip()
        wait = str(self.query_one("#wait", Select).value)
        keep_none = g is not None and g.reservation == "none" and model in ("on-demand", "spot")
        reservation = (detail or None) if model == "reservation" else ("none" if keep_none else None)
        flex = FlexStart(max_run=detail) if model == "flex-start" else None
        return model == "spot", reservation, flex, None if wait == "off" else wait

    def apply(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            return
        g.spot, g.reservation, g.flex_start, g.wait = self._provisioning()
        machine, vms, disk, disk_type, image, idle = self.snapshot()[:6]
        if idle == "off":
            self.draft.autostop = None
        elif self.draft.autostop is None:
            self.draft.autostop = Autostop(idle=str(idle))
        else:
            self.draft.autostop.idle = str(idle)
        if machine is not Select.BLANK:
            g.machine_type = str(machine)
        if self.snapshot()[9] == "cluster":
            # A cluster counts its VMs in nodes (target.gcp.count stays 1; validate insists).
            g.count = 1
            if self.draft.cluster is None:
                self.draft.cluster = Cluster(nodes=int(vms))
            else:
                self.draft.cluster.nodes = int(vms)
        else:
            self.draft.cluster = None
            g.count = int(vms)
        g.disk_gb = int(disk)
        g.disk_type = str(disk_type)
        g.image = str(image)

    def problems(self) -> list[str]:
        if self.draft.target.gcp is None:
            return []
        machine, vms, disk, _dt, _img, _idle = self.snapshot()[:6]
        out = []
        if machine is Select.BLANK:
            gpu, count, _ = self._gpu()
            out.append(f"choose a machine type ({choices.machine_limits_text(gpu, count)})")
        if not vms.isdigit() or not 1 <= int(vms) <= 64:
            out.append("VMs: a whole number from 1 to 64")
        elif self.snapshot()[9] == "cluster" and not NODES_MIN <= int(vms) <= NODES_MAX:
            out.append(f"a cluster has {NODES_MIN} to {NODES_MAX} nodes: set VMs to {NODES_MIN} or more, "
                       f"or choose independent VMs")
        why = validate.disk_gb_problem(disk, str(_img))  # the one boot-disk rule, with its message
        if why:
            out.append(why)
        g = self.draft.target.gcp
        spot, reservation, flex, _wait = self._provisioning()
        if reservation is None and str(self.query_one("#model", Select).value) == "reservation":
            out.append("reservation: name the reservation (or write any)")
        elif machine is not Select.BLANK:
            wanted = dataclasses.replace(g, machine_type=str(machine), spot=spot, reservation=reservation,
                                         flex_start=flex)
            out += [what for _field, what in consumption.conflicts(wanted)]   # the core's one rule
        return out

    def changed(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            return
        machine, vms, disk, disk_type, image, idle = self.snapshot()[:6]
        if machine is not Select.BLANK:
            types = choices.disk_types_for(str(machine))
            if disk_type not in types:
                self._fill_disk_types(str(machine), str(disk_type))
        img = catalog.image(str(image))
        note = self.query_one("#image-note", Static)
        if img and img.dlvm:
            note.update(f"Deep Learning VM: driver R{img.driver} and CUDA {img.cuda} are preinstalled"
                        + (f", with PyTorch {img.torch}" if img.torch else "") + "; gpuwizard only verifies them.")
        else:
            note.update("gpuwizard installs the NVIDIA driver and CUDA (next screen) on this image.")
        model = str(self.query_one("#model", Select).value)
        shown = getattr(self, "_shown", model)
        if shown != model:
            if shown in self._detail:   # keep what was typed for the model left, for a way back
                self._detail[shown] = self.query_one("#model-detail", Input).value.strip()
            self._show_detail(model)
        gpu, count, _spot = self._gpu()
        spot = model == "spot"
        if machine is Select.BLANK:
            self.query_one("#cost", Static).update("")
            return
        n = int(vms) if vms.isdigit() and int(vms) > 0 else 1
        low, _why = validate.disk_gb_minimum(str(image))
        self.query_one("#disk-label", Static).update(f"Boot disk (GB, {low} to {validate.DISK_GB_MAX})")
        zones = self.draft.target.gcp.zones if self.draft.target.gcp else []  # priced in the first zone's region
        price = catalog.vm_price(str(machine), gpu, count, spot, int(disk) if disk.isdigit() else 0, str(disk_type),
                                 region=catalog.region_of(zones[0]) if zones else None)
        if price.per_hour is None:
            self.query_one("#cost", Static).update(price.label())
            return
        total = price.per_hour * n
        cluster = self.snapshot()[9] == "cluster"
        forgotten = (f"auto-stop {idle}" if idle != "off"
                     else f"no auto-stop: a VM forgotten for a day costs ~${total * 24:,.0f}")
        self.query_one("#cost", Static).update(
            f"${price.per_hour:.2f}/h per VM ({price.assumes}); "
            f"{'a cluster of ' if cluster else ''}{n} {'node' if cluster else 'VM'}{'s' if n > 1 else ''}: ${total:.2f}/h; "
            f"{forgotten}")
