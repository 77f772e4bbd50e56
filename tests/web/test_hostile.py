"""Hostile input at the server's doors (issue 14): authenticate before reading, rate limits by
client address for failed attempts, caps on chunked bodies, deep JSON, bad numbers, cached
charts, inert links, no files from ``local`` results, bounded heartbeat history."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from ci_app.model.results import ResultSet

from .conftest import GH_SECRET, Server, build_server, results_json, sign
from .test_api import PHASH, PROFILE, _beat, _create_queue, _token


class Untouchable(io.RawIOBase):
    """A 62 MB request body that fails the test if anyone reads a byte of it."""

    size = 62 * 1024 * 1024

    def __init__(self) -> None:
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read before the token was checked")


def _post_unread(srv: Server, path: str, token: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return srv.client.post(path, input_stream=Untouchable(), headers=headers)


AUTHENTICATED_POSTS = [
    "/api/v1/results",
    "/api/v1/runs",
    "/api/v1/queue",
    "/api/v1/queue/R1/lease",
    "/api/v1/queue/R1/complete",
    "/api/v1/queue/R1/heartbeat",
    "/api/v1/queue/R1/cancel",
    "/api/v1/runners/heartbeat",
    "/api/v1/admin/runners/lab-1/tokens",
]


@pytest.mark.parametrize("path", AUTHENTICATED_POSTS)
def test_token_is_checked_before_the_body_is_read(server: Server, path: str) -> None:
    _create_queue(server, "R1")
    other_run = _create_queue(server, "R2")
    runner = _token(server, "lab-9")
    for token, want in ((None, 401), ("bogus", 401), ("cfq_" + "A" * 43, 401), ("cfr_x", 401)):
        assert _post_unread(server, path, token).status_code == want, token
    wrong_kind = runner if "heartbeat" not in path or "queue" in path else other_run
    assert _post_unread(server, path, wrong_kind).status_code == 403


def test_fresh_bogus_tokens_do_not_escape_the_rate_limit() -> None:
    for srv in build_server(rate_limit_failures_per_minute=6, rate_limit_failures_burst=5):
        codes = [
            srv.client.get(
                "/api/v1/runners", headers={"Authorization": f"Bearer bogus-{i}"}
            ).status_code
            for i in range(60)
        ]
        assert codes[:5] == [401] * 5 and codes.count(429) == 55
        limited = srv.client.get("/api/v1/runners", headers={"Authorization": "Bearer bogus-x"})
        assert int(limited.headers["Retry-After"]) >= 1
        # another address, and valid tokens from the same address, are not affected
        other = srv.client.get(
            "/api/v1/runners",
            headers={"Authorization": "Bearer b"},
            environ_base={"REMOTE_ADDR": "10.0.0.9"},
        )
        assert other.status_code == 401
        assert srv.client.get("/api/v1/runners", headers=srv.admin()).status_code == 200
        # bad webhook signatures count too: refused before their body is read
        body = b'{"zen": "x"}'
        hdrs = {
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "d",
            "X-Hub-Signature-256": sign(body, "no"),
        }
        assert srv.client.post("/webhooks/github", data=body, headers=hdrs).status_code == 429
        good = {**hdrs, "X-Hub-Signature-256": sign(body)}
        ok = srv.client.post(
            "/webhooks/github", data=body, headers=good, environ_base={"REMOTE_ADDR": "10.0.0.7"}
        )
        assert ok.status_code == 202


def test_client_address_behind_a_trusted_proxy() -> None:
    for srv in build_server(
        rate_limit_failures_per_minute=1, rate_limit_failures_burst=2, proxy_hops=1
    ):

        def get(client: str, srv: Server = srv) -> int:
            resp = srv.client.get(
                "/api/v1/runners", headers={"X-Forwarded-For": client, "Authorization": "Bearer no"}
            )
            return resp.status_code

        assert [get("203.0.113.5") for _ in range(3)] == [401, 401, 429]
        assert get("198.51.100.7") == 401  # another client behind the same proxy


def test_chunked_bodies_over_the_cap_are_413() -> None:
    for srv in build_server(max_webhook_bytes=1000, max_api_bytes=1000):
        body = json.dumps({"zen": "x" * 5000}).encode()
        chunked = {"wsgi.input_terminated": True}
        resp = srv.client.post(
            "/webhooks/github",
            input_stream=io.BytesIO(body),
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "c1", "X-Hub-Signature-256": sign(body),
                     "Transfer-Encoding": "chunked"},
            environ_overrides=chunked,
        )  # fmt: skip
        assert resp.status_code == 413
        resp = srv.client.post(
            "/api/v1/results",
            input_stream=io.BytesIO(body),
            headers={**srv.admin(), "Transfer-Encoding": "chunked"},
            environ_overrides=chunked,
        )
        assert resp.status_code == 413
        # at the cap exactly is fine
        small = json.dumps({"zen": "y" * (1000 - 11)}).encode()
        assert len(small) == 1000
        resp = srv.client.post(
            "/webhooks/github",
            input_stream=io.BytesIO(small),
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "c2", "X-Hub-Signature-256": sign(small),
                     "Transfer-Encoding": "chunked"},
            environ_overrides=chunked,
        )  # fmt: skip
        assert resp.status_code == 202


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_json_is_400(server: Server, depth: int) -> None:
    body = ("[" * depth + "]" * depth).encode()
    obj = ('{"a":' * depth + "1" + "}" * depth).encode()
    for i, data in enumerate((body, obj)):
        resp = server.client.post(
            "/webhooks/github",
            data=data,
            headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": f"deep-{depth}-{i}",
                     "X-Hub-Signature-256": sign(data)},
        )  # fmt: skip
        assert resp.status_code == 400 and "nested" in resp.get_json()["error"]
        resp = server.client.post("/api/v1/results", data=data, headers=server.admin())
        assert resp.status_code == 400
    assert server.store.db.count_rows("deliveries") == 0


def test_bad_numbers_are_400_not_500(server: Server) -> None:
    token = _create_queue(server, "R1")
    auth = {"Authorization": f"Bearer {token}"}
    lease = server.client.post(
        "/api/v1/queue/R1/lease", json={"runner": "w", "labels": ["x64"]}, headers=auth
    )
    lid = lease.get_json()["lease_id"]
    for results in (
        [{"id": "R1::t0", "duration_s": "abc"}],
        [{"id": "R1::t0", "duration_s": -1}],
        [{"id": "R1::t0", "duration_s": [1]}],
        [{"id": {"x": 1}}],
        "not-a-list",
    ):
        resp = server.client.post(
            "/api/v1/queue/R1/complete", json={"lease_id": lid, "results": results}, headers=auth
        )
        assert resp.status_code == 400, results
    raw = b'{"lease_id": "%s", "results": [{"id": "R1::t0", "duration_s": NaN}]}' % lid.encode()
    resp = server.client.post("/api/v1/queue/R1/complete", data=raw, headers=auth)
    assert resp.status_code == 400
    for labels in (5, ["x64", 3], {"a": 1}):
        resp = server.client.post(
            "/api/v1/queue/R1/lease", json={"runner": "w", "labels": labels}, headers=auth
        )
        assert resp.status_code == 400
    assert server.client.get("/api/v1/jobs?limit=lots", headers=server.admin()).status_code == 400
    for change in (
        {"pr": 10**12},
        {"pr": "seven"},
    ):
        doc = results_json("R1", "s1", {"a::t": "passed"})
        doc["run"].update(change)
        assert (
            server.client.post("/api/v1/results", json=doc, headers=server.admin()).status_code
            == 400
        )
    for case in ({"line": "x"}, {"line": 2**40}, {"retries": 10**12}, {"duration_s": "inf"},
                 {"duration_s": -3}, {"file": {"a": 1}}, {"message": ["m"]}):  # fmt: skip
        doc = results_json("R1", "s1", {"a::t": "failed"})
        doc["tests"][0].update(case)
        resp = server.client.post("/api/v1/results", json=doc, headers=server.admin())
        assert resp.status_code == 400, (case, resp.get_json())
    doc = results_json("R1", "s1", {"a::t": "passed"})
    doc["metrics"] = [{"name": "m", "value": "1e999"}]
    assert (
        server.client.post("/api/v1/results", json=doc, headers=server.admin()).status_code == 400
    )
    assert server.store.db.count_rows("shards") == 0


def test_charts_are_cached_and_renders_rate_limited() -> None:
    for srv in build_server(chart_renders_per_minute=2):
        for shard in ("s1", "s2"):
            srv.store.results.ingest(
                ResultSet.from_dict(results_json("main-1", shard, {f"t{shard}": "passed"}, pr=None))
            )
        first = srv.client.get("/charts/trend.png?repo=octo/app")
        assert first.status_code == 200 and first.data[:4] == b"\x89PNG"
        for _ in range(20):
            again = srv.client.get("/charts/trend.png?repo=octo/app")
            assert again.status_code == 200 and again.data == first.data
        assert srv.ctx.charts.renders == 1
        etag = first.headers["ETag"]
        assert (
            srv.client.get(
                "/charts/trend.png?repo=octo/app", headers={"If-None-Match": etag}
            ).status_code
            == 304
        )
        # new results: rendered again (the second render of this address's budget of 2)
        srv.store.results.ingest(
            ResultSet.from_dict(results_json("main-2", "s1", {"t": "failed"}, pr=None))
        )
        assert srv.client.get("/charts/trend.png?repo=octo/app").status_code == 200
        assert srv.ctx.charts.renders == 2
        limited = srv.client.get("/charts/slowest.png?repo=octo/app")
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        # cached charts stay free, other addresses have their own budget
        assert srv.client.get("/charts/trend.png?repo=octo/app").status_code == 200
        other = srv.client.get(
            "/charts/slowest.png?repo=octo/app", environ_base={"REMOTE_ADDR": "10.1.1.1"}
        )
        assert other.status_code == 200
        assert srv.client.get("/charts/trend.png?repo=" + "x" * 400).status_code == 404


def test_job_url_links_only_http(server: Server) -> None:
    for i, url in enumerate(("javascript:alert(document.domain)", " JaVaScRiPt:alert(1)", "data:text/html,x",
                             "https://ci.example.org/job/1")):  # fmt: skip
        doc = results_json("R1", f"s{i}", {f"t{i}": "passed"})
        doc["run"]["job_url"] = url
        assert (
            server.client.post("/api/v1/results", json=doc, headers=server.admin()).status_code
            == 201
        )
    page = server.client.get("/runs/R1").get_data(as_text=True)
    assert "javascript:" not in page.lower() and "data:text" not in page
    assert page.count('<a href="https://ci.example.org/job/1"') == 1


def test_local_results_write_no_files_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ci_app.store import open_store
    from ci_app.web.app import create_app

    from .conftest import Clock, make_settings

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "local-out"
    for settings in (make_settings(), make_settings(local_out_dir=str(out))):
        with open_store(":memory:") as store:
            app = create_app(settings, store=store, clock=Clock(), start_worker=False)
            doc = results_json("L1", "s1", {"t": "failed"}, provider="local", pr=3)
            resp = app.test_client().post(
                "/api/v1/results",
                json=doc,
                headers={"Authorization": f"Bearer {settings.api_token}"},
            )
            assert resp.status_code == 201
            ctx = app.extensions["ci_fanout"]
            assert ctx.worker.drain() == 1 and store.jobs.counts() == {"done": 1}
    assert list(work.iterdir()) == []
    assert (out / "comment-3-tests.md").is_file()  # only where the admin said


def test_heartbeat_payloads_are_reduced_and_pruned() -> None:
    for srv in build_server(heartbeat_history=3):
        token = _token(srv, "lab-1")
        junk = {
            "cpu_percent": 12.5,
            "junk": "x" * 1_000_000,
            "gpus": [{"utilization_percent": 3, "blob": "y" * 1000}],
        }
        for i in range(10):
            srv.clock.now += 1
            kwargs: dict[str, Any] = {"profile": PROFILE} if i == 0 else {}
            assert (
                _beat(
                    srv, token, runner="lab-1", profile_hash=PHASH, load=junk, **kwargs
                ).status_code
                == 200
            )
        sizes = srv.store.db.one("SELECT max(length(CAST(payload AS VARCHAR))) FROM heartbeats")
        assert sizes is not None and sizes[0] < 200
        stored = srv.store.db.one("SELECT CAST(payload AS VARCHAR) FROM heartbeats LIMIT 1")
        assert stored is not None
        assert json.loads(stored[0]) == {"cpu_percent": 12.5, "gpus": [{"utilization_percent": 3}]}
        srv.ctx.worker.maintain()
        count = srv.store.db.one("SELECT count(*) FROM heartbeats")
        assert count == (3,)
        latest = srv.store.runners.latest_heartbeat("lab-1")
        assert latest is not None and latest[0] == srv.clock.now


def test_webhook_signature_still_checked_on_raw_bytes(server: Server) -> None:
    body = json.dumps({"zen": "ok", "hook_id": 1}).encode()
    hdrs = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "sig-1",
        "X-Hub-Signature-256": sign(body, GH_SECRET),
    }
    assert server.client.post("/webhooks/github", data=body, headers=hdrs).status_code == 202
    tampered = body.replace(b"ok", b"ko")
    assert (
        server.client.post(
            "/webhooks/github", data=tampered, headers={**hdrs, "X-GitHub-Delivery": "sig-2"}
        ).status_code
        == 401
    )
