"""Credentials, project and Compute clients, with the endpoint override every request obeys.

``GPUWIZARD_COMPUTE_ENDPOINT=http://host:port`` points every client this module builds
at another endpoint (the tests' fake, a private endpoint). With it set and no
credentials found, we go on with anonymous credentials and let the endpoint decide;
a plain ``http://`` endpoint always gets anonymous credentials, so a real token never
travels unencrypted.

Looking for credentials must fail fast off GCE: ``google.auth.default()`` probes the
metadata server (three attempts with back-off) when it finds nothing else, which costs
seconds on a laptop and hangs in a sandbox. We only let it probe when we might be on GCE.

This is the one module that imports ``google.cloud`` / ``google.api_core`` (lazily: the
import costs over a second). :class:`Compute` is the adaptor the rest of gpuwizard calls:
plain dicts in and out (camelCase, as the REST API writes them), failures as
:class:`~gpuwizard.gcp.errors.ApiError`, and every call with an explicit retry and
timeout budget from :mod:`.budgets` (the library default, a 600 s retry, made a 503
storm look like a hang).

Blocking calls run in daemon threads (:func:`call`), not the loop's default executor:
cancelling the awaiting task (Ctrl-C) stops the wait at once, and the interpreter does
not wait for a request in flight when it exits. :func:`in_flight` says what was.

Why one piece of ~480 lines: it is the single adaptor to Google (a checked rule, see
tests/test_gcp_lookup.py); splitting it would spread Google's types and exceptions again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from gpuwizard.gcp import budgets
from gpuwizard.gcp.errors import ApiError, GcpError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

ENDPOINT_ENV = "GPUWIZARD_COMPUTE_ENDPOINT"
T = TypeVar("T")

NO_CREDENTIALS = ("No Google Cloud credentials found: run `gcloud auth application-default login` "
                  "(and `gcloud config set project PROJECT`), then try again.")
NO_PROJECT = ("No Google Cloud project: set target.gcp.project in the recipe, pass --project, "
              "or export GOOGLE_CLOUD_PROJECT.")


def endpoint() -> str | None:
    """The override endpoint, or None for the real Compute API."""
    return os.environ.get(ENDPOINT_ENV) or None


def adc_file_exists() -> bool:
    """True when ADC would find a file (env var or gcloud's well-known file)."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    cfg = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    return os.path.exists(os.path.join(cfg, "application_default_credentials.json"))


def maybe_on_gce() -> bool:
    """Cheap local check (Linux DMI), so the metadata-server probe runs only where it can answer."""
    if os.environ.get("NO_GCE_CHECK") == "true":
        return False
    try:
        with open("/sys/class/dmi/id/product_name", encoding="utf-8") as fh:
            return "Google" in fh.read()
    except OSError:
        return os.name == "nt"  # no DMI file to tell: let google.auth decide


_cache_lock = threading.Lock()
_creds_cache: dict[str | None, tuple["Credentials", str | None]] = {}


def credentials_and_project(recipe_project: str | None) -> tuple[Credentials, str]:
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
        if not plain_http and (adc_file_exists() or (ep is None and maybe_on_gce())):
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


def compute(name: str, credentials: Credentials | None = None) -> Any:
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


_inflight: dict[int, str] = {}
_tokens = itertools.count()


_abandoned: list[str] = []


def in_flight() -> list[str]:
    """The blocking calls being waited for now, and those a cancellation stopped waiting
    for (Ctrl-C) since the last look, e.g. ``instances.insert (us-central1-a)``, each once."""
    with _cache_lock:
        out = list(dict.fromkeys(list(_inflight.values()) + _abandoned))
        _abandoned.clear()
        return out


_API_NAMES = {"get_project": "projects.get", "list_regions": "regions.list",
              "accelerator_types": "acceleratorTypes.aggregatedList", "list_instances": "instances.aggregatedList",
              "get_instance": "instances.get", "guest_attributes": "instances.getGuestAttributes",
              "serial_output": "instances.getSerialPortOutput", "insert": "instances.insert",
              "bulk_insert": "instances.bulkInsert", "start": "instances.start", "delete": "instances.delete",
              "wait": "zoneOperations.wait", "credentials_and_project": "looking up credentials",
              "insert_firewall": "firewalls.insert", "get_firewall": "firewalls.get",
              "delete_firewall": "firewalls.delete", "list_firewalls": "firewalls.list",
              "insert_policy": "resourcePolicies.insert", "get_policy": "resourcePolicies.get",
              "delete_policy": "resourcePolicies.delete", "list_policies": "resourcePolicies.aggregatedList",
              "wait_region": "regionOperations.wait", "wait_global": "globalOperations.wait",
              "get_image": "images.get"}


def _label(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``instances.insert (us-central1-a)``: the request a blocking call makes, for Ctrl-C's report."""
    name = getattr(fn, "__name__", "call")
    where = str(args[0]) if args and isinstance(args[0], str) and isinstance(getattr(fn, "__self__", None),
                                                                             Compute) else ""
    return f"{_API_NAMES.get(name, name)}" + (f" ({where})" if where else "")


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run a blocking call in a daemon thread, so the event loop (and the UI) stays live.

    Cancelling the caller stops the wait at once; the request itself finishes (or not)
    in its thread, which never delays the process's exit (see the module docstring).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def work() -> None:
        try:
            res: Any = fn(*args, **kw)
            ok = True
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            res, ok = exc, False
        try:
            loop.call_soon_threadsafe(settle, ok, res)
        except RuntimeError:
            pass  # the loop is gone (the process is quitting): nobody waits for this answer

    token = next(_tokens)
    with _cache_lock:
        _inflight[token] = _label(fn, args)
    threading.Thread(target=work, name=f"gpuwizard-gcp-{token}", daemon=True).start()
    try:
        return await fut
    except asyncio.CancelledError:
        with _cache_lock:
            _abandoned.append(_inflight.get(token, "a Compute Engine request"))
        raise
    finally:
        with _cache_lock:
            _inflight.pop(token, None)


def translate_error(exc: BaseException, what: str) -> ApiError | None:
    """A google.api_core / requests failure as an :class:`ApiError`; None for anything else."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        inner = translate_error(cause, what) if cause is not None else None
        msg = f"{what}: still failing when its retry budget ran out ({inner.message if inner else exc})"
        if inner is not None:
            return ApiError(msg, code=inner.code, errors=inner.errors, details=inner.details,
                            transport=inner.transport)
        return ApiError(msg, transport=True)
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code if isinstance(exc.code, int) else None
        errs = [dict(e) for e in (exc.errors or []) if isinstance(e, dict)]
        return ApiError(exc.message or str(exc), code=code, errors=errs, details=list(exc.details or []))
    import requests

    if isinstance(exc, requests.RequestException):
        return ApiError(f"{what}: {type(exc).__name__}: {exc}", transport=True)
    from google.auth import exceptions as authexc

    if isinstance(exc, authexc.TransportError):
        return ApiError(f"{what}: {exc}", transport=True)
    return None


class Compute:
    """The Compute Engine requests gpuwizard makes, each with its budget (see module docstring).

    Blocking methods; call them through :func:`call` from async code. Reads retry 5xx,
    429 and connection errors for ``budget`` seconds (default :data:`budgets.READ_BUDGET`);
    mutations are never retried here (the operation runner classifies and retries them).
    """

    def __init__(self, project: str, credentials: Credentials | None = None) -> None:
        self.project = project
        self.credentials = credentials

    # -- plumbing ------------------------------------------------------------------

    def _client(self, name: str) -> Any:
        return compute(name, self.credentials)

    @staticmethod
    def _read_retry(budget: float | None) -> Any:
        from google.api_core import retry as gretry

        b = budgets.READ_BUDGET if budget is None else budget
        return gretry.Retry(predicate=gretry.if_transient_error, initial=min(1.0, max(0.05, b / 8)),
                            maximum=10.0, multiplier=2.0, timeout=b)

    def _do(self, what: str, fn: Callable[..., T], **kw: Any) -> T:
        try:
            return fn(**kw)
        except Exception as exc:  # noqa: BLE001 - translated once, here
            api = translate_error(exc, what)
            if api is None:
                raise
            raise api from exc

    def _read(self, what: str, fn: Callable[..., T], budget: float | None, **kw: Any) -> T:
        return self._do(what, fn, retry=self._read_retry(budget), timeout=budgets.REQUEST_TIMEOUT, **kw)

    def _mutate(self, what: str, fn: Callable[..., Any], **kw: Any) -> dict[str, Any]:
        return to_dict(self._do(what, fn, retry=None, timeout=budgets.REQUEST_TIMEOUT, **kw))

    # -- project and regions -------------------------------------------------------

    def get_project(self, budget: float | None = None) -> dict[str, Any]:
        return to_dict(self._read("projects.get", self._client("ProjectsClient").get, budget, project=self.project))

    def list_regions(self, budget: float | None = None) -> list[dict[str, Any]]:
        from google.cloud import compute_v1

        req = compute_v1.ListRegionsRequest(project=self.project, max_results=500)
        pages = self._read("regions.list", self._client("RegionsClient").list, budget, request=req)
        return self._do("regions.list", lambda: [to_dict(r) for r in pages])

    def accelerator_types(self, flt: str, budget: float | None = None) -> dict[str, dict[str, Any]]:
        from google.cloud import compute_v1

        req = compute_v1.AggregatedListAcceleratorTypesRequest(project=self.project, filter=flt, max_results=500)
        pages = self._read("acceleratorTypes.aggregatedList", self._client("AcceleratorTypesClient").aggregated_list,
                           budget, request=req)
        return self._do("acceleratorTypes.aggregatedList", lambda: {k: to_dict(v) for k, v in pages})

    # -- instances -----------------------------------------------------------------

    def list_instances(self, flt: str, budget: float | None = None) -> list[dict[str, Any]]:
        """Every instance matching ``flt`` in every zone (one aggregatedList, paged)."""
        from google.cloud import compute_v1

        req = compute_v1.AggregatedListInstancesRequest(project=self.project, filter=flt, max_results=500)
        pages = self._read("instances.aggregatedList", self._client("InstancesClient").aggregated_list, budget,
                           request=req)

        def collect() -> Iterator[dict[str, Any]]:
            for _, scoped in pages:
                for i in scoped.instances:
                    yield to_dict(i)

        return self._do("instances.aggregatedList", lambda: list(collect()))

    def get_instance(self, zone: str, name: str, budget: float | None = None) -> dict[str, Any]:
        return to_dict(self._read(f"instances.get {zone}/{name}", self._client("InstancesClient").get, budget,
                                  project=self.project, zone=zone, instance=name))

    def guest_attributes(self, zone: str, name: str, query_path: str,
                         budget: float | None = None) -> list[dict[str, str]] | None:
        """The items under ``query_path``; None while the guest has published nothing there (404)."""
        from google.cloud import compute_v1

        req = compute_v1.GetGuestAttributesInstanceRequest(project=self.project, zone=zone, instance=name,
                                                           query_path=query_path)
        try:
            ga = self._read(f"instances.getGuestAttributes {zone}/{name}",
                            self._client("InstancesClient").get_guest_attributes, budget, request=req)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        items = ga.query_value.items if ga.query_value else []
        return [{"namespace": it.namespace, "key": it.key, "value": it.value} for it in items]

    def serial_output(self, zone: str, name: str, port: int = 1, budget: float | None = None) -> str | None:
        """The serial console's buffered output (``getSerialPortOutput``); None when unavailable."""
        from google.cloud import compute_v1

        req = compute_v1.GetSerialPortOutputInstanceRequest(project=self.project, zone=zone, instance=name,
                                                            port=port)
        try:
            out = self._read(f"instances.getSerialPortOutput {zone}/{name}",
                             self._client("InstancesClient").get_serial_port_output, budget, request=req)
        except ApiError as exc:
            if exc.not_found or exc.code == 400:
                return None
            raise
        return str(out.contents or "")

    def insert(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        from google.cloud import compute_v1

        return self._mutate(f"instances.insert {zone}", self._client("InstancesClient").insert_unary,
                            project=self.project, zone=zone, instance_resource=compute_v1.Instance(body))

    def bulk_insert(self, zone: str, properties: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """All of ``names`` or none: ``minCount`` = ``count`` (docs/facts/gcp-cluster.md)."""
        from google.cloud import compute_v1

        res = compute_v1.BulkInsertInstanceResource(count=len(names), min_count=len(names),
                                                    instance_properties=properties,
                                                    per_instance_properties={n: {} for n in names})
        return self._mutate(f"instances.bulkInsert {zone}", self._client("InstancesClient").bulk_insert_unary,
                            project=self.project, zone=zone, bulk_insert_instance_resource_resource=res)

    def start(self, zone: str, name: str) -> dict[str, Any]:
        return self._mutate(f"instances.start {zone}/{name}", self._client("InstancesClient").start_unary,
                            project=self.project, zone=zone, instance=name)

    def delete(self, zone: str, name: str) -> dict[str, Any]:
        return self._mutate(f"instances.delete {zone}/{name}", self._client("InstancesClient").delete_unary,
                            project=self.project, zone=zone, instance=name)

    # -- a cluster's firewall rule and placement policy (gcp/cluster_net.py) ------------

    def insert_firewall(self, body: dict[str, Any]) -> dict[str, Any]:
        from google.cloud import compute_v1

        return self._mutate("firewalls.insert", self._client("FirewallsClient").insert_unary,
                            project=self.project, firewall_resource=compute_v1.Firewall(body))

    def get_firewall(self, name: str, budget: float | None = None) -> dict[str, Any]:
        return to_dict(self._read(f"firewalls.get {name}", self._client("FirewallsClient").get, budget,
                                  project=self.project, firewall=name))

    def delete_firewall(self, name: str) -> dict[str, Any]:
        return self._mutate(f"firewalls.delete {name}", self._client("FirewallsClient").delete_unary,
                            project=self.project, firewall=name)

    def list_firewalls(self, flt: str, budget: float | None = None) -> list[dict[str, Any]]:
        from google.cloud import compute_v1

        req = compute_v1.ListFirewallsRequest(project=self.project, filter=flt, max_results=500)
        pages = self._read("firewalls.list", self._client("FirewallsClient").list, budget, request=req)
        return self._do("firewalls.list", lambda: [to_dict(f) for f in pages])

    def insert_policy(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        from google.cloud import compute_v1

        return self._mutate(f"resourcePolicies.insert {region}", self._client("ResourcePoliciesClient").insert_unary,
                            project=self.project, region=region,
                            resource_policy_resource=compute_v1.ResourcePolicy(body))

    def get_policy(self, region: str, name: str, budget: float | None = None) -> dict[str, Any]:
        return to_dict(self._read(f"resourcePolicies.get {region}/{name}", self._client("ResourcePoliciesClient").get,
                                  budget, project=self.project, region=region, resource_policy=name))

    def delete_policy(self, region: str, name: str) -> dict[str, Any]:
        return self._mutate(f"resourcePolicies.delete {region}/{name}",
                            self._client("ResourcePoliciesClient").delete_unary,
                            project=self.project, region=region, resource_policy=name)

    def list_policies(self, flt: str, budget: float | None = None) -> list[dict[str, Any]]:
        """Every resource policy matching ``flt`` in every region (one aggregatedList, paged)."""
        from google.cloud import compute_v1

        req = compute_v1.AggregatedListResourcePoliciesRequest(project=self.project, filter=flt, max_results=500)
        pages = self._read("resourcePolicies.aggregatedList", self._client("ResourcePoliciesClient").aggregated_list,
                           budget, request=req)
        return self._do("resourcePolicies.aggregatedList",
                        lambda: [to_dict(r) for _, scoped in pages for r in scoped.resource_policies])

    def get_image(self, project: str, name: str, family: bool = False, budget: float | None = None) -> dict[str, Any]:
        """``images.get`` (or ``images.getFromFamily``) in ``project``, e.g. to read its guestOsFeatures."""
        images = self._client("ImagesClient")
        if family:
            return to_dict(self._read(f"images.getFromFamily {project}/{name}", images.get_from_family, budget,
                                      project=project, family=name))
        return to_dict(self._read(f"images.get {project}/{name}", images.get, budget, project=project, image=name))

    def wait_region(self, region: str, operation: str, timeout: float) -> dict[str, Any]:
        """``regionOperations.wait`` (as :meth:`wait`, for a region's operation)."""
        return to_dict(self._do(f"regionOperations.wait {region}", self._client("RegionOperationsClient").wait,
                                retry=self._read_retry(min(budgets.READ_BUDGET, max(timeout, 1.0))),
                                timeout=max(1.0, min(timeout, 150.0)),
                                project=self.project, region=region, operation=operation))

    def wait_global(self, operation: str, timeout: float) -> dict[str, Any]:
        """``globalOperations.wait`` (as :meth:`wait`, for a global operation: firewalls)."""
        return to_dict(self._do("globalOperations.wait", self._client("GlobalOperationsClient").wait,
                                retry=self._read_retry(min(budgets.READ_BUDGET, max(timeout, 1.0))),
                                timeout=max(1.0, min(timeout, 150.0)),
                                project=self.project, operation=operation))

    def wait(self, zone: str, operation: str, timeout: float) -> dict[str, Any]:
        """``zoneOperations.wait``: returns when the operation is DONE or after about 2
        minutes (the endpoint's own cap) or ``timeout``, whichever is first."""
        return to_dict(self._do(f"zoneOperations.wait {zone}", self._client("ZoneOperationsClient").wait,
                                retry=self._read_retry(min(budgets.READ_BUDGET, max(timeout, 1.0))),
                                timeout=max(1.0, min(timeout, 150.0)),
                                project=self.project, zone=zone, operation=operation))


async def open_compute(project: str | None) -> Compute:
    """A :class:`Compute` for ``project`` (the recipe's, else ADC's ...), found in a thread."""
    creds, proj = await call(credentials_and_project, project)
    return Compute(proj, creds)


def to_dict(msg: Any) -> dict[str, Any]:
    """A proto-plus message as a plain dict with the API's camelCase names."""
    return type(msg).to_dict(msg, preserving_proto_field_name=False, use_integers_for_enums=False)
