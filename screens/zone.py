"""Screen 2, Zone: where the GPU exists, with region free quota and price; the failover order.

The catalog snapshot paints instantly; live zones (with each region's free quota)
replace it when a worker brings them, and so do live prices (the Cloud Billing Catalog,
day-cached): each row shows one VM's price in its zone's region. The user builds a
preference list: provisioning tries the zones in that order and moves on when one is out
of capacity.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from gpuwizard import catalog
from gpuwizard.gcp.zones import use_live_prices
from screens import choices, live
from screens.base import WizardScreen


class ZoneScreen(WizardScreen):
    """Zones offering the GPU at the chosen count; the user orders a failover list."""

    NAME = "zone"
    TITLE = "Zone"
    FOCUS = "#zones"
    HELP = ("A VM lives in one zone. GPUs run out (\"stockout\") zone by zone, so list a few: provisioning "
            "tries them in order. Quota is per region.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "Use / drop", id="zone.toggle"),
        Binding("u", "move(-1)", "Move up", id="zone.up"),
        Binding("d", "move(1)", "Move down", id="zone.down"),
        Binding("a", "best", "Best first", id="zone.best"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[live.ZoneRow] = []
        self.order: list[str] = []
        self.live_rows = False
        """True when ``rows`` came from Compute Engine, False for the catalog snapshot."""
        self.unlisted: set[str] = set()
        """Zones of the recipe that neither the catalog nor Compute Engine lists for the GPU."""

    def compose_body(self) -> ComposeResult:
        yield Static("", id="zone-title", classes="label")
        yield DataTable(id="zones", cursor_type="row", zebra_stripes=True)
        yield Static("", id="order", classes="cost")
        yield Static("", id="zone-note", classes="note")

    # -------------------------------------------------------------- helpers

    def _key(self) -> tuple[str | None, str, int, bool]:
        g = self.draft.target.gcp
        info = self.wizard.live.project
        project = (g.project if g else None) or (info.project if info else None)
        gpu = g.gpu.type if g and g.gpu else "nvidia-tesla-t4"
        count = g.gpu.count if g and g.gpu else 1
        return (project, gpu, count, bool(g.spot) if g else False)

    def _machine(self) -> str | None:
        """The machine type prices assume: the draft's, or the Machine screen's proposal."""
        _p, gpu, count, spot = self._key()
        g = self.draft.target.gcp
        machine = g.machine_type if g else None
        valid = [c.value for c in choices.machine_choices(gpu, count, spot)]
        if machine not in valid:
            machine = next((v for v in valid if v == "n1-standard-4"), valid[0] if valid else None)
        return machine

    def _price(self, region: str | None = None, machine: str | None = None) -> catalog.Price | None:
        """One VM's price in ``region`` (:func:`gpuwizard.catalog.vm_price`, the Machine
        screen's figure for that region): zones differ in quota and in their region's price."""
        _p, gpu, count, spot = self._key()
        machine = machine or self._machine()
        g = self.draft.target.gcp
        disk = (g.disk_gb, g.disk_type) if g else (0, "pd-balanced")
        return catalog.vm_price(machine, gpu, count, spot, *disk, region=region) if machine else None

    def _title(self, shown: list[catalog.Price | None]) -> str:
        """What the prices assume (machine, GPUs, disk) and where they come from."""
        key = self._key()
        gl = catalog.gpu(key[1])
        vm = self._price()
        what = f"{vm.assumes.split(';')[0]}, in each zone's region, {catalog.sources_of(shown)}" if vm else "?"
        return (f"Zones offering {key[2]} x {gl.label if gl else key[1]}{' (spot)' if key[3] else ''}; "
                f"$/h per VM: {what}")

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        table = self.query_one("#zones", DataTable)
        table.add_columns("Use", "Zone", "Region", "Region free quota", "$/h per VM", "Max GPUs/VM", "Data")
        g = self.draft.target.gcp
        if g is None:
            self.query_one("#zone-note", Static).update("This recipe runs on existing hosts: no zone to choose.")
            return
        key = self._key()
        cached = self.wizard.live.zones.get(key)
        self.live_rows = bool(cached)
        self.rows = list(cached or live.offline_zones(key[1], key[2], key[3]))
        offered = {r.zone for r in self.rows}
        self._keep_recipe_zones(g.zones)
        self.order = list(g.zones)
        offered |= set(catalog.zones_for(key[1]))
        if not self.order or (offered and not any(z in offered for z in self.order)):
            self.order = live.default_preference(self.rows)
            self._proposed = True
        self._refresh_rows()

    def _keep_recipe_zones(self, zones: list[str]) -> None:
        """Keep zones the recipe names that the list does not (a recipe may be newer)."""
        known = {r.zone for r in self.rows}
        for z in zones:
            if z not in known:
                self.rows.append(live.ZoneRow(z, catalog.region_of(z), 0, None, None))
                self.unlisted.add(z)

    def after_mount(self) -> None:
        self.call_after_refresh(self.refresh_live)

    def snapshot(self) -> Any:
        return tuple(self.order)

    def apply(self) -> None:
        if self.draft.target.gcp is not None:
            self.draft.target.gcp.zones = list(self.order)

    def problems(self) -> list[str]:
        if self.draft.target.gcp is None:
            return []
        if not self.order:
            return ["choose at least one zone (space on a row)"]
        return []

    # -------------------------------------------------------------- rendering

    def _refresh_rows(self) -> None:
        table = self.query_one("#zones", DataTable)
        cursor = table.cursor_row
        under = self._current()  # the cursor follows its zone through a re-sort
        table.clear()
        machine = self._machine()
        by_region = {r.region: self._price(r.region, machine) for r in self.rows}
        rows = sorted(self.rows, key=lambda r: (r.zone not in self.order,
                                                 self.order.index(r.zone) if r.zone in self.order else 0))
        for r in rows:
            use = f"✔ {self.order.index(r.zone) + 1}." if r.zone in self.order else "·"
            free = "?" if r.free_quota is None else f"{r.free_quota:g}"
            vm = by_region.get(r.region)
            p = vm.per_hour if vm else None
            table.add_row(use, r.zone, r.region, free, "?" if p is None else f"{p:.2f}",
                          "?" if r.zone in self.unlisted else str(r.max_count),
                          "not listed" if r.zone in self.unlisted else ("live" if self.live_rows else "catalog"),
                          key=r.zone)
        if rows:
            zones = [r.zone for r in rows]
            row = zones.index(under) if under in zones else min(max(cursor, 0), len(rows) - 1)
            table.move_cursor(row=row)
        self.query_one("#zone-title", Static).update(self._title(list(by_region.values())))
        self.query_one("#order", Static).update(
            "Failover order: " + (" -> ".join(self.order) if self.order else "(none yet)"))
        self._note()

    def _note(self) -> None:
        note = self.query_one("#zone-note", Static)
        by_zone = {r.zone: r for r in self.rows}
        zero = [z for z in self.order if by_zone.get(z) and by_zone[z].free_quota is not None and by_zone[z].free_quota < 1]
        info = self.wizard.live.project
        if zero:
            note.set_class(True, "-warning")
            note.update(f"No free quota in the region of {', '.join(zero)}: those zones will fail until the quota "
                        "is raised (see the Project & quota screen).")
        elif not self.live_rows:
            note.set_class(False, "-warning")
            note.update("From the built-in catalog snapshot"
                        + (" (offline)." if not info or not info.online else "; live zones are loading..."))
        else:
            note.set_class(False, "-warning")
            note.update("Live data from Compute Engine.")

    # -------------------------------------------------------------- actions

    def _current(self) -> str | None:
        table = self.query_one("#zones", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _moved(self) -> None:
        self._refresh_rows()
        self.revalidate()

    def action_toggle(self) -> None:
        z = self._current()
        if z is None:
            return
        if z in self.order:
            self.order.remove(z)
        else:
            self.order.append(z)
        self._moved()

    @on(DataTable.RowSelected, "#zones")
    def _selected(self) -> None:
        self.action_toggle()

    def action_move(self, delta: int) -> None:
        z = self._current()
        if z is None or z not in self.order:
            return
        i = self.order.index(z)
        j = max(0, min(len(self.order) - 1, i + delta))
        self.order[i], self.order[j] = self.order[j], self.order[i]
        self._refresh_rows()
        self.query_one("#zones", DataTable).move_cursor(row=j)
        self.revalidate()

    def action_best(self) -> None:
        self.order = live.default_preference(live.best_first(self.rows, self._key()[1], self._key()[2]))
        self._moved()

    # -------------------------------------------------------------- live data

    def refresh_live(self) -> None:
        info = self.wizard.live.project
        key = self._key()
        if self.draft.target.gcp is None or not self.wizard.live_enabled or info is None or not info.online:
            return
        if catalog.live_prices() is None:
            self.fetch_prices()
        if key in self.wizard.live.zones or not key[0]:
            return
        self.fetch_zones(*key)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-zones", description="zones for the GPU")
    def fetch_zones(self, project: str | None, gpu: str, count: int, spot: bool) -> tuple[tuple, list[live.ZoneRow]]:
        return (project, gpu, count, spot), live.load_zones(project, gpu, count, spot, online=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gcp-prices", description="live prices")
    def fetch_prices(self) -> str | None:
        """Live prices for every region (day-cached); the sentence to show when they failed."""
        return use_live_prices()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Worker results and errors, in one place."""
        if event.state == WorkerState.SUCCESS and event.worker.group == "gcp-prices":
            self._refresh_rows()
            if event.worker.result:
                note = self.query_one("#zone-note", Static)
                note.set_class(True, "-warning")
                note.update(str(event.worker.result))
            return
        if event.state == WorkerState.ERROR and event.worker.group == "gcp-prices":
            return  # the snapshot's prices stay; use_live_prices reports its failures as values
        if event.state == WorkerState.ERROR:
            note = self.query_one("#zone-note", Static)
            note.set_class(True, "-warning")
            note.update(f"Could not load live zones ({event.worker.error}); showing the catalog snapshot.")
        elif event.state == WorkerState.SUCCESS and event.worker.group == "gcp-zones":
            key, rows = event.worker.result
            self.wizard.live.zones[key] = rows
            if rows:
                self.rows = list(rows)
                self.live_rows = True
                self.unlisted.clear()
                self._keep_recipe_zones(self.order)
                if self._proposed and self.snapshot() == self._initial:
                    self.order = live.default_preference(rows)
                self._refresh_rows()
                self.revalidate()
