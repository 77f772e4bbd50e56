"""Webhook deliveries, the durable job queue they feed, and app installations.

A delivery and its jobs are stored in one transaction (:meth:`Jobs.accept_deliveries`), so a
crash never keeps one without the other. Times are epoch seconds (callers pass a fake clock).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ci_app.errors import StoreError
from ci_app.store.database import Database, first_row
from ci_app.store.ingest import MESSAGE_LIMIT

__all__ = ["DeliveryIn", "DeliveryOutcome", "Job", "JobRow", "Jobs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    id: int
    kind: str
    payload: Any
    state: str
    attempts: int
    lease_until: float | None
    last_error: str | None
    run_after: float
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as the dashboard lists it."""

    id: int
    kind: str
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    updated_at: float
    run_after: float
    payload: str


@dataclass(frozen=True, slots=True)
class DeliveryIn:
    provider: str
    delivery_id: str
    event: str
    body: str
    jobs: Sequence[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    new: bool
    job_ids: tuple[int, ...] = ()


_JOB_COLS = (
    "id, kind, payload, state, attempts, lease_until, last_error, run_after, idempotency_key"
)


def _job(row: Sequence[Any]) -> Job:
    """A row of ``_JOB_COLS``."""
    return Job(
        id=int(row[0]),
        kind=row[1],
        payload=json.loads(row[2]) if row[2] is not None else None,
        state=row[3],
        attempts=int(row[4]),
        lease_until=row[5],
        last_error=row[6],
        run_after=float(row[7]),
        idempotency_key=row[8],
    )


class Jobs:
    """Deliveries, jobs and installations."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: set when a job may have become due (queued here, or a parked one re-queued): idle
        #: job workers wait on it instead of polling the table
        self.wakeup = threading.Event()

    # ------------------------------------------------------------------ deliveries
    def accept_deliveries(
        self, items: Sequence[DeliveryIn], *, now: float
    ) -> list[DeliveryOutcome]:
        """Store webhook deliveries and enqueue their jobs in ONE transaction.

        A crash can then never leave a delivery stored without its jobs (a redelivery would
        be dropped as a duplicate and the event lost) nor jobs without the delivery. A
        delivery seen before (same provider and id) is ``new=False`` and enqueues nothing;
        job idempotency keys are ``"{provider}:{delivery_id}:{n}"``. One multi-row INSERT per
        table (group commit): DuckDB spends ~1 ms per statement, so 8 deliveries cost about
        as much as 2 one by one. Outcomes are in the order of ``items``; a delivery id
        repeated within the batch is a duplicate of its first occurrence.
        """
        if not items:
            return []
        first: dict[tuple[str, str], int] = {}
        for i, it in enumerate(items):
            first.setdefault((it.provider, it.delivery_id), i)
        unique = sorted(first.values())
        with self._db.transaction() as con:
            params: list[Any] = []
            for i in unique:
                it = items[i]
                params += [it.provider, it.delivery_id, it.event, now, it.body]
            rows = con.execute(
                "INSERT INTO deliveries VALUES "  # noqa: S608 - placeholders only
                + ", ".join(["(?, ?, ?, ?, ?)"] * len(unique))
                + " ON CONFLICT DO NOTHING RETURNING provider, delivery_id",
                params,
            ).fetchall()
            new = {(str(p), str(d)) for p, d in rows}
            job_rows: list[Any] = []
            keys: list[tuple[int, str]] = []
            for i in unique:
                it = items[i]
                if (it.provider, it.delivery_id) not in new:
                    continue
                for n, (kind, payload) in enumerate(it.jobs):
                    key = f"{it.provider}:{it.delivery_id}:{n}"
                    job_rows += [kind, json.dumps(payload), now, key, now, now]
                    keys.append((i, key))
            ids: dict[str, int] = {}
            if keys:
                got = con.execute(
                    "INSERT INTO jobs (kind, payload, run_after, idempotency_key, created_at, "  # noqa: S608
                    "updated_at) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(keys))
                    + " ON CONFLICT DO NOTHING RETURNING idempotency_key, id",
                    job_rows,
                ).fetchall()
                ids = {str(k): int(v) for k, v in got}
        if ids:
            self.wakeup.set()
        per_item: dict[int, list[int]] = {}
        for i, key in keys:
            if key in ids:
                per_item.setdefault(i, []).append(ids[key])
        out: list[DeliveryOutcome] = []
        for i, it in enumerate(items):
            key_i = (it.provider, it.delivery_id)
            is_new = first[key_i] == i and key_i in new
            out.append(DeliveryOutcome(new=is_new, job_ids=tuple(per_item.get(i, ()))))
        return out

    def delivery_count(self, provider: str | None = None) -> int:
        sql = "SELECT count(*) FROM deliveries"
        params: list[Any] = []
        if provider is not None:
            sql += " WHERE provider = ?"
            params.append(provider)
        row = self._db.one(sql, params)
        return int(row[0]) if row else 0

    def prune_deliveries(self, older_than: float) -> int:
        rows = self._db.all(
            "DELETE FROM deliveries WHERE received_at < ? RETURNING delivery_id", [older_than]
        )
        return len(rows)

    # ------------------------------------------------------------------ jobs
    def enqueue(
        self,
        kind: str,
        payload: Any,
        *,
        now: float,
        run_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Queue a job; with an ``idempotency_key`` already queued, return that job's id."""
        with self._db.transaction() as con:
            if idempotency_key is not None:
                row = first_row(
                    con, "SELECT id FROM jobs WHERE idempotency_key = ?", [idempotency_key]
                )
                if row is not None:
                    return int(row[0])
            row = first_row(
                con,
                "INSERT INTO jobs (kind, payload, run_after, idempotency_key, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [kind, json.dumps(payload), run_after or now, idempotency_key, now, now],
            )
            assert row is not None
        self.wakeup.set()
        return int(row[0])

    def lease(self, now: float, lease_s: float) -> Job | None:
        """Lease the oldest due job, or one whose lease ran out, in ONE statement (DuckDB
        costs ~1 ms a statement and the web requests share the connection)."""
        row = self._db.one(
            "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_until = ?, "  # noqa: S608
            "updated_at = ? WHERE id = (SELECT id FROM jobs WHERE (state = 'queued' AND "
            "run_after <= ?) OR (state = 'leased' AND lease_until < ?) "
            "ORDER BY run_after, id LIMIT 1) RETURNING " + _JOB_COLS,
            [now + lease_s, now, now, now],
        )
        return None if row is None else _job(row)

    def complete(self, job_id: int, *, now: float) -> None:
        self._db.execute(
            "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = ? WHERE id = ?",
            [now, job_id],
        )

    def fail(
        self, job_id: int, error: str, *, now: float, backoff_s: float, max_attempts: int = 5
    ) -> str:
        """Record a failure: requeue after ``backoff_s``, or park after ``max_attempts``.

        Returns the new state (``queued`` or ``parked``).
        """
        with self._db.transaction() as con:
            row = first_row(con, "SELECT attempts FROM jobs WHERE id = ?", [job_id])
            if row is None:
                raise StoreError(f"no job {job_id}")
            state = "parked" if int(row[0]) >= max_attempts else "queued"
            con.execute(
                "UPDATE jobs SET state = ?, last_error = ?, run_after = ?, lease_until = NULL, "
                "updated_at = ? WHERE id = ?",
                [state, error[:MESSAGE_LIMIT], now + backoff_s, now, job_id],
            )
            return state

    def park(self, job_id: int, error: str, *, now: float) -> None:
        self._db.execute(
            "UPDATE jobs SET state = 'parked', last_error = ?, lease_until = NULL, "
            "updated_at = ? WHERE id = ?",
            [error[:MESSAGE_LIMIT], now, job_id],
        )

    def requeue_parked(self, job_id: int, *, now: float) -> None:
        self._db.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, updated_at = ? "
            "WHERE id = ? AND state = 'parked'",
            [now, now, job_id],
        )
        self.wakeup.set()

    def job(self, job_id: int) -> Job | None:
        row = self._db.one(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", [job_id])  # noqa: S608
        return None if row is None else _job(row)

    def counts(self) -> dict[str, int]:
        """Jobs per state (for /metrics and the dashboard)."""
        rows = self._db.all("SELECT state, count(*) FROM jobs GROUP BY state")
        return {str(s): int(n) for s, n in rows}

    def age_stats(self, *, now: float) -> dict[str, float]:
        """Age in seconds of the oldest unfinished job per state (queued, leased, parked)."""
        rows = self._db.all(
            "SELECT state, min(created_at) FROM jobs WHERE state <> 'done' GROUP BY state"
        )
        return {str(s): max(0.0, now - float(t)) for s, t in rows}

    def list_jobs(self, *, state: str | None = None, limit: int = 100) -> list[JobRow]:
        sql = (
            "SELECT id, kind, state, attempts, last_error, created_at, updated_at, run_after, "
            "CAST(payload AS VARCHAR) FROM jobs"
        )
        params: list[Any] = []
        if state is not None:
            sql += " WHERE state = ?"
            params.append(state)
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [
            JobRow(
                id=int(r[0]),
                kind=r[1],
                state=r[2],
                attempts=int(r[3]),
                last_error=r[4],
                created_at=float(r[5]),
                updated_at=float(r[6]),
                run_after=float(r[7]),
                payload=r[8] or "",
            )
            for r in self._db.all(sql, params)
        ]

    # ------------------------------------------------------------------ installations
    def record_installation(
        self, provider: str, account: str, installation_id: str, *, active: bool, now: float
    ) -> None:
        self._db.execute(
            "INSERT INTO installations VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, account) "
            "DO UPDATE SET installation_id = excluded.installation_id, "
            "active = excluded.active, updated_at = excluded.updated_at",
            [provider, account.lower(), installation_id, active, now],
        )

    def installation_for(self, provider: str, account: str) -> str | None:
        row = self._db.one(
            "SELECT installation_id FROM installations WHERE provider = ? AND account = ? "
            "AND active",
            [provider, account.lower()],
        )
        return None if row is None else str(row[0])
