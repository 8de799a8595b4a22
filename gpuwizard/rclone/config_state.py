"""Did ``rclone config create --non-interactive`` finish? Runs on the host, and here.

rclone exits 0 even when it stopped to ask a question; only the JSON it prints says so
(``State`` empty and no ``Error`` means done; docs/facts/rclone-drive.md §1). The remote
step pipes that JSON into this very file, sent as ``python3 -c SOURCE NAME``
(:func:`gpuwizard.rclone.host_steps.remote_step` reads it with ``importlib.resources``), so
the check the tests exercise is the check that runs on the host.

Stdlib only, Python 3.8+ (the oldest python3 on a supported image): no project imports.
Only the asked option's name and rclone's error are printed, never the ``Help`` text,
which can embed ``rclone authorize`` blobs.
"""

import json
import sys
from typing import Optional

#: What to write in the recipe when rclone stops to ask for these options.
OPTION_HINTS = {
    "config_is_local": "no credential was given: add token_file or service_account_file to the remote",
    "config_token": "no OAuth token was given: run `gpuwizard rclone` to get one, then add token_file",
    "config_refresh_token": "pass config_refresh_token: false with a token",
    "config_change_team_drive": "pass config_change_team_drive: false (or team_drive: ID)",
}
DEFAULT_HINT = "give that answer in the recipe's remote (for drive: token_file or service_account_file)"


def problem(json_text: str, name: str) -> Optional[str]:
    """None when rclone finished configuring remote ``name``; else what is wrong and what to do."""
    try:
        data = json.loads(json_text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or "State" not in data:
        return "rclone config create printed no JSON state: rclone 1.56 or newer is needed"
    option = data.get("Option") or {}
    asked = str(option.get("Name") or "") if isinstance(option, dict) else ""
    state, error = str(data.get("State") or ""), str(data.get("Error") or "")
    if not state and not error:
        return None
    what = "rclone stopped to ask for %r" % asked if asked else "rclone stopped in state %r" % state
    return "remote %r is incomplete: %s%s; %s" % (name, what, " (%s)" % error if error else "",
                                                 OPTION_HINTS.get(asked, DEFAULT_HINT))


def main(argv: list) -> int:
    """``python3 -c SOURCE NAME < json``: exit 1 with the problem on stderr, else 0."""
    name = argv[1] if len(argv) > 1 else "?"
    msg = problem(sys.stdin.read(), name)
    if msg:
        print("gpuwizard: " + msg, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
