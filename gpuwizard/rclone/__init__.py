"""rclone remotes and dataset downloads: the UI-free core both front ends call.

Replaces parts of the original procedure (docs/facts/rclone-drive.md); one job per module:

* :mod:`.drive_form`: the guided Drive set-up's choices, validators and
  :class:`DriveRemoteSpec` (the twenty prompts of ``rclone config`` as one form).
* :mod:`.drive_setup`: :class:`DriveSetup`, the set-up's actions (log in, accept a
  pasted token, save the secrets 0600, the recipe fragment, the SSH-tunnel recipe).
* :mod:`.authorize`: ``rclone authorize "drive"`` run here, as a cancellable subprocess.
* :mod:`.options`: a recipe remote's options split into command-line words and secrets
  that travel as files and reach rclone through the environment.
* :mod:`.host_steps`: the planner's steps (install, ``config create``, datasets).
* :mod:`.config_state`: the check of ``config create``'s JSON answer, run on the host.
* :mod:`.hints`: rclone's errors explained, here and in the host's log.

This file only re-exports the names other modules use (``rclone.steps(recipe)`` in the
planner, the form and setup in ``gpuwizard rclone`` and the wizard's dialog).
"""

from __future__ import annotations

from gpuwizard.rclone.authorize import AUTH_PORT, authorize_local, find_local_rclone, local_version, parse_version
from gpuwizard.rclone.drive_form import (AUTH_METHODS, CLIENT_ID_HELP, SCOPE_LABELS, SCOPES, DriveRemoteSpec,
                                         folder_id_from,
                                         parse_token_text, read_service_account, validate_client_id,
                                         validate_client_secret, validate_remote_name, validate_root_folder,
                                         validate_service_account_file, validate_team_drive, validate_token_text)
from gpuwizard.rclone.drive_setup import DriveSetup
from gpuwizard.rclone.errors import RcloneError, TokenError
from gpuwizard.rclone.hints import ERROR_HINTS, explain_rclone_error
from gpuwizard.rclone.host_steps import (COPY_FLAGS, DEFAULT_VERSION, MIN_VERSION, RCLONE_FLAGS, dataset_ids,
                                         dataset_step, install_step, remote_step, steps)
from gpuwizard.rclone.options import HOST_SECRETS, NATIVE_FILE_OPTIONS, OBSCURED_KEYS

__all__ = [
    "AUTH_METHODS", "AUTH_PORT", "CLIENT_ID_HELP", "COPY_FLAGS", "DEFAULT_VERSION", "ERROR_HINTS", "HOST_SECRETS",
    "MIN_VERSION", "NATIVE_FILE_OPTIONS", "OBSCURED_KEYS", "RCLONE_FLAGS", "SCOPE_LABELS", "SCOPES", "DriveRemoteSpec",
    "DriveSetup", "RcloneError", "TokenError", "authorize_local", "dataset_ids", "dataset_step",
    "explain_rclone_error", "find_local_rclone", "folder_id_from", "install_step", "local_version",
    "parse_token_text", "parse_version", "read_service_account", "remote_step", "steps",
    "validate_client_id",
    "validate_client_secret", "validate_remote_name", "validate_root_folder", "validate_service_account_file",
    "validate_team_drive", "validate_token_text",
]
