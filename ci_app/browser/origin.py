"""The pool's loopback origin: ``http://127.0.0.1:<ephemeral>/``, a secure context.

WebGPU exists only in secure contexts (``about:blank``, ``data:`` and ``set_content()`` pages
have no ``navigator.gpu``; see docs/probe.md). Every pool page is this origin's ``/``, which
loads ``/ci-fanout.js`` (device-loss watch, compute helper, storage reset). Only registered
paths are served — nothing from the file system — and only on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import threading
from importlib import resources
from typing import Any, Final

INDEX: Final = (
    b"<!doctype html><html><head><meta charset=utf-8><title>ci-fanout browser pool</title>"
    b'<script src="/ci-fanout.js"></script></head><body></body></html>'
)


def helper_script() -> bytes:
    return resources.files("ci_app.browser").joinpath("static/ci-fanout.js").read_bytes()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page closed (or a renderer killed) mid-request is routine here: no traceback."""
        return


class Origin:
    """A threaded loopback HTTP server for the pool's pages; ``add()`` serves more files."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str]] = {
            "/": (INDEX, "text/html; charset=utf-8"),
            "/ci-fanout.js": (helper_script(), "text/javascript; charset=utf-8"),
            "/favicon.ico": (b"", "image/x-icon"),
        }
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the pool origin is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``body`` at ``path`` (``/model.bin``); returns its URL."""
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError(f"path must be absolute, without query or fragment: {path!r}")
        with self._lock:
            self._files[path] = (bytes(body), content_type)
        return self.url.rstrip("/") + path

    def _lookup(self, path: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._files.get(path.split("?", 1)[0])

    def start(self) -> str:
        if self._server is not None:
            return self.url
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = origin._lookup(self.path)
                if found is None:
                    self.send_error(404)
                    return
                body, ctype = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # a page closed mid-load
                    return

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = _QuietServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="ci-fanout-browser-origin",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


__all__ = ["INDEX", "Origin", "helper_script"]
