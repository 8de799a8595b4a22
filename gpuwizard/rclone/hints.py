"""rclone's error output -> what happened and what to do, for both sides of the wire.

One table (:data:`ERROR_HINTS`) serves the local login (:func:`explain_rclone_error` on
``rclone authorize``'s stderr) and the host: :func:`hint_shell` compiles the same
patterns into the dataset steps as ``grep -E`` checks, so the explanation is in the
host's log too, where the user reads the failure.
"""

from __future__ import annotations

import re

from gpuwizard.shell import q

#: (regex on rclone output, what happened and what to do). The patterns stay within the
#: part of the syntax Python's ``re`` and ``grep -E`` read alike (alternation, classes).
ERROR_HINTS: list[tuple[str, str]] = [
    (r"downloadQuotaExceeded|download quota for this file has been exceeded",
     "Google's per-file download quota is used up (popular shared files hit it). Wait about 24 hours, "
     "ask the owner to re-upload it, or copy it into your own Drive (rclone backend copyid REMOTE: ID "
     "REMOTE:copy/) and download your copy."),
    (r"cannotDownloadAbusiveFile",
     "Google flagged the file as possible malware or spam. If you trust it, add acknowledge_abuse: true "
     "to the remote."),
    (r"userRateLimitExceeded|rateLimitExceeded|Rate Limit Exceeded|Error 429|too many requests",
     "Google Drive is rate-limiting this client. Use your own client_id (run `gpuwizard rclone`), and "
     "re-run: the copy resumes where it stopped."),
    (r"invalid_grant|Token has been expired or revoked|token expired|oauth2: token expired",
     "The Drive login expired or was revoked (a client left in 'Testing' mode expires every 7 days). "
     "Run `gpuwizard rclone` again for a new token, then re-run this step."),
    (r"unauthorized_client",
     "The service account may not impersonate that user: set up domain-wide delegation, or share the "
     "folder with the service account's e-mail and use root_folder_id."),
    (r"can't copy directory",
     "The link is a folder, not a file: use the folder link (…/drive/folders/ID)."),
    (r"insufficientFilePermissions|insufficient permissions|The user does not have sufficient permissions|"
     r"Error 403: Forbidden|forbidden",
     "This Google account (or service account) may not read the file: ask the owner to share it with you, "
     "or use a link shared as 'Anyone with the link'."),
    (r"notFound|File not found|directory not found|object not found|error 404|not found",
     "Nothing was found at that path or ID. Check the link or path; a file shared with you needs "
     "shared_with_me: true or its link, and old links need their resourcekey."),
    (r"didn't find section in config file|NewFs: didn't find section",
     "The remote is not configured on this host: run its rclone.remote step first."),
    (r"illegal base64|Couldn't decode response",
     "The pasted answer came from a different rclone version: paste the raw token JSON instead."),
    (r"no space left on device",
     "The VM's disk is full: grow the boot disk (target.gcp.disk_gb) or copy to a bigger disk."),
    (r"certificate signed by unknown authority|x509:",
     "TLS certificate check failed: the VM's clock or CA certificates may be wrong (apt-get install ca-certificates)."),
]
_HINT_RES = [(re.compile(p, re.I), msg) for p, msg in ERROR_HINTS]


def explain_rclone_error(text: str) -> str | None:
    """One plain explanation (what happened, what to do) for rclone output, or None."""
    if not text:
        return None
    for rx, msg in _HINT_RES:
        if rx.search(text):
            return msg
    return None


def hint_shell(log: str) -> str:
    """Bash that prints the first matching hint for the rclone log file ``log`` (a shell word)."""
    lines = []
    for i, (pattern, msg) in enumerate(ERROR_HINTS):
        kw = "if" if i == 0 else "elif"
        lines.append(f"{kw} grep -Eqi -- {q(pattern)} {log}; then echo {q('gpuwizard: ' + msg)} >&2")
    lines.append("fi")
    return "\n".join(lines) + "\n"
