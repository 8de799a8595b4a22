"""Screen 3, Machine: machine type within the GPU's limits, disk, image, live hourly cost."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.validation import Integer
from textual.widgets import Input, Select, Static

from gpuwizard import catalog, validate
from gpuwizard.recipe import Autostop
from screens import choices
from screens.base import WizardScreen


#: Idle times offered (the recipe takes any duration); "off" removes ``autostop``.
AUTOSTOP_CHOICES = (("15m", "stop after 15 minutes without use"),
                    ("30m", "stop after 30 minutes without use (recommended)"),
                    ("1h", "stop after 1 hour without use"), ("2h", "stop after 2 hours without use"),
                    ("off", "off: the VM runs (and bills) until `gpuwizard down`"))


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
        self.query_one("#vms", Input).value = str(g.count)
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
        self.changed()

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
                self.query_one("#image", Select).value, self.query_one("#autostop", Select).value)

    def apply(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            return
        machine, vms, disk, disk_type, image, idle = self.snapshot()
        if idle == "off":
            self.draft.autostop = None
        elif self.draft.autostop is None:
            self.draft.autostop = Autostop(idle=str(idle))
        else:
            self.draft.autostop.idle = str(idle)
        if machine is not Select.BLANK:
            g.machine_type = str(machine)
        g.count = int(vms)
        g.disk_gb = int(disk)
        g.disk_type = str(disk_type)
        g.image = str(image)

    def problems(self) -> list[str]:
        if self.draft.target.gcp is None:
            return []
        machine, vms, disk, _dt, _img, _idle = self.snapshot()
        out = []
        if machine is Select.BLANK:
            gpu, count, _ = self._gpu()
            out.append(f"choose a machine type ({choices.machine_limits_text(gpu, count)})")
        if not vms.isdigit() or not 1 <= int(vms) <= 64:
            out.append("VMs: a whole number from 1 to 64")
        why = validate.disk_gb_problem(disk, str(_img))  # the one boot-disk rule, with its message
        if why:
            out.append(why)
        return out

    def changed(self) -> None:
        g = self.draft.target.gcp
        if g is None:
            return
        machine, vms, disk, disk_type, image, idle = self.snapshot()
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
        gpu, count, spot = self._gpu()
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
        forgotten = (f"auto-stop {idle}" if idle != "off"
                     else f"no auto-stop: a VM forgotten for a day costs ~${total * 24:,.0f}")
        self.query_one("#cost", Static).update(
            f"${price.per_hour:.2f}/h per VM ({price.assumes}); {n} VM{'s' if n > 1 else ''}: ${total:.2f}/h; "
            f"{forgotten}")
