"""The one adaptor to the Cloud Billing Catalog API (``google.cloud.billing_v1``), imported lazily.

gpuwizard reads one thing from it: the public SKUs of the Compute Engine service
(``services/6F81-5844-456A/skus``, every page), as plain dicts with the REST API's camelCase
names, for :mod:`gpuwizard.prices` to turn into a per-region price table.

The catalog is public data: any credentials read it, and so does an API key
(``GPUWIZARD_BILLING_API_KEY``). ``GPUWIZARD_BILLING_ENDPOINT=http://host:port`` points the
client elsewhere (the tests' fake); a plain ``http://`` endpoint always gets anonymous
credentials, as :mod:`.client` does for Compute, so a real token never travels unencrypted.
With none of these we raise a "credentials" :class:`GcpError` at once (no metadata-server
probe off GCE), and the caller falls back quietly to the catalog snapshot.

No retries: a price list that does not come at once is not worth a wait, since the snapshot
is always there; :data:`TIMEOUT` bounds each page.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gpuwizard.gcp.client import adc_file_exists, maybe_on_gce
from gpuwizard.gcp.errors import ApiError, GcpError

ENDPOINT_ENV = "GPUWIZARD_BILLING_ENDPOINT"
API_KEY_ENV = "GPUWIZARD_BILLING_API_KEY"
#: Compute Engine's service in the catalog (docs/facts/billing-catalog.md).
COMPUTE_SERVICE = "services/6F81-5844-456A"
NO_CREDENTIALS = "no credentials for the Cloud Billing Catalog API"
#: Seconds each page may take: the whole list is a few pages; waiting longer is not worth it.
TIMEOUT = 20.0


def endpoint() -> str | None:
    return os.environ.get(ENDPOINT_ENV) or None


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a transport failure ("Connection refused", "timed out"),
    not urllib3's pool message with the whole URL in it."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen)
    m = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    return (m.group(1) if m else text or type(seen).__name__).strip()


def _host(exc: BaseException) -> str:
    req = getattr(exc, "request", None)
    url = getattr(req, "url", None) or ""
    m = re.match(r"https?://([^/]+)", url)
    return m.group(1) if m else "the API"


def _client() -> Any:
    """A CloudCatalogClient on REST with the credentials described in the module docstring."""
    from google.api_core.client_options import ClientOptions
    from google.cloud import billing_v1

    ep = endpoint()
    where = {"api_endpoint": ep} if ep else {}
    if ep and ep.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return billing_v1.CloudCatalogClient(credentials=AnonymousCredentials(), transport="rest",
                                             client_options=ClientOptions(**where))
    key = os.environ.get(API_KEY_ENV)
    if key:
        return billing_v1.CloudCatalogClient(transport="rest", client_options=ClientOptions(api_key=key, **where))
    if adc_file_exists() or (ep is None and maybe_on_gce()):
        import google.auth
        import google.auth.exceptions

        try:
            creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except google.auth.exceptions.DefaultCredentialsError:
            creds = None
        if creds is not None:
            return billing_v1.CloudCatalogClient(credentials=creds, transport="rest",
                                                 client_options=ClientOptions(**where))
    raise GcpError(NO_CREDENTIALS, kind="credentials")


def list_compute_skus() -> list[dict[str, Any]]:
    """Every public Compute Engine SKU (all pages), USD prices. Blocking; raises
    :class:`ApiError` for an HTTP or transport failure, :class:`GcpError` without credentials."""
    from google.api_core import exceptions as gexc
    from google.cloud import billing_v1

    client = _client()
    req = billing_v1.ListSkusRequest(parent=COMPUTE_SERVICE, currency_code="USD", page_size=5000)
    try:
        pager = client.list_skus(request=req, retry=None, timeout=TIMEOUT)
        return [type(s).to_dict(s, preserving_proto_field_name=False, use_integers_for_enums=False)
                for s in pager]
    except gexc.GoogleAPICallError as exc:
        code = exc.code if isinstance(exc.code, int) else None
        # api_core's REST message starts "GET <url>: "; the user needs what Google said.
        said = re.sub(r"^[A-Z]+ \S+: ", "", str(exc.message or exc))
        raise ApiError(said, code=code) from None
    except Exception as exc:  # noqa: BLE001 - requests / google.auth transport failures
        import requests
        from google.auth import exceptions as authexc

        if isinstance(exc, (requests.RequestException, authexc.TransportError)):
            raise ApiError(f"cannot reach {_host(exc)}: {_root_cause(exc)}", transport=True) from None
        raise
