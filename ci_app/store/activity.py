"""Read-only queries of the dashboard's runner and queue pages: what a runner ran, the queue
leases it took, its heartbeats, and every lease of a queue-mode run.

Every filter is a bound parameter; every list has a limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ci_app.store.database import Database
from ci_app.store.trends import iso

__all__ = [
    "LeaseRow",
    "RunnerShard",
    "queue_timeline",
    "recent_heartbeats",
    "runner_leases",
    "runner_shards",
]


# ---------------------------------------------------------------------------------- runners
@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerShard:
    run_id: str
    shard_id: str
    repo: str | None
    branch: str | None
    commit: str | None
    runner_class: str
    tests: int
    failed: int
    duration_s: float
    ingested_at: str | None


def runner_shards(db: Database, name: str, *, limit: int = 20) -> list[RunnerShard]:
    """What a runner ran recently: its shards, newest first."""
    rows = db.all(
        "SELECT s.run_id, s.shard_id, r.repo, r.branch, r.commit, s.runner_class, s.tests, "
        "s.failed + s.errors, coalesce(s.duration_s, 0), s.ingested_at FROM shards s "
        "JOIN runs r USING (run_id) WHERE s.runner_name = ? "
        "ORDER BY s.ingested_at DESC, r.seq DESC LIMIT ?",
        [name, limit],
    )
    return [
        RunnerShard(
            run_id=r[0],
            shard_id=r[1],
            repo=r[2],
            branch=r[3],
            commit=r[4],
            runner_class=r[5],
            tests=int(r[6] or 0),
            failed=int(r[7] or 0),
            duration_s=float(r[8]),
            ingested_at=iso(r[9]),
        )
        for r in rows
    ]


def runner_leases(db: Database, name: str, *, limit: int = 20) -> list[LeaseRow]:
    """Queue leases a runner took recently (newest queue runs first)."""
    return _leases(db, "l.runner = ?", [name], limit=limit, newest_first=True)


def recent_heartbeats(db: Database, name: str, *, limit: int = 20) -> list[tuple[float, Any]]:
    """A runner's latest heartbeats: (received_at, load payload)."""
    rows = db.all(
        "SELECT received_at, CAST(payload AS VARCHAR) FROM heartbeats WHERE runner_name = ? "
        "ORDER BY received_at DESC LIMIT ?",
        [name, limit],
    )
    return [(float(r[0]), json.loads(r[1]) if r[1] else None) for r in rows]


# ---------------------------------------------------------------------------------- queue
@dataclass(frozen=True, kw_only=True, slots=True)
class LeaseRow:
    """One batch a runner pulled from a run's queue."""

    run: str
    lease_id: str
    number: int  # the n-th lease of its pool (the order runners pulled in)
    pool: str
    runner: str | None
    open: bool
    estimate_s: float
    #: when the lease was taken or last extended (its expiry less the run's lease timeout)
    active_at: float
    tests: tuple[tuple[str, str | None, float | None], ...]  # (test, outcome, duration)


def _leases(
    db: Database, where: str, params: Sequence[Any], *, limit: int, newest_first: bool = False
) -> list[LeaseRow]:
    sql = (
        "WITH l AS (SELECT l.*, q.config, q.created_at FROM queue_leases l "  # noqa: S608
        "JOIN queue_runs q ON q.run = l.run WHERE "
        + where
        + " "
        + ("ORDER BY q.created_at DESC, l.lease_id DESC " if newest_first else "")
        + "LIMIT ?), "
        "x AS (SELECT l.run, l.lease_id, u.idx, u.o FROM l, "
        "unnest(l.items) WITH ORDINALITY AS u(idx, o)) "
        "SELECT l.run, l.lease_id, l.pool, l.runner, l.open, l.estimate_s, l.expires_at, "
        "CAST(l.config AS VARCHAR), "
        "list({'test': t.test, 'outcome': r.outcome, 'duration': r.duration_s} "
        "ORDER BY x.o, t.o) FILTER (WHERE t.test IS NOT NULL) "
        "FROM l LEFT JOIN x ON x.run = l.run AND x.lease_id = l.lease_id "
        "LEFT JOIN queue_items i ON i.run = l.run AND i.pool = l.pool AND i.idx = x.idx "
        "LEFT JOIN (SELECT run, pool, idx, unnest(tests) AS test, "
        "generate_subscripts(tests, 1) AS o FROM queue_items) t "
        "ON t.run = i.run AND t.pool = i.pool AND t.idx = i.idx "
        "LEFT JOIN queue_results r ON r.run = l.run AND r.test_id = t.test "
        "GROUP BY ALL"
    )
    rows = db.all(sql, [*params, limit])
    out: list[LeaseRow] = []
    for run, lease_id, pool, runner, is_open, est, expires, config, tests in rows:
        try:
            timeout = float(json.loads(config).get("lease_timeout_s", 0.0))
        except (ValueError, TypeError, AttributeError):
            timeout = 0.0
        tail = str(lease_id).rsplit("/", 1)[-1]
        out.append(
            LeaseRow(
                run=str(run),
                lease_id=str(lease_id),
                number=int(tail) if tail.isdigit() else 0,
                pool=str(pool),
                runner=runner,
                open=bool(is_open),
                estimate_s=float(est),
                active_at=float(expires) - timeout,
                tests=tuple((t["test"], t["outcome"], t["duration"]) for t in tests or ()),
            )
        )
    return sorted(out, key=lambda r: (r.run, r.pool, r.number))


def queue_timeline(db: Database, run: str, *, limit: int = 2000) -> list[LeaseRow]:
    """Every lease of a queue-mode run, in the order each pool handed them out."""
    return _leases(db, "l.run = ?", [run], limit=limit)
