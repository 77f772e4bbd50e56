"""DuckQueue (the queue in DuckDB) behaves exactly like the planner's InMemoryQueue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.matrix.queue import (
    Done,
    InMemoryQueue,
    Lease,
    LeaseError,
    PoolSpec,
    QueueConfig,
    QueueItem,
    QueueState,
    TestResult,
    Wait,
)
from ci_app.store import Store, open_store

CFG = QueueConfig(lease_timeout_s=60.0, pull_overhead_s=0.05)


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store(":memory:") as s:
        yield s


def ok(tests: tuple[str, ...], message: str | None = None) -> list[TestResult]:
    return [TestResult(t, "passed", 1.0, message) for t in tests]


def test_duck_queue_satisfies_protocol(store: Store) -> None:
    assert isinstance(store.queue, QueueState)


def test_killed_runner_tests_rerun_exactly_once_and_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    items = tuple(QueueItem(f"t{i}", 10.0) for i in range(6))
    with open_store(db) as s:
        q = s.queue
        q.create_run("r", {"cpu": PoolSpec(items, 2)}, CFG, 0.0, token_hash="h", repo="o/r")
        dead = q.lease("r", "cpu", "dies", 0.0)
        alive = q.lease("r", "cpu", "lives", 0.0)
        assert isinstance(dead, Lease) and isinstance(alive, Lease)
        q.complete("r", alive.lease_id, ok(alive.tests), 5.0)
    # the server restarts: leases, results and counters are still there
    with open_store(db) as s:
        q = s.queue
        assert q.token_hash("r") == "h"
        runs = list(alive.tests)
        now = 5.0
        while True:
            got = q.lease("r", "cpu", "lives", now)
            if isinstance(got, Done):
                break
            if isinstance(got, Wait):
                now += 30.0
                continue
            runs.extend(got.tests)
            q.complete("r", got.lease_id, ok(got.tests), now)
        assert sorted(runs) == sorted(i.id for i in items)
        assert set(dead.tests) <= set(runs)
        p = q.progress("r")
        assert p.done and p.expired == 1 and p.requeued == len(dead.tests)
        late = q.complete("r", dead.lease_id, ok(dead.tests), now + 1)
        assert late.accepted == () and set(late.duplicates) == set(dead.tests)


def test_partial_final_and_errors(store: Store) -> None:
    q = store.queue
    q.create_run(
        "r", {"cpu": PoolSpec((QueueItem("g", 4.0, tests=("g1", "g2", "g3")),), 1)}, CFG, 0.0
    )
    got = q.lease("r", "cpu", "x", 0.0)
    assert isinstance(got, Lease) and got.tests == ("g1", "g2", "g3")
    q.complete("r", got.lease_id, ok(("g1",)), 1.0, final=False)
    res = q.complete("r", got.lease_id, [TestResult("zz", "passed"), *ok(("g2",))], 2.0)
    assert res.foreign == ("zz",) and res.missing == ("g3",)
    assert q.progress("r").outcomes == {"passed": 2, "missing": 1}
    assert isinstance(q.lease("r", "cpu", "x", 3.0), Done)
    with pytest.raises(LeaseError, match="no queue run"):
        q.lease("nope", "cpu", "x", 0.0)
    with pytest.raises(LeaseError, match="no pool 'gpu'"):
        q.lease("r", "gpu", "x", 0.0)
    with pytest.raises(LeaseError, match="never issued"):
        q.complete("r", "r/cpu/99", [], 0.0)
    with pytest.raises(LeaseError, match="already exists"):
        q.create_run("r", {}, CFG, 0.0)
    with pytest.raises(LeaseError, match="twice"):
        q.create_run("d", {"p": PoolSpec((QueueItem("a", 1), QueueItem("a", 2)))}, CFG, 0.0)


def test_heartbeat_extends_then_expired_lease_is_requeued(store: Store) -> None:
    q = store.queue
    q.create_run(
        "r", {"cpu": PoolSpec((QueueItem("long", 500.0), QueueItem("s", 1.0)), 1)}, CFG, 0.0
    )
    got = q.lease("r", "cpu", "a", 0.0)
    assert isinstance(got, Lease)
    for t in range(50, 400, 50):
        assert q.heartbeat("r", got.lease_id, float(t)) == t + 60.0
    assert q.expire(399.0) == 0
    assert q.progress("r").leased == len(got.tests)
    assert q.expire(1000.0) == 1
    assert q.progress("r").pending == 2
    with pytest.raises(LeaseError, match="closed"):
        q.heartbeat("r", got.lease_id, 1001.0)
    assert q.pool_depths() == {"cpu": 2}


def test_runner_wide_heartbeat_and_the_record_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    cfg = QueueConfig(lease_timeout_s=10.0, pull_overhead_s=0.05)
    items = tuple(QueueItem(f"t{i}", 5.0) for i in range(8))
    with open_store(db) as s:
        q = s.queue
        q.create_run("r", {"cpu": PoolSpec(items, 2)}, cfg, 0.0)
        running = q.lease("r", "cpu", "a", 0.0)
        prefetched = q.lease("r", "cpu", "a", 1.0)
        other = q.lease("r", "cpu", "b", 1.0)
        assert all(isinstance(x, Lease) for x in (running, prefetched, other))
        assert isinstance(running, Lease) and isinstance(prefetched, Lease)
        for t in range(5, 60, 5):
            q.heartbeat("r", running.lease_id, float(t))
        assert q.expire(60.0) == 1  # b never beat; a's prefetched lease is alive
        q.complete("r", running.lease_id, [TestResult(running.tests[0], "failed", 2.0, "boom")], 61)
    with open_store(db) as s:
        q = s.queue
        rec = q.results("r")[running.tests[0]]
        assert (rec.outcome, rec.message, rec.runner) == ("failed", "boom", "a")
        (dead,) = q.expired_leases("r")
        assert isinstance(other, Lease) and (dead.runner, dead.tests) == ("b", len(other.tests))
        assert q.progress("r").leased == len(prefetched.tests)


def test_a_big_completion_is_stored_in_bulk(store: Store) -> None:
    """64k tests in one queue and a 2,000-test completion (the per-row path took seconds)."""
    items = tuple(QueueItem(f"t{i}", 0.001) for i in range(64_000))
    q = store.queue
    q.create_run("r", {"cpu": PoolSpec(items, 1)}, QueueConfig(max_batch_tests=2000), 0.0)
    got = q.lease("r", "cpu", "a", 0.0)
    assert isinstance(got, Lease) and len(got.tests) == 2000
    res = q.complete("r", got.lease_id, ok(got.tests), 1.0)
    assert len(res.accepted) == 2000 and res.missing == ()
    p = q.progress("r")
    assert p.completed == 2000 and p.pending == 62_000 and p.leased == 0


def test_runs_served_together_stay_right_when_the_kept_items_are_evicted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The items' tests kept in memory are a cache: with room for one pool only, two runs
    served in turn reload them on every call and answer as with room for both."""
    import ci_app.store.queue_kept as queue_kept

    monkeypatch.setattr(queue_kept, "CACHED_TESTS", 1)
    q = store.queue
    for run in ("a", "b"):
        group = QueueItem(f"{run}-g", 9.0, tests=(f"{run}1", f"{run}2", f"{run}3"))
        single = QueueItem(f"{run}-s", 1.0)
        q.create_run(run, {"cpu": PoolSpec((group, single), 1)}, CFG, 0.0)
    la, lb = q.lease("a", "cpu", "x", 0.0), q.lease("b", "cpu", "y", 0.0)
    assert isinstance(la, Lease) and isinstance(lb, Lease)
    assert la.tests == ("a1", "a2", "a3") and lb.tests == ("b1", "b2", "b3")
    # a test of the other run is foreign; a result sent twice is a duplicate
    res = q.complete("a", la.lease_id, [*ok(("a1", "b1")), *ok(("a1",))], 1.0, final=False)
    assert (res.accepted, res.foreign, res.duplicates) == (("a1",), ("b1",), ("a1",))
    assert q.complete("b", lb.lease_id, ok(("b2",)), 1.0, final=False).accepted == ("b2",)
    assert q.cancel("a", la.lease_id, 2.0) == 2  # a2, a3 go back; a1 has its result
    again = q.lease("a", "cpu", "z", 3.0)
    assert isinstance(again, Lease) and again.tests == ("a2", "a3")
    late = q.complete("a", la.lease_id, ok(("a2",)), 4.0)  # the cancelled lease, late
    assert late.accepted == ("a2",) and late.missing == ()
    final = q.complete("a", again.lease_id, ok(("a2",)), 5.0)
    assert final.duplicates == ("a2",) and final.missing == ("a3",)
    assert q.complete("b", lb.lease_id, ok(("b1", "b3")), 5.0).accepted == ("b1", "b3")
    assert q.progress("a").outcomes == {"passed": 2, "missing": 1}
    assert q.progress("b").outcomes == {"passed": 3}
    assert len(q.kept) == 1  # the other run's pool was evicted on each switch


# -- differential test: random operation sequences give identical answers -----------------------

_item = st.tuples(
    st.floats(min_value=0.01, max_value=50.0, allow_nan=False), st.booleans(), st.integers(1, 3)
)
_op = st.tuples(
    st.sampled_from(["lease", "complete", "partial", "cancel", "heartbeat", "expire", "late"]),
    st.integers(0, 3),  # runner / lease pick
    st.floats(min_value=0.0, max_value=40.0, allow_nan=False),  # time step
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(_item, min_size=1, max_size=25),
    workers=st.integers(1, 4),
    ops=st.lists(_op, max_size=40),
)
def test_duck_queue_matches_in_memory(
    items: list[tuple[float, bool, int]], workers: int, ops: list[tuple[str, int, float]]
) -> None:
    qitems = []
    for i, (est, unknown, n) in enumerate(items):
        tests = tuple(f"t{i}.{k}" for k in range(n)) if n > 1 else ()
        qitems.append(QueueItem(f"t{i}", round(est, 3), tests=tests, unknown=unknown))
    spec = {"cpu": PoolSpec(tuple(qitems), workers, frozenset({"x64"}))}
    mem = InMemoryQueue()
    with open_store(":memory:") as s:
        duck = s.queue
        queues: list[QueueState] = [mem, duck]
        for q in queues:
            q.create_run("r", spec, CFG, 0.0)
        assert mem.pools("r") == duck.pools("r")
        now = 0.0
        leases: list[Lease] = []
        for name, pick, step in ops:
            now += step

            def call(q: QueueState, name: str = name, pick: int = pick, now: float = now) -> object:
                try:
                    if name == "lease":
                        return q.lease("r", "cpu", f"w{pick}", now)
                    if name == "expire":
                        return q.expire(now)
                    if not leases:
                        return None
                    lease = leases[pick % len(leases)]
                    if name in ("complete", "late"):
                        return q.complete("r", lease.lease_id, ok(lease.tests), now)
                    if name == "partial":
                        return q.complete(
                            "r", lease.lease_id, ok(lease.tests[:1], "m"), now, final=False
                        )
                    if name == "cancel":
                        return q.cancel("r", lease.lease_id, now)
                    return q.heartbeat("r", lease.lease_id, now)
                except LeaseError as exc:
                    return ("LeaseError", str(exc))

            a, b = call(mem), call(duck)
            if isinstance(a, Lease) and isinstance(b, Lease):
                assert (a.lease_id, a.tests, a.expires_at) == (b.lease_id, b.tests, b.expires_at)
                assert a.estimate_s == pytest.approx(b.estimate_s)
                leases.append(a)
            elif isinstance(a, Wait) and isinstance(b, Wait):
                assert a.retry_after_s == pytest.approx(b.retry_after_s)
            else:
                assert a == b, (name, a, b)
            pa_, pb = mem.progress("r"), duck.progress("r")
            assert (
                pa_.total,
                pa_.pending,
                pa_.leased,
                pa_.completed,
                pa_.requeued,
                pa_.leases,
                pa_.expired,
                pa_.done,
                dict(pa_.outcomes),
            ) == (
                pb.total,
                pb.pending,
                pb.leased,
                pb.completed,
                pb.requeued,
                pb.leases,
                pb.expired,
                pb.done,
                dict(pb.outcomes),
            )
            assert pa_.remaining_s == pytest.approx(pb.remaining_s, abs=1e-6)
        assert dict(mem.results("r")) == dict(duck.results("r"))
        assert mem.expired_leases("r") == duck.expired_leases("r")
