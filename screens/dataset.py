"""Screen 6, Dataset: what to fetch onto the host (rclone remote path or a Drive share link).

A Google Drive link is fetched through a drive remote; when the recipe has none the
screen offers the rclone set-up screen (:mod:`screens.rclone`).
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, DataTable, Input, Select, Static

from gpuwizard import recipe as rc
from gpuwizard.recipe import Dataset, Rclone, Remote
from gpuwizard.sharelinks import ShareLinkError, dataset_source_problem, is_drive_link, parse_drive_link
from screens.base import WizardScreen
from screens.rclone import RcloneScreen
from screens.widgets import Check

#: What the note says when a Drive link has no remote to go through (issue 11: the
#: screen used to show "remote 'Select.NULL' is not defined").
NEEDS_DRIVE_REMOTE = "choose or set up a Drive remote first"


def drive_file_id(url: str) -> str | None:
    """The file or folder ID of a Google Drive share link, or None when it is not a
    usable one (the core's :func:`gpuwizard.sharelinks.parse_drive_link` decides)."""
    if not is_drive_link(url):
        return None
    try:
        return parse_drive_link(url).id
    except ShareLinkError:
        return None


class DatasetScreen(WizardScreen):
    """Datasets to fetch: source, destination, unzip."""

    NAME = "dataset"
    TITLE = "Dataset"
    HELP = ("Datasets are copied with rclone: write REMOTE:path (e.g. gdrive:st-gcn-processed-data.zip) or paste "
            "a Google Drive share link. Optional: a recipe can have no dataset.")
    # Priority: the text inputs would take ctrl+a (cursor home) and ctrl+d (delete right)
    # for themselves, so Add and Remove work wherever the focus is. Del stays for the
    # table (in a text field it deletes a character, as a user expects); ctrl+d is the
    # Remove the footer shows because it works everywhere.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+a", "add", "Add dataset", priority=True, id="dataset.add"),
        Binding("ctrl+r", "rclone", "Set up Drive remote", priority=True, id="dataset.rclone"),
        Binding("ctrl+d", "remove", "Remove", priority=True, id="dataset.remove"),
        Binding("delete", "remove", "Remove", show=False, id="dataset.remove-del"),
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
                yield Check("unzip / untar", value=False, id="ds-unzip")
        with Horizontal(classes="row"):
            yield Button("Add (ctrl+a)", id="add", variant="success")
            yield Button("Remove (ctrl+d)", id="remove")
            yield Button("Set up Google Drive remote (ctrl+r)", id="rclone")
        yield Static("", id="remotes", classes="note")
        yield Static("", id="ds-note", classes="note")

    # -------------------------------------------------------------- load / store

    def load(self) -> None:
        self.datasets = copy.deepcopy(self.draft.datasets)
        self.remotes = copy.deepcopy(self.draft.rclone.remotes) if self.draft.rclone else {}
        self._refresh_rows()
        # Typing works at once: the source field has the focus when the screen opens.
        self.query_one("#ds-from", Input).focus()

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
        rows = [(d.from_, d.remote or "", d.to, "yes" if d.unzip else "") for d in self.datasets] \
            or [("(none yet)", "", "", "")]
        # Widths given, not measured: the table measures new rows when it is next idle, and
        # the tmux walk saw a row added after "(none yet)" stay drawn at the old widths
        # ("gdrive:st-  ~/  yes") until something else repainted it.
        t.clear(columns=True)
        for i, label in enumerate(("From", "Remote", "To", "Unzip")):
            t.add_column(label, width=max(cell_len(label), *(cell_len(r[i]) for r in rows)))
        for r in rows:
            t.add_row(*r)
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

    def _drive_remotes(self) -> list[str]:
        return [n for n, r in self.remotes.items() if r.type == "drive"]

    def _chosen_remote(self) -> str | None:
        sel = self.query_one("#ds-remote", Select)
        return None if sel.is_blank() else str(sel.value)

    def _typed(self) -> Dataset | None:
        """The dataset the fields describe, or None while the source is empty."""
        src = self.query_one("#ds-from", Input).value.strip()
        if not src:
            return None
        to = self.query_one("#ds-to", Input).value.strip() or "~/data/"
        remote = self._chosen_remote() if is_drive_link(src) else None
        return Dataset(from_=src, to=to, remote=remote, unzip=self.query_one("#ds-unzip", Checkbox).value)

    def _refusal(self, ds: Dataset) -> str | None:
        """Why the typed dataset cannot become a row (None: it can). The rules are the
        core's: the source's form (:func:`gpuwizard.sharelinks.dataset_source_problem`) and the
        recipe checker; only a remote that is still to be set up is let through, since
        ctrl+r sets it up and Next stays disabled until it exists."""
        bad = dataset_source_problem(ds.from_)
        if bad:
            return bad
        if is_drive_link(ds.from_) and ds.remote is None:
            return NEEDS_DRIVE_REMOTE + ": press ctrl+r to set one up" if not self._drive_remotes() else \
                NEEDS_DRIVE_REMOTE + ": pick one under 'Through remote'"
        name = ds.from_.split(":", 1)[0] if ":" in ds.from_ and not is_drive_link(ds.from_) else None
        probs = [p.removeprefix("dataset 1: ") for p in self._trial_problems([ds]) if p.startswith("dataset 1: ")]
        if name is not None and name not in self.remotes:
            probs = [p for p in probs if repr(name) not in p]  # to be set up with ctrl+r
        return probs[0] if probs else None

    def _hint(self) -> None:
        note = self.query_one("#ds-note", Static)
        ds = self._typed()
        note.set_class(False, "-warning")
        note.display = ds is not None
        if ds is None:
            note.update("")
            return
        refusal = self._refusal(ds)
        if refusal:
            note.set_class(True, "-warning")
            note.update(Text(refusal[0].upper() + refusal[1:]))
            return
        if is_drive_link(ds.from_):
            link = parse_drive_link(ds.from_)
            note.update(Text(f"Google Drive {link.kind if link.kind != 'unknown' else 'item'} {link.id}: "
                             f"fetched through the {ds.remote!r} remote."))
            return
        name = ds.from_.split(":", 1)[0] if ":" in ds.from_ else None
        if name and not ds.from_.startswith(("http://", "https://")) and name not in self.remotes:
            note.set_class(True, "-warning")
            note.update(Text(f"Remote {name!r} is not defined yet"
                             + (": press ctrl+r to set up a Google Drive remote." if not self.remotes else
                                f" (defined: {', '.join(self.remotes)}); ctrl+r sets up a Google Drive remote.")))
        elif ds.from_.startswith(("http://", "https://")):
            note.update("A plain web link: fetched with rclone's http backend.")
        else:
            note.update("")

    def changed(self) -> None:
        self._hint()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "remove" and not self.datasets:
            return None  # nothing to remove: dimmed in the footer
        return super().check_action(action, parameters)

    # -------------------------------------------------------------- actions

    @on(Button.Pressed, "#add")
    @on(Input.Submitted, "#ds-from, #ds-to")
    def action_add(self) -> None:
        ds = self._typed()
        if ds is None:
            self.notify("Type a source first: REMOTE:path or a Google Drive link.", severity="warning")
            return
        refusal = self._refusal(ds)
        if refusal:
            # Nothing is added: the reason stays under the field until the source changes.
            self._hint()
            self.notify(refusal, title="Not added", severity="warning")
            if is_drive_link(ds.from_) and ds.remote is None and not self._drive_remotes():
                self.query_one("#rclone", Button).focus()  # the offer: Enter opens the set-up
            return
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
        for d in self.datasets:  # Drive links loaded without a remote get this one
            if d.remote is None and is_drive_link(d.from_) and remote.type == "drive":
                d.remote = name
        self._refresh_rows()
        if remote.type == "drive":
            self.query_one("#ds-remote", Select).value = name
        self.commit()
        self.revalidate()
        self.query_one("#ds-from", Input).focus()
