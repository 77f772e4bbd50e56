"""Store: deliveries, durable jobs, runners/tokens/heartbeats, migrations of app state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import StoreError
from ci_app.store import Store, open_store
from ci_app.store.jobs import DeliveryIn


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store(":memory:") as s:
        yield s


def _new(store: Store, provider: str, delivery_id: str, now: float) -> bool:
    item = DeliveryIn(provider, delivery_id, "push", "{}", ())
    (outcome,) = store.jobs.accept_deliveries([item], now=now)
    return outcome.new


def test_deliveries_dedupe_and_prune(store: Store) -> None:
    assert _new(store, "github", "d-1", 1.0)
    assert not _new(store, "github", "d-1", 2.0)
    assert _new(store, "gitlab", "d-1", 2.0)
    assert store.jobs.prune_deliveries(older_than=1.5) == 1
    assert _new(store, "github", "d-1", 3.0)


def test_job_lifecycle_lease_complete(store: Store) -> None:
    a = store.jobs.enqueue("report", {"run": "r1"}, now=10.0)
    b = store.jobs.enqueue("report", {"run": "r2"}, now=11.0, idempotency_key="k2")
    assert store.jobs.enqueue("report", {"run": "r2"}, now=12.0, idempotency_key="k2") == b
    job = store.jobs.lease(now=20.0, lease_s=30.0)
    assert job is not None and job.id == a and job.payload == {"run": "r1"}
    assert job.state == "leased" and job.attempts == 1 and job.lease_until == 50.0
    job2 = store.jobs.lease(now=20.0, lease_s=30.0)
    assert job2 is not None and job2.id == b
    assert store.jobs.lease(now=20.0, lease_s=30.0) is None  # both leased
    store.jobs.complete(a, now=21.0)
    # b's lease expires: another worker may take it over
    again = store.jobs.lease(now=51.0, lease_s=30.0)
    assert again is not None and again.id == b and again.attempts == 2
    assert store.jobs.counts() == {"done": 1, "leased": 1}


def test_job_fail_backoff_then_park(store: Store) -> None:
    j = store.jobs.enqueue("sync", None, now=0.0)
    assert store.jobs.lease(now=0.0, lease_s=5.0) is not None
    assert store.jobs.fail(j, "HTTP 502", now=1.0, backoff_s=10.0, max_attempts=2) == "queued"
    assert store.jobs.lease(now=5.0, lease_s=5.0) is None  # backing off
    leased = store.jobs.lease(now=11.0, lease_s=5.0)
    assert leased is not None and leased.attempts == 2
    assert store.jobs.fail(j, "HTTP 502", now=12.0, backoff_s=10.0, max_attempts=2) == "parked"
    assert store.jobs.lease(now=100.0, lease_s=5.0) is None
    parked = store.jobs.job(j)
    assert parked is not None and parked.state == "parked" and parked.last_error == "HTTP 502"
    store.jobs.requeue_parked(j, now=200.0)
    assert store.jobs.lease(now=200.0, lease_s=5.0) is not None
    with pytest.raises(StoreError):
        store.jobs.fail(999, "x", now=0.0, backoff_s=1.0)


def test_lease_oldest_due_job_and_park(store: Store) -> None:
    a = store.jobs.enqueue("a", 1, now=0.0, run_after=5.0)
    b = store.jobs.enqueue("b", 2, now=0.0)
    leased = store.jobs.lease(now=1.0, lease_s=1.0)  # a is not due yet
    assert leased is not None and leased.id == b and leased.payload == 2
    store.jobs.park(b, "bad payload", now=1.0)
    assert store.jobs.lease(now=1.5, lease_s=1.0) is None
    assert store.jobs.job(a) is not None
    assert store.jobs.counts() == {"queued": 1, "parked": 1}


def test_runners_tokens_heartbeats(store: Store) -> None:
    store.runners.upsert_runner(
        "gpu-1",
        provider="github",
        labels=["gpu", "x64"],
        profile={"gpus": 1},
        profile_hash="h1",
        now=100.0,
    )
    store.runners.upsert_runner(
        "cpu-1", provider="gitlab", labels=[], profile=None, profile_hash=None, now=100.0
    )
    r = store.runners.runner("gpu-1")
    assert r is not None and r.labels == ("gpu", "x64") and r.profile == {"gpus": 1}
    store.runners.record_heartbeat("gpu-1", now=200.0, load=0.5, busy=True, payload={"x": 1})
    assert store.runners.latest_heartbeat("gpu-1") == (200.0, 0.5, True)
    assert store.runners.mark_stale_runners(now=260.0, offline_after_s=120.0) == ["cpu-1"]
    assert [x.name for x in store.runners.list_runners(status="offline")] == ["cpu-1"]
    store.runners.record_heartbeat("cpu-1", now=300.0)
    assert store.runners.list_runners(status="offline") == []
    store.runners.add_runner_token("gpu-1", "sha256:abc", now=1.0)
    assert store.runners.runner_for_token("sha256:abc") == "gpu-1"
    assert store.runners.revoke_runner_tokens("gpu-1", now=2.0) == 1
    assert store.runners.runner_for_token("sha256:abc") is None


def test_queue_tokens_from_before_run_identities_keep_their_queue(tmp_path: Path) -> None:
    """Schema 4 turns each queue token of schema 3 into a run token bound to its queue's
    repository, expiring a day after it was made."""
    import duckdb

    from ci_app.store.schema import MIGRATIONS

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
        assert store.db.schema_version() == MIGRATIONS[-1][0]  # migrated to the latest
        grant = store.identities.run_grant("sha256:feed", now=2000.0)
        assert grant is not None and grant.identity.run == "old-run"
        assert grant.identity.repo == "octo/a" and grant.expires_at == 1000.0 + 86400
        assert store.identities.run_grant("sha256:feed", now=1000.0 + 86401) is None
        assert store.runners.runner_for_token("sha256:r") == "lab-1"
        # schema 6 dropped the per-test queue nothing used
        tables = {r[0] for r in store.db.all("SELECT table_name FROM information_schema.tables")}
        assert "test_queue" not in tables and "queue_items" in tables
