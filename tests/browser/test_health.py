"""The crash log between shards and the heartbeat: repeated crashes make the runner degraded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ci_app.browser import health
from runner_probe.heartbeat import HeartbeatClient, HeartbeatConfig, browser_health
from tests.runner_probe.conftest import ProfileFactory

NOW = 1_800_000_000.0


def test_repeated_crashes_in_the_window_degrade(tmp_path: Path) -> None:
    log = tmp_path / "state" / "browser-health.jsonl"
    assert health.assess(log, now=NOW) == health.Health("ok", 0)
    health.record_event(log, "renderer-crash", "killed", now=NOW - 4000)  # outside the window
    health.record_event(log, "renderer-crash", "x", now=NOW - 100)
    health.record_event(log, "label-mismatch", "not a crash", now=NOW - 50)
    health.record_event(log, "gpu-lost", "y", now=NOW - 10)
    assert health.assess(log, now=NOW).status == "ok"
    health.record_event(log, "renderer-crash", "z", now=NOW - 1)
    h = health.assess(log, now=NOW)
    assert h.status == "degraded" and h.crashes == 3
    assert h.reasons == ("browser: 3 crashes in the last 30 min (gpu-lost ×1, renderer-crash ×2)",)
    # later, with no new crash, the runner is healthy again
    assert health.assess(log, now=NOW + 3600).status == "ok"
    assert log.stat().st_mode & 0o777 == 0o600


def test_garbage_lines_are_skipped_and_the_log_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "h.jsonl"
    log.write_text('not json\n{"t": "x", "kind": 1}\n[1]\n{"t": 1, "kind": "hung"}\n')
    assert [e["kind"] for e in health.read_events(log)] == ["hung"]
    for i in range(3000):
        health.record_event(log, "hung", "d" * 100, now=NOW + i)
    assert log.stat().st_size <= health.MAX_BYTES + 1000
    events = health.read_events(log)
    assert len(events) <= health.KEEP_LINES + 400 and events[-1]["t"] == NOW + 2999


def test_unwritable_log_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    health.record_event(blocker / "sub" / "h.jsonl", "hung", "x")  # parent is a file
    assert health.read_events(blocker / "sub" / "h.jsonl") == []


class _Response:
    status = 200

    def __init__(self) -> None:
        self.body = b'{"ok": true}'

    def read(self) -> bytes:
        return self.body

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *a: object) -> None:
        return None


def test_heartbeat_reports_degraded_after_repeated_crashes(
    tmp_path: Path, profile_for: ProfileFactory
) -> None:
    log = tmp_path / "browser-health.jsonl"
    sent: list[dict[str, Any]] = []

    def opener(request: Any, timeout: float) -> _Response:
        sent.append(json.loads(request.data))
        return _Response()

    env = {"CI_FANOUT_BROWSER_HEALTH": str(log)}
    client = HeartbeatClient(
        HeartbeatConfig(server="http://127.0.0.1:9", token="t", runner="r1"),
        profile_fn=profile_for,
        load_fn=lambda p: {"cpu_percent": 1.0},
        opener=opener,
        health_fn=lambda: browser_health(env),
    )
    assert client.beat().ok
    assert sent[-1]["health"] == {"status": "ok", "browser_crashes": 0, "reasons": []}
    for kind in ("renderer-crash", "renderer-crash", "browser-exit"):
        health.record_event(log, kind, "chaos")
    assert client.beat().ok
    degraded: Mapping[str, Any] = sent[-1]["health"]
    assert degraded["status"] == "degraded" and degraded["browser_crashes"] == 3
    assert "browser-exit ×1, renderer-crash ×2" in degraded["reasons"][0]
    assert client.health_status == "degraded"

    def broken() -> Mapping[str, Any]:
        raise OSError("disk gone")

    client.health_fn = broken
    assert client.beat().ok and "health" not in sent[-1]  # never stops the heartbeat
