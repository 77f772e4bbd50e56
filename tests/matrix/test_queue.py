from __future__ import annotations

import json
from collections import Counter

import pytest

from ci_app.matrix.durations import DurationHistory
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
    batch_target_s,
)
from ci_app.matrix.sharding import partition
from ci_app.matrix.simulate import add_noise, simulate_queue, simulate_static

from .conftest import DURATIONS, load_durations

CFG = QueueConfig(lease_timeout_s=60.0, pull_overhead_s=0.05)


def make(items: list[QueueItem], workers: int = 2, cfg: QueueConfig = CFG) -> InMemoryQueue:
    q = InMemoryQueue()
    q.create_run("r", {"cpu": PoolSpec(tuple(items), workers)}, cfg, 0.0)
    return q


def lease(q: InMemoryQueue, runner: str, now: float = 0.0) -> Lease:
    got = q.lease("r", "cpu", runner, now)
    assert isinstance(got, Lease)
    return got


def ok(tests: tuple[str, ...]) -> list[TestResult]:
    return [TestResult(t, "passed", 1.0) for t in tests]


def test_in_memory_queue_satisfies_protocol() -> None:
    assert isinstance(InMemoryQueue(), QueueState)


def test_unknown_first_then_longest_first_and_batches_shrink() -> None:
    items = [QueueItem(f"t{i}", float(i)) for i in range(1, 41)]
    items.append(QueueItem("new", 0.5, unknown=True))
    q = make(items, workers=2)
    first = lease(q, "a")
    assert first.tests == ("new",)  # unknown tests run first, alone in their batch
    second = lease(q, "a")
    assert second.tests[0] == "t40"
    sizes = []
    while True:
        got = q.lease("r", "cpu", "a", 1.0)
        if not isinstance(got, Lease):
            break
        sizes.append(got.estimate_s)
    assert sizes[0] > sizes[-1]
    # every batch but the first holds at most the target computed before it was cut
    assert max(sizes[1:]) <= batch_target_s(820.0 - 40 - sizes[0], 2, CFG) + 40


def test_unknown_tests_are_spread_over_batches() -> None:
    items = [QueueItem(f"n{i}", 0.01, unknown=True) for i in range(12)]
    items += [QueueItem(f"k{i}", 5.0) for i in range(20)]
    q = make(items, workers=3)
    batches = [lease(q, f"r{i}").tests for i in range(6)]
    unknown_batches = [b for b in batches if b[0].startswith("n")]
    assert len(unknown_batches) >= 4  # 12 unknown tests, at most ceil(12/(2*3)) = 2 per batch
    assert all(all(t.startswith("n") for t in b) for b in unknown_batches)


def test_killed_shard_tests_rerun_exactly_once() -> None:
    items = [QueueItem(f"t{i}", 10.0) for i in range(6)]
    q = make(items, workers=2)
    dead = lease(q, "dies", 0.0)
    alive = lease(q, "lives", 0.0)
    q.complete("r", alive.lease_id, ok(alive.tests), 5.0)
    runs: Counter[str] = Counter(alive.tests)
    now = 5.0
    while True:
        got = q.lease("r", "cpu", "lives", now)
        if isinstance(got, Done):
            break
        if isinstance(got, Wait):
            now += 30.0  # the dead runner's lease is still open: wait for it to expire
            continue
        runs.update(got.tests)
        q.complete("r", got.lease_id, ok(got.tests), now)
    assert set(dead.tests) <= set(runs)
    assert all(c == 1 for c in runs.values()), runs
    assert sorted(q.results("r")) == sorted(i.id for i in items)
    p = q.progress("r")
    assert p.done and p.expired == 1 and p.requeued == len(dead.tests)
    # the dead runner comes back late: its results are not counted twice
    late = q.complete("r", dead.lease_id, ok(dead.tests), now + 1)
    assert late.accepted == () and set(late.duplicates) == set(dead.tests)


def test_heartbeat_keeps_a_long_lease_alive() -> None:
    q = make([QueueItem("long", 500.0), QueueItem("short", 1.0)], workers=1)
    got = lease(q, "a", 0.0)
    for t in range(50, 400, 50):
        assert q.heartbeat("r", got.lease_id, float(t)) == t + 60.0
    assert q.expire(399.0) == 0
    assert q.progress("r").leased == len(got.tests)
    assert q.expire(1000.0) == 1
    with pytest.raises(LeaseError, match="closed"):
        q.heartbeat("r", got.lease_id, 1001.0)


def test_cancel_requeues_and_completion_is_idempotent() -> None:
    q = make([QueueItem("a", 3.0), QueueItem("b", 2.0)], workers=1)
    got = lease(q, "x")
    assert q.cancel("r", got.lease_id, 1.0) == len(got.tests)
    again = lease(q, "y", 2.0)
    assert set(again.tests) == set(got.tests)
    first = q.complete("r", again.lease_id, ok(again.tests), 3.0)
    second = q.complete("r", again.lease_id, ok(again.tests), 4.0)
    assert set(first.accepted) == set(again.tests)
    assert second.accepted == () and set(second.duplicates) == set(again.tests)


def test_partial_and_final_completion() -> None:
    q = make([QueueItem("g", 4.0, tests=("g1", "g2", "g3"))], workers=1)
    got = lease(q, "x")
    assert got.tests == ("g1", "g2", "g3")  # a group is leased whole
    q.complete("r", got.lease_id, ok(("g1",)), 1.0, final=False)
    res = q.complete("r", got.lease_id, [TestResult("zz", "passed"), *ok(("g2",))], 2.0)
    assert res.foreign == ("zz",) and res.missing == ("g3",)
    assert q.progress("r").outcomes == {"passed": 2, "missing": 1}
    assert isinstance(q.lease("r", "cpu", "x", 3.0), Done)


def test_errors_name_what_is_wrong() -> None:
    q = make([QueueItem("a", 1.0)])
    with pytest.raises(LeaseError, match="no queue run"):
        q.lease("nope", "cpu", "x", 0.0)
    with pytest.raises(LeaseError, match="no pool 'gpu'"):
        q.lease("r", "gpu", "x", 0.0)
    with pytest.raises(LeaseError, match="never issued"):
        q.complete("r", "r/cpu/99", [], 0.0)
    with pytest.raises(LeaseError, match="twice"):
        InMemoryQueue().create_run(
            "d", {"p": PoolSpec((QueueItem("a", 1), QueueItem("a", 2)))}, CFG, 0.0
        )


def _drift_case() -> tuple[list[str], dict[str, float], dict[str, float]]:
    doc = json.loads((DURATIONS / "conda-linux-pair.json").read_text())
    hist, actual = (v["durations"] for v in doc["versions"])
    return sorted(actual), hist, actual


def test_queue_absorbs_real_drift_better_than_static() -> None:
    tests, hist, actual = _drift_case()
    est = DurationHistory.single(hist).estimate(tests)
    assert est.unknown  # this pair adds new tests
    items = [QueueItem(t, est.seconds[t], unknown=t in est.unknown) for t in tests]
    static, queue = [], []
    for k in (4, 8, 16):
        members, _ = partition(tests, [est.seconds[t] for t in tests], k)
        static.append(simulate_static([[tests[i] for i in m] for m in members], actual).ratio)
        queue.append(simulate_queue(items, actual, k, QueueConfig(pull_overhead_s=0.05)).ratio)
    assert max(queue) <= 1.03
    assert sum(queue) < sum(static)


def test_queue_absorbs_noise() -> None:
    d = load_durations("pgmpy.json")
    tests = sorted(d)
    items = [QueueItem(t, d[t]) for t in tests]
    for seed in range(3):
        actual = add_noise(d, 0.3, seed)
        r = simulate_queue(items, actual, 2, QueueConfig(pull_overhead_s=0.05))
        assert r.ratio <= 1.06
        assert r.pulls < len(tests) / 2  # batched, not one pull per test


# -- leases live as long as their runner answers (issue 13, item 2) ----------------------------


def test_default_lease_outlives_a_few_missed_heartbeats_not_ten_minutes() -> None:
    cfg = QueueConfig()
    assert cfg.lease_timeout_s == 30.0 and cfg.heartbeat_s == 5.0
    q = make([QueueItem("a", 1.0), QueueItem("b", 1.0)], workers=1, cfg=cfg)
    got = lease(q, "dies", 0.0)
    assert q.expire(29.0) == 0
    assert q.expire(31.0) == 1  # a dead runner's tests go back after ~6 missed beats
    again = lease(q, "lives", 31.0)
    assert set(again.tests) == set(got.tests)


def test_heartbeat_extends_every_lease_the_runner_holds() -> None:
    """A prefetched batch must not expire while its runner works on a long last test."""
    cfg = QueueConfig(lease_timeout_s=10.0, pull_overhead_s=0.05)
    items = [QueueItem(f"t{i}", 5.0) for i in range(8)]
    q = make(items, workers=2, cfg=cfg)
    running = lease(q, "a", 0.0)
    prefetched = lease(q, "a", 1.0)
    other = lease(q, "b", 1.0)
    for t in range(5, 60, 5):  # heartbeats name the running lease only
        q.heartbeat("r", running.lease_id, float(t))
    assert q.expire(60.0) == 1  # only b's lease, whose runner never beat
    assert q.progress("r").leased == len(running.tests) + len(prefetched.tests)
    # the prefetched lease is alive: nobody else is handed its tests
    taken = lease(q, "b", 60.0)
    assert not set(taken.tests) & set(prefetched.tests)
    assert set(taken.tests) <= set(other.tests) | {i.id for i in items}
    q.complete("r", prefetched.lease_id, ok(prefetched.tests), 61.0)
    assert [e.runner for e in q.expired_leases("r")] == ["b"]


def test_a_partial_completion_is_a_sign_of_life_for_all_leases() -> None:
    cfg = QueueConfig(lease_timeout_s=10.0, pull_overhead_s=0.05)
    q = make([QueueItem(f"t{i}", 5.0) for i in range(8)], workers=2, cfg=cfg)
    first = lease(q, "a", 0.0)
    second = lease(q, "a", 0.0)
    q.complete("r", first.lease_id, ok(first.tests[:1]), 8.0, final=False)
    assert q.expire(15.0) == 0
    assert q.expire(18.0) == 2
    assert {e.lease_id for e in q.expired_leases("r")} == {first.lease_id, second.lease_id}


def test_an_expired_lease_is_not_revived_by_a_later_beat() -> None:
    cfg = QueueConfig(lease_timeout_s=10.0, pull_overhead_s=0.05)
    q = make([QueueItem(f"t{i}", 5.0) for i in range(8)], workers=2, cfg=cfg)
    old = lease(q, "a", 0.0)
    new = lease(q, "a", 11.0)  # old expired at 10 (nobody has expired it yet)
    q.heartbeat("r", new.lease_id, 12.0)
    with pytest.raises(LeaseError, match=r"expired|closed"):
        q.heartbeat("r", old.lease_id, 12.5)


def test_the_record_names_who_reported_what() -> None:
    q = make([QueueItem("a", 2.0), QueueItem("b", 1.0)], workers=2)
    la = lease(q, "w1", 0.0)
    q.complete("r", la.lease_id, [TestResult(la.tests[0], "failed", 1.5, "assert 1 == 2")], 1.0)
    rec = q.results("r")[la.tests[0]]
    assert (rec.outcome, rec.message, rec.runner) == ("failed", "assert 1 == 2", "w1")
    long = "x" * 10_000
    lb = lease(q, "w2", 2.0)
    q.complete("r", lb.lease_id, [TestResult(lb.tests[0], "error", 0.0, long)], 3.0)
    assert len(q.results("r")[lb.tests[0]].message or "") == 2000


# -- the HTTP contract ----------------------------------------------------------------------


def test_complete_returns_the_next_lease_in_the_same_round_trip() -> None:
    from ci_app.matrix import queue_api

    q = make([QueueItem(f"t{i}", 1.0) for i in range(6)], workers=2)
    first = queue_api.handle_lease(q, "r", {"runner": "a", "pool": "cpu"}, 0.0)
    body = {
        "lease_id": first["lease_id"],
        "results": [{"id": first["tests"][0], "outcome": "passed", "duration_s": 0.5}],
        "final": False,
        "next": {"runner": "a", "pool": "cpu"},
    }
    answer = queue_api.handle_complete(q, "r", body, 1.0)
    assert answer["accepted"] == 1
    nxt = answer["next"]
    assert nxt["lease_id"] != first["lease_id"] and nxt["tests"]
    assert not set(nxt["tests"]) & set(first["tests"])
    assert q.progress("r").leased == len(first["tests"]) - 1 + len(nxt["tests"])


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"id": "t0", "duration_s": "abc"}, "number of seconds"),
        ({"id": "t0", "duration_s": float("nan")}, "finite"),
        ({"id": "t0", "duration_s": -1}, "finite"),
        ({"id": "t0", "duration_s": True}, "number of seconds"),
        ({"id": "t0", "outcome": "exploded"}, "outcome must be one of"),
        ({"id": 7}, "non-empty string 'id'"),
        ({"id": "t0", "message": ["no"]}, "'message' must be a string"),
    ],
)
def test_bad_results_are_input_errors(result: dict[str, object], error: str) -> None:
    from ci_app.errors import InputError
    from ci_app.matrix import queue_api

    q = make([QueueItem("t0", 1.0)], workers=1)
    got = lease(q, "a")
    with pytest.raises(InputError, match=error):
        queue_api.handle_complete(q, "r", {"lease_id": got.lease_id, "results": [result]}, 1.0)
    assert q.results("r") == {}  # nothing half-stored


def test_the_record_round_trips_through_json() -> None:
    from ci_app.matrix import queue_api

    cfg = QueueConfig(lease_timeout_s=5.0)
    q = make([QueueItem(f"t{i}", 1.0) for i in range(4)], workers=2, cfg=cfg)
    dead = lease(q, "dies", 0.0)
    alive = lease(q, "lives", 0.0)
    q.complete("r", alive.lease_id, [TestResult(alive.tests[0], "failed", 0.2, "boom")], 1.0)
    q.expire(10.0)
    doc = json.loads(json.dumps(queue_api.handle_results(q, "r")))
    results, expired = queue_api.parse_record(doc)
    assert [(r.id, r.outcome, r.message, r.runner) for r in results if r.outcome != "missing"] == [
        (alive.tests[0], "failed", "boom", "lives")
    ]
    assert [(e.runner, e.tests) for e in expired] == [("dies", len(dead.tests))]
    from ci_app.errors import InputError

    with pytest.raises(InputError, match="not a queue record"):
        queue_api.parse_record({"results": "nope"})


def test_a_class_travels_in_one_batch_unless_it_is_long() -> None:
    """Queue items keep a class's tests together (its setup_class runs once, as in a static
    slice); a class longer than the cap is cut into several items; plain tests stay alone."""
    from ci_app.matrix.planner import class_items, test_class
    from ci_app.matrix.sharding import Unit

    assert test_class("t.py::TestA::test_x[a::b]") == "t.py::TestA"
    assert test_class("t.py::test_x[a::b]") is None
    ids = [f"t.py::TestA::test_{i}" for i in range(4)] + ["t.py::test_free"]
    ids += [f"t.py::TestB::test_{i}[p]" for i in range(6)]
    units = [Unit(t, (t,), 1.0) for t in ids]
    items = class_items(units, cap_s=4.0)
    assert [len(it.test_ids) for it in items] == [4, 1, 4, 2]
    assert items[0].test_ids == tuple(ids[:4]) and items[0].estimate_s == 4.0
    assert items[1].test_ids == ("t.py::test_free",)
    assert {t for it in items for t in it.test_ids} == set(ids)
