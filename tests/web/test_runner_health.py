"""A runner whose browser pool keeps crashing says so in its heartbeat (``health``): the app
shows it degraded and withholds its browser labels from the planner until it recovers."""

from __future__ import annotations

from ci_app.web.api import routable_labels
from ci_app.web.validate import sanitize_health

from .conftest import Server
from .test_api import PHASH, PROFILE, _beat

DEGRADED = {
    "status": "degraded",
    "browser_crashes": 3,
    "reasons": ["renderer crashed", "GPU process lost", "x" * 5000],
    "extra": {"ignored": True},
}


def test_health_is_reduced_to_what_the_app_uses() -> None:
    assert sanitize_health({"status": "fine"}) is None
    assert sanitize_health("degraded") is None
    clean = sanitize_health(DEGRADED)
    assert clean is not None and clean["status"] == "degraded" and clean["browser_crashes"] == 3
    assert set(clean) == {"status", "browser_crashes", "reasons"}
    assert max(len(r) for r in clean["reasons"]) <= 200
    assert sanitize_health({"status": "ok", "browser_crashes": float("nan")}) == {
        "status": "ok",
        "browser_crashes": 0,
        "reasons": [],
    }


def test_routable_labels_drop_browser_work_while_degraded() -> None:
    labels = ["x64", "webgpu", "webgpu-sw", "webnn-gpu", "cpus-ge-2"]
    assert routable_labels(labels, {"health": {"status": "ok"}}) == labels
    assert routable_labels(labels, {"health": {"status": "degraded"}}) == ["x64", "cpus-ge-2"]
    assert routable_labels(labels, None) == labels


def test_degraded_heartbeat_marks_the_runner_and_hides_its_browser_labels(server: Server) -> None:
    resp = server.client.post(
        "/api/v1/admin/runners/lab-b/tokens", headers=server.admin(), json={"allow_labels": ["*"]}
    )
    assert resp.status_code == 201, resp.get_json()
    token = resp.get_json()["token"]
    reply = _beat(server, token, runner="lab-b", profile_hash=PHASH, profile=PROFILE, load={})
    assert reply.status_code == 200 and "webgpu-sw" in reply.get_json()["labels"]

    def listed() -> dict[str, object]:
        rows = server.client.get("/api/v1/runners", headers=server.admin()).get_json()["runners"]
        (row,) = [r for r in rows if r["name"] == "lab-b"]
        return dict(row)

    assert "webgpu-sw" in listed()["labels"]  # type: ignore[operator]
    reply = _beat(server, token, runner="lab-b", profile_hash=PHASH, load={}, health=DEGRADED)
    assert reply.status_code == 200
    row = listed()
    assert "webgpu-sw" not in row["labels"] and "x64" in row["labels"]  # type: ignore[operator]
    page = server.client.get("/runners").get_data(as_text=True)
    assert "degraded" in page
    # recovered: the browser labels come back
    _beat(server, token, runner="lab-b", profile_hash=PHASH, load={}, health={"status": "ok"})
    assert "webgpu-sw" in listed()["labels"]  # type: ignore[operator]
