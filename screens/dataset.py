"""Screen 6, Dataset: what to fetch onto the host (rclone remote path or a Drive share link).

A Google Drive link is fetched through a drive remote; when the recipe has none the
screen offers the rclone set-up screen (:mod:`screens.rclone`).
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, DataTable, Input, Select, Static

from gpuwizard import recipe as rc
from gpuwizard.recipe import Dataset, Rclone, Remote
from screens.base import WizardScreen

_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


def drive_file_id(url: str) -> str | None:
    """The file or folder id of a Google Drive share link, or None when it is not one."""
    try:
        from gpuwizard.sharelinks import parse_drive_link  # type: ignore[import-not-found]
    except ImportError:
        parse_drive_link = None
    if parse_drive_link is not None:
        try:
            res = parse_drive_link(url)
        except Exception:  # noqa: BLE001 - "not a drive link"
            return None
        if res is None:
            return None
        return str(getattr(res, "id", None) or getattr(res, "file_id", None) or res)
    if not url.startswith(("http://", "https://")) or not any(h in url for h in _DRIVE_HOSTS):
        return None
    m = re.search(r"/(?:file/d|folders|document/d|spreadsheets/d)/([A-Za-z0-9_-]{10,})", url) or \
        re.search(r"[?&]id=([A-Za-z0-9_-]{10,})", url)
    return m.group(1) if m else None


class DatasetScreen(WizardScreen):
    """Datasets to fetch: source, destination, unzip."""

    NAME = "dataset"
    TITLE = "Dataset"
    HELP = ("Datasets are copied with rclone: write REMOTE:path (e.g. gdrive:st-gcn-processed-data.zip) or paste "
            "a Google Drive share link. Optional: a recipe can have no dataset.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+a", "add", "Add dataset", id="dataset.add"),
        Binding("ctrl+r", "rclone", "Set up Drive remote", id="dataset.rclone"),
        Binding("delete", "remove", "Remove", id="dataset.remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.datasets: list[Dataset] = []
        self.remotes: dict[str, Remote] = {}

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("From: REMOTE:path or a Google Drive link", classes="label")
                yield Input(placeholder="gdrive:st-gcn-processed-data.zip", id="ds-from")
            with Vertical(classes="field"):
                yield Static("To (on the host)", classes="label")
                yield Input("~/data/", id="ds-to")
        with Horizontal(classes="row"):
            with Vertical(classes="field"):
                yield Static("Through remote (Drive links)", classes="label")
                yield Select([], prompt="no remote", id="ds-remote")
            with Vertical(classes="field"):
                yield Static("After the copy", classes="label")
                yield Checkbox("unzip / untar", value=False, id="ds-unzip")
        with Horizontal(classes="row"):
            yield Button("Add (ctrl+a)", id="add", variant="success")
            yield Button("Remove (del)", id="remove")
            yield Button("Set up Google Drive remote (ctrl+r)", id="rclone")
        yield Static("", id="remotes", classes="note")
        yield Static("", id="ds-note", classes="note")

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        t = self.query_one("#datasets", DataTable)
        t.add_columns("From", "Remote", "To", "Unzip")
        self.datasets = copy.deepcopy(self.draft.datasets)
        self.remotes = copy.deepcopy(self.draft.rclone.remotes) if self.draft.rclone else {}
        self._refresh_rows()

    def snapshot(self) -> Any:
        return (rc.to_data(self.datasets), rc.to_data(self.remotes))

    def apply(self) -> None:
        self.draft.datasets = copy.deepcopy(self.datasets)
        if self.remotes:
            if self.draft.rclone is None:
                self.draft.rclone = Rclone()
            self.draft.rclone.remotes = copy.deepcopy(self.remotes)
        elif self.draft.rclone is not None:
            self.draft.rclone.remotes = {}

    def _trial_problems(self, datasets: list[Dataset]) -> list[str]:
        trial = copy.copy(self.draft)
        trial.datasets = datasets
        trial.rclone = Rclone(remotes=self.remotes)
        trial.steps = []
        out = []
        for p in rc.structural_problems(trial):
            if p.path.startswith(("datasets", "rclone")):
                m = re.match(r"datasets\[(\d+)\]", p.path)
                where = f"dataset {int(m.group(1)) + 1}: " if m else ""
                out.append(where + p.message)
        return out

    def problems(self) -> list[str]:
        out = self._trial_problems(self.datasets)
        if self.query_one("#ds-from", Input).value.strip():
            out.append("press Add (ctrl+a) to keep the dataset you typed, or clear the field")
        return out

    # -------------------------------------------------------------- rendering

    def _refresh_rows(self) -> None:
        t = self.query_one("#datasets", DataTable)
        t.clear()
        for d in self.datasets:
            t.add_row(d.from_, d.remote or "", d.to, "yes" if d.unzip else "")
        if not self.datasets:
            t.add_row("(none yet)", "", "", "")
        sel = self.query_one("#ds-remote", Select)
        names = list(self.remotes)
        sel.set_options([(n, n) for n in names])
        drive = [n for n, r in self.remotes.items() if r.type == "drive"]
        if drive:
            sel.value = drive[0]
        r = self.query_one("#remotes", Static)
        if self.remotes:
            r.update("rclone remotes: " + ", ".join(
                f"{n} ({rem.type}{', ' + str(rem.options.get('scope')) if rem.options.get('scope') else ''})"
                for n, rem in self.remotes.items()))
        else:
            r.update("No rclone remote yet. Google Drive data needs one: ctrl+r sets it up.")
        self._hint()

    def _hint(self) -> None:
        note = self.query_one("#ds-note", Static)
        src = self.query_one("#ds-from", Input).value.strip()
        note.set_class(False, "-warning")
        note.display = bool(src)
        if not src:
            note.update("")
            return
        fid = drive_file_id(src)
        if fid:
            drive = [n for n, r in self.remotes.items() if r.type == "drive"]
            if drive:
                note.update(f"Google Drive file {fid}: fetched through the {drive[0]!r} remote.")
            else:
                note.set_class(True, "-warning")
                note.update("This is a Google Drive link; it is fetched through a drive remote and none exists yet. "
                            "Press ctrl+r to set one up.")
            return
        if src.startswith(("http://", "https://")):
            note.update("A plain web link: define an http remote, or download it in a step of your own.")
            return
        name = src.split(":", 1)[0] if ":" in src else None
        if name and name not in self.remotes:
            note.set_class(True, "-warning")
            note.update(f"Remote {name!r} is not defined yet"
                        + (": press ctrl+r to set up a Google Drive remote." if not self.remotes else
                           f" (defined: {', '.join(self.remotes)})."))
        else:
            note.update("")

    def changed(self) -> None:
        self._hint()

    # -------------------------------------------------------------- actions

    @on(Button.Pressed, "#add")
    @on(Input.Submitted, "#ds-from, #ds-to")
    def action_add(self) -> None:
        src = self.query_one("#ds-from", Input).value.strip()
        if not src:
            self.notify("Type a source first: REMOTE:path or a Google Drive link.", severity="warning")
            return
        to = self.query_one("#ds-to", Input).value.strip() or "~/data/"
        unzip = self.query_one("#ds-unzip", Checkbox).value
        remote = None
        if drive_file_id(src):
            v = self.query_one("#ds-remote", Select).value
            remote = None if v is Select.BLANK else str(v)
        ds = Dataset(from_=src, to=to, remote=remote, unzip=unzip)
        probs = self._trial_problems([ds])
        if probs and not (remote is None and drive_file_id(src)):
            self.notify(probs[0].removeprefix("dataset 1: "), severity="warning")
        self.datasets.append(ds)
        self.query_one("#ds-from", Input).value = ""
        self._refresh_rows()
        self.revalidate()

    @on(Button.Pressed, "#remove")
    def action_remove(self) -> None:
        t = self.query_one("#datasets", DataTable)
        if not self.datasets:
            return
        i = min(t.cursor_row, len(self.datasets) - 1)
        self.datasets.pop(i)
        self._refresh_rows()
        self.revalidate()

    @on(Button.Pressed, "#rclone")
    def action_rclone(self) -> None:
        from screens.rclone import RcloneScreen

        ssh = self.draft.target.ssh
        host = ssh.hosts[0] if ssh and ssh.hosts else "USER@VM"
        self.app.push_screen(RcloneScreen(existing=list(self.remotes), host=host), self._remote_added)

    def _remote_added(self, result: tuple[str, Remote] | None) -> None:
        """Add the dialog's remote and write the draft at once: its secret files exist
        now, so the draft should name them even if the user never presses Next."""
        if result is None:
            return
        name, remote = result
        self.remotes[name] = remote
        for d in self.datasets:  # Drive links waiting for a remote get this one
            if d.remote is None and drive_file_id(d.from_):
                d.remote = name
        self._refresh_rows()
        self.commit()
        self.revalidate()
