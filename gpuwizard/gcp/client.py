"""Credentials, project and Compute clients, with the endpoint override every request obeys.

``GPUWIZARD_COMPUTE_ENDPOINT=http://host:port`` points every client this module builds
at another endpoint (the tests' fake, a private endpoint). With it set and no
credentials found, we go on with anonymous credentials and let the endpoint decide;
a plain ``http://`` endpoint always gets anonymous credentials, so a real token never
travels unencrypted.

Looking for credentials must fail fast off GCE: ``google.auth.default()`` probes the
metadata server (three attempts with back-off) when it finds nothing else, which costs
seconds on a laptop and hangs in a sandbox. We only let it probe when we might be on GCE.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from typing import Any, Callable, TypeVar

from gpuwizard.gcp.errors import GcpError

ENDPOINT_ENV = "GPUWIZARD_COMPUTE_ENDPOINT"
T = TypeVar("T")

NO_CREDENTIALS = ("No Google Cloud credentials found: run `gcloud auth application-default login` "
                  "(and `gcloud config set project PROJECT`), then try again.")
NO_PROJECT = ("No Google Cloud project: set target.gcp.project in the recipe, pass --project, "
              "or export GOOGLE_CLOUD_PROJECT.")


def endpoint() -> str | None:
    """The override endpoint, or None for the real Compute API."""
    return os.environ.get(ENDPOINT_ENV) or None


def _adc_file_exists() -> bool:
    """True when ADC would find a file (env var or gcloud's well-known file)."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    cfg = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    return os.path.exists(os.path.join(cfg, "application_default_credentials.json"))


def _maybe_on_gce() -> bool:
    """Cheap local check (Linux DMI), so the metadata-server probe runs only where it can answer."""
    if os.environ.get("NO_GCE_CHECK") == "true":
        return False
    try:
        with open("/sys/class/dmi/id/product_name", encoding="utf-8") as fh:
            return "Google" in fh.read()
    except OSError:
        return os.name == "nt"  # no DMI file to tell: let google.auth decide


_cache_lock = threading.Lock()
_creds_cache: dict[str | None, tuple[Any, str | None]] = {}


def credentials_and_project(recipe_project: str | None) -> tuple[Any, str]:
    """Credentials and the project to use: the recipe's, then ADC's, then $GOOGLE_CLOUD_PROJECT.

    Blocking (may read files, or probe the metadata server on GCE): call it in a thread
    from async code. Raises :class:`GcpError` with one sentence when there is no way on.
    """
    ep = endpoint()
    with _cache_lock:
        cached = _creds_cache.get(ep)
    if cached is None:
        creds, adc_project = None, None
        # A plain-http endpoint is a local fake or a test double: never send it a real
        # bearer token (it would travel unencrypted), and never wait on ADC for it.
        plain_http = bool(ep and ep.startswith("http://"))
        if not plain_http and (_adc_file_exists() or (ep is None and _maybe_on_gce())):
            import google.auth
            import google.auth.exceptions

            try:
                creds, adc_project = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"])
            except google.auth.exceptions.DefaultCredentialsError:
                creds = None
        if creds is None:
            if ep is None:
                raise GcpError(NO_CREDENTIALS, kind="credentials")
            from google.auth.credentials import AnonymousCredentials

            creds = AnonymousCredentials()
        cached = (creds, adc_project)
        with _cache_lock:
            _creds_cache[ep] = cached
    creds, adc_project = cached
    project = recipe_project or adc_project or os.environ.get("GOOGLE_CLOUD_PROJECT") or \
        os.environ.get("CLOUDSDK_CORE_PROJECT")
    if not project:
        raise GcpError(NO_PROJECT, kind="project")
    return creds, project


def reset_cache() -> None:
    """Forget cached credentials and clients (tests switch endpoints between cases)."""
    with _cache_lock:
        _creds_cache.clear()
        _clients.clear()


_clients: dict[tuple[str, str | None], Any] = {}


def compute(name: str, credentials: Any | None = None) -> Any:
    """A ``compute_v1.<name>`` client (e.g. "InstancesClient") on REST, honouring the override.

    Clients are cached per endpoint: building one costs a few ms and they are safe to
    share between threads for the plain unary calls gpuwizard makes.
    """
    ep = endpoint()
    key = (name, ep)
    with _cache_lock:
        client = _clients.get(key)
    if client is not None:
        return client
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1

    if credentials is None:
        credentials, _ = credentials_and_project("-")
    opts = ClientOptions(api_endpoint=ep) if ep else None
    client = getattr(compute_v1, name)(credentials=credentials, transport="rest", client_options=opts)
    with _cache_lock:
        _clients[key] = client
    return client


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run a blocking client call in a thread, so the event loop (and the UI) stays live."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kw))


def to_dict(msg: Any) -> dict[str, Any]:
    """A proto-plus message as a plain dict with the API's camelCase names."""
    return type(msg).to_dict(msg, preserving_proto_field_name=False, use_integers_for_enums=False)
