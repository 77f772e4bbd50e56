"""Fixtures for planner tests: real duration files and a loopback queue server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ci_app.errors import InputError
from ci_app.matrix import queue_api
from ci_app.matrix.queue import InMemoryQueue, LeaseError

DURATIONS = Path(__file__).resolve().parent.parent / "data" / "durations"


def load_durations(name: str) -> dict[str, float]:
    doc = json.loads((DURATIONS / name).read_text())
    return {k: float(v) for k, v in doc["durations"].items()}


class QueueServer:
    """``/q/<run>/{lease,complete,heartbeat,progress,results}`` over an InMemoryQueue (tests
    only)."""

    def __init__(self, token: str | None = None) -> None:
        self.state = InMemoryQueue()
        self.lock = threading.Lock()
        self.token = token
        self.requests: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")  # q, run, progress|results
                handler = (
                    queue_api.handle_results
                    if parts[-1] == "results"
                    else queue_api.handle_progress
                )
                with outer.lock:
                    self._send(200, handler(outer.state, parts[1]))

            def do_POST(self) -> None:
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self._send(401, {"error": "bad token"})
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                parts = self.path.strip("/").split("/")  # q, run, action
                run, action = parts[1], parts[2]
                handlers = {
                    "lease": queue_api.handle_lease,
                    "complete": queue_api.handle_complete,
                    "heartbeat": queue_api.handle_heartbeat,
                }
                with outer.lock:
                    outer.requests.append((action, body))
                    try:
                        self._send(200, handlers[action](outer.state, run, body, time.time()))
                    except LeaseError as exc:
                        self._send(409, {"error": str(exc)})
                    except InputError as exc:
                        self._send(400, {"error": str(exc)})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/q"

    def url(self, run: str) -> str:
        return f"{self.base}/{run}"


@pytest.fixture
def queue_server() -> Iterator[QueueServer]:
    srv = QueueServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/q/run"
