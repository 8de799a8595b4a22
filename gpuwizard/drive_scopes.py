"""The Google Drive OAuth scopes rclone's drive backend accepts, with what each allows.

One table for every reader: the recipe checker refuses a scope not listed here, and the
Drive set-up (``gpuwizard rclone`` and the wizard's dialog) offers these with their
explanation. A leaf module (no project imports) so the recipe model can read it without
importing the rclone planner, which itself reads the recipe.
Source: docs/facts/rclone-drive.md §3 (the drive backend's option ``scope``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """One scope: its short label in a list, what it lets rclone do, and whether the
    set-up offers it (one that cannot download file contents is useless for datasets)."""

    label: str
    text: str
    offered: bool = True


#: Every scope the drive backend takes, in the order the set-up lists them.
DRIVE_SCOPES: dict[str, Scope] = {
    "drive.readonly": Scope("drive.readonly (recommended)",
                            "Read all your files, change nothing. Right for downloading datasets (recommended)."),
    "drive": Scope("drive (full access)",
                   "Full access: read, write and delete all files. Only if the VM must upload results."),
    "drive.file": Scope("drive.file (rclone's own files)",
                        "Only files rclone itself created. It cannot see a dataset shared with you."),
    "drive.appfolder": Scope("drive.appfolder (app folder)", "A private app folder only. It cannot see your files."),
    "drive.metadata.readonly": Scope("drive.metadata.readonly (no contents)",
                                     "File names and sizes only, no contents: useless for downloads.", offered=False),
}

#: The scopes the set-up offers, in order.
OFFERED_SCOPES: list[str] = [k for k, v in DRIVE_SCOPES.items() if v.offered]

#: The scope a drive remote gets when the recipe names none (rclone's default is full
#: ``drive``; a dataset download needs only read access).
DEFAULT_SCOPE = "drive.readonly"
