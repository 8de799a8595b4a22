"""What the fake Google servers (Compute, Cloud Quotas, Billing Catalog) share: a quiet
JSON request handler and a threaded HTTP server on a loopback port.

Each fake keeps its own routes, state and contract checks; only the HTTP plumbing lives
here, so the three speak HTTP the same way (HTTP/1.1 keep-alive, JSON with a length, no
log noise) and start and stop the same way.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (the Google clients keep connections alive), JSON in and out, quiet."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        """Each fake routes here; one that does not serve ``method`` says so as Google would."""
        self.send_json(405, {"error": {"code": 405, "message": f"{method} is not allowed here",
                                       "status": "METHOD_NOT_ALLOWED"}})

    def read_json(self) -> dict[str, Any] | None:
        """The JSON body, or None when the client went away before sending all of it."""
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if len(raw) < n:
            return None
        return json.loads(raw) if raw.strip() else {}


class FakeServer:
    """A fake's ``start``/``stop``/``url``: ``serve`` binds a subclass of ``handler`` whose
    attribute ``attr`` is the fake, and serves it on a daemon thread."""

    _server: ThreadingHTTPServer | None = None

    def serve(self, handler: type[JsonHandler], attr: str, name: str, port: int = 0,
              host: str = "127.0.0.1") -> None:
        bound = type(f"Bound{handler.__name__}", (handler,), {attr: self})
        self._server = ThreadingHTTPServer((host, port), bound)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=name,
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
