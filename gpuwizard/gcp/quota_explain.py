"""Cloud Quotas API failures told as what to do next (pure; no Google import).

Two failures need more than the server's message: the API switched off in the project
(HTTP 403 with a ``google.rpc.ErrorInfo`` whose reason is ``SERVICE_DISABLED`` and whose
metadata carries the ``activationUrl``), and a caller who lacks the permission
(``PERMISSION_DENIED`` / ``IAM_PERMISSION_DENIED``). Reading quotas needs
``cloudquotas.quotas.get``; filing an increase needs ``cloudquotas.quotas.update``, which
Owner, Editor, Quota Administrator and Service Usage Admin grant (docs/facts/cloud-quotas.md).

A third looks like the first but is not: user credentials without a quota project
("... requires a quota project ...", billed to gcloud's own project where the API is off,
so the ErrorInfo may say SERVICE_DISABLED), or a quota project the user may not bill to
(``USER_PROJECT_DENIED``). Telling the user to enable an API that is enabled would send
them in circles, so this is checked first.
"""

from __future__ import annotations

import shlex
from typing import Any

from gpuwizard.gcp.errors import ApiError, GcpError

API = "cloudquotas.googleapis.com"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
DISABLED = "service_disabled"     # GcpError kinds of this module
DENIED = "permission"

ROLES_TO_REQUEST = ("Owner (roles/owner), Editor (roles/editor), Quota Administrator "
                    "(roles/servicemanagement.quotaAdmin) or Service Usage Admin (roles/serviceusage.serviceUsageAdmin)")
ROLES_TO_READ = "Viewer (roles/viewer) or Quota Viewer (roles/servicemanagement.quotaViewer)"


def error_info(exc: ApiError) -> dict[str, Any] | None:
    """The ``google.rpc.ErrorInfo`` detail of a failed request, as a dict."""
    for d in exc.details:
        if isinstance(d, dict) and d.get("@type") == ERROR_INFO:
            return d
    return None


def enable_command(project: str) -> str:
    return f"gcloud services enable {API} --project {shlex.quote(project)}"


def console_enable_link(project: str) -> str:
    return f"https://console.cloud.google.com/apis/library/{API}?project={project}"


def is_disabled(exc: ApiError) -> bool:
    info = error_info(exc)
    return bool(info and info.get("reason") == "SERVICE_DISABLED") or "SERVICE_DISABLED" in exc.message


def needs_quota_project(exc: ApiError) -> bool:
    """Whether the request failed for want of a (usable) quota project, not for the API or IAM."""
    info = error_info(exc) or {}
    return "requires a quota project" in exc.message or info.get("reason") == "USER_PROJECT_DENIED"


def quota_project_fix(project: str) -> str:
    return (f"your user credentials need a quota project: run `gcloud auth application-default set-quota-project "
            f"{shlex.quote(project)}` (your account needs serviceusage.services.use there, e.g. Service Usage "
            f"Consumer, roles/serviceusage.serviceUsageConsumer)")


def is_denied(exc: ApiError) -> bool:
    info = error_info(exc)
    reason = str((info or {}).get("reason") or "")
    return exc.code == 403 and not is_disabled(exc) or reason in ("IAM_PERMISSION_DENIED", "PERMISSION_DENIED")


def activation_url(exc: ApiError, project: str) -> str:
    info = error_info(exc) or {}
    return str((info.get("metadata") or {}).get("activationUrl") or console_enable_link(project))


def explain(exc: ApiError, project: str, doing: str, *, filing: bool) -> GcpError:
    """One or two sentences for a failed Cloud Quotas request ``doing`` (e.g. "reading GPU quotas")."""
    if needs_quota_project(exc):
        return GcpError(f"Cloud Quotas refused the request {doing}: {quota_project_fix(project)}, then try again.",
                        kind=DENIED)
    if is_disabled(exc):
        return GcpError(f"The Cloud Quotas API is not enabled in project {project} ({doing}): enable it with "
                        f"`{enable_command(project)}` or at {activation_url(exc, project)}, then try again.",
                        kind=DISABLED, link=activation_url(exc, project))
    if is_denied(exc):
        info = error_info(exc) or {}
        perm = (info.get("metadata") or {}).get("permission") or \
            ("cloudquotas.quotas.update" if filing else "cloudquotas.quotas.get")
        roles = ROLES_TO_REQUEST if filing else ROLES_TO_READ
        role = "roles/servicemanagement.quotaAdmin" if filing else "roles/servicemanagement.quotaViewer"
        return GcpError(f"Permission denied {doing} in project {project} (needs {perm}): one of {roles} allows it. "
                        f"A project owner can grant it with `gcloud projects add-iam-policy-binding "
                        f"{shlex.quote(project)} --member=user:YOUR_EMAIL --role={role}`.", kind=DENIED)
    what = exc.message.strip().rstrip(".")
    return GcpError(f"Cloud Quotas API error {doing} in project {project}: {what}.", kind="error")


def fallback_line(exc: BaseException, project: str) -> str:
    """The one line shown when reading QuotaInfos failed and regions.list is used instead."""
    if isinstance(exc, ApiError) and needs_quota_project(exc):
        why = f"Cloud Quotas could not be read: {quota_project_fix(project)}"
    elif isinstance(exc, ApiError) and is_disabled(exc):
        why = (f"the Cloud Quotas API is not enabled in {project} (`{enable_command(project)}`, "
               f"or {activation_url(exc, project)})")
    elif isinstance(exc, ApiError) and is_denied(exc):
        why = f"permission denied reading Cloud Quotas in {project} (needs {ROLES_TO_READ})"
    else:
        why = f"Cloud Quotas could not be read ({str(exc).strip().rstrip('.')})"
    return f"{why}; showing regions.list quotas, which omit the GPU-family quotas (H100, H200, B200)."
