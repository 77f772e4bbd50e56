"""Heartbeat client against a loopback server that goes down and comes back."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ci_app.model.profile import HardwareProfile
from runner_probe.heartbeat import (
    HEARTBEAT_PATH,
    HeartbeatClient,
    HeartbeatConfig,
    ProfileCache,
    heartbeat_body,
    profile_hash,
    sample_load,
)
from tests.runner_probe.conftest import ProfileFactory

TOKEN = "s3cret-runner-token"
LOAD = {
    "cpu_percent": 12.5,
    "memory_used_bytes": 1,
    "memory_total_bytes": 2,
    "disk_free_bytes": 3,
    "gpus": [],
}


class FakeApp:
    """The server side of the contract, with a switchable behaviour and an on/off switch."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.mode = "ok"  # ok | need_profile | 409 | 500 | 401
        self.port = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                app.requests.append({"path": self.path, **body})
                app.headers.append(dict(self.headers.items()))
                reply: dict[str, Any]
                if app.mode in ("409", "500", "401"):
                    code, reply = int(app.mode), {"error": app.mode}
                elif app.mode == "need_profile" and "profile" not in body:
                    code, reply = 200, {"need_profile": True}
                else:
                    code, reply = 202, {"ok": True}
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def app() -> Iterator[FakeApp]:
    a = FakeApp()
    a.start()
    yield a
    if a.server is not None:
        a.stop()


def client_for(app: FakeApp, profile: HardwareProfile, **kw: Any) -> HeartbeatClient:
    config = HeartbeatConfig(
        server=app.url,
        token=TOKEN,
        runner="lab-01",
        interval_s=60,
        backoff_initial_s=5,
        backoff_max_s=40,
        timeout_s=2,
        jitter=0,
    )
    return HeartbeatClient(config, profile_fn=lambda: profile, load_fn=lambda p: LOAD, **kw)


def test_profile_only_when_changed(app: FakeApp, profile_for: ProfileFactory) -> None:
    profile = profile_for()
    holder = {"p": profile}
    client = client_for(app, profile)
    client.profile_fn = lambda: holder["p"]
    assert client.beat().sent_profile
    second = client.beat()
    assert second.ok and not second.sent_profile
    holder["p"] = profile_for(nvml="h100x8")  # hardware changed: labels changed
    assert client.beat().sent_profile
    first, quiet, changed = app.requests
    assert first["path"] == HEARTBEAT_PATH
    assert first["runner"] == "lab-01"
    assert first["profile"]["schema_version"] == 1
    assert "gpu-mem-ge-80g" in changed["labels"]
    assert "profile" not in quiet and "labels" not in quiet
    assert quiet["load"] == LOAD
    assert quiet["profile_hash"] == first["profile_hash"] != changed["profile_hash"]
    assert app.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert app.headers[0]["Content-Type"] == "application/json"


def test_server_down_then_up(app: FakeApp, profile_for: ProfileFactory) -> None:
    client = client_for(app, profile_for())
    assert client.beat().ok
    app.stop()
    delays = []
    for _ in range(5):
        result = client.beat()
        assert not result.ok and result.status is None and result.error
        delays.append(client.next_delay(result))
    assert delays == [5, 10, 20, 40, 40]  # exponential, capped
    app.start()  # same port
    back = client.beat()
    assert back.ok
    assert client.next_delay(back) == 60
    assert client.failures == 0


def test_need_profile_and_conflict_resend(app: FakeApp, profile_for: ProfileFactory) -> None:
    client = client_for(app, profile_for())
    client.beat()  # acknowledged
    app.mode = "need_profile"  # e.g. the server lost its state
    asked = client.beat()
    assert asked.ok and asked.need_profile and not asked.sent_profile
    assert client.next_delay(asked) == 0
    assert client.beat().sent_profile
    app.mode = "409"
    conflict = client.beat()
    assert not conflict.ok and conflict.need_profile and conflict.status == 409
    app.mode = "ok"
    assert client.beat().sent_profile


@pytest.mark.parametrize("mode", ["500", "401"])
def test_http_errors_back_off(app: FakeApp, profile_for: ProfileFactory, mode: str) -> None:
    client = client_for(app, profile_for())
    app.mode = mode
    result = client.beat()
    assert not result.ok and result.status == int(mode)
    assert client.next_delay(result) == 5
    app.mode = "ok"
    assert client.beat().sent_profile  # the failed one was never acknowledged


def test_run_loop_survives_outage(app: FakeApp, profile_for: ProfileFactory) -> None:
    client = client_for(app, profile_for())
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 2:
            app.stop()
        if len(waits) == 5:
            app.start()
        return len(waits) >= 8

    client.wait = wait
    assert client.run() == 0
    # beats 1-2 ok (60 s), 3-5 fail (5, 10, 20 s), then ok again
    assert waits[:6] == [60, 60, 5, 10, 20, 60]
    assert len(app.requests) == 2 + 3  # 3 requests after the restart


def test_run_stops_after_max_beats(app: FakeApp, profile_for: ProfileFactory) -> None:
    client = client_for(app, profile_for())
    client.wait = lambda s: False
    assert client.run(max_beats=3) == 0
    assert len(app.requests) == 3


def test_probe_failure_is_not_fatal(app: FakeApp, profile_for: ProfileFactory) -> None:
    client = client_for(app, profile_for())

    def boom() -> HardwareProfile:
        raise RuntimeError("probe bug")

    client.profile_fn = boom
    result = client.beat()
    assert not result.ok and "probe bug" in (result.error or "")
    assert app.requests == []


def test_profile_cache_reprobes_browser_rarely(profile_for: ProfileFactory) -> None:
    base = profile_for()
    calls: list[bool] = []
    now = [0.0]

    def detect_fn(with_browser: bool) -> HardwareProfile:
        calls.append(with_browser)
        return dataclasses.replace(
            base, browser=dataclasses.replace(base.browser, version=str(now[0]))
        )

    cache = ProfileCache(detect_fn, browser=True, browser_every_s=900, clock=lambda: now[0])
    first = cache()
    now[0] = 60.0
    second = cache()
    now[0] = 901.0
    third = cache()
    assert calls == [True, False, True]
    assert second.browser == first.browser  # cached section reused between re-probes
    assert third.browser.version == "901.0"


def test_body_shape_and_hash(profile_for: ProfileFactory) -> None:
    p = profile_for()
    body = heartbeat_body("r", p, LOAD, include_profile=False)
    assert set(body) == {"runner", "probe_version", "profile_hash", "load"}
    assert body["profile_hash"] == profile_hash(p)
    assert profile_hash(p).startswith("sha256:")


def test_sample_load_live(profile_for: ProfileFactory) -> None:
    load = sample_load(profile_for())
    assert set(load) == {
        "cpu_percent",
        "memory_used_bytes",
        "memory_total_bytes",
        "disk_free_bytes",
        "gpus",
    }
    assert load["memory_used_bytes"] > 0
    assert load["gpus"] == []
