"""The statements :class:`~ci_app.store.queue.DuckQueue` composes into its transactions.

Each takes the open connection of the caller's transaction (``Database.transaction()``), so
one queue operation stays one transaction however many of these it runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import duckdb

from ci_app.matrix.queue import (
    LeaseError,
    PoolSpec,
    QueueConfig,
    TestResult,
    clip_message,
    queue_order,
)
from ci_app.store.database import first_row

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

__all__ = [
    "done_tests",
    "expire_leases",
    "finish_items",
    "insert_results",
    "items_table",
    "lease_row",
    "pool_row",
    "pool_tests",
    "requeue",
    "run_config",
    "touch",
]


@cache
def _item_schema() -> pa.Schema:
    # pyarrow imported on first use: ``ingest --db`` imports the store without it (memory)
    import pyarrow as pa

    return pa.schema(
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


@cache
def _result_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
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


def items_table(run: str, pools: Mapping[str, PoolSpec]) -> pa.Table:
    """A new run's queue items, per pool in :func:`~ci_app.matrix.queue.queue_order` order
    (``idx``); a test queued twice in the run is a :class:`LeaseError`."""
    import pyarrow as pa

    seen: set[str] = set()
    cols: dict[str, list[Any]] = {f: [] for f in _item_schema().names}
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
    return pa.table(cols, schema=_item_schema())


def run_config(con: duckdb.DuckDBPyConnection, run: str) -> QueueConfig:
    row = first_row(con, "SELECT config FROM queue_runs WHERE run = ?", [run])
    if row is None:
        raise LeaseError(f"no queue run {run!r}; create it first (ci-app plan --mode queue)")
    return QueueConfig(**json.loads(row[0]))


def pool_row(con: duckdb.DuckDBPyConnection, run: str, pool: str) -> tuple[Any, ...]:
    row = first_row(
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
        raise LeaseError(f"run {run!r} has no pool {pool!r} (pools: {', '.join(known) or 'none'})")
    return tuple(row)


def pool_tests(con: duckdb.DuckDBPyConnection, run: str, pool: str) -> dict[int, tuple[str, ...]]:
    """Each item's tests by ``idx``: fixed when the run is created, so callers may keep them."""
    rows = con.execute(
        "SELECT idx, tests FROM queue_items WHERE run = ? AND pool = ?", [run, pool]
    ).fetchall()
    return {int(i): tuple(tests) for i, tests in rows}


def done_tests(
    con: duckdb.DuckDBPyConnection, run: str, pool: str, idxs: Sequence[int]
) -> set[str]:
    """Tests of the items ``idxs`` that have a result."""
    if not idxs:
        return set()
    return {
        r[0]
        for r in con.execute(
            "SELECT test_id FROM queue_results WHERE run = ? AND pool = ? "
            "AND item_idx IN (SELECT unnest(?))",
            [run, pool, list(idxs)],
        ).fetchall()
    }


def lease_row(
    con: duckdb.DuckDBPyConnection, run: str, lease_id: str
) -> tuple[str, list[int], float, bool, str]:
    """(pool, items, expires_at, open, runner) of a lease; the caller has checked the run."""
    row = first_row(
        con,
        "SELECT pool, items, expires_at, open, runner FROM queue_leases "
        "WHERE run = ? AND lease_id = ?",
        [run, lease_id],
    )
    if row is None:
        raise LeaseError(f"run {run!r} never issued lease {lease_id!r}")
    return str(row[0]), [int(i) for i in row[1]], float(row[2]), bool(row[3]), str(row[4])


def touch(
    con: duckdb.DuckDBPyConnection, run: str, runner: str, now: float, timeout: float
) -> None:
    """A sign of life from ``runner``: extend every lease it holds that has not expired."""
    con.execute(
        "UPDATE queue_leases SET expires_at = ? WHERE run = ? AND runner = ? AND open "
        "AND expires_at > ?",
        [now + timeout, run, runner, now],
    )


def insert_results(
    con: duckdb.DuckDBPyConnection,
    run: str,
    pool: str,
    runner: str,
    owner: Mapping[str, int],
    results: Sequence[TestResult],
) -> set[str]:
    """Store the results of tests that have none yet (one statement; the primary key
    ``(run, test_id)`` finds the others); returns the ids stored. ``results`` holds each id
    once."""
    import pyarrow as pa

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
        schema=_result_schema(),
    )
    con.register("_bulk_queue_results", table)
    try:
        cols = ", ".join(_result_schema().names)
        rows = con.execute(
            f"INSERT INTO queue_results ({cols}) SELECT {cols} FROM _bulk_queue_results "  # noqa: S608
            "ON CONFLICT DO NOTHING RETURNING test_id"
        ).fetchall()
    finally:
        con.unregister("_bulk_queue_results")
    return {str(r[0]) for r in rows}


def finish_items(
    con: duckdb.DuckDBPyConnection,
    run: str,
    pool: str,
    runner: str,
    items: Sequence[int],
    tests: Mapping[int, Sequence[str]],
    owner: Mapping[str, int],
) -> list[str]:
    """A lease's final completion: its tests still without a result are stored as
    ``missing`` and its items are finished. Returns the missing tests, sorted. ``tests`` and
    ``owner``: the pool's tests per item, and each test's item."""
    unfinished = [
        int(r[0])
        for r in con.execute(
            "SELECT idx FROM queue_items WHERE run = ? AND pool = ? AND remaining > 0 "
            "AND idx IN (SELECT unnest(?))",
            [run, pool, list(items)],
        ).fetchall()
    ]
    if not unfinished:  # the usual case: every test reported (remaining 0: not queued)
        return []
    done = done_tests(con, run, pool, unfinished)
    missing = sorted(t for idx in unfinished for t in tests[idx] if t not in done)
    if missing:
        results = [TestResult(t, "missing", 0.0) for t in missing]
        insert_results(con, run, pool, runner, owner, results)
    con.execute(
        "UPDATE queue_items SET remaining = 0, queued = false WHERE run = ? "
        "AND pool = ? AND idx IN (SELECT unnest(?))",
        [run, pool, unfinished],
    )
    return missing


def requeue(con: duckdb.DuckDBPyConnection, run: str, pool: str, items: Sequence[int]) -> int:
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


def expire_leases(
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
        n = requeue(con, r, p, [int(i) for i in items])
        con.execute(
            "UPDATE queue_leases SET open = false, closed = 'expired', requeued = ? "
            "WHERE run = ? AND lease_id = ?",
            [n, r, lid],
        )
        con.execute(
            "UPDATE queue_pools SET expired = expired + 1 WHERE run = ? AND pool = ?", [r, p]
        )
    return len(dead)
