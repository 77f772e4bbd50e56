"""API: runner heartbeats + label sync, queue mode with per-run tokens, results → report,
rate limits, size caps, durable jobs (retry, park, crash redo), health and metrics."""

from __future__ import annotations

import json
from typing import Any

from ci_app.model.labels import derive_labels
from ci_app.model.profile import HardwareProfile
from ci_app.providers.base import RunnerInfo
from ci_app.web.worker import JobWorker

from .conftest import WEBHOOKS, Server, build_server, results_json, zipped

PROFILE = json.loads((WEBHOOKS / "profile.debian12-vm-2vcpu.json").read_text())
PHASH = "sha256:" + "a" * 64


def _token(srv: Server, name: str) -> str:
    resp = srv.client.post(f"/api/v1/admin/runners/{name}/tokens", headers=srv.admin(), json={})
    assert resp.status_code == 201
    token: str = resp.get_json()["token"]
    return token


def _beat(srv: Server, token: str, **body: Any) -> Any:
    return srv.client.post(
        "/api/v1/runners/heartbeat", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_heartbeat_contract_profile_and_auth(server: Server) -> None:
    token = _token(server, "gpu-1")
    assert token.startswith("cfr_")
    # the token is stored hashed only
    stored = server.store.db.all("SELECT token_hash FROM runner_tokens")
    assert stored and token not in stored[0][0] and stored[0][0].startswith("sha256:")
    first = _beat(server, token, runner="gpu-1", profile_hash=PHASH, load={"cpu_percent": 5.0})
    assert first.status_code == 200 and first.get_json()["need_profile"] is True
    full = _beat(
        server, token, runner="gpu-1", profile_hash=PHASH, profile=PROFILE, load={"cpu_percent": 7}
    )
    assert full.status_code == 200 and full.get_json()["need_profile"] is False
    want = list(derive_labels(HardwareProfile.from_dict(PROFILE)))
    assert full.get_json()["labels"] == want
    again = _beat(server, token, runner="gpu-1", profile_hash=PHASH, load={"cpu_percent": 9.5})
    assert again.get_json() == {"ok": True, "need_profile": False}
    changed = _beat(server, token, runner="gpu-1", profile_hash="sha256:other", load={})
    assert changed.get_json()["need_profile"] is True
    listing = server.client.get("/api/v1/runners", headers=server.admin()).get_json()
    (r,) = listing["runners"]
    assert r["name"] == "gpu-1" and r["status"] == "online" and r["labels"] == want
    assert r["load"] == {}  # the latest beat's load
    # auth failures
    assert _beat(server, "cfr_wrong", runner="gpu-1").status_code == 401
    assert server.client.post("/api/v1/runners/heartbeat", json={}).status_code == 401
    assert _beat(server, token, runner="someone-else", profile_hash=PHASH).status_code == 403
    assert server.client.get("/api/v1/runners").status_code == 401
    runner_auth = {"Authorization": f"Bearer {token}"}
    assert server.client.get("/api/v1/runners", headers=runner_auth).status_code == 403
    revoked = server.client.delete("/api/v1/admin/runners/gpu-1/tokens", headers=server.admin())
    assert revoked.get_json()["revoked"] == 1
    assert _beat(server, token, runner="gpu-1", profile_hash=PHASH).status_code == 401
    bad = _beat(server, _token(server, "gpu-1"), runner="gpu-1", profile={"x": 1})
    assert bad.status_code == 400


def test_label_sync_adds_missing_keeps_admin_labels_and_waits_for_misses(server: Server) -> None:
    server.fakes.runners.runners["gpu-1"] = RunnerInfo(
        id="11", name="gpu-1", labels=frozenset({"self-hosted", "X64", "team-ml", "gpu-nvidia"})
    )
    token = _token(server, "gpu-1")
    _beat(server, token, runner="gpu-1", profile_hash=PHASH, profile=PROFILE, load={})
    server.drain()
    calls = server.fakes.runners.calls
    added = {label for op, _, label in calls if op == "add"}
    want = set(derive_labels(HardwareProfile.from_dict(PROFILE)))
    assert added == want - {"x64"}  # X64 is already there (provider spelling)
    assert not [c for c in calls if c[0] == "remove"]  # gpu-nvidia: 1 miss of 3
    row = next(r for r in server.store.runners.runner_rows() if r.name == "gpu-1")
    assert row.label_misses == {"gpu-nvidia": 1} and row.sync_error is None
    assert "team-ml" in row.synced_labels
    # two more syncs (interval 0 → every beat) and the stale owned label goes; team-ml stays
    for _ in range(2):
        server.clock.now += 1
        _beat(server, token, runner="gpu-1", profile_hash=PHASH, load={})
        server.drain()
    removed = [label for op, _, label in calls if op == "remove"]
    assert removed == ["gpu-nvidia"]
    assert "team-ml" in server.fakes.runners.runners["gpu-1"].labels


def test_label_sync_unknown_runner_is_reported(server: Server) -> None:
    token = _token(server, "ghost")
    _beat(server, token, runner="ghost", profile_hash=PHASH, profile=PROFILE, load={})
    server.drain()
    row = next(r for r in server.store.runners.runner_rows() if r.name == "ghost")
    assert row.sync_error and "no runner named" in row.sync_error
    page = server.client.get("/runners").get_data(as_text=True)
    assert "ghost" in page and "no runner named" in page


def queue_matrix(run: str, n: int = 6) -> dict[str, Any]:
    """A queue-mode matrix through the planner's own serialisation."""
    from ci_app.matrix.planner import Matrix, PoolPlan
    from ci_app.matrix.queue import QueueItem

    items = tuple(QueueItem(f"{run}::t{i}", float(i + 1)) for i in range(n))
    pool = PoolPlan(
        key="cpu",
        runs_on=("x64",),
        runners=2,
        shards=2,
        total_s=sum(it.estimate_s for it in items),
        expected_wall_s=0.0,
        queue=items,
    )
    return Matrix(mode="queue", shards=(), pools=(pool,)).to_dict()


def _create_queue(srv: Server, run: str, **identity: Any) -> str:
    body: dict[str, Any] = {"run": run, "matrix": queue_matrix(run), "repo": "octo/app"}
    body.update(provider="github", pr=7)
    body.update(identity)
    resp = srv.client.post("/api/v1/queue", json=body, headers=srv.admin())
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert doc["pools"] == ["cpu"] and doc["url"].endswith(f"/api/v1/queue/{run}")
    token: str = doc["token"]
    assert token.startswith("cfq_")
    return token


def test_queue_api_per_run_tokens(server: Server) -> None:
    ta = _create_queue(server, "octo/app#1")
    tb = _create_queue(server, "other/repo#9")
    auth_a = {"Authorization": f"Bearer {ta}"}
    auth_b = {"Authorization": f"Bearer {tb}"}
    url = "/api/v1/queue/octo/app#1"
    url = url.replace("#", "%23")
    lease = server.client.post(
        f"{url}/lease", json={"runner": "w1", "labels": ["x64", "gpu"]}, headers=auth_a
    )
    assert lease.status_code == 200, lease.get_json()
    got = lease.get_json()
    assert got["pool"] == "cpu" and got["tests"] and got["tests"][0].startswith("octo/app#1::")
    # another run's token can neither pull nor complete this run's tests
    assert (
        server.client.post(f"{url}/lease", json={"runner": "w2"}, headers=auth_b).status_code == 403
    )
    foreign = server.client.post(
        f"{url}/complete",
        json={"lease_id": got["lease_id"], "results": [{"id": got["tests"][0]}]},
        headers=auth_b,
    )
    assert foreign.status_code == 403
    assert server.client.post(f"{url}/lease", json={"runner": "w2"}).status_code == 401
    hb = server.client.post(f"{url}/heartbeat", json={"lease_id": got["lease_id"]}, headers=auth_a)
    assert hb.status_code == 200 and hb.get_json()["expires_at"] > server.clock.now
    done = server.client.post(
        f"{url}/complete",
        json={
            "lease_id": got["lease_id"],
            "results": [{"id": t, "outcome": "passed", "duration_s": 1} for t in got["tests"]],
        },
        headers=auth_a,
    )
    assert done.get_json()["accepted"] == len(got["tests"])
    unknown = server.client.post(f"{url}/heartbeat", json={"lease_id": "nope"}, headers=auth_a)
    assert unknown.status_code == 409 and "never issued" in unknown.get_json()["error"]
    assert (
        server.client.post(f"{url}/complete", json={"results": []}, headers=auth_a).status_code
        == 400
    )
    prog = server.client.get(f"{url}/progress", headers=auth_a).get_json()
    assert prog["completed"] == len(got["tests"]) and prog["total"] == 6
    # a lease that is never completed expires and is re-queued by the worker's maintenance
    second = server.client.post(
        f"{url}/lease", json={"runner": "w1", "labels": ["x64"]}, headers=auth_a
    ).get_json()
    server.clock.now += server.ctx.settings.queue_lease_timeout_s + 1
    server.ctx.worker.maintain()
    prog = server.client.get(f"{url}/progress", headers=auth_a).get_json()
    assert prog["expired"] == 1 and prog["requeued"] == len(second["tests"])
    # admin errors
    dup = server.client.post(
        "/api/v1/queue",
        json={"run": "octo/app#1", "matrix": queue_matrix("x")},
        headers=server.admin(),
    )
    assert dup.status_code == 409
    static = {"run": "s", "matrix": {"version": 1, "mode": "static", "shards": []}}
    assert (
        server.client.post("/api/v1/queue", json=static, headers=server.admin()).status_code == 400
    )
    assert server.client.post("/api/v1/queue", json=static, headers=auth_a).status_code == 403
    metrics = server.client.get("/metrics").get_data(as_text=True)
    assert 'ci_fanout_test_queue_depth{pool="cpu"}' in metrics


def test_results_upload_triggers_one_sticky_comment(server: Server) -> None:
    token = _create_queue(server, "run-42")
    auth = {"Authorization": f"Bearer {token}"}
    shard1 = results_json("run-42", "s1", {"a::t1": "passed", "a::t2": "failed"})
    resp = server.client.post("/api/v1/results", json=shard1, headers=auth)
    assert resp.status_code == 201 and resp.get_json()["tests"] == 2
    again = server.client.post("/api/v1/results", json=shard1, headers=auth)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    server.drain()
    forge = server.fakes.forge
    assert forge.created == 1 and (7, "tests") in forge.comments
    assert "ci-fanout" in forge.comments[(7, "tests")]
    assert forge.statuses[-1].state == "failure" and forge.statuses[-1].sha == "abc123"
    shard2 = results_json("run-42", "s2", {"b::t3": "passed"})
    assert server.client.post("/api/v1/results", json=shard2, headers=auth).status_code == 201
    server.drain()
    assert forge.created == 1 and forge.edited == 1  # edited in place, never posted twice
    # another run's token cannot write these results; bad documents are 400
    other = _create_queue(server, "run-43")
    resp = server.client.post(
        "/api/v1/results", json=shard1, headers={"Authorization": f"Bearer {other}"}
    )
    assert resp.status_code == 403
    assert (
        server.client.post("/api/v1/results", json={"tests": "x"}, headers=auth).status_code == 400
    )
    no_run = results_json("", "s1", {})
    assert server.client.post("/api/v1/results", json=no_run, headers=auth).status_code == 400
    assert server.store.db.count_rows("shards") == 2


def test_collect_job_ingests_artifacts_and_reports(server: Server) -> None:
    body = (WEBHOOKS / "github" / "workflow_run.completed.1.json").read_bytes()
    doc = json.loads(body)
    run_id = str(doc["workflow_run"]["id"])
    rs = results_json("", "s1", {"x::a": "passed", "x::b": "passed"}, pr=None)
    for key in ("run_id", "commit", "repo", "branch"):
        rs["run"][key] = None  # filled from the webhook
    server.fakes.ci.artifacts[run_id] = [
        ("results-s1", zipped({"out/results.json": rs, "other.txt": {}}))
    ]
    assert server.github("workflow_run", body, "wr-1").status_code == 202
    server.drain()
    stored = f"github:{doc['repository']['full_name']}:{run_id}"
    meta = server.store.results.run(stored)
    assert meta is not None and meta.commit == doc["workflow_run"]["head_sha"]
    assert meta.repo == doc["repository"]["full_name"] and meta.pipeline_id == run_id
    kinds = sorted((j.kind, j.state) for j in server.store.jobs.list_jobs())
    assert kinds == [("ci.collect", "done"), ("report", "done")]
    assert server.fakes.forge.statuses[-1].state == "success"


def test_failing_provider_retries_with_backoff_then_parks() -> None:
    for srv in build_server(job_max_attempts=3, job_backoff_s=10.0):
        srv.fakes.forge.fail = 100
        body = (WEBHOOKS / "github" / "pull_request.opened.1.json").read_bytes()
        srv.github("pull_request", body, "pr-1")
        assert srv.ctx.worker.run_one()
        (job,) = srv.store.jobs.list_jobs()
        assert job.state == "queued" and job.attempts == 1 and "502" in (job.last_error or "")
        assert job.run_after == srv.clock.now + 10.0
        assert not srv.ctx.worker.run_one()  # backing off
        srv.clock.now += 10.0
        assert srv.ctx.worker.run_one()
        (job,) = srv.store.jobs.list_jobs()
        assert job.run_after == srv.clock.now + 20.0  # doubled
        srv.clock.now += 20.0
        assert srv.ctx.worker.run_one()
        (job,) = srv.store.jobs.list_jobs()
        assert job.state == "parked"
        page = srv.client.get("/jobs").get_data(as_text=True)
        assert "pr.plan" in page and "upstream 502" in page
        metrics = srv.client.get("/metrics").get_data(as_text=True)
        assert 'ci_fanout_jobs{state="parked"} 1.0' in metrics
        assert 'ci_fanout_jobs_processed_total{kind="pr.plan",outcome="retry"} 2.0' in metrics
        # fixed upstream: requeue through the admin API and it completes
        srv.fakes.forge.fail = 0
        resp = srv.client.post(f"/api/v1/jobs/{job.id}/requeue", headers=srv.admin())
        assert resp.status_code == 200
        assert (
            srv.client.post(f"/api/v1/jobs/{job.id}/requeue", headers=srv.admin()).status_code
            == 409
        )
        assert srv.ctx.worker.run_one()
        assert srv.store.jobs.counts() == {"done": 1}


def test_crashed_worker_job_is_redone_without_duplicate_comment(server: Server) -> None:
    token = _create_queue(server, "run-7")
    server.client.post(
        "/api/v1/results",
        json=results_json("run-7", "s1", {"t": "passed"}),
        headers={"Authorization": f"Bearer {token}"},
    )
    # a worker leases the report job, posts the comment, then dies before completing it
    job = server.store.jobs.lease(server.clock.now, server.ctx.settings.job_lease_s)
    assert job is not None and job.kind == "report"
    from ci_app.web.handlers import handle_report

    handle_report(server.ctx, job)
    assert server.fakes.forge.created == 1
    assert server.drain() == 0  # still leased by the dead worker
    server.clock.now += server.ctx.settings.job_lease_s + 1
    fresh = JobWorker(server.ctx)  # the restarted process
    assert fresh.drain() == 1
    assert server.store.jobs.counts() == {"done": 1}
    assert server.fakes.forge.created == 1 and server.fakes.forge.edited == 1


def test_unknown_job_kind_and_bad_payload_park_at_once(server: Server) -> None:
    server.store.jobs.enqueue("no.such.kind", {}, now=server.clock.now)
    server.store.jobs.enqueue("report", "not-an-object", now=server.clock.now)
    server.drain()
    parked = server.store.jobs.list_jobs(state="parked")
    assert len(parked) == 2 and all(j.attempts == 1 for j in parked)


def test_rate_limit_and_size_cap() -> None:
    for srv in build_server(rate_limit_per_minute=1, rate_limit_burst=3, max_api_bytes=2000):
        codes = [
            srv.client.get("/api/v1/runners", headers=srv.admin()).status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        resp = srv.client.get("/api/v1/runners", headers=srv.admin())
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        # other tokens have their own bucket
        assert srv.client.get("/api/v1/runners").status_code == 401
    for srv in build_server(max_api_bytes=2000):
        big = results_json("r", "s", {f"t{i}": "passed" for i in range(200)})
        resp = srv.client.post("/api/v1/results", json=big, headers=srv.admin())
        assert resp.status_code == 413 and "error" in resp.get_json()


def test_stale_runners_go_offline_and_health_metrics(server: Server) -> None:
    token = _token(server, "cpu-1")
    _beat(server, token, runner="cpu-1", profile_hash=PHASH, profile=PROFILE, load={})
    server.clock.now += server.ctx.settings.runner_offline_after_s + 1
    server.ctx.worker.maintain()
    (row,) = server.store.runners.runner_rows()
    assert row.status == "offline"
    health = server.client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    metrics = server.client.get("/metrics").get_data(as_text=True)
    assert 'ci_fanout_runners{status="offline"} 1.0' in metrics
    assert "ci_fanout_job_oldest_age_seconds" in metrics
    assert server.ctx.settings.api_token not in metrics


def test_real_probe_heartbeat_client_against_the_app(server: Server) -> None:
    """runner_probe's HeartbeatClient over real HTTP: profile once, then cheap beats."""
    import threading

    from werkzeug.serving import make_server

    from runner_probe.heartbeat import HeartbeatClient, HeartbeatConfig, profile_hash

    profile = HardwareProfile.from_dict(PROFILE)
    token = _token(server, "lab-7")
    http = make_server("127.0.0.1", 0, server.app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        client = HeartbeatClient(
            HeartbeatConfig(
                server=f"http://127.0.0.1:{http.server_port}",
                token=token,
                runner="lab-7",
                jitter=0.0,
            ),
            profile_fn=lambda: profile,
            load_fn=lambda p: {"cpu_percent": 3.0},
        )
        first = client.beat()
        assert first.ok and first.sent_profile and not first.need_profile
        second = client.beat()
        assert second.ok and not second.sent_profile
        stored = server.store.runners.runner("lab-7")
        assert stored is not None and stored.profile_hash == profile_hash(profile)
        assert stored.labels == derive_labels(profile)
        server.store.runners.upsert_runner(
            "lab-7", provider=None, labels=[], profile=None, profile_hash=None, now=server.clock.now
        )  # server lost it
        third = client.beat()
        assert third.need_profile and client.next_delay(third) == 0.0
        assert client.beat().sent_profile
        bad = HeartbeatClient(
            HeartbeatConfig(
                server=f"http://127.0.0.1:{http.server_port}", token="cfr_nope", runner="lab-7"
            ),
            profile_fn=lambda: profile,
            load_fn=lambda p: {},
        )
        assert bad.beat().status == 401
    finally:
        http.shutdown()


def test_an_idle_job_worker_wakes_when_a_job_is_queued(server: Server) -> None:
    """Idle workers wait on ``Jobs.wakeup`` (set when a job may be due) instead of polling
    the table with a write transaction several times a second."""
    jobs = server.store.jobs
    jobs.wakeup.clear()
    jobs.enqueue("no.such.kind", {}, now=server.clock.now)
    assert jobs.wakeup.is_set()
    worker = server.ctx.worker
    assert worker.run_one() and not worker.run_one()  # parked; nothing due now
    jobs.wakeup.clear()
    (parked,) = jobs.list_jobs(state="parked")
    jobs.requeue_parked(parked.id, now=server.clock.now)
    assert jobs.wakeup.is_set()
    assert worker.run_one()
    jobs.wakeup.clear()
    worker.stop()  # releases the waiting threads at once
    assert jobs.wakeup.is_set()
