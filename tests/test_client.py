"""ci_app.client: the one HTTP client of the app server (retry policy, errors, endpoints)."""

from __future__ import annotations

import email.message
import http.server
import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ci_app.client import (
    HEARTBEAT_PATH,
    NO_RETRY,
    AppClient,
    AppRejectedError,
    AppUnavailableError,
    QueueClient,
    Retry,
    check_url,
)
from ci_app.errors import ConfigError, ProviderError

BASE = "http://app.test:8080"


class _Response:
    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status

    def read(self) -> bytes:
        return self.body

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _http_error(url: str, code: int, body: bytes = b"", **headers: str) -> urllib.error.HTTPError:
    msg = email.message.Message()
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    return urllib.error.HTTPError(url, code, "status", msg, io.BytesIO(body))


class FakeApp:
    """An opener that answers from a script: each entry a body/status or an exception."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.requests: list[urllib.request.Request] = []
        self.timeouts: list[float] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> _Response:
        self.requests.append(request)
        self.timeouts.append(timeout)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, int):
            raise _http_error(request.full_url, step, b'{"error": "nope"}')
        return _Response(json.dumps(step).encode())

    def body(self, n: int) -> Any:
        data = self.requests[n].data
        assert isinstance(data, bytes)
        return json.loads(data)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(app: FakeApp, sleeps: list[float], token: str = "tok", **kw: Any) -> AppClient:
    return AppClient(BASE, token, retry=Retry(sleep=sleeps.append, **kw), opener=app)


# -- the retry policy ---------------------------------------------------------------------------
def test_server_errors_are_retried_with_backoff(sleeps: list[float]) -> None:
    app = FakeApp(503, 502, {"ok": True})
    assert client(app, sleeps).get("api/v1/runners") == {"ok": True}
    assert len(app.requests) == 3
    assert sleeps == [0.2, 0.4]


def test_connection_errors_are_retried_then_raise_unavailable(sleeps: list[float]) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    app = FakeApp(refused, TimeoutError("timed out"), refused)
    with pytest.raises(AppUnavailableError) as err:
        client(app, sleeps).post("api/v1/results", {"tests": []})
    assert len(app.requests) == 3 and len(sleeps) == 2
    assert isinstance(err.value, ProviderError) and err.value.status is None
    assert "Connection refused after 3 tries" in str(err.value)
    assert err.value.exit_code == ProviderError.exit_code


def test_backoff_is_capped(sleeps: list[float]) -> None:
    app = FakeApp(500, 500, 500, 500, {})
    client(app, sleeps, attempts=5, base_delay_s=1.0, max_backoff_s=3.0).get("x")
    assert sleeps == [1.0, 2.0, 3.0, 3.0]


def test_rate_limit_honours_retry_after(sleeps: list[float]) -> None:
    app = FakeApp({"ok": 1})
    limited = _http_error(f"{BASE}/x", 429, b"slow down", Retry_After="7")
    app.script.insert(0, limited)
    assert client(app, sleeps).get("x") == {"ok": 1}
    assert sleeps == [7.0]


def test_a_retry_after_beyond_the_policy_is_not_waited_for(sleeps: list[float]) -> None:
    app = FakeApp(_http_error(f"{BASE}/x", 429, b"", Retry_After="3600"), {"ok": 1})
    with pytest.raises(AppUnavailableError) as err:
        client(app, sleeps).get("x")
    assert err.value.status == 429 and sleeps == [] and len(app.requests) == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409])
def test_client_errors_are_answers_never_retried(sleeps: list[float], code: int) -> None:
    app = FakeApp(code, {"never": "reached"})
    with pytest.raises(AppRejectedError) as err:
        client(app, sleeps).post("api/v1/queue", {"run": "r"})
    assert len(app.requests) == 1 and sleeps == []
    assert isinstance(err.value, ProviderError) and err.value.status == code
    assert "nope" in str(err.value) and f"(HTTP {code})" in str(err.value)
    assert f"POST {BASE}/api/v1/queue" in str(err.value)


def test_no_retry_tries_once(sleeps: list[float]) -> None:
    app = FakeApp(503)
    api = AppClient(BASE, retry=NO_RETRY, opener=app)
    with pytest.raises(AppUnavailableError) as err:
        api.get("x")
    assert err.value.status == 503 and len(app.requests) == 1


# -- one URL check, one auth header -------------------------------------------------------------
@pytest.mark.parametrize("url", ["ftp://host/x", "host:8080", "http://", "file:///etc/passwd"])
def test_check_url_rejects_non_http(url: str) -> None:
    with pytest.raises(ConfigError, match="--server must be an http"):
        check_url(url, what="--server")


def test_check_url_strips_the_trailing_slash() -> None:
    assert check_url("https://ci.example.org/") == "https://ci.example.org"
    with pytest.raises(ConfigError, match="queue URL"):
        QueueClient("localhost:1/q", runner="r")


def test_headers_auth_and_body(sleeps: list[float]) -> None:
    app = FakeApp({}, {})
    client(app, sleeps, token="s3cret").post("/api/v1/results", {"a": 1})
    req = app.requests[0]
    assert req.full_url == f"{BASE}/api/v1/results" and req.get_method() == "POST"
    assert req.get_header("Authorization") == "Bearer s3cret"
    assert req.get_header("Content-type") == "application/json"
    assert app.body(0) == {"a": 1}
    AppClient(BASE, opener=app).get("api/v1/runners")
    assert app.requests[1].get_header("Authorization") is None
    assert app.requests[1].data is None and app.requests[1].get_method() == "GET"


def test_not_json_is_a_provider_error(sleeps: list[float]) -> None:
    def opener(request: Any, timeout: float) -> _Response:
        return _Response(b"<html>proxy error</html>")

    with pytest.raises(ProviderError, match="not JSON"):
        AppClient(BASE, opener=opener).get("x")
    assert AppClient(BASE, opener=lambda r, timeout: _Response(b"")).get("x") == {}


# -- the endpoints ------------------------------------------------------------------------------
def test_run_tokens_results_and_records(sleeps: list[float]) -> None:
    app = FakeApp({"token": "q-tok"}, {"token": "r-tok"}, {}, {"results": []})
    api = client(app, sleeps)
    assert api.create_queue({"run": "1/2"}, {"shards": []}) == "q-tok"
    assert api.create_run({"run": "1/2"}) == "r-tok"
    api.send_results({"tests": []})
    assert api.queue_record("1/2") == {"results": []}
    urls = [r.full_url for r in app.requests]
    assert urls == [
        f"{BASE}/api/v1/queue",
        f"{BASE}/api/v1/runs",
        f"{BASE}/api/v1/results",
        f"{BASE}/api/v1/queue/1%2F2/results",
    ]
    assert app.body(0) == {"run": "1/2", "matrix": {"shards": []}}
    assert api.queue_url("1/2") == f"{BASE}/api/v1/queue/1%2F2"


def test_runner_heartbeat_gives_the_status(sleeps: list[float]) -> None:
    def opener(request: urllib.request.Request, timeout: float) -> _Response:
        assert request.full_url == BASE + HEARTBEAT_PATH
        return _Response(b'{"ok": true}', status=202)

    reply = AppClient(BASE, "t", opener=opener).runner_heartbeat({"runner": "r"})
    assert reply.status == 202 and reply.json() == {"ok": True}


def test_queue_client_lease_complete_heartbeat(sleeps: list[float]) -> None:
    app = FakeApp({"lease_id": "L1", "tests": ["a"]}, {"next": {"done": True}}, {}, [], {})
    q = QueueClient(
        f"{BASE}/api/v1/queue/run1/",
        runner="r1",
        labels=["gpu"],
        pool="gpu",
        shard="s1",
        token="run-tok",
        retry=Retry(sleep=sleeps.append),
    )
    q.app.opener = app
    assert q.lease() == {"lease_id": "L1", "tests": ["a"]}
    q.complete("L1", [{"id": "a", "outcome": "passed"}], final=False, next_lease=True)
    q.heartbeat("L1")
    assert q.record() == {}  # a non-object answer reads as empty
    paths = [(r.get_method(), r.full_url.rsplit("/", 1)[1]) for r in app.requests]
    assert paths == [
        ("POST", "lease"),
        ("POST", "complete"),
        ("POST", "heartbeat"),
        ("GET", "results"),
    ]
    assert app.body(0) == {"runner": "r1", "labels": ["gpu"], "pool": "gpu", "shard": "s1"}
    assert app.body(1)["next"] == app.body(0) and app.body(1)["final"] is False
    assert app.body(2) == {"lease_id": "L1"}
    assert app.requests[0].get_header("Authorization") == "Bearer run-tok"
    assert app.timeouts[0] == 10.0


# -- over a real socket -------------------------------------------------------------------------
@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback server that fails its first request with 503, then answers."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code, data = (503, b"busy") if len(seen) == 1 else (200, b'{"ok": true}')
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join()


def test_retry_over_http(flaky_server: tuple[str, list[str]], sleeps: list[float]) -> None:
    url, seen = flaky_server
    api = AppClient(url, "tok", retry=Retry(sleep=sleeps.append))
    assert api.post("api/v1/results", {}) == {"ok": True}
    assert seen == ["Bearer tok", "Bearer tok"] and sleeps == [0.2]


# -- where it may be loaded ---------------------------------------------------------------------
def test_the_client_and_the_plugin_load_no_cli_and_no_third_party_module() -> None:
    """The plugin and the shard runner load the client inside the tests' interpreter."""
    code = (
        "import sys, ci_app.client, ci_app.shard_runner\n"
        "foreign = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "import ci_app.pytest_plugin\n"
        "cli = [m for m in sys.modules if m == 'ci_app.cli' or m.startswith('ci_app.commands')]\n"
        "print(sorted(m for m in foreign if not m.startswith('_')), cli)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "['ci_app'] []"
