"""What issue 14's attack found holding, kept so: every API route refuses no token, bogus
tokens, runner tokens and other runs' tokens; odd webhook signatures store nothing; secrets are
compared in constant time and never logged, shown or counted; SQL payloads are stored
literally; stored strings run no script on the dashboard in Chromium; ``kill -9`` of the worker
under load loses no acknowledged delivery and stores none twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from ci_app.model.results import ResultSet

from .conftest import GH_SECRET, WEBHOOKS, Server, build_server, results_json, sign
from .test_api import PHASH, PROFILE, queue_matrix

CHROMIUM = Path("/usr/bin/chromium")
EVIL = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
IDENTITY = {"repo": "octo/a", "provider": "github", "pr": 7}


def _tokens(srv: Server) -> dict[str, str]:
    runner = srv.client.post(
        "/api/v1/admin/runners/lab-1/tokens", headers=srv.admin(), json={}
    ).get_json()["token"]
    mine = srv.client.post(
        "/api/v1/queue", json={"run": "R1", "matrix": queue_matrix("R1"), **IDENTITY},
        headers=srv.admin(),
    ).get_json()["token"]  # fmt: skip
    other = srv.client.post(
        "/api/v1/runs", json={"run": "R2", **IDENTITY}, headers=srv.admin()
    ).get_json()["token"]
    return {"runner": runner, "run": mine, "other_run": other}


def _routes(srv: Server) -> list[tuple[str, str]]:
    """Every /api/v1 route of the app (new routes are covered without editing this test)."""
    out = []
    for rule in srv.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = (
            rule.rule.replace("<path:run>", "R1")
            .replace("<name>", "lab-1")
            .replace("<int:job_id>", "1")
            .replace("<path:pattern>", "lab-*")
        )
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


@pytest.fixture
def roomy() -> Iterator[Server]:
    """A server whose failed-attempt limit does not cut a test of many failures short."""
    yield from build_server(rate_limit_failures_burst=10_000)


def test_every_api_route_refuses_what_it_must(roomy: Server) -> None:
    server = roomy
    tokens = _tokens(server)
    routes = _routes(server)
    assert len(routes) >= 18
    for method, path in routes:
        call = getattr(server.client, method.lower())
        for token in (None, "bogus", "cfq_" + "A" * 43, "cfr_" + "B" * 43):
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            assert call(path, json={}, headers=headers).status_code == 401, (method, path, token)
        runner_ok = path == "/api/v1/runners/heartbeat"
        if not runner_ok:
            got = call(path, json={}, headers={"Authorization": f"Bearer {tokens['runner']}"})
            assert got.status_code == 403, (method, path, "runner")
        run_ok = (
            path.startswith(("/api/v1/queue/R1", "/api/v1/runs/R1")) or path == "/api/v1/results"
        )
        if not run_ok:
            got = call(path, json={}, headers={"Authorization": f"Bearer {tokens['run']}"})
            assert got.status_code == 403, (method, path, "run token")
        if path.startswith(("/api/v1/queue/R1", "/api/v1/runs/R1")):
            got = call(path, json={}, headers={"Authorization": f"Bearer {tokens['other_run']}"})
            assert got.status_code == 403, (method, path, "other run's token")


def test_odd_signatures_store_nothing(server: Server) -> None:
    body = (WEBHOOKS / "github" / "push.none.1.json").read_bytes()
    sha1 = "sha1=" + hmac.new(GH_SECRET.encode(), body, hashlib.sha1).hexdigest()
    full = sign(body)
    for i, headers in enumerate(
        (
            {"X-Hub-Signature": sha1},  # sha1 only
            {"X-Hub-Signature-256": full[:-8]},  # truncated
            {"X-Hub-Signature-256": full[:7]},  # prefix only
            {"X-Hub-Signature-256": sign(body, "jenkins-secret")},  # another provider's secret
            {"X-Hub-Signature-256": full.upper()},  # "SHA256=": not the scheme
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        )
    ):
        hdrs = {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"odd-{i}", **headers}
        resp = server.client.post("/webhooks/github", data=body, headers=hdrs)
        assert resp.status_code == 401, headers
    assert server.store.jobs.delivery_count() == 0 and server.store.jobs.counts() == {}
    gl = (WEBHOOKS / "gitlab" / "push.json").read_bytes()
    for token in ("", "gitlab-hook-toke", "gitlab-hook-token ", "jenkins-secret"):
        resp = server.client.post(
            "/webhooks/gitlab",
            data=gl,
            headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token},
        )
        assert resp.status_code == 401, token
    assert server.store.jobs.delivery_count("gitlab") == 0


def test_secret_comparisons_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from ci_app.web import security

    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module security.py calls
    assert security.tokens_equal("abc", "abc") and not security.tokens_equal("abc", "abd")
    assert security.verify_github_signature(b"x", sign(b"x"), [GH_SECRET, "other"])
    assert security.verify_shared_secret({"X-CI-Fanout-Token": "s"}, "s")
    assert len(calls) >= 5


def test_no_secret_in_logs_pages_metrics_or_job_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for srv in build_server():
        tokens = _tokens(srv)
        s = srv.ctx.settings
        body = (WEBHOOKS / "github" / "pull_request.opened.1.json").read_bytes()
        srv.github("pull_request", body, "pr-1", secret="wrong")
        srv.github("pull_request", body, "pr-2")
        srv.fakes.forge.fail = 100
        srv.drain()
        srv.client.post(
            "/api/v1/runners/heartbeat",
            json={"runner": "lab-1", "profile_hash": PHASH, "profile": PROFILE},
            headers={"Authorization": f"Bearer {tokens['runner']}"},
        )
        srv.client.get("/api/v1/runners", headers={"Authorization": f"Bearer {tokens['run']}"})
        seen = caplog.text
        for path in ("/", "/runners", "/runs", "/jobs", "/metrics", "/healthz", "/runs/R1"):
            seen += srv.client.get(path).get_data(as_text=True)
        seen += json.dumps(srv.client.get("/api/v1/jobs", headers=srv.admin()).get_json())
        seen += repr(s)
        for secret in (s.api_token, s.github_webhook_secret, s.gitlab_webhook_token,
                       s.jenkins_webhook_secret, s.azure_webhook_secret, *tokens.values()):  # fmt: skip
            assert secret not in seen


def test_sql_payloads_are_stored_literally(server: Server) -> None:
    payload = "x'); DROP TABLE runs; --"
    doc = results_json(
        payload, "s1' OR '1'='1", {payload: "failed"}, repo="o/r'; DELETE FROM shards;--"
    )
    assert (
        server.client.post("/api/v1/results", json=doc, headers=server.admin()).status_code == 201
    )
    meta = server.store.results.run(payload)
    assert meta is not None and meta.repo == "o/r'; DELETE FROM shards;--"
    assert server.store.results.cases([payload]).test_id == [payload]
    assert server.store.db.count_rows("runs") == 1 and server.store.db.count_rows("shards") == 1


@pytest.fixture
def evil_dash() -> Iterator[Server]:
    """The store full of hostile strings: test ids, messages, runner names and labels, job
    links, repo and run names, parked job errors."""
    for srv in build_server():
        store = srv.store
        for i in range(3):
            doc = results_json(
                f"run-{i}{EVIL}", f"s{EVIL}", {f"t{EVIL}": "failed", "ok": "passed"},
                repo=f"octo/app{EVIL}", pr=None, branch=f"main{EVIL}", commit=f"c{i}{EVIL}",
            )  # fmt: skip
            doc["tests"][0]["message"] = EVIL
            doc["run"]["job_url"] = "javascript:alert(3)"
            doc["run"]["runner_name"] = f"runner{EVIL}"
            store.results.ingest(ResultSet.from_dict(doc))
        store.runners.upsert_runner(
            f"box{EVIL}",
            provider=EVIL,
            labels=[EVIL],
            profile=None,
            profile_hash=None,
            now=srv.clock.now,
        )
        job = store.jobs.enqueue("report", {"run_id": EVIL}, now=srv.clock.now)
        store.jobs.park(job, f"StoreError: {EVIL}", now=srv.clock.now)
        srv.client.post(
            "/api/v1/queue",
            json={"run": f"q{EVIL}", "matrix": queue_matrix("q"), "repo": f"r{EVIL}"},
            headers=srv.admin(),
        )
        yield srv


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("chromium") is None,
    reason="needs Debian's /usr/bin/chromium",
)
def test_stored_strings_run_no_script_in_chromium(evil_dash: Server) -> None:
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    http = make_server("127.0.0.1", 0, evil_dash.app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{http.server_port}"
    repo = quote(f"octo/app{EVIL}")
    pages = [
        "/", "/runners", "/runs", f"/runs?repo={repo}", f"/runs/{quote(f'run-0{EVIL}')}",
        f"/runs/{quote(f'q{EVIL}')}", f"/repo?name={repo}", "/jobs", f"/runs/{quote('run-1' + EVIL)}",
    ]  # fmt: skip
    dialogs: list[str] = []
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = browser.new_page()

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for path in pages:
                resp = page.goto(base + path, wait_until="load")
                assert resp is not None and resp.status == 200, path
                assert page.locator("script").count() == 0, path
                hrefs = page.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href'))")
                assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript")], (
                    path
                )
                assert page.locator("img[src='x']").count() == 0, path
            browser.close()
    finally:
        http.shutdown()
    assert dialogs == [] and errors == []
