"""Queue mode: a longest-first pull queue per (pipeline run, pool), with leases.

Runners pull batches instead of receiving a fixed slice, which absorbs run-to-run drift that no
static plan can (real drift: static LPT 1.08x the lower bound, a longest-first queue 1.015x).

* Order: tests without history first (they may be long), then by estimate, longest first.
* Batch size shrinks as the queue drains: ``max(remaining / (tail_divisor * workers),
  min_batch_factor * pull_overhead)`` estimated seconds, so early pulls are few and large and
  the tail is fine-grained, while no batch is so small that the per-pull overhead dominates.
* Leases time out: a runner that dies or is cancelled has its leased, not-yet-reported tests
  re-queued (at their original priority, i.e. near the front). A lease lives
  ``lease_timeout_s`` (30 s) past the runner's last sign of life: any heartbeat or partial
  completion from a runner extends *every* lease it holds (a prefetched batch as well as the one
  running), so a dead runner's tests wait about six missed heartbeats, while a live runner's
  long test is never handed to someone else.
* Completion is idempotent: the first result reported for a test is kept, later ones are
  reported back as duplicates; completing the same lease twice changes nothing.
* The results the queue accepted are the record of the run (:meth:`QueueState.results`): they
  name the runner that reported each one, and :meth:`QueueState.expired_leases` names the
  runners that stopped answering, so a report can recover the tests a killed runner had
  completed and name it as an infrastructure error.

State lives behind :class:`QueueState` so the web app can keep it in DuckDB; time is always
passed in (``now``, seconds), never read here.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from ci_app.errors import CiFanoutError

__all__ = [
    "CompleteResult",
    "Done",
    "ExpiredLease",
    "InMemoryQueue",
    "Lease",
    "LeaseError",
    "LeaseResult",
    "PoolSpec",
    "Progress",
    "QueueConfig",
    "QueueItem",
    "QueueState",
    "TestResult",
    "Wait",
    "batch_target_s",
    "clip_message",
    "queue_order",
]


class LeaseError(CiFanoutError):
    """Unknown run, pool or lease (the message says which)."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One indivisible unit in a queue: a test, or a group that must run in one batch."""

    id: str
    estimate_s: float
    tests: tuple[str, ...] = ()
    unknown: bool = False

    @property
    def test_ids(self) -> tuple[str, ...]:
        return self.tests or (self.id,)


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A pool's queue: its items and how many runners are expected to pull from it."""

    items: tuple[QueueItem, ...]
    workers: int = 1
    #: the pool's runner labels: a runner holding all of them may pull from this pool
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue tuning; defaults suit an in-session HTTP pull (about 0.05 s per pull)."""

    #: a lease expires this long after the runner's last heartbeat (about six missed beats)
    lease_timeout_s: float = 30.0
    #: how often clients are told to heartbeat (``lease`` answers carry it)
    heartbeat_s: float = 5.0
    pull_overhead_s: float = 0.05
    #: no batch smaller than this many times the pull overhead (so overhead stays <= ~20 %)
    min_batch_factor: float = 5.0
    #: a batch is at most remaining / (tail_divisor * workers) estimated seconds
    tail_divisor: float = 2.0
    max_batch_tests: int = 2000
    #: how long a runner that finds nothing pending (but leases outstanding) waits before asking
    wait_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A batch handed to one runner until ``expires_at`` (extended by heartbeats)."""

    lease_id: str
    run: str
    pool: str
    runner: str
    tests: tuple[str, ...]
    expires_at: float
    estimate_s: float
    #: the CI job (matrix shard) the runner pulls for, when it says so
    shard: str | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing pending now, but leases are outstanding and may be re-queued: ask again later."""

    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Done:
    """Every test of the pool has a result."""


LeaseResult = Lease | Wait | Done


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test's outcome as a runner reports it."""

    __test__ = False  # not a pytest test class

    id: str
    outcome: str
    duration_s: float = 0.0
    #: first line(s) of the failure, when the runner sends one
    message: str | None = None
    #: the runner that reported it (filled in by the queue from the lease)
    runner: str | None = None


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A lease whose runner stopped answering: its unreported tests went back to the queue."""

    lease_id: str
    pool: str
    runner: str
    tests: int  # tests it held that had no result when it expired
    shard: str | None = None  # the CI job the runner pulled for, when it said so


@dataclass(frozen=True, slots=True)
class CompleteResult:
    """What a ``complete`` call changed."""

    accepted: tuple[str, ...]
    duplicates: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()  # reported tests that were not in the lease
    missing: tuple[str, ...] = ()  # leased tests without a result in a final completion


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts for dashboards, autoscalers and the CLI."""

    total: int
    pending: int
    leased: int
    completed: int
    requeued: int
    leases: int
    expired: int
    remaining_s: float
    done: bool
    outcomes: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class QueueState(Protocol):
    """Queue-mode state. Implementations: :class:`InMemoryQueue`; the web app's DuckDB one."""

    def create_run(
        self, run: str, pools: Mapping[str, PoolSpec], config: QueueConfig, now: float
    ) -> None: ...

    def lease(
        self, run: str, pool: str, runner: str, now: float, *, shard: str | None = None
    ) -> LeaseResult: ...

    def complete(
        self,
        run: str,
        lease_id: str,
        results: Sequence[TestResult],
        now: float,
        *,
        final: bool = True,
    ) -> CompleteResult: ...

    def heartbeat(self, run: str, lease_id: str, now: float) -> float: ...

    def cancel(self, run: str, lease_id: str, now: float) -> int: ...

    def expire(self, now: float) -> int: ...

    def progress(self, run: str, pool: str | None = None) -> Progress: ...

    def pools(self, run: str) -> Mapping[str, frozenset[str]]: ...

    def results(self, run: str) -> Mapping[str, TestResult]: ...

    def expired_leases(self, run: str) -> Sequence[ExpiredLease]: ...


#: a result's message is the first lines of a failure, not its log
MESSAGE_LIMIT = 2000


def clip_message(message: str | None) -> str | None:
    return None if message is None else message[:MESSAGE_LIMIT]


def queue_order(items: Sequence[QueueItem]) -> list[QueueItem]:
    """Unknown first, then longest first; ties by id for determinism."""
    return sorted(items, key=lambda it: (not it.unknown, -it.estimate_s, it.id))


def batch_target_s(remaining_s: float, workers: int, config: QueueConfig) -> float:
    """Estimated seconds of work to hand out in one pull (see the module docstring)."""
    share = remaining_s / (config.tail_divisor * max(1, workers))
    return max(share, config.min_batch_factor * config.pull_overhead_s)


def max_unknown_per_batch(unknown_pending: int, workers: int, config: QueueConfig) -> int:
    """Tests without history are spread over the first pulls, a few per batch.

    Their estimate (a sibling median) says little: several new, long files in one batch would
    make that runner the last to finish. A batch holding unknown tests holds nothing else.
    """
    return max(1, math.ceil(unknown_pending / (config.tail_divisor * max(1, workers))))


# --------------------------------------------------------------------------------------------
# In-memory implementation


@dataclass(slots=True)
class _OpenLease:
    lease: Lease
    items: list[int]
    expires_at: float


@dataclass(slots=True)
class _PoolQueue:
    labels: frozenset[str]
    items: list[QueueItem]
    workers: int
    heap: list[int]  # item indices; index order == priority order
    queued: list[bool]
    remaining: list[set[str]]  # tests of each item still without a result
    pending_s: float
    pending_unknown: int
    runners: set[str] = field(default_factory=set)
    open: dict[str, _OpenLease] = field(default_factory=dict)
    n_leases: int = 0
    expired: int = 0
    requeued: int = 0


@dataclass(slots=True)
class _Run:
    config: QueueConfig
    pools: dict[str, _PoolQueue]
    results: dict[str, TestResult] = field(default_factory=dict)
    lease_pool: dict[str, str] = field(default_factory=dict)
    expired: list[ExpiredLease] = field(default_factory=list)


class InMemoryQueue:
    """Dict-and-heap implementation of :class:`QueueState` (one process; tests, simulation)."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        #: (run, lease id) -> (items, runner) of closed leases (late completions)
        self._closed: dict[tuple[str, str], tuple[list[int], str]] = {}

    # -- setup --------------------------------------------------------------------------------
    def create_run(
        self, run: str, pools: Mapping[str, PoolSpec], config: QueueConfig, now: float
    ) -> None:
        if run in self._runs:
            raise LeaseError(f"queue run {run!r} already exists")
        qpools: dict[str, _PoolQueue] = {}
        seen: set[str] = set()
        for name, spec in pools.items():
            items = queue_order(spec.items)
            for it in items:
                for t in it.test_ids:
                    if t in seen:
                        raise LeaseError(f"test {t!r} is queued twice in run {run!r}")
                    seen.add(t)
            qpools[name] = _PoolQueue(
                labels=spec.labels,
                items=items,
                workers=max(1, spec.workers),
                heap=list(range(len(items))),  # already a valid heap: sorted ascending
                queued=[True] * len(items),
                remaining=[set(it.test_ids) for it in items],
                pending_s=sum(it.estimate_s for it in items),
                pending_unknown=sum(1 for it in items if it.unknown),
            )
        self._runs[run] = _Run(config=config, pools=qpools)

    def _run(self, run: str) -> _Run:
        r = self._runs.get(run)
        if r is None:
            raise LeaseError(f"no queue run {run!r}; create it first (ci-app plan --mode queue)")
        return r

    def _pool(self, r: _Run, run: str, pool: str) -> _PoolQueue:
        q = r.pools.get(pool)
        if q is None:
            known = ", ".join(sorted(r.pools)) or "none"
            raise LeaseError(f"run {run!r} has no pool {pool!r} (pools: {known})")
        return q

    def pools(self, run: str) -> Mapping[str, frozenset[str]]:
        """Pool keys of a run with their runner labels."""
        return {k: q.labels for k, q in self._run(run).pools.items()}

    # -- leasing --------------------------------------------------------------------------------
    def lease(
        self, run: str, pool: str, runner: str, now: float, *, shard: str | None = None
    ) -> LeaseResult:
        r = self._run(run)
        q = self._pool(r, run, pool)
        self._expire_pool(r, q, now)
        q.runners.add(runner)
        workers = max(q.workers, len(q.runners))
        target = batch_target_s(q.pending_s, workers, r.config)
        unknown_cap = max_unknown_per_batch(q.pending_unknown, workers, r.config)
        taken: list[int] = []
        tests: list[str] = []
        est = 0.0
        unknown_batch = False
        while q.heap and len(tests) < r.config.max_batch_tests:
            idx = q.heap[0]
            if not q.queued[idx] or not q.remaining[idx]:
                heapq.heappop(q.heap)  # stale entry (completed late, or re-queued twice)
                continue
            item = q.items[idx]
            if taken:
                if unknown_batch and (not item.unknown or len(taken) >= unknown_cap):
                    break
                if not unknown_batch and est + item.estimate_s > target and est > 0:
                    break
            else:
                unknown_batch = item.unknown
            heapq.heappop(q.heap)
            self._unqueue(q, idx)
            taken.append(idx)
            tests.extend(t for t in item.test_ids if t in q.remaining[idx])
            est += item.estimate_s
            if est >= target:
                break
        if not taken:
            if q.open:
                soonest = min(o.expires_at for o in q.open.values())
                wait = min(r.config.wait_s, max(0.1, soonest - now))
                return Wait(retry_after_s=wait)
            return Done()
        q.n_leases += 1
        lease_id = f"{run}/{pool}/{q.n_leases}"
        expires = now + r.config.lease_timeout_s
        lease = Lease(lease_id, run, pool, runner, tuple(tests), expires, est, shard)
        q.open[lease_id] = _OpenLease(lease, taken, expires)
        r.lease_pool[lease_id] = pool
        return lease

    def _open(self, r: _Run, run: str, lease_id: str) -> tuple[_PoolQueue, _OpenLease | None]:
        pool = r.lease_pool.get(lease_id)
        if pool is None:
            raise LeaseError(f"run {run!r} never issued lease {lease_id!r}")
        q = r.pools[pool]
        return q, q.open.get(lease_id)

    @staticmethod
    def _unqueue(q: _PoolQueue, idx: int) -> None:
        q.queued[idx] = False
        q.pending_s -= q.items[idx].estimate_s
        q.pending_unknown -= q.items[idx].unknown

    def _requeue(self, q: _PoolQueue, ol: _OpenLease) -> int:
        n = 0
        for idx in ol.items:
            if q.remaining[idx] and not q.queued[idx]:
                q.queued[idx] = True
                heapq.heappush(q.heap, idx)
                q.pending_s += q.items[idx].estimate_s
                q.pending_unknown += q.items[idx].unknown
                n += len(q.remaining[idx])
        q.requeued += n
        return n

    def complete(
        self,
        run: str,
        lease_id: str,
        results: Sequence[TestResult],
        now: float,
        *,
        final: bool = True,
    ) -> CompleteResult:
        r = self._run(run)
        q, ol = self._open(r, run, lease_id)
        leased_tests: set[str] = set()
        owner: dict[str, int] = {}
        items, runner = (
            (ol.items, ol.lease.runner) if ol is not None else self._closed[(run, lease_id)]
        )
        for idx in items:
            for t in q.items[idx].test_ids:
                leased_tests.add(t)
                owner[t] = idx
        accepted: list[str] = []
        duplicates: list[str] = []
        foreign: list[str] = []
        for res in results:
            if res.id not in leased_tests:
                foreign.append(res.id)
                continue
            if res.id in r.results:
                duplicates.append(res.id)
                continue
            r.results[res.id] = replace(res, runner=runner, message=clip_message(res.message))
            accepted.append(res.id)
            idx = owner[res.id]
            rem = q.remaining[idx]
            rem.discard(res.id)
            if not rem and q.queued[idx]:
                self._unqueue(q, idx)  # completed late after being re-queued
        missing: list[str] = []
        if ol is not None:
            if final:
                del q.open[lease_id]
                self._remember_closed(run, lease_id, ol)
                for idx in ol.items:
                    for t in sorted(q.remaining[idx]):
                        missing.append(t)
                        r.results[t] = TestResult(t, "missing", 0.0, runner=runner)
                    q.remaining[idx].clear()
            else:
                self._touch(r, runner, now)
        return CompleteResult(tuple(accepted), tuple(duplicates), tuple(foreign), tuple(missing))

    def heartbeat(self, run: str, lease_id: str, now: float) -> float:
        r = self._run(run)
        q, ol = self._open(r, run, lease_id)
        if ol is None:
            raise LeaseError(
                f"lease {lease_id!r} is closed (completed, cancelled or expired); "
                "its unreported tests were re-queued"
            )
        if ol.expires_at <= now:
            self._expire_pool(r, q, now)
            raise LeaseError(f"lease {lease_id!r} expired; its unreported tests were re-queued")
        self._touch(r, ol.lease.runner, now)
        return ol.expires_at

    @staticmethod
    def _touch(r: _Run, runner: str, now: float) -> None:
        """A sign of life from ``runner``: extend every lease it holds that has not expired
        (a prefetched batch must not expire while the runner works on the current one)."""
        for q in r.pools.values():
            for ol in q.open.values():
                if ol.lease.runner == runner and ol.expires_at > now:
                    ol.expires_at = now + r.config.lease_timeout_s

    def cancel(self, run: str, lease_id: str, now: float) -> int:
        r = self._run(run)
        q, ol = self._open(r, run, lease_id)
        if ol is None:
            return 0
        del q.open[lease_id]
        self._remember_closed(run, lease_id, ol)
        return self._requeue(q, ol)

    def _remember_closed(self, run: str, lease_id: str, ol: _OpenLease) -> None:
        self._closed[(run, lease_id)] = (ol.items, ol.lease.runner)

    def _expire_pool(self, r: _Run, q: _PoolQueue, now: float) -> int:
        dead = [lid for lid, ol in q.open.items() if ol.expires_at <= now]
        for lid in dead:
            ol = q.open.pop(lid)
            self._remember_closed(ol.lease.run, lid, ol)
            q.expired += 1
            n = self._requeue(q, ol)
            r.expired.append(ExpiredLease(lid, ol.lease.pool, ol.lease.runner, n, ol.lease.shard))
        return len(dead)

    def expire(self, now: float) -> int:
        n = 0
        for r in self._runs.values():
            for q in r.pools.values():
                n += self._expire_pool(r, q, now)
        return n

    # -- reporting ----------------------------------------------------------------------------
    def progress(self, run: str, pool: str | None = None) -> Progress:
        r = self._run(run)
        qs = [self._pool(r, run, pool)] if pool is not None else list(r.pools.values())
        total = pending = leased = completed = requeued = leases = expired = 0
        remaining_s = 0.0
        pool_tests: set[str] = set()
        for q in qs:
            for idx, it in enumerate(q.items):
                ids = it.test_ids
                total += len(ids)
                pool_tests.update(ids)
                if q.queued[idx]:
                    pending += len(q.remaining[idx])
            leased += sum(len(q.remaining[i]) for ol in q.open.values() for i in ol.items)
            requeued += q.requeued
            leases += q.n_leases
            expired += q.expired
            remaining_s += max(0.0, q.pending_s)
        outcomes: dict[str, int] = {}
        for t, res in r.results.items():
            if t in pool_tests:
                completed += 1
                outcomes[res.outcome] = outcomes.get(res.outcome, 0) + 1
        return Progress(
            total=total,
            pending=pending,
            leased=leased,
            completed=completed,
            requeued=requeued,
            leases=leases,
            expired=expired,
            remaining_s=remaining_s,
            done=completed == total,
            outcomes=outcomes,
        )

    def results(self, run: str) -> Mapping[str, TestResult]:
        return dict(self._run(run).results)

    def expired_leases(self, run: str) -> Sequence[ExpiredLease]:
        return tuple(sorted(self._run(run).expired, key=lambda e: e.lease_id))
