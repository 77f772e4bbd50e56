"""The planner's :class:`~ci_app.matrix.queue.QueueState` kept in DuckDB (queue mode over HTTP).

Same semantics as :class:`~ci_app.matrix.queue.InMemoryQueue` (its tests are run against this
class too): items stored in :func:`~ci_app.matrix.queue.queue_order` order (``idx``), so "the
front of the queue" is the smallest queued ``idx``; batch sizes come from the same pure
:func:`~ci_app.matrix.queue.batch_target_s` / ``max_unknown_per_batch``. Every operation is one
transaction, so a server restart (or ``kill -9``) loses no lease, result or re-queue.

Who may use a run's queue is decided by its run tokens (:mod:`ci_app.store.tokens`, bound to
the run's identity); ``queue_runs.token_hash`` only holds the hash of queues created before
those existed (schema 4 turned them into run tokens).

Bulk paths are columnar: a run's items and a completion's results go in as one Arrow table each
(``INSERT ... SELECT``), the per-item counters change in one ``UPDATE ... FROM``; a completion of
2,000 tests is a handful of statements, not 4,000 (``executemany`` costs about a millisecond a
row in DuckDB).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from ci_app.matrix.queue import (
    CompleteResult,
    Done,
    ExpiredLease,
    Lease,
    LeaseError,
    LeaseResult,
    PoolSpec,
    Progress,
    QueueConfig,
    TestResult,
    Wait,
    batch_target_s,
    clip_message,
    max_unknown_per_batch,
    queue_order,
)
from ci_app.matrix.record import RECOVERED_SHARD, dead_runners, recovered_results
from ci_app.model.results import ResultSet, RunInfo
from ci_app.store.db import Store, _one

__all__ = ["DuckQueue", "mark_interrupted", "merge_record"]

_ITEM_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("pool", pa.string()),
        ("idx", pa.int32()),
        ("item_id", pa.string()),
        ("estimate_s", pa.float64()),
        ("unknown", pa.bool_()),
        ("tests", pa.list_(pa.string())),
        ("queued", pa.bool_()),
        ("remaining", pa.int32()),
    ]
)
_RESULT_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("test_id", pa.string()),
        ("pool", pa.string()),
        ("item_idx", pa.int32()),
        ("outcome", pa.string()),
        ("duration_s", pa.float64()),
        ("runner", pa.string()),
        ("message", pa.string()),
    ]
)


def _insert(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """Append an Arrow table whose columns are named like the table's."""
    name = f"_bulk_{table}"
    con.register(name, data)
    try:
        cols = ", ".join(data.schema.names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")  # noqa: S608
    finally:
        con.unregister(name)


class DuckQueue:
    """DuckDB implementation of :class:`~ci_app.matrix.queue.QueueState`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- setup ----------------------------------------------------------------------------
    def create_run(
        self,
        run: str,
        pools: Mapping[str, PoolSpec],
        config: QueueConfig,
        now: float,
        *,
        token_hash: str | None = None,
        repo: str | None = None,
    ) -> None:
        seen: set[str] = set()
        cols: dict[str, list[Any]] = {f: [] for f in _ITEM_SCHEMA.names}
        for name, spec in pools.items():
            for idx, it in enumerate(queue_order(spec.items)):
                tests = it.test_ids
                for t in tests:
                    if t in seen:
                        raise LeaseError(f"test {t!r} is queued twice in run {run!r}")
                    seen.add(t)
                cols["pool"].append(name)
                cols["idx"].append(idx)
                cols["item_id"].append(it.id)
                cols["estimate_s"].append(float(it.estimate_s))
                cols["unknown"].append(it.unknown)
                cols["tests"].append(list(tests))
                cols["remaining"].append(len(tests))
        n = len(cols["idx"])
        cols["run"] = [run] * n
        cols["queued"] = [True] * n
        items = pa.table(cols, schema=_ITEM_SCHEMA)
        with self.store._tx() as con:
            if _one(con, "SELECT 1 FROM queue_runs WHERE run = ?", [run]) is not None:
                raise LeaseError(f"queue run {run!r} already exists")
            con.execute(
                "INSERT INTO queue_runs VALUES (?, ?, ?, ?, ?)",
                [run, json.dumps(dataclasses.asdict(config)), token_hash, repo, now],
            )
            for name, spec in pools.items():
                con.execute(
                    "INSERT INTO queue_pools (run, pool, labels, workers, runners) "
                    "VALUES (?, ?, ?, ?, [])",
                    [run, name, sorted(spec.labels), max(1, spec.workers)],
                )
            if n:
                _insert(con, "queue_items", items)

    def token_hash(self, run: str) -> str | None:
        with self.store._lock:
            row = _one(self.store._con, "SELECT token_hash FROM queue_runs WHERE run = ?", [run])
        if row is None:
            raise LeaseError(f"no queue run {run!r}; create it first (ci-app plan --mode queue)")
        return None if row[0] is None else str(row[0])

    def runs(self, limit: int = 50) -> list[tuple[str, str | None, float]]:
        """Newest queue runs: (run, repo, created_at)."""
        with self.store._lock:
            rows = self.store._con.execute(
                "SELECT run, repo, created_at FROM queue_runs ORDER BY created_at DESC LIMIT ?",
                [limit],
            ).fetchall()
        return [(str(r[0]), r[1], float(r[2])) for r in rows]

    def has_run(self, run: str) -> bool:
        with self.store._lock:
            return (
                _one(self.store._con, "SELECT 1 FROM queue_runs WHERE run = ?", [run]) is not None
            )

    @staticmethod
    def _config(con: duckdb.DuckDBPyConnection, run: str) -> QueueConfig:
        row = _one(con, "SELECT config FROM queue_runs WHERE run = ?", [run])
        if row is None:
            raise LeaseError(f"no queue run {run!r}; create it first (ci-app plan --mode queue)")
        return QueueConfig(**json.loads(row[0]))

    @staticmethod
    def _pool_row(con: duckdb.DuckDBPyConnection, run: str, pool: str) -> tuple[Any, ...]:
        row = _one(
            con,
            "SELECT workers, runners FROM queue_pools WHERE run = ? AND pool = ?",
            [run, pool],
        )
        if row is None:
            known = [
                r[0]
                for r in con.execute(
                    "SELECT pool FROM queue_pools WHERE run = ? ORDER BY pool", [run]
                ).fetchall()
            ]
            raise LeaseError(
                f"run {run!r} has no pool {pool!r} (pools: {', '.join(known) or 'none'})"
            )
        return tuple(row)

    def pools(self, run: str) -> Mapping[str, frozenset[str]]:
        with self.store._lock:
            self._config(self.store._con, run)
            rows = self.store._con.execute(
                "SELECT pool, labels FROM queue_pools WHERE run = ?", [run]
            ).fetchall()
        return {str(p): frozenset(labels or ()) for p, labels in rows}

    # -- leasing ----------------------------------------------------------------------------
    def lease(
        self, run: str, pool: str, runner: str, now: float, *, shard: str | None = None
    ) -> LeaseResult:
        with self.store._tx() as con:
            config = self._config(con, run)
            workers, runners = self._pool_row(con, run, pool)
            self._expire(con, now, run=run, pool=pool)
            if runner not in (runners or []):
                con.execute(
                    "UPDATE queue_pools SET runners = list_append(runners, ?) "
                    "WHERE run = ? AND pool = ?",
                    [runner, run, pool],
                )
                runners = [*(runners or []), runner]
            n_workers = max(int(workers), len(runners))
            agg = _one(
                con,
                "SELECT coalesce(sum(estimate_s), 0), count(*) FILTER (WHERE unknown) "
                "FROM queue_items WHERE run = ? AND pool = ? AND queued",
                [run, pool],
            )
            pending_s, pending_unknown = float(agg[0]), int(agg[1])
            target = batch_target_s(pending_s, n_workers, config)
            unknown_cap = max_unknown_per_batch(pending_unknown, n_workers, config)
            candidates = con.execute(
                "SELECT idx, estimate_s, unknown FROM queue_items "
                "WHERE run = ? AND pool = ? AND queued AND remaining > 0 ORDER BY idx LIMIT ?",
                [run, pool, config.max_batch_tests],
            ).fetchall()
            taken: list[int] = []
            est = 0.0
            n_tests = 0
            unknown_batch = False
            counts = self._remaining_counts(con, run, pool, [int(c[0]) for c in candidates])
            for idx, estimate, unknown in candidates:
                if n_tests >= config.max_batch_tests:
                    break
                if taken:
                    if unknown_batch and (not unknown or len(taken) >= unknown_cap):
                        break
                    if not unknown_batch and est + estimate > target and est > 0:
                        break
                else:
                    unknown_batch = bool(unknown)
                taken.append(int(idx))
                n_tests += counts.get(int(idx), 0)
                est += float(estimate)
                if est >= target:
                    break
            if not taken:
                open_row = _one(
                    con,
                    "SELECT min(expires_at) FROM queue_leases WHERE run = ? AND pool = ? AND open",
                    [run, pool],
                )
                if open_row is not None and open_row[0] is not None:
                    wait = min(config.wait_s, max(0.1, float(open_row[0]) - now))
                    return Wait(retry_after_s=wait)
                return Done()
            tests = self._remaining_tests(con, run, pool, taken)
            con.execute(
                "UPDATE queue_items SET queued = false WHERE run = ? AND pool = ? "
                "AND idx IN (SELECT unnest(?))",
                [run, pool, taken],
            )
            row = _one(
                con,
                "UPDATE queue_pools SET n_leases = n_leases + 1 WHERE run = ? AND pool = ? "
                "RETURNING n_leases",
                [run, pool],
            )
            lease_id = f"{run}/{pool}/{int(row[0])}"
            expires = now + config.lease_timeout_s
            con.execute(
                "INSERT INTO queue_leases "
                "(run, lease_id, pool, runner, items, expires_at, estimate_s, open, shard) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, true, ?)",
                [run, lease_id, pool, runner, taken, expires, est, shard],
            )
            return Lease(lease_id, run, pool, runner, tuple(tests), expires, est, shard)

    @staticmethod
    def _remaining_counts(
        con: duckdb.DuckDBPyConnection, run: str, pool: str, idxs: Sequence[int]
    ) -> dict[int, int]:
        if not idxs:
            return {}
        rows = con.execute(
            "SELECT idx, remaining FROM queue_items WHERE run = ? AND pool = ? "
            "AND idx IN (SELECT unnest(?))",
            [run, pool, list(idxs)],
        ).fetchall()
        return {int(i): int(n) for i, n in rows}

    @staticmethod
    def _remaining_tests(
        con: duckdb.DuckDBPyConnection, run: str, pool: str, idxs: Sequence[int]
    ) -> list[str]:
        """Tests of the items (in priority order) that have no result yet."""
        rows = con.execute(
            "SELECT i.idx, i.tests FROM queue_items i WHERE i.run = ? AND i.pool = ? "
            "AND i.idx IN (SELECT unnest(?)) ORDER BY i.idx",
            [run, pool, list(idxs)],
        ).fetchall()
        done = {
            r[0]
            for r in con.execute(
                "SELECT test_id FROM queue_results WHERE run = ? AND pool = ? "
                "AND item_idx IN (SELECT unnest(?))",
                [run, pool, list(idxs)],
            ).fetchall()
        }
        return [t for _, tests in rows for t in tests if t not in done]

    def _lease_row(
        self, con: duckdb.DuckDBPyConnection, run: str, lease_id: str
    ) -> tuple[str, list[int], float, bool, str]:
        self._config(con, run)
        row = _one(
            con,
            "SELECT pool, items, expires_at, open, runner FROM queue_leases "
            "WHERE run = ? AND lease_id = ?",
            [run, lease_id],
        )
        if row is None:
            raise LeaseError(f"run {run!r} never issued lease {lease_id!r}")
        return str(row[0]), [int(i) for i in row[1]], float(row[2]), bool(row[3]), str(row[4])

    @staticmethod
    def _touch(
        con: duckdb.DuckDBPyConnection, run: str, runner: str, now: float, timeout: float
    ) -> None:
        """A sign of life from ``runner``: extend every lease it holds that has not expired."""
        con.execute(
            "UPDATE queue_leases SET expires_at = ? WHERE run = ? AND runner = ? AND open "
            "AND expires_at > ?",
            [now + timeout, run, runner, now],
        )

    def complete(
        self,
        run: str,
        lease_id: str,
        results: Sequence[TestResult],
        now: float,
        *,
        final: bool = True,
    ) -> CompleteResult:
        with self.store._tx() as con:
            config = self._config(con, run)
            pool, items, _expires, is_open, runner = self._lease_row(con, run, lease_id)
            owner: dict[str, int] = {}
            for idx, tests in con.execute(
                "SELECT idx, tests FROM queue_items WHERE run = ? AND pool = ? "
                "AND idx IN (SELECT unnest(?))",
                [run, pool, items],
            ).fetchall():
                for t in tests:
                    owner[t] = int(idx)
            reported = [r.id for r in results if r.id in owner]
            have = (
                {
                    r[0]
                    for r in con.execute(
                        "SELECT test_id FROM queue_results WHERE run = ? "
                        "AND test_id IN (SELECT unnest(?))",
                        [run, reported],
                    ).fetchall()
                }
                if reported
                else set()
            )
            accepted: list[str] = []
            duplicates: list[str] = []
            foreign: list[str] = []
            new: list[TestResult] = []
            per_item: dict[int, int] = {}
            for res in results:
                if res.id not in owner:
                    foreign.append(res.id)
                    continue
                if res.id in have:
                    duplicates.append(res.id)
                    continue
                have.add(res.id)
                accepted.append(res.id)
                new.append(res)
                idx = owner[res.id]
                per_item[idx] = per_item.get(idx, 0) + 1
            if new:
                self._insert_results(con, run, pool, runner, owner, new)
                con.execute(
                    "UPDATE queue_items AS i SET remaining = i.remaining - d.n, "
                    "queued = i.queued AND i.remaining - d.n > 0 "
                    "FROM (SELECT unnest(?) AS idx, unnest(?) AS n) AS d "
                    "WHERE i.run = ? AND i.pool = ? AND i.idx = d.idx",
                    [list(per_item), list(per_item.values()), run, pool],
                )
            missing: list[str] = []
            if is_open:
                if final:
                    con.execute(
                        "UPDATE queue_leases SET open = false, closed = 'completed' "
                        "WHERE run = ? AND lease_id = ?",
                        [run, lease_id],
                    )
                    missing = sorted(self._remaining_tests(con, run, pool, sorted(items)))
                    if missing:
                        self._insert_results(
                            con,
                            run,
                            pool,
                            runner,
                            owner,
                            [TestResult(t, "missing", 0.0) for t in missing],
                        )
                    con.execute(
                        "UPDATE queue_items SET remaining = 0, queued = false WHERE run = ? "
                        "AND pool = ? AND idx IN (SELECT unnest(?))",
                        [run, pool, items],
                    )
                else:
                    self._touch(con, run, runner, now, config.lease_timeout_s)
            return CompleteResult(
                tuple(accepted), tuple(duplicates), tuple(foreign), tuple(missing)
            )

    @staticmethod
    def _insert_results(
        con: duckdb.DuckDBPyConnection,
        run: str,
        pool: str,
        runner: str,
        owner: Mapping[str, int],
        results: Sequence[TestResult],
    ) -> None:
        n = len(results)
        table = pa.table(
            {
                "run": [run] * n,
                "test_id": [r.id for r in results],
                "pool": [pool] * n,
                "item_idx": [owner[r.id] for r in results],
                "outcome": [r.outcome for r in results],
                "duration_s": [r.duration_s for r in results],
                "runner": [runner] * n,
                "message": [clip_message(r.message) for r in results],
            },
            schema=_RESULT_SCHEMA,
        )
        _insert(con, "queue_results", table)

    def heartbeat(self, run: str, lease_id: str, now: float) -> float:
        with self.store._tx() as con:
            config = self._config(con, run)
            pool, _items, expires, is_open, runner = self._lease_row(con, run, lease_id)
            if not is_open:
                raise LeaseError(
                    f"lease {lease_id!r} is closed (completed, cancelled or expired); "
                    "its unreported tests were re-queued"
                )
            if expires <= now:
                self._expire(con, now, run=run, pool=pool)
                expired = True
            else:
                expired = False
                new = now + config.lease_timeout_s
                self._touch(con, run, runner, now, config.lease_timeout_s)
        if expired:
            # raised outside the transaction so that the re-queue above is committed
            raise LeaseError(f"lease {lease_id!r} expired; its unreported tests were re-queued")
        return new

    def cancel(self, run: str, lease_id: str, now: float) -> int:
        with self.store._tx() as con:
            pool, items, _expires, is_open, _runner = self._lease_row(con, run, lease_id)
            if not is_open:
                return 0
            n = self._requeue(con, run, pool, items)
            con.execute(
                "UPDATE queue_leases SET open = false, closed = 'cancelled', requeued = ? "
                "WHERE run = ? AND lease_id = ?",
                [n, run, lease_id],
            )
            return n

    @staticmethod
    def _requeue(con: duckdb.DuckDBPyConnection, run: str, pool: str, items: Sequence[int]) -> int:
        rows = con.execute(
            "UPDATE queue_items SET queued = true WHERE run = ? AND pool = ? "
            "AND idx IN (SELECT unnest(?)) AND remaining > 0 AND NOT queued RETURNING remaining",
            [run, pool, list(items)],
        ).fetchall()
        n = sum(int(r[0]) for r in rows)
        if n:
            con.execute(
                "UPDATE queue_pools SET requeued = requeued + ? WHERE run = ? AND pool = ?",
                [n, run, pool],
            )
        return n

    def _expire(
        self,
        con: duckdb.DuckDBPyConnection,
        now: float,
        *,
        run: str | None = None,
        pool: str | None = None,
    ) -> int:
        sql = "SELECT run, lease_id, pool, items FROM queue_leases WHERE open AND expires_at <= ?"
        params: list[Any] = [now]
        if run is not None:
            sql += " AND run = ?"
            params.append(run)
        if pool is not None:
            sql += " AND pool = ?"
            params.append(pool)
        dead = con.execute(sql, params).fetchall()
        for r, lid, p, items in dead:
            n = self._requeue(con, r, p, [int(i) for i in items])
            con.execute(
                "UPDATE queue_leases SET open = false, closed = 'expired', requeued = ? "
                "WHERE run = ? AND lease_id = ?",
                [n, r, lid],
            )
            con.execute(
                "UPDATE queue_pools SET expired = expired + 1 WHERE run = ? AND pool = ?", [r, p]
            )
        return len(dead)

    def expire(self, now: float) -> int:
        with self.store._tx() as con:
            return self._expire(con, now)

    # -- reporting ----------------------------------------------------------------------------
    def progress(self, run: str, pool: str | None = None) -> Progress:
        with self.store._lock:
            con = self.store._con
            self._config(con, run)
            if pool is not None:
                self._pool_row(con, run, pool)
            pool_sql = " AND pool = ?" if pool is not None else ""
            params: list[Any] = [run] + ([pool] if pool is not None else [])
            items = _one(
                con,
                "SELECT coalesce(sum(len(tests)), 0), "
                "coalesce(sum(remaining) FILTER (WHERE queued), 0), "
                "coalesce(sum(estimate_s) FILTER (WHERE queued), 0) "
                "FROM queue_items WHERE run = ?" + pool_sql,
                params,
            )
            pools = _one(
                con,
                "SELECT coalesce(sum(n_leases), 0), coalesce(sum(expired), 0), "  # noqa: S608
                "coalesce(sum(requeued), 0) FROM queue_pools WHERE run = ?" + pool_sql,
                params,
            )
            leased = _one(
                con,
                "SELECT coalesce(sum(i.remaining), 0) FROM queue_leases l, "  # noqa: S608
                "unnest(l.items) AS u(idx) JOIN queue_items i "
                "ON i.run = l.run AND i.pool = l.pool AND i.idx = u.idx "
                "WHERE l.run = ? AND l.open" + pool_sql.replace("pool", "l.pool"),
                params,
            )
            outcome_rows = con.execute(
                "SELECT outcome, count(*) FROM queue_results WHERE run = ?"  # noqa: S608
                + pool_sql
                + " GROUP BY outcome",
                params,
            ).fetchall()
        outcomes = {str(o): int(n) for o, n in outcome_rows}
        total = int(items[0])
        completed = sum(outcomes.values())
        return Progress(
            total=total,
            pending=int(items[1]),
            leased=int(leased[0]),
            completed=completed,
            requeued=int(pools[2]),
            leases=int(pools[0]),
            expired=int(pools[1]),
            remaining_s=max(0.0, float(items[2])),
            done=completed == total,
            outcomes=outcomes,
        )

    def results(self, run: str) -> Mapping[str, TestResult]:
        with self.store._lock:
            self._config(self.store._con, run)
            rows = self.store._con.execute(
                "SELECT test_id, outcome, coalesce(duration_s, 0), message, runner "
                "FROM queue_results WHERE run = ?",
                [run],
            ).fetchall()
        return {str(t): TestResult(str(t), str(o), float(d), m, r) for t, o, d, m, r in rows}

    def expired_leases(self, run: str) -> Sequence[ExpiredLease]:
        with self.store._lock:
            self._config(self.store._con, run)
            rows = self.store._con.execute(
                "SELECT lease_id, pool, runner, coalesce(requeued, 0), shard FROM queue_leases "
                "WHERE run = ? AND closed = 'expired' ORDER BY lease_id",
                [run],
            ).fetchall()
        return tuple(ExpiredLease(str(a), str(b), str(c), int(d), e) for a, b, c, d, e in rows)

    def pool_depths(self) -> dict[str, int]:
        """Pending tests per pool over all runs (the autoscaling signal in ``/metrics``)."""
        with self.store._lock:
            rows = self.store._con.execute(
                "SELECT pool, sum(remaining) FROM queue_items WHERE queued GROUP BY pool"
            ).fetchall()
        return {str(p): int(n or 0) for p, n in rows}

    def active_pools(self) -> dict[str, frozenset[str]]:
        """Pools with tests still pending or leased, with their runner labels."""
        with self.store._lock:
            rows = self.store._con.execute(
                "SELECT p.pool, any_value(p.labels) FROM queue_pools p JOIN queue_items i "
                "ON i.run = p.run AND i.pool = p.pool WHERE i.remaining > 0 GROUP BY p.pool"
            ).fetchall()
        return {str(p): frozenset(labels or ()) for p, labels in rows}


# ------------------------------------------------------------------------------------------------
# the queue's record, merged into a run's stored results


def mark_interrupted(
    store: Store,
    run_id: str,
    *,
    shards: Mapping[str, str] | None = None,
    runners: Mapping[str, str] | None = None,
) -> int:
    """Record infrastructure errors on a run's shards: ``shards`` maps a shard id, ``runners``
    a runner name (its queue leases expired) to why. A runner without a stored shard gets an
    empty shard ``runner:<name>`` so that the report still names it. Returns shards marked."""
    meta = store.run(run_id)
    if meta is None:
        return 0
    n = 0
    for shard, why in (shards or {}).items():
        if not store.mark_interrupted(run_id, shard, why):
            store.ingest(ResultSet(run=RunInfo.of(meta, shard_id=shard)))
            store.mark_interrupted(run_id, shard, why)
        n += 1
    by_runner: dict[str, list[str]] = {}
    for s in store.shards([run_id]):
        if s.runner_name:
            by_runner.setdefault(s.runner_name, []).append(s.shard_id)
    for runner, why in (runners or {}).items():
        ids = [s for s in by_runner.get(runner, []) if s not in (shards or {})]
        if not ids and runner not in by_runner:
            ids = [f"runner:{runner}"[:200]]
            store.ingest(
                ResultSet(run=replace(RunInfo.of(meta, shard_id=ids[0]), runner_name=runner))
            )
        for shard in ids:
            n += store.mark_interrupted(run_id, shard, why)
    return n


def merge_record(store: Store, run_id: str) -> tuple[int, int]:
    """Store the queue's results no uploaded shard holds (shard ``queue-recovered``) and mark
    the shards of runners whose leases expired; idempotent. Returns (rows stored, shards
    marked); (0, 0) for a run without a queue or not stored yet."""
    queue = DuckQueue(store)
    if not queue.has_run(run_id) or store.run(run_id) is None:
        return 0, 0
    meta = store.run(run_id)
    assert meta is not None
    have = set(store.cases([run_id], details=False).test_id)
    todo = {t: r for t, r in queue.results(run_id).items() if t not in have}
    inserted = 0
    recovered = recovered_results(todo, (), RunInfo.of(meta, shard_id=RECOVERED_SHARD))
    if recovered is not None:
        inserted = store.ingest(recovered)
    shards, runners = dead_runners(queue.expired_leases(run_id))
    marked = mark_interrupted(store, run_id, shards=shards, runners=runners)
    return inserted, marked
