"""The Cloud Quotas API adaptor: the one module that imports ``google.cloud.cloudquotas_v1``.

Why a second adaptor beside :mod:`.client`: ``regions.list`` does not return the GPU
*family* quotas (``GPUS-PER-GPU-FAMILY-per-project-region`` with a ``gpu_family``
dimension: H100, H200, B200 ...), and only the Cloud Quotas API files an increase
(a ``QuotaPreference``). Sources: docs/facts/cloud-quotas.md.

Like :class:`~gpuwizard.gcp.client.Compute` it speaks plain dicts (camelCase, as the
REST API writes them) and raises :class:`~gpuwizard.gcp.errors.ApiError`; every call
is blocking (run it through :func:`gpuwizard.gcp.client.call`). The import is lazy
(the client costs ~0.5 s), so ``gpuwizard quota --help`` never pays for it.

Endpoint: ``GPUWIZARD_QUOTAS_ENDPOINT=http://host:port`` points the client elsewhere
(the tests' fake); a plain ``http://`` endpoint gets anonymous credentials, so a real
token never travels unencrypted (the rule of ``GPUWIZARD_COMPUTE_ENDPOINT``). With the
Compute endpoint overridden and no Cloud Quotas endpoint, :func:`available` says no:
a private or fake Compute endpoint must not make gpuwizard call the real Google.

REST paths (``services/cloud_quotas/transports/rest_base.py`` of google-cloud-quotas):
``GET /v1/{parent=projects/*/locations/*/services/*}/quotaInfos``,
``POST/GET /v1/{parent=projects/*/locations/*}/quotaPreferences``,
``GET /v1/{name=projects/*/locations/*/quotaPreferences/*}``,
``PATCH /v1/{quota_preference.name=projects/*/locations/*/quotaPreferences/*}``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from gpuwizard.gcp import budgets
from gpuwizard.gcp import client as gclient
from gpuwizard.gcp.errors import ApiError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

ENDPOINT_ENV = "GPUWIZARD_QUOTAS_ENDPOINT"
SERVICE = "compute.googleapis.com"
T = TypeVar("T")


def endpoint() -> str | None:
    """The Cloud Quotas override endpoint, or None for the real API."""
    return os.environ.get(ENDPOINT_ENV) or None


def available() -> bool:
    """Whether gpuwizard may ask Cloud Quotas at all (see the module docstring)."""
    return endpoint() is not None or gclient.endpoint() is None


def _credentials(project: str | None) -> tuple["Credentials", str]:
    """Anonymous credentials for a plain-http endpoint, else the Compute adaptor's with a
    quota project (:func:`with_quota_project`)."""
    ep = endpoint()
    if ep and ep.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        _, proj = gclient.credentials_and_project(project)
        return AnonymousCredentials(), proj
    creds, proj = gclient.credentials_and_project(project)
    return with_quota_project(creds, proj), proj


def with_quota_project(creds: "Credentials", project: str) -> "Credentials":
    """User credentials (``gcloud auth application-default login``) with ``project`` as their
    quota project where they have none.

    Why: Cloud Quotas is a client-based API: a request made with user credentials must name
    the project that pays for it (``x-goog-user-project``), else Google answers 403 "requires a
    quota project" (docs/facts/cloud-quotas.md). Only user credentials get it: a service
    account's own project is its quota project already, and pointing it elsewhere would need
    ``serviceusage.services.use`` there. A quota project set in the ADC file or by
    ``GOOGLE_CLOUD_QUOTA_PROJECT`` is kept.
    """
    from google.oauth2.credentials import Credentials as UserCredentials

    if isinstance(creds, UserCredentials) and not creds.quota_project_id:
        return creds.with_quota_project(project)
    return creds


def _parent(project: str) -> str:
    return f"projects/{project}/locations/global"


class CloudQuotas:
    """The Cloud Quotas requests gpuwizard makes, for one project. Blocking methods."""

    def __init__(self, project: str, credentials: "Credentials") -> None:
        self.project = project
        self.credentials = credentials
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            from google.api_core.client_options import ClientOptions
            from google.cloud import cloudquotas_v1

            ep = endpoint()
            opts = ClientOptions(api_endpoint=ep) if ep else None
            self._client = cloudquotas_v1.CloudQuotasClient(credentials=self.credentials, transport="rest",
                                                             client_options=opts)
        return self._client

    @staticmethod
    def _do(what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - translated once, here
            api = gclient.translate_error(exc, what)  # the Compute adaptor's translation: one shape of error
            if api is None:
                raise
            raise api from exc

    @staticmethod
    def _retry(budget: float | None = None) -> Any:
        from google.api_core import retry as gretry

        return gretry.Retry(predicate=gretry.if_transient_error, initial=0.25, maximum=5.0, multiplier=2.0,
                            timeout=budgets.READ_BUDGET if budget is None else budget)

    def quota_infos(self, service: str = SERVICE) -> list[dict[str, Any]]:
        """Every QuotaInfo of ``service`` (ListQuotaInfos, all pages)."""
        parent = f"{_parent(self.project)}/services/{service}"

        def run() -> list[dict[str, Any]]:
            # the quota check before provisioning waits on this read: a short budget, then the
            # regions.list fallback (budgets.EXTRA_READ_BUDGET)
            pages = self._api().list_quota_infos(parent=parent, retry=self._retry(budgets.EXTRA_READ_BUDGET),
                                                 timeout=budgets.EXTRA_REQUEST_TIMEOUT)
            return [_to_dict(i) for i in pages]

        return self._do("quotaInfos.list", run)

    def preferences(self) -> list[dict[str, Any]]:
        """Every QuotaPreference of the project (ListQuotaPreferences, all pages)."""
        def run() -> list[dict[str, Any]]:
            pages = self._api().list_quota_preferences(parent=_parent(self.project), retry=self._retry(),
                                                       timeout=budgets.REQUEST_TIMEOUT)
            return [_to_dict(p) for p in pages]

        return self._do("quotaPreferences.list", run)

    def get_preference(self, name: str) -> dict[str, Any]:
        return self._do("quotaPreferences.get", lambda: _to_dict(self._api().get_quota_preference(
            name=name, retry=self._retry(), timeout=budgets.REQUEST_TIMEOUT)))

    def create_preference(self, body: dict[str, Any], preference_id: str) -> dict[str, Any]:
        """CreateQuotaPreference (never retried: a second create of the same id fails)."""
        from google.cloud import cloudquotas_v1

        pref = cloudquotas_v1.QuotaPreference.from_json(_json(body))
        return self._do("quotaPreferences.create", lambda: _to_dict(self._api().create_quota_preference(
            parent=_parent(self.project), quota_preference=pref, quota_preference_id=preference_id,
            retry=None, timeout=budgets.REQUEST_TIMEOUT)))

    def update_preference(self, body: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """UpdateQuotaPreference of ``body["name"]`` (its ``etag`` guards against a lost update)."""
        from google.cloud import cloudquotas_v1
        from google.protobuf import field_mask_pb2

        pref = cloudquotas_v1.QuotaPreference.from_json(_json(body))
        mask = field_mask_pb2.FieldMask(paths=fields)
        return self._do("quotaPreferences.patch", lambda: _to_dict(self._api().update_quota_preference(
            quota_preference=pref, update_mask=mask, retry=None, timeout=budgets.REQUEST_TIMEOUT)))


def open_quotas(project: str | None) -> CloudQuotas:
    """A :class:`CloudQuotas` for ``project`` (blocking: may read credentials)."""
    creds, proj = _credentials(project)
    return CloudQuotas(proj, creds)


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body)


def _to_dict(msg: Any) -> dict[str, Any]:
    """A proto-plus message as the REST API's camelCase dict (int64 values as numbers)."""
    return type(msg).to_dict(msg, preserving_proto_field_name=False, use_integers_for_enums=False)


__all__ = ["ApiError", "CloudQuotas", "ENDPOINT_ENV", "SERVICE", "available", "endpoint", "open_quotas",
           "with_quota_project"]
