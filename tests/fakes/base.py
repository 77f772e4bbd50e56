"""A small threaded loopback HTTP server that the provider fakes build on.

Each fake binds 127.0.0.1:0, records every request (method, raw path, query, headers, body),
checks it against the provider's contract (subclasses), keeps state, and can inject faults:
``rate_limit`` (GitHub-style 403 primary limit), ``secondary`` (403 secondary limit), ``429``,
``500`` and ``timeout`` (answer only after a delay longer than the client's timeout).
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str  # raw (still percent-encoded), without the query string
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    operation: str | None = None
    violations: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def arg(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes/str as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Fault:
    kind: str  # rate_limit | secondary | 429 | 500 | timeout
    times: int = 1
    method: str | None = None
    path: str | None = None  # regex searched in the raw path
    retry_after: int | None = None
    reset_in: int = 30
    delay: float = 1.5

    def matches(self, request: Request) -> bool:
        if self.method and self.method.upper() != request.method:
            return False
        return not (self.path and not re.search(self.path, request.path))


Handler = Callable[[Request, re.Match[str]], Response]


class FakeServer:
    """Base class: subclasses add routes with :meth:`add_route` and override :meth:`validate`
    and :meth:`fault_response`."""

    provider = "fake"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.crashes: list[str] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeServer:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = _handle  # noqa: N815 (http.server names)
            do_DELETE = do_OPTIONS = do_HEAD = _handle  # noqa: N815

        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------
    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def inject(self, kind: str, *, times: int = 1, **options: Any) -> Fault:
        fault = Fault(kind=kind, times=times, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return [
                f"{r.method} {r.path}: {v}" for r in self.requests for v in r.violations
            ] + self.crashes

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path))
            ]

    # -- hooks for subclasses ------------------------------------------------------------
    def validate(self, request: Request) -> None:
        """Fill ``request.operation`` / ``request.violations``."""

    def reject(self, request: Request) -> Response:
        """Answer for a request that violates the contract."""
        return Response(400, {"message": "contract violation", "errors": request.violations})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            headers = {
                "Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)
            }
            return Response(429, {"message": "Too Many Requests"}, headers)
        if fault.kind == "500":
            return Response(500, {"message": "Server Error"})
        if fault.kind == "rate_limit":
            reset = int(time.time()) + fault.reset_in
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return Response(403, {"message": "API rate limit exceeded"}, headers)
        if fault.kind == "secondary":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return Response(403, {"message": "You have exceeded a secondary rate limit."}, headers)
        raise ValueError(f"unknown fault {fault.kind}")

    def not_found(self, request: Request) -> Response:
        return Response(404, {"message": "Not Found"})

    # -- request handling ----------------------------------------------------------------
    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(request):
                    fault.times -= 1
                    return fault
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
            headers=dict(handler.headers.items()),
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        try:
            response = self._respond(request)
        except Exception:
            self.crashes.append(traceback.format_exc())
            response = Response(500, {"message": "fake crashed"})
        if response is None:  # timeout fault: the connection is simply dropped late
            handler.close_connection = True
            return
        payload = response.encode() if handler.command != "HEAD" else b""
        handler.send_response(response.status)
        if response.body is not None:
            handler.send_header("Content-Type", response.content_type)
        for key, value in response.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _respond(self, request: Request) -> Response | None:
        self.validate(request)
        fault = self._take_fault(request)
        if fault is not None:
            if fault.kind == "timeout":
                time.sleep(fault.delay)
                return None
            return self.fault_response(fault, request)
        if request.violations:
            return self.reject(request)
        for method, pattern, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.fullmatch(request.path)
            if match:
                with self._lock:
                    return handler(request, match)
        return self.not_found(request)


def merge(base: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {**base, **extra}
