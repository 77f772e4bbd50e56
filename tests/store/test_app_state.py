"""Store: deliveries, durable jobs, runners/tokens/heartbeats, dynamic test queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import StoreError
from ci_app.store import Store, open_store


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store(":memory:") as s:
        yield s


def test_record_delivery_dedupes(store: Store) -> None:
    assert store.record_delivery("github", "d-1", "push", "{}", received_at=1.0)
    assert not store.record_delivery("github", "d-1", "push", "{}", received_at=2.0)
    assert store.record_delivery("gitlab", "d-1", "push", "{}", received_at=2.0)
    assert store.prune_deliveries(older_than=1.5) == 1
    assert store.record_delivery("github", "d-1", "push", "{}", received_at=3.0)


def test_job_lifecycle_lease_complete(store: Store) -> None:
    a = store.enqueue_job("report", {"run": "r1"}, now=10.0)
    b = store.enqueue_job("report", {"run": "r2"}, now=11.0, idempotency_key="k2")
    assert store.enqueue_job("report", {"run": "r2"}, now=12.0, idempotency_key="k2") == b
    job = store.lease_job(now=20.0, lease_s=30.0)
    assert job is not None and job.id == a and job.payload == {"run": "r1"}
    assert job.state == "leased" and job.attempts == 1 and job.lease_until == 50.0
    job2 = store.lease_job(now=20.0, lease_s=30.0)
    assert job2 is not None and job2.id == b
    assert store.lease_job(now=20.0, lease_s=30.0) is None  # both leased
    store.complete_job(a, now=21.0)
    # b's lease expires: another worker may take it over
    again = store.lease_job(now=51.0, lease_s=30.0)
    assert again is not None and again.id == b and again.attempts == 2
    assert store.job_counts() == {"done": 1, "leased": 1}


def test_job_fail_backoff_then_park(store: Store) -> None:
    j = store.enqueue_job("sync", None, now=0.0)
    assert store.lease_job(now=0.0, lease_s=5.0) is not None
    assert store.fail_job(j, "HTTP 502", now=1.0, backoff_s=10.0, max_attempts=2) == "queued"
    assert store.lease_job(now=5.0, lease_s=5.0) is None  # backing off
    leased = store.lease_job(now=11.0, lease_s=5.0)
    assert leased is not None and leased.attempts == 2
    assert store.fail_job(j, "HTTP 502", now=12.0, backoff_s=10.0, max_attempts=2) == "parked"
    assert store.lease_job(now=100.0, lease_s=5.0) is None
    parked = store.job(j)
    assert parked is not None and parked.state == "parked" and parked.last_error == "HTTP 502"
    store.requeue_parked(j, now=200.0)
    assert store.lease_job(now=200.0, lease_s=5.0) is not None
    with pytest.raises(StoreError):
        store.fail_job(999, "x", now=0.0, backoff_s=1.0)


def test_lease_job_by_kind_and_park(store: Store) -> None:
    store.enqueue_job("a", 1, now=0.0)
    b = store.enqueue_job("b", 2, now=0.0)
    leased = store.lease_job(now=1.0, lease_s=1.0, kinds=["b"])
    assert leased is not None and leased.id == b
    store.park_job(b, "bad payload", now=1.0)
    assert store.job_counts() == {"queued": 1, "parked": 1}


def test_runners_tokens_heartbeats(store: Store) -> None:
    store.upsert_runner(
        "gpu-1",
        provider="github",
        labels=["gpu", "x64"],
        profile={"gpus": 1},
        profile_hash="h1",
        now=100.0,
    )
    store.upsert_runner(
        "cpu-1", provider="gitlab", labels=[], profile=None, profile_hash=None, now=100.0
    )
    r = store.runner("gpu-1")
    assert r is not None and r.labels == ("gpu", "x64") and r.profile == {"gpus": 1}
    store.record_heartbeat("gpu-1", now=200.0, load=0.5, busy=True, payload={"x": 1})
    assert store.latest_heartbeat("gpu-1") == (200.0, 0.5, True)
    assert store.mark_stale_runners(now=260.0, offline_after_s=120.0) == ["cpu-1"]
    assert [x.name for x in store.list_runners(status="offline")] == ["cpu-1"]
    store.record_heartbeat("cpu-1", now=300.0)
    assert store.list_runners(status="offline") == []
    store.add_runner_token("gpu-1", "sha256:abc", now=1.0)
    assert store.runner_for_token("sha256:abc") == "gpu-1"
    assert store.revoke_runner_tokens("gpu-1", now=2.0) == 1
    assert store.runner_for_token("sha256:abc") is None


def test_test_queue_lease_and_complete(store: Store) -> None:
    assert store.enqueue_tests("r1", "gpu", ["t1", "t2", "t3", "t1"]) == 3
    assert store.enqueue_tests("r1", "gpu", ["t1"]) == 0
    first = store.lease_tests("r1", "gpu", "w1", n=2, now=0.0, lease_s=10.0)
    assert first == ["t1", "t2"]
    second = store.lease_tests("r1", "gpu", "w2", n=5, now=1.0, lease_s=10.0)
    assert second == ["t3"]
    # w1 completes one test; the other's lease expires and w2 takes it
    assert store.complete_tests("r1", "gpu", "w1", {"t1": "passed"}) == 1
    assert store.lease_tests("r1", "gpu", "w2", n=5, now=11.0, lease_s=10.0) == ["t2"]
    assert store.complete_tests("r1", "gpu", "w1", {"t2": "failed"}) == 0  # stale lease
    assert store.complete_tests("r1", "gpu", "w2", {"t2": "failed", "t3": "passed"}) == 2
    assert store.test_queue_counts("r1") == {"done": 3}


def test_queue_tokens_from_before_run_identities_keep_their_queue(tmp_path: Path) -> None:
    """Schema 4 turns each queue token of schema 3 into a run token bound to its queue's
    repository, expiring a day after it was made."""
    import duckdb

    from ci_app.store.schema import MIGRATIONS
    from ci_app.store.tokens import run_grant

    path = tmp_path / "v3.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR, "
            "applied_at TIMESTAMP)"
        )
        for version, description, sql in MIGRATIONS[:3]:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [version, description])
        con.execute(
            "INSERT INTO queue_runs VALUES ('old-run', '{}', 'sha256:feed', 'octo/a', 1000.0)"
        )
        con.execute("INSERT INTO runner_tokens VALUES ('sha256:r', 'lab-1', 1.0, NULL)")
    with open_store(path) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]  # migrated to the latest
        grant = run_grant(store, "sha256:feed", now=2000.0)
        assert grant is not None and grant.identity.run == "old-run"
        assert grant.identity.repo == "octo/a" and grant.expires_at == 1000.0 + 86400
        assert run_grant(store, "sha256:feed", now=1000.0 + 86401) is None
        assert store.runner_for_token("sha256:r") == "lab-1"
