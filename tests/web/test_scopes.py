"""Scoped credentials (issue 14): run tokens bound to one run identity, results that name
another identity refused with nothing stored, expiry and revocation, queue tokens, runner
impersonation, and the first writer of a run never defining its identity for a token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ci_app.web.security import hash_token

from .conftest import WEBHOOKS, Server, build_server, results_json, zipped
from .test_api import queue_matrix

IDENTITY = {"repo": "octo/a", "provider": "github", "pr": 7, "commit": "abc123"}


def _run(srv: Server, run: str, **over: Any) -> dict[str, Any]:
    body = {"run": run, **IDENTITY, **over}
    resp = srv.client.post("/api/v1/runs", json=body, headers=srv.admin())
    assert resp.status_code == 201, resp.get_json()
    doc: dict[str, Any] = resp.get_json()
    return doc


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _post_results(srv: Server, token: str, doc: dict[str, Any]) -> Any:
    return srv.client.post("/api/v1/results", json=doc, headers=_bearer(token))


def _nothing_stored(srv: Server) -> None:
    assert srv.store.db.count_rows("shards") == 0 and srv.store.db.count_rows("runs") == 0
    assert [j for j in srv.store.jobs.list_jobs() if j.kind == "report"] == []


def test_create_run_token_contract(server: Server) -> None:
    doc = _run(server, "gh:octo/a:42:1", ttl_s=3600)
    assert set(doc) >= {"run", "token", "expires_at"}
    assert doc["run"] == "gh:octo/a:42:1" and doc["token"].startswith("cfq_")
    assert doc["expires_at"] == server.clock.now + 3600
    assert doc["identity"] == {"repo": "octo/a", "provider": "github", "pr": 7, "commit": "abc123"}
    default = _run(server, "gh:octo/a:43:1")
    assert default["expires_at"] == server.clock.now + server.ctx.settings.run_token_ttl_s
    # stored hashed only
    rows = server.store.db.all("SELECT token_hash FROM run_tokens")
    assert all(r[0].startswith("sha256:") and doc["token"] not in r[0] for r in rows)
    # admin only, and the identity is checked
    assert server.client.post("/api/v1/runs", json={"run": "x"}).status_code == 401
    assert (
        server.client.post(
            "/api/v1/runs", json={"run": "x", "provider": "github"}, headers=_bearer(doc["token"])
        ).status_code
        == 403
    )
    for bad in (
        {"run": "", "provider": "github"},
        {"run": "x"},  # provider is required
        {"run": "x", "provider": "githab"},
        {"run": "x", "provider": "github", "pr": "7"},
        {"run": "x", "provider": "github", "pr": -1},
        {"run": "x", "provider": "github", "pr": True},
        {"run": "x", "provider": "github", "repo": 5},
        {"run": "x", "provider": "github", "ttl_s": "soon"},
        {"run": "x", "provider": "github", "ttl_s": 0},
        {"run": "x", "provider": "github", "ttl_s": 10**9},
    ):
        resp = server.client.post("/api/v1/runs", json=bad, headers=server.admin())
        assert resp.status_code == 400, (bad, resp.get_json())
    assert server.store.db.one("SELECT count(*) FROM run_identities") == (2,)


@pytest.mark.parametrize(
    "change",
    [
        {"repo": "victim/other", "pr": 99},  # the finding: another repository's PR
        {"repo": "victim/other"},
        {"pr": 99},
        {"pr": None},
        {"provider": "gitlab"},
        {"commit": "f00d"},
        {"run_id": "other-run"},
    ],
)
def test_results_naming_another_identity_are_refused(
    server: Server, change: dict[str, Any]
) -> None:
    token = _run(server, "R1")["token"]
    doc = results_json("R1", "s1", {"a::t": "failed"}, repo="octo/a", pr=7, commit="abc123")
    doc["run"].update(change)
    resp = _post_results(server, token, doc)
    assert resp.status_code == 403, resp.get_json()
    _nothing_stored(server)
    server.drain()
    assert server.fakes.forge.comments == {} and server.fakes.forge.statuses == []


def test_results_of_the_tokens_identity_are_stored_and_commented(server: Server) -> None:
    token = _run(server, "R1")["token"]
    doc = results_json("R1", "s1", {"a::t": "failed"}, repo="octo/a", pr=7, commit="abc123")
    assert _post_results(server, token, doc).status_code == 201
    # a missing commit is the token's
    doc2 = results_json("R1", "s2", {"a::u": "passed"}, repo="octo/a", pr=7)
    doc2["run"]["commit"] = None
    assert _post_results(server, token, doc2).status_code == 201
    server.drain()
    assert list(server.fakes.forge.comments) == [(7, "tests")]
    assert {s.sha for s in server.fakes.forge.statuses} == {"abc123"}
    meta = server.store.results.run("R1")
    assert meta is not None and (meta.repo, meta.provider, meta.pr) == ("octo/a", "github", 7)
    # the admin cannot store results of another identity under a bound run either
    foreign = results_json("R1", "s3", {"b::t": "passed"}, repo="victim/other", pr=99)
    resp = server.client.post("/api/v1/results", json=foreign, headers=server.admin())
    assert resp.status_code == 403 and server.store.db.count_rows("shards") == 2


def test_other_runs_tokens_and_runner_tokens_cannot_post(server: Server) -> None:
    _run(server, "R1")
    other = _run(server, "R2")["token"]
    doc = results_json("R1", "s1", {"a::t": "passed"}, repo="octo/a", pr=7, commit="abc123")
    assert _post_results(server, other, doc).status_code == 403
    runner = server.client.post(
        "/api/v1/admin/runners/lab-1/tokens", headers=server.admin(), json={}
    ).get_json()["token"]
    assert _post_results(server, runner, doc).status_code == 403
    assert _post_results(server, "cfq_" + "x" * 43, doc).status_code == 401
    assert server.client.post("/api/v1/results", json=doc).status_code == 401
    _nothing_stored(server)


def test_a_run_token_reaches_nothing_else(server: Server) -> None:
    token = _run(server, "R1")["token"]
    auth = _bearer(token)
    c = server.client
    assert c.get("/api/v1/runners", headers=auth).status_code == 403
    assert c.get("/api/v1/jobs", headers=auth).status_code == 403
    assert c.post("/api/v1/admin/runners/x/tokens", headers=auth, json={}).status_code == 403
    assert c.post("/api/v1/runners/heartbeat", headers=auth, json={}).status_code == 403
    body = {"run": "R9", "matrix": queue_matrix("R9"), **IDENTITY}
    assert c.post("/api/v1/queue", headers=auth, json=body).status_code == 403
    assert c.post("/api/v1/runs", headers=auth, json={"run": "R9", **IDENTITY}).status_code == 403
    assert c.delete("/api/v1/runs/R2", headers=auth).status_code == 403


def test_expiry_and_revocation(server: Server) -> None:
    short = _run(server, "R1", ttl_s=60)["token"]
    doc = results_json("R1", "s1", {"a::t": "passed"}, repo="octo/a", pr=7, commit="abc123")
    server.clock.now += 61
    resp = _post_results(server, short, doc)
    assert resp.status_code == 401 and "expired" in resp.get_json()["error"]
    # a retried plan step gets a fresh token for the same identity
    token = _run(server, "R1")["token"]
    assert _post_results(server, token, doc).status_code == 201
    # the run's own token may revoke the run when done; then it is refused
    resp = server.client.delete("/api/v1/runs/R1", headers=_bearer(token))
    assert resp.status_code == 200 and resp.get_json()["revoked"] == 2  # the expired one too
    doc2 = results_json("R1", "s2", {"a::u": "passed"}, repo="octo/a", pr=7, commit="abc123")
    assert _post_results(server, token, doc2).status_code == 401
    # admin revocation
    t2 = _run(server, "R2")["token"]
    assert server.client.delete("/api/v1/runs/R2", headers=server.admin()).status_code == 200
    assert server.store.identities.run_grant(hash_token(t2), now=server.clock.now) is None


def test_final_report_revokes_the_run_tokens(server: Server) -> None:
    """The collect job of a finished pipeline queues the final report; once it is done, the
    run's tokens stop working."""
    body = (WEBHOOKS / "github" / "workflow_run.completed.1.json").read_bytes()
    wr = json.loads(body)
    repo = wr["repository"]["full_name"]
    run_id = f"github:{repo}:{wr['workflow_run']['id']}"
    token = _run(server, run_id, repo=repo, pr=None, commit=wr["workflow_run"]["head_sha"])["token"]
    doc = results_json(run_id, "s1", {"x::a": "passed"}, repo=repo, pr=None)
    doc["run"]["commit"] = wr["workflow_run"]["head_sha"]
    assert _post_results(server, token, doc).status_code == 201
    server.drain()
    assert server.store.identities.run_grant(hash_token(token), now=server.clock.now) is not None
    server.fakes.ci.artifacts[str(wr["workflow_run"]["id"])] = [
        ("s1", zipped({"results.json": doc}))
    ]
    assert server.github("workflow_run", body, "wr-final").status_code == 202
    server.drain()
    assert server.store.identities.run_grant(hash_token(token), now=server.clock.now) is None
    doc2 = results_json(run_id, "s2", {"x::b": "passed"}, repo=repo, pr=None)
    assert _post_results(server, token, doc2).status_code == 401


def test_queue_binds_the_same_identity(server: Server) -> None:
    made = _run(server, "R1")
    # the queue of a bound run: fields left out are the run's; the token works for both
    body = {"run": "R1", "matrix": queue_matrix("R1")}
    resp = server.client.post("/api/v1/queue", json=body, headers=server.admin())
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert set(doc) >= {"run", "token", "expires_at", "pools", "url"}
    assert doc["identity"] == made["identity"]
    for token in (made["token"], doc["token"]):
        lease = server.client.post(
            "/api/v1/queue/R1/lease",
            json={"runner": "w", "labels": ["x64"]},
            headers=_bearer(token),
        )
        assert lease.status_code == 200, lease.get_json()
    # a different identity for the same run is refused, nothing made
    clash = {"run": "R2", "matrix": queue_matrix("R2"), **IDENTITY}
    assert (
        server.client.post("/api/v1/queue", json=clash, headers=server.admin()).status_code == 201
    )
    again = {"run": "R3", "matrix": queue_matrix("R3"), **IDENTITY}
    _run(server, "R3", repo="octo/b")
    resp = server.client.post("/api/v1/queue", json=again, headers=server.admin())
    assert resp.status_code == 409 and "another identity" in resp.get_json()["error"]
    assert not server.ctx.queue.has_run("R3")
    # the queue's own token is bound as well
    qtok = server.client.post(
        "/api/v1/queue",
        json={"run": "R4", "matrix": queue_matrix("R4"), **IDENTITY},
        headers=server.admin(),
    ).get_json()["token"]
    bad = results_json("R4", "s1", {"R4::t0": "passed"}, repo="victim/other", pr=99)
    assert _post_results(server, qtok, bad).status_code == 403
    good = results_json("R4", "s1", {"R4::t0": "passed"}, repo="octo/a", pr=7, commit="abc123")
    assert _post_results(server, qtok, good).status_code == 201


def test_first_writer_does_not_define_the_identity_for_a_token(server: Server) -> None:
    """Results stored first (here by the admin) fix what the run is; a token asked later for
    another identity of that run is refused instead of inheriting theirs."""
    first = results_json("R1", "s1", {"a::t": "passed"}, repo="victim/other", pr=99)
    assert (
        server.client.post("/api/v1/results", json=first, headers=server.admin()).status_code == 201
    )
    resp = server.client.post(
        "/api/v1/runs", json={"run": "R1", **IDENTITY}, headers=server.admin()
    )
    assert resp.status_code == 409 and "another identity" in resp.get_json()["error"]
    # a run bound first is not redefined by anything posted later (admin or collect job)
    _run(server, "R2")
    later = results_json("R2", "s1", {"a::t": "passed"}, repo="victim/other", pr=99)
    assert (
        server.client.post("/api/v1/results", json=later, headers=server.admin()).status_code == 403
    )
    meta = server.store.results.run("R2")
    assert meta is None


def test_collect_job_cannot_store_foreign_results() -> None:
    """An artifact's results.json is written by the code under test: the signed webhook's
    repository wins, and a run bound to another identity is not written into."""
    for srv in build_server():
        _run(srv, "victim-run", repo="victim/other", pr=99, commit=None)
        body = (WEBHOOKS / "github" / "workflow_run.completed.1.json").read_bytes()
        wr = json.loads(body)
        claims_victim = results_json(
            "victim-run", "evil", {"x::a": "failed"}, repo="victim/other", pr=99
        )
        claims_repo = results_json("", "s1", {"x::b": "passed"}, repo="victim/other", pr=99)
        claims_repo["run"]["run_id"] = None
        srv.fakes.ci.artifacts[str(wr["workflow_run"]["id"])] = [
            ("a", zipped({"results.json": claims_victim})),
            ("b", zipped({"results.json": claims_repo})),
        ]
        assert srv.github("workflow_run", body, "wr-evil").status_code == 202
        srv.drain()
        assert srv.store.results.run("victim-run") is None  # not written into
        mine = srv.store.results.run(
            f"github:{wr['repository']['full_name']}:{wr['workflow_run']['id']}"
        )
        assert mine is not None and mine.repo == wr["repository"]["full_name"]
        # whatever the files claim, the only repository written to is the webhook's
        assert {scope for _, scope, _ in srv.fakes.asked} == {wr["repository"]["full_name"]}
        assert [
            (j.kind, j.state) for j in srv.store.jobs.list_jobs() if j.kind == "ci.collect"
        ] == [("ci.collect", "done")]


def test_runner_tokens_heartbeat_only_as_their_runner(server: Server) -> None:
    token = server.client.post(
        "/api/v1/admin/runners/lab-1/tokens", headers=server.admin(), json={}
    ).get_json()["token"]
    resp = server.client.post(
        "/api/v1/runners/heartbeat",
        json={"runner": "lab-2", "profile_hash": "h"},
        headers=_bearer(token),
    )
    assert resp.status_code == 403
    assert server.store.runners.runner("lab-2") is None
    queue = {"run": "Q", "matrix": queue_matrix("Q"), **IDENTITY}
    assert (
        server.client.post("/api/v1/queue", json=queue, headers=server.admin()).status_code == 201
    )
    lease = server.client.post(
        "/api/v1/queue/Q/lease", json={"runner": "w"}, headers=_bearer(token)
    )
    assert lease.status_code == 403
