"""The planner's :class:`~ci_app.matrix.queue.QueueState` kept in DuckDB (queue mode over HTTP).

Same semantics as :class:`~ci_app.matrix.queue.InMemoryQueue` (its tests are run against this
class too): items stored in :func:`~ci_app.matrix.queue.queue_order` order (``idx``), so "the
front of the queue" is the smallest queued ``idx``; batch sizes come from the same pure
:func:`~ci_app.matrix.queue.batch_target_s` / ``max_unknown_per_batch``. Every operation is one
transaction, so a server restart (or ``kill -9``) loses no lease, result or re-queue.

Who may use a run's queue is decided by its run tokens (:mod:`ci_app.store.identities`, bound to
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
from typing import Any

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
    max_unknown_per_batch,
)
from ci_app.store.database import Database, first_row, insert_arrow
from ci_app.store.queue_kept import KeptRuns
from ci_app.store.queue_tables import (
    done_tests,
    expire_leases,
    finish_items,
    insert_results,
    items_table,
    lease_row,
    pool_row,
    requeue,
    touch,
)

__all__ = ["DuckQueue"]


class DuckQueue:
    """DuckDB implementation of :class:`~ci_app.matrix.queue.QueueState`.

    What never changes after :meth:`create_run` (a run's config, its items' tests) is read
    once and kept (runs are never deleted or re-created), so that a lease or a completion
    reads and writes only the rows that change: leases, counters, results.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        #: what never changes in a run, read once (tests look at it)
        self.kept = KeptRuns()

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
        items = items_table(run, pools)
        with self._db.transaction() as con:
            if first_row(con, "SELECT 1 FROM queue_runs WHERE run = ?", [run]) is not None:
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
            if items.num_rows:
                insert_arrow(con, "queue_items", items)

    def token_hash(self, run: str) -> str | None:
        row = self._db.one("SELECT token_hash FROM queue_runs WHERE run = ?", [run])
        if row is None:
            raise LeaseError(f"no queue run {run!r}; create it first (ci-app plan --mode queue)")
        return None if row[0] is None else str(row[0])

    def runs(self, limit: int = 50) -> list[tuple[str, str | None, float]]:
        """Newest queue runs: (run, repo, created_at)."""
        rows = self._db.all(
            "SELECT run, repo, created_at FROM queue_runs ORDER BY created_at DESC LIMIT ?",
            [limit],
        )
        return [(str(r[0]), r[1], float(r[2])) for r in rows]

    def has_run(self, run: str) -> bool:
        return self._db.one("SELECT 1 FROM queue_runs WHERE run = ?", [run]) is not None

    def pools(self, run: str) -> Mapping[str, frozenset[str]]:
        with self._db.locked() as con:
            self.kept.config(con, run)
            rows = con.execute(
                "SELECT pool, labels FROM queue_pools WHERE run = ?", [run]
            ).fetchall()
        return {str(p): frozenset(labels or ()) for p, labels in rows}

    # -- leasing ----------------------------------------------------------------------------
    def lease(
        self, run: str, pool: str, runner: str, now: float, *, shard: str | None = None
    ) -> LeaseResult:
        with self._db.transaction() as con:
            config = self.kept.config(con, run)
            workers, runners = pool_row(con, run, pool)
            expire_leases(con, now, run=run, pool=pool)
            if runner not in (runners or []):
                con.execute(
                    "UPDATE queue_pools SET runners = list_append(runners, ?) "
                    "WHERE run = ? AND pool = ?",
                    [runner, run, pool],
                )
                runners = [*(runners or []), runner]
            n_workers = max(int(workers), len(runners))
            agg = first_row(
                con,
                "SELECT coalesce(sum(estimate_s), 0), count(*) FILTER (WHERE unknown) "
                "FROM queue_items WHERE run = ? AND pool = ? AND queued",
                [run, pool],
            )
            pending_s, pending_unknown = float(agg[0]), int(agg[1])
            target = batch_target_s(pending_s, n_workers, config)
            unknown_cap = max_unknown_per_batch(pending_unknown, n_workers, config)
            candidates = con.execute(
                "SELECT idx, estimate_s, unknown, remaining FROM queue_items "
                "WHERE run = ? AND pool = ? AND queued AND remaining > 0 ORDER BY idx LIMIT ?",
                [run, pool, config.max_batch_tests],
            ).fetchall()
            taken: list[int] = []
            partly_done: list[int] = []  # re-queued items some of whose tests have results
            est = 0.0
            n_tests = 0
            unknown_batch = False
            item_tests = self.kept.pool(con, run, pool).tests
            for idx, estimate, unknown, remaining in candidates:
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
                if int(remaining) < len(item_tests[int(idx)]):
                    partly_done.append(int(idx))
                n_tests += int(remaining)
                est += float(estimate)
                if est >= target:
                    break
            if not taken:
                open_row = first_row(
                    con,
                    "SELECT min(expires_at) FROM queue_leases WHERE run = ? AND pool = ? AND open",
                    [run, pool],
                )
                if open_row is not None and open_row[0] is not None:
                    wait = min(config.wait_s, max(0.1, float(open_row[0]) - now))
                    return Wait(retry_after_s=wait)
                return Done()
            done = done_tests(con, run, pool, partly_done)
            tests = [t for idx in taken for t in item_tests[idx] if t not in done]
            con.execute(
                "UPDATE queue_items SET queued = false WHERE run = ? AND pool = ? "
                "AND idx IN (SELECT unnest(?))",
                [run, pool, taken],
            )
            row = first_row(
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

    def complete(
        self,
        run: str,
        lease_id: str,
        results: Sequence[TestResult],
        now: float,
        *,
        final: bool = True,
    ) -> CompleteResult:
        with self._db.transaction() as con:
            config = self.kept.config(con, run)
            pool, items, _expires, is_open, runner = lease_row(con, run, lease_id)
            leased = set(items)
            pool_owner = self.kept.pool(con, run, pool).owner
            owner: dict[str, int] = {}
            first: dict[str, TestResult] = {}  # the first result of each leased test
            for res in results:
                idx = pool_owner.get(res.id)
                if idx is not None and idx in leased:
                    owner[res.id] = idx
                    first.setdefault(res.id, res)
            # tests with a result already (this lease's earlier completions, another
            # runner's lease after a re-queue) are not stored again
            stored = (
                insert_results(con, run, pool, runner, owner, list(first.values()))
                if first
                else set()
            )
            accepted: list[str] = []
            duplicates: list[str] = []
            foreign: list[str] = []
            per_item: dict[int, int] = {}
            for res in results:
                if res.id not in owner:
                    foreign.append(res.id)
                elif res.id in stored:
                    stored.discard(res.id)
                    accepted.append(res.id)
                    per_item[owner[res.id]] = per_item.get(owner[res.id], 0) + 1
                else:
                    duplicates.append(res.id)
            if per_item:
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
                    kept = self.kept.pool(con, run, pool)
                    missing = finish_items(con, run, pool, runner, items, kept.tests, kept.owner)
                else:
                    touch(con, run, runner, now, config.lease_timeout_s)
            return CompleteResult(
                tuple(accepted), tuple(duplicates), tuple(foreign), tuple(missing)
            )

    def heartbeat(self, run: str, lease_id: str, now: float) -> float:
        with self._db.transaction() as con:
            config = self.kept.config(con, run)
            pool, _items, expires, is_open, runner = lease_row(con, run, lease_id)
            if not is_open:
                raise LeaseError(
                    f"lease {lease_id!r} is closed (completed, cancelled or expired); "
                    "its unreported tests were re-queued"
                )
            if expires <= now:
                expire_leases(con, now, run=run, pool=pool)
                expired = True
            else:
                expired = False
                new = now + config.lease_timeout_s
                touch(con, run, runner, now, config.lease_timeout_s)
        if expired:
            # raised outside the transaction so that the re-queue above is committed
            raise LeaseError(f"lease {lease_id!r} expired; its unreported tests were re-queued")
        return new

    def cancel(self, run: str, lease_id: str, now: float) -> int:
        with self._db.transaction() as con:
            self.kept.config(con, run)
            pool, items, _expires, is_open, _runner = lease_row(con, run, lease_id)
            if not is_open:
                return 0
            n = requeue(con, run, pool, items)
            con.execute(
                "UPDATE queue_leases SET open = false, closed = 'cancelled', requeued = ? "
                "WHERE run = ? AND lease_id = ?",
                [n, run, lease_id],
            )
            return n

    def expire(self, now: float) -> int:
        with self._db.transaction() as con:
            return expire_leases(con, now)

    # -- reporting ----------------------------------------------------------------------------
    def progress(self, run: str, pool: str | None = None) -> Progress:
        with self._db.locked() as con:
            self.kept.config(con, run)
            if pool is not None:
                pool_row(con, run, pool)
            pool_sql = " AND pool = ?" if pool is not None else ""
            params: list[Any] = [run] + ([pool] if pool is not None else [])
            items = first_row(
                con,
                "SELECT coalesce(sum(len(tests)), 0), "
                "coalesce(sum(remaining) FILTER (WHERE queued), 0), "
                "coalesce(sum(estimate_s) FILTER (WHERE queued), 0) "
                "FROM queue_items WHERE run = ?" + pool_sql,
                params,
            )
            pools = first_row(
                con,
                "SELECT coalesce(sum(n_leases), 0), coalesce(sum(expired), 0), "  # noqa: S608
                "coalesce(sum(requeued), 0) FROM queue_pools WHERE run = ?" + pool_sql,
                params,
            )
            leased = first_row(
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
        with self._db.locked() as con:
            self.kept.config(con, run)
            rows = con.execute(
                "SELECT test_id, outcome, coalesce(duration_s, 0), message, runner "
                "FROM queue_results WHERE run = ?",
                [run],
            ).fetchall()
        return {str(t): TestResult(str(t), str(o), float(d), m, r) for t, o, d, m, r in rows}

    def expired_leases(self, run: str) -> Sequence[ExpiredLease]:
        with self._db.locked() as con:
            self.kept.config(con, run)
            rows = con.execute(
                "SELECT lease_id, pool, runner, coalesce(requeued, 0), shard FROM queue_leases "
                "WHERE run = ? AND closed = 'expired' ORDER BY lease_id",
                [run],
            ).fetchall()
        return tuple(ExpiredLease(str(a), str(b), str(c), int(d), e) for a, b, c, d, e in rows)

    def pool_depths(self) -> dict[str, int]:
        """Pending tests per pool over all runs (the autoscaling signal in ``/metrics``)."""
        rows = self._db.all(
            "SELECT pool, sum(remaining) FROM queue_items WHERE queued GROUP BY pool"
        )
        return {str(p): int(n or 0) for p, n in rows}

    def active_pools(self) -> dict[str, frozenset[str]]:
        """Pools with tests still pending or leased, with their runner labels."""
        rows = self._db.all(
            "SELECT p.pool, any_value(p.labels) FROM queue_pools p JOIN queue_items i "
            "ON i.run = p.run AND i.pool = p.pool WHERE i.remaining > 0 GROUP BY p.pool"
        )
        return {str(p): frozenset(labels or ()) for p, labels in rows}
