"""The Google Drive OAuth scopes rclone's drive backend accepts, with what each allows.

One table for every reader: the recipe checker refuses a scope not listed here, and the
Drive set-up (``gpuwizard rclone`` and the wizard's dialog) offers these with their
explanation. A leaf module (no project imports) so the recipe model can read it without
importing the rclone planner, which itself reads the recipe.
Source: docs/facts/rclone-drive.md §3 (the drive backend's option ``scope``).
"""

from __future__ import annotations

#: scope -> what it lets rclone do, in the words the set-up shows next to the choice.
DRIVE_SCOPES: dict[str, str] = {
    "drive.readonly": "Read all your files, change nothing. Right for downloading datasets (recommended).",
    "drive": "Full access: read, write and delete all files. Only if the VM must upload results.",
    "drive.file": "Only files rclone itself created. It cannot see a dataset shared with you.",
    "drive.appfolder": "A private app folder only. It cannot see your files.",
    "drive.metadata.readonly": "File names and sizes only, no contents: useless for downloads.",
}

#: The scope a drive remote gets when the recipe names none (rclone's default is full
#: ``drive``; a dataset download needs only read access).
DEFAULT_SCOPE = "drive.readonly"
