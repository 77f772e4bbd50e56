"""Runners: their registration and heartbeats, tokens and label allow-lists, and what the
app knows about each beyond its profile (provider, busy, load, label sync).

Tokens are stored as hashes only (``ci_app.web.security.hash_token``). Times are epoch
seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from ci_app.store.database import Database

__all__ = ["Runner", "RunnerRow", "Runners"]

_RUNNER_COLS = "name, provider, labels, profile, profile_hash, last_seen, status"


@dataclass(frozen=True, kw_only=True, slots=True)
class Runner:
    name: str
    provider: str | None
    labels: tuple[str, ...]
    profile: Any
    profile_hash: str | None
    last_seen: float | None
    status: str


@dataclass(frozen=True, slots=True)
class RunnerRow:
    """A runner as the dashboard and ``GET /runners`` show it."""

    name: str
    provider: str | None
    labels: tuple[str, ...]
    status: str
    last_seen: float | None
    profile_hash: str | None
    busy: bool
    busy_job: str | None
    load: Mapping[str, Any] | None
    synced_labels: tuple[str, ...]
    synced_at: float | None
    sync_error: str | None
    label_misses: Mapping[str, int]
    refused_labels: tuple[str, ...] = ()


def _runner(row: Sequence[Any]) -> Runner:
    return Runner(
        name=row[0],
        provider=row[1],
        labels=tuple(row[2] or ()),
        profile=json.loads(row[3]) if row[3] is not None else None,
        profile_hash=row[4],
        last_seen=row[5],
        status=row[6],
    )


def _ensure_state(con: duckdb.DuckDBPyConnection, name: str, now: float) -> None:
    con.execute(
        "INSERT INTO runner_state (name, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [name, now],
    )


class Runners:
    """The runners aggregate."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ registry
    def upsert_runner(
        self,
        name: str,
        *,
        provider: str | None,
        labels: Sequence[str],
        profile: Mapping[str, Any] | None,
        profile_hash: str | None,
        now: float,
        status: str = "online",
    ) -> None:
        self._db.execute(
            "INSERT INTO runners VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "provider = excluded.provider, labels = excluded.labels, "
            "profile = excluded.profile, profile_hash = excluded.profile_hash, "
            "last_seen = excluded.last_seen, status = excluded.status",
            [
                name,
                provider,
                list(labels),
                None if profile is None else json.dumps(profile),
                profile_hash,
                now,
                status,
            ],
        )

    def runner(self, name: str) -> Runner | None:
        row = self._db.one(f"SELECT {_RUNNER_COLS} FROM runners WHERE name = ?", [name])  # noqa: S608
        return None if row is None else _runner(row)

    def list_runners(self, *, status: str | None = None) -> list[Runner]:
        sql = f"SELECT {_RUNNER_COLS} FROM runners"  # noqa: S608 - constant
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        return [_runner(r) for r in self._db.all(sql + " ORDER BY name", params)]

    def mark_stale_runners(self, *, now: float, offline_after_s: float) -> list[str]:
        """Mark runners without a heartbeat for ``offline_after_s`` offline; returns their names."""
        rows = self._db.all(
            "UPDATE runners SET status = 'offline' WHERE status <> 'offline' "
            "AND (last_seen IS NULL OR last_seen < ?) RETURNING name",
            [now - offline_after_s],
        )
        return sorted(r[0] for r in rows)

    def set_runner_labels(
        self, name: str, granted: Sequence[str], refused: Sequence[str], *, now: float
    ) -> None:
        """The labels a runner holds (granted by its allow-list) and those refused (shown on
        the dashboard and in ``GET /runners``)."""
        with self._db.transaction() as con:
            con.execute("UPDATE runners SET labels = ? WHERE name = ?", [list(granted), name])
            _ensure_state(con, name, now)
            con.execute(
                "UPDATE runner_state SET refused_labels = ?, updated_at = ? WHERE name = ?",
                [list(refused), now, name],
            )

    # ------------------------------------------------------------------ heartbeats
    def record_heartbeat(
        self,
        runner_name: str,
        *,
        now: float,
        load: float | None = None,
        busy: bool | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?)",
                [runner_name, now, load, busy, None if payload is None else json.dumps(payload)],
            )
            con.execute(
                "UPDATE runners SET last_seen = ?, status = 'online' WHERE name = ?",
                [now, runner_name],
            )

    def prune_heartbeats(self, *, keep_per_runner: int) -> int:
        """Keep each runner's latest ``keep_per_runner`` heartbeats; returns rows deleted."""
        rows = self._db.all(
            "DELETE FROM heartbeats WHERE (runner_name, received_at) IN ("
            "SELECT runner_name, received_at FROM (SELECT runner_name, received_at, "
            "row_number() OVER (PARTITION BY runner_name ORDER BY received_at DESC) AS n "
            "FROM heartbeats) WHERE n > ?) RETURNING runner_name",
            [keep_per_runner],
        )
        return len(rows)

    def latest_heartbeat(self, runner_name: str) -> tuple[float, float | None, bool | None] | None:
        row = self._db.one(
            "SELECT received_at, load, busy FROM heartbeats WHERE runner_name = ? "
            "ORDER BY received_at DESC LIMIT 1",
            [runner_name],
        )
        return None if row is None else (float(row[0]), row[1], row[2])

    # ------------------------------------------------------------------ tokens and allow-lists
    def add_runner_token(
        self, name: str, token_hash: str, *, now: float, allow: Sequence[str] | None = None
    ) -> None:
        """A runner token; ``allow`` is the runner's label allow-list (None: pool rules apply)."""
        self._db.execute(
            "INSERT INTO runner_tokens (token_hash, name, created, revoked, allow_labels) "
            "VALUES (?, ?, ?, NULL, ?)",
            [token_hash, name, now, None if allow is None else list(allow)],
        )

    def runner_for_token(self, token_hash: str) -> str | None:
        """The runner a (hashed) token belongs to, unless revoked."""
        row = self._db.one(
            "SELECT name FROM runner_tokens WHERE token_hash = ? AND revoked IS NULL",
            [token_hash],
        )
        return None if row is None else str(row[0])

    def revoke_runner_tokens(self, name: str, *, now: float) -> int:
        rows = self._db.all(
            "UPDATE runner_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL "
            "RETURNING token_hash",
            [now, name],
        )
        return len(rows)

    def runner_allow_list(self, name: str) -> tuple[str, ...] | None:
        """The label patterns the live tokens of runner ``name`` were created with (their
        union), or ``None`` when none was given one (then pool allow-lists or the default
        apply)."""
        rows = self._db.all(
            "SELECT allow_labels FROM runner_tokens WHERE name = ? AND revoked IS NULL "
            "AND allow_labels IS NOT NULL ORDER BY created",
            [name],
        )
        if not rows:
            return None
        merged: list[str] = []
        for (labels,) in rows:
            merged.extend(p for p in labels if p not in merged)
        return tuple(merged)

    def set_label_pool(self, pattern: str, labels: Sequence[str], *, now: float) -> None:
        """Allow ``labels`` (patterns) to every runner whose name matches the glob ``pattern``."""
        self._db.execute(
            "INSERT INTO label_allow_pools VALUES (?, ?, ?) ON CONFLICT (pattern) "
            "DO UPDATE SET labels = excluded.labels, created_at = excluded.created_at",
            [pattern, list(labels), now],
        )

    def remove_label_pool(self, pattern: str) -> int:
        rows = self._db.all(
            "DELETE FROM label_allow_pools WHERE pattern = ? RETURNING pattern", [pattern]
        )
        return len(rows)

    def label_pools(self) -> list[tuple[str, tuple[str, ...]]]:
        rows = self._db.all("SELECT pattern, labels FROM label_allow_pools ORDER BY pattern")
        return [(str(p), tuple(labels or ())) for p, labels in rows]

    # ------------------------------------------------------------------ app-side state
    def _update_state(self, name: str, now: float, assignments: str, values: list[Any]) -> None:
        """Create the runner's state row if needed and set ``assignments`` (constant SQL)."""
        with self._db.transaction() as con:
            _ensure_state(con, name, now)
            con.execute(
                f"UPDATE runner_state SET {assignments}, updated_at = ? WHERE name = ?",  # noqa: S608
                [*values, now, name],
            )

    def set_runner_provider(self, name: str, provider: str, *, now: float) -> None:
        self._update_state(name, now, "provider = ?", [provider])

    def runner_provider(self, name: str) -> str | None:
        row = self._db.one("SELECT provider FROM runner_state WHERE name = ?", [name])
        return None if row is None else row[0]

    def set_runner_load(self, name: str, load: Mapping[str, Any] | None, *, now: float) -> None:
        self._update_state(name, now, "load = ?", [None if load is None else json.dumps(load)])

    def set_runner_busy(self, name: str, busy: bool, job: str | None, *, now: float) -> None:
        self._update_state(name, now, "busy = ?, busy_job = ?", [busy, job if busy else None])

    def runner_sync_state(self, name: str) -> tuple[dict[str, int], float | None]:
        """The label-miss counters and last sync time of a runner."""
        row = self._db.one(
            "SELECT label_misses, synced_at FROM runner_state WHERE name = ?", [name]
        )
        if row is None:
            return {}, None
        misses = json.loads(row[0]) if row[0] else {}
        return {str(k): int(v) for k, v in misses.items()}, row[1]

    def store_label_sync(
        self,
        name: str,
        *,
        misses: Mapping[str, int],
        labels: Sequence[str],
        error: str | None,
        now: float,
    ) -> None:
        self._update_state(
            name,
            now,
            "label_misses = ?, synced_labels = ?, synced_at = ?, sync_error = ?",
            [json.dumps(dict(misses)), list(labels), now, error],
        )

    def runner_rows(self) -> list[RunnerRow]:
        """Runners that have heartbeated, have a live token or app-side state."""
        rows = self._db.all(
            "WITH n AS (SELECT name FROM runners UNION SELECT name FROM runner_state "
            "UNION SELECT name FROM runner_tokens WHERE revoked IS NULL) "
            "SELECT n.name, coalesce(s.provider, r.provider), r.labels, "
            "coalesce(r.status, 'registered'), r.last_seen, r.profile_hash, "
            "coalesce(s.busy, false), s.busy_job, CAST(s.load AS VARCHAR), s.synced_labels, "
            "s.synced_at, s.sync_error, CAST(s.label_misses AS VARCHAR), s.refused_labels "
            "FROM n LEFT JOIN runners r ON r.name = n.name "
            "LEFT JOIN runner_state s ON s.name = n.name ORDER BY 1"
        )
        return [
            RunnerRow(
                name=r[0],
                provider=r[1],
                labels=tuple(r[2] or ()),
                status=r[3],
                last_seen=r[4],
                profile_hash=r[5],
                busy=bool(r[6]),
                busy_job=r[7],
                load=json.loads(r[8]) if r[8] else None,
                synced_labels=tuple(r[9] or ()),
                synced_at=r[10],
                sync_error=r[11],
                label_misses=json.loads(r[12]) if r[12] else {},
                refused_labels=tuple(r[13] or ()),
            )
            for r in rows
        ]
