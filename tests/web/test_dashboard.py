"""Dashboard pages: server-rendered, populated from the store; charts are PNG routes.
The browser test drives Debian's Chromium through Playwright against a real HTTP server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from ci_app.model.results import ResultSet

from .conftest import WEBHOOKS, Server, build_server, results_json

PROFILE = json.loads((WEBHOOKS / "profile.debian12-vm-2vcpu.json").read_text())
CHROMIUM = Path("/usr/bin/chromium")
PAGES = ["/", "/runners", "/runs", "/runs/main-3", "/repo?name=octo/app", "/jobs"]


def populate(srv: Server) -> None:
    """Five main-branch runs (a flaky test, a slowing suite), runners, a queue, a parked job."""
    store = srv.store
    for i in range(5):
        outcomes = {f"tests/test_m.py::t{k}": "passed" for k in range(8)}
        outcomes["tests/test_m.py::flaky"] = "failed" if i in (1, 3) else "passed"
        for shard in ("s1", "s2"):
            doc = results_json(
                f"main-{i}",
                shard,
                outcomes if shard == "s1" else {"tests/test_g.py::gpu": "passed"},
                pr=None,
                branch="main",
                commit=f"{i:07d}abc",
            )
            for t in doc["tests"]:
                t["duration_s"] = 0.5 + 0.1 * i
            store.results.ingest(ResultSet.from_dict(doc))
    store.results.ingest(
        ResultSet.from_dict(
            results_json("pr-9", "s1", {"tests/test_m.py::t1": "failed"}, pr=9, commit="feedbee")
        )
    )
    now = srv.clock.now
    store.runners.upsert_runner(
        "gpu-box-1",
        provider="github",
        labels=["x64", "gpu-nvidia"],
        profile=PROFILE,
        profile_hash="h",
        now=now - 30,
    )
    store.runners.upsert_runner(
        "old-box",
        provider="gitlab",
        labels=["arm64"],
        profile=None,
        profile_hash=None,
        now=now - 9000,
        status="offline",
    )
    store.runners.set_runner_busy("gpu-box-1", True, "job-77", now=now)
    store.runners.set_runner_load(
        "gpu-box-1",
        {
            "cpu_percent": 42.0,
            "memory_used_bytes": 1,
            "memory_total_bytes": 4,
            "gpus": [{"utilization_percent": 97}],
        },
        now=now,
    )
    job = store.jobs.enqueue("report", {"run_id": "gone"}, now=now)
    store.jobs.park(job, "StoreError: no run 'gone'", now=now)
    from tests.web.test_api import queue_matrix

    srv.client.post(
        "/api/v1/queue",
        json={"run": "main-3", "matrix": queue_matrix("main-3"), "repo": "octo/app"},
        headers=srv.admin(),
    )


@pytest.fixture
def dash() -> Iterator[Server]:
    for srv in build_server():
        populate(srv)
        yield srv


def test_pages_render_from_the_store(dash: Server) -> None:
    for path in PAGES:
        resp = dash.client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    runners = dash.client.get("/runners").get_data(as_text=True)
    assert "gpu-box-1" in runners and "busy" in runners and "cpu 42%" in runners
    assert "gpu 97%" in runners and "offline" in runners and "gpu-nvidia" in runners
    run = dash.client.get("/runs/main-3").get_data(as_text=True)
    assert "s1" in run and "s2" in run and "<h2>Queue</h2>" in run and "0/6" in run
    repo = dash.client.get("/repo?name=octo/app").get_data(as_text=True)
    assert "tests/test_m.py::flaky" in repo
    jobs = dash.client.get("/jobs").get_data(as_text=True)
    assert "no run &#39;gone&#39;" in jobs or "no run 'gone'" in jobs
    assert dash.client.get("/runs/nope").status_code == 404
    assert dash.client.get("/repo?name=none/such").status_code == 404
    assert dash.client.get("/charts/pie.png?repo=octo/app").status_code == 404


@pytest.mark.parametrize("kind", ["trend", "slowest", "runner-classes"])
def test_chart_routes_are_png(dash: Server, kind: str) -> None:
    resp = dash.client.get(f"/charts/{kind}.png?repo=octo/app")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert resp.data[:8] == b"\x89PNG\r\n\x1a\n" and len(resp.data) > 2000


def test_dashboard_password_and_no_secrets_in_pages() -> None:
    for srv in build_server(dashboard_password="s3cret-dash"):
        assert srv.client.get("/runners").status_code == 401
        auth = "Basic " + base64.b64encode(b"any:s3cret-dash").decode()
        ok = srv.client.get("/runners", headers={"Authorization": auth})
        assert ok.status_code == 200
        for path in ("/", "/jobs", "/runs"):
            page = srv.client.get(path, headers={"Authorization": auth}).get_data(as_text=True)
            for secret in (
                "s3cret-dash",
                srv.ctx.settings.api_token,
                srv.ctx.settings.github_webhook_secret,
            ):
                assert secret not in page
        # health and metrics stay open for probes and Prometheus
        assert srv.client.get("/healthz").status_code == 200


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_in_chromium(dash: Server) -> None:
    from playwright.sync_api import sync_playwright

    from .test_dashboard_browser import needs_chromium

    needs_chromium()

    http = make_server("127.0.0.1", 0, dash.app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{http.server_port}"
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                ],
            )
            page = browser.new_page()

            def on_console(msg: Any) -> None:
                if msg.type in ("error", "warning"):
                    problems.append(f"console {msg.type}: {msg.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
            page.on(
                "response",
                lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
            )
            for path in PAGES:
                resp = page.goto(base + path, wait_until="load")
                assert resp is not None and resp.status == 200, path
                assert page.locator("nav a.brand").inner_text() == "ci-fanout"
            page.goto(base + "/repo?name=octo/app", wait_until="load")
            sizes = page.eval_on_selector_all(
                "img.chart", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            assert len(sizes) == 3 and all(c and w > 300 and h > 100 for c, w, h in sizes), sizes
            page.goto(base + "/runners", wait_until="load")
            assert page.locator("#runners tbody tr").count() == 2
            assert "busy" in page.locator("#runners").inner_text()
            page.goto(base + "/", wait_until="load")
            assert page.locator("#jobs-parked").inner_text() == "1"
            page.click("text=Runs")
            assert page.url.endswith("/runs")
            assert page.locator("#queues progress").count() == 1
            browser.close()
    finally:
        http.shutdown()
    assert problems == []
