"""DuckDB-backed store: results history plus the app's durable state.

One writer, many readers: a process opens the file read-write (the app, or a
CI step), others may open it ``read_only=True``. Every public method takes
the store's lock, so one ``Store`` may be shared by threads.

Hot paths (ingest, history) are columnar: test cases become Arrow columns and
are appended with one ``INSERT ... SELECT`` per batch, never row by row.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from ci_app.errors import StoreError
from ci_app.model.results import (
    SYNTHETIC_SHARDS,
    Outcome,
    ResultSet,
    RunInfo,
    Summary,
    SummaryCounter,
    TestCase,
)
from ci_app.reporting.data import (
    CaseRows,
    HistoryRows,
    MetricValue,
    RunMeta,
    RunTotals,
    SeriesPoint,
    ShardMeta,
    runner_class_of,
)
from ci_app.store.schema import LATEST_VERSION, MIGRATIONS

_SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)
DEFAULT_SHARD = "default"
MESSAGE_LIMIT = 4000
_QUIET = (Outcome.PASSED, Outcome.SKIPPED)
_CASE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("shard_id", pa.string()),
        ("test_id", pa.string()),
        ("suite", pa.string()),
        ("classname", pa.string()),
        ("name", pa.string()),
        ("file", pa.string()),
        ("line", pa.int32()),
        ("outcome", pa.string()),
        ("duration_s", pa.float64()),
        ("retries", pa.int32()),
        ("flaky", pa.bool_()),
        ("message", pa.string()),
    ]
)


def _ts(value: str | None) -> datetime | None:
    """ISO 8601 → naive UTC datetime (DuckDB ``TIMESTAMP``); None if unparseable."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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


@dataclass(frozen=True, kw_only=True, slots=True)
class Runner:
    name: str
    provider: str | None
    labels: tuple[str, ...]
    profile: Any
    profile_hash: str | None
    last_seen: float | None
    status: str


class Store:
    """All SQL of ci-fanout. Create with :func:`open_store`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> None:
        self._con = con
        self._lock = threading.RLock()
        self.read_only = read_only

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def set_wal_autocheckpoint(self, size: str) -> None:
        """Checkpoint when the write-ahead log reaches ``size`` (e.g. ``16MB``)."""
        if not _SIZE_RE.match(size.strip()):
            raise StoreError(f"not a size: {size!r} (use e.g. 16MB)")
        with self._lock:
            self._con.execute(f"SET wal_autocheckpoint = '{size.strip()}'")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version."""
        with self._lock:
            con = self._con
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
            )
            row = _one(con, "SELECT coalesce(max(version), 0) FROM schema_version")
            current = int(row[0]) if row else 0
            if current > LATEST_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this ci-fanout "
                    f"({LATEST_VERSION}); upgrade ci-fanout or use another --db"
                )
            for version, description, sql in MIGRATIONS:
                if version <= current:
                    continue
                with self._tx() as tx:
                    tx.execute(sql)
                    tx.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        [version, description, _now()],
                    )
            return LATEST_VERSION

    def schema_version(self) -> int:
        """Applied schema version; 0 for an empty database."""
        with self._lock:
            try:
                row = _one(self._con, "SELECT coalesce(max(version), 0) FROM schema_version")
            except duckdb.CatalogException:
                return 0
            return int(row[0]) if row else 0

    # ------------------------------------------------------------------ ingest
    def ingest(self, resultset: ResultSet) -> int:
        """Store one shard's results; returns test rows inserted.

        Idempotent per (run_id, shard_id): a shard already stored inserts 0.
        ``shard_id`` defaults to ``"default"``; ``run_id`` is required.
        """
        return self.ingest_many((resultset,))

    def ingest_many(self, resultsets: Iterable[ResultSet], *, batch_rows: int = 500_000) -> int:
        """Bulk ingest; test rows are appended in Arrow batches of ~``batch_rows``."""
        total = 0
        pending: list[tuple[ResultSet, str, str]] = []
        pending_rows = 0
        for rs in resultsets:
            run_id = rs.run.run_id
            if not run_id:
                raise StoreError(
                    "cannot store results without a run id; pass --run-id (or set run.run_id)"
                )
            shard_id = rs.run.shard_id or DEFAULT_SHARD
            pending.append((rs, run_id, shard_id))
            pending_rows += len(rs.tests)
            if pending_rows >= batch_rows:
                total += self._ingest_batch(pending)
                pending, pending_rows = [], 0
        if pending:
            total += self._ingest_batch(pending)
        return total

    def ingest_stream(
        self,
        head: ResultSet,
        batches: Iterable[Sequence[TestCase]],
        summary: Callable[[], Summary] | None = None,
    ) -> int:
        """Store one shard whose cases arrive in batches (bounded memory); returns rows.

        ``head`` carries the run, metrics, files and tool (its own ``tests`` go
        first); ``summary()`` is called after the last batch (default: counted from
        the batches). See ``ShardWriter`` for the guarantees.
        """
        writer = self.shard_writer(head.run)
        writer.add(head.tests)
        for cases in batches:
            writer.add(cases)
        return writer.finish(head, None if summary is None else summary())

    def shard_writer(self, run: RunInfo, *, memory_limit_mb: int | None = None) -> ShardWriter:
        """A writer that appends one shard's cases batch by batch (``ingest --db``).

        ``memory_limit_mb`` caps DuckDB's own buffers for this connection (a process
        that only ingests, like the CLI: DuckDB otherwise keeps up to 80 % of RAM)."""
        if memory_limit_mb is not None:
            with self._lock:
                self._con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
                self._con.execute("SET threads = 1")
                self._con.execute("SET preserve_insertion_order = false")
        return ShardWriter(self, run)

    def _append_cases(self, run_id: str, shard_id: str, cases: Sequence[TestCase]) -> int:
        table = _cases_table([(ResultSet(tests=tuple(cases)), run_id, shard_id)])
        with self._tx() as con:
            con.register("_ingest_cases", table)
            try:
                con.execute(
                    "INSERT INTO test_results (" + ", ".join(table.schema.names) + ") "  # noqa: S608
                    "SELECT * FROM _ingest_cases"
                )
            finally:
                con.unregister("_ingest_cases")
        return int(table.num_rows)

    def _ingest_batch(self, batch: list[tuple[ResultSet, str, str]]) -> int:
        with self._tx() as con:
            keys = [f"{r}\x1f{s}" for _, r, s in batch]
            existing = {
                row[0]
                for row in con.execute(
                    "SELECT run_id || chr(31) || shard_id FROM shards "
                    "WHERE run_id || chr(31) || shard_id IN (SELECT unnest(?))",
                    [keys],
                ).fetchall()
            }
            seen: set[str] = set()
            todo: list[tuple[ResultSet, str, str]] = []
            for item, key in zip(batch, keys, strict=True):
                if key in existing or key in seen:
                    continue
                seen.add(key)
                todo.append(item)
            if not todo:
                return 0
            now = _now()
            for rs, run_id, shard_id in todo:
                self._upsert_run(con, rs.run, run_id, now)
                self._insert_shard(con, rs, run_id, shard_id, now)
            table = _cases_table(todo)
            if table.num_rows:
                con.register("_ingest_cases", table)
                try:
                    con.execute(
                        "INSERT INTO test_results (" + ", ".join(table.schema.names) + ") "  # noqa: S608
                        "SELECT * FROM _ingest_cases"
                    )
                finally:
                    con.unregister("_ingest_cases")
            metric_rows = [
                (run_id, shard_id, m.name, float(m.value), m.unit, m.direction)
                for rs, run_id, shard_id in todo
                for m in rs.metrics
            ]
            if metric_rows:
                con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", metric_rows)
            return int(table.num_rows)

    @staticmethod
    def _upsert_run(
        con: duckdb.DuckDBPyConnection, run: RunInfo, run_id: str, now: datetime
    ) -> None:
        con.execute(
            """
            INSERT INTO runs (run_id, repo, provider, pipeline_id, commit, branch, base_commit, pr,
                              started_at, finished_at, ingested_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (run_id) DO UPDATE SET
                repo = coalesce(runs.repo, excluded.repo),
                provider = coalesce(runs.provider, excluded.provider),
                pipeline_id = coalesce(runs.pipeline_id, excluded.pipeline_id),
                commit = coalesce(runs.commit, excluded.commit),
                branch = coalesce(runs.branch, excluded.branch),
                base_commit = coalesce(runs.base_commit, excluded.base_commit),
                pr = coalesce(runs.pr, excluded.pr),
                started_at = least(runs.started_at, excluded.started_at),
                finished_at = greatest(runs.finished_at, excluded.finished_at)
            """,
            [
                run_id,
                run.repo,
                run.provider,
                run.pipeline_id,
                run.commit,
                run.branch,
                run.base_commit,
                run.pr,
                _ts(run.started_at),
                _ts(run.finished_at),
                now,
            ],
        )

    @staticmethod
    def _insert_shard(
        con: duckdb.DuckDBPyConnection,
        rs: ResultSet,
        run_id: str,
        shard_id: str,
        now: datetime,
        summary: Summary | None = None,
    ) -> None:
        run = rs.run
        s = rs.summary if summary is None else summary
        con.execute(
            "INSERT INTO shards (run_id, shard_id, runner_name, runner_labels, runner_class, "
            "profile_hash, job_url, tool, started_at, finished_at, duration_s, tests, passed, "
            "failed, errors, skipped, flaky, unreadable_files, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                shard_id,
                run.runner_name,
                list(run.runner_labels),
                runner_class_of(run.runner_labels, run.runner_name),
                run.profile_hash,
                run.job_url,
                rs.tool,
                _ts(run.started_at),
                _ts(run.finished_at),
                s.duration_s,
                s.tests,
                s.passed,
                s.failed,
                s.errors,
                s.skipped,
                s.flaky,
                sum(1 for f in rs.files if f.error),
                now,
            ],
        )

    # ------------------------------------------------------------------ runs
    def run(self, run_id: str) -> RunMeta | None:
        with self._lock:
            row = _one(
                self._con,
                "SELECT run_id, seq, repo, provider, pipeline_id, commit, branch, base_commit, pr, "
                "started_at FROM runs WHERE run_id = ?",
                [run_id],
            )
        return None if row is None else _run_meta(row)

    def runs(
        self,
        *,
        branch: str | None = None,
        commit: str | None = None,
        repo: str | None = None,
        before_seq: int | None = None,
        exclude_prs: bool = False,
        limit: int = 200,
    ) -> list[RunMeta]:
        """Runs newest first, filtered."""
        where, params = _filters(branch=branch, commit=commit, repo=repo)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        if exclude_prs:
            where.append("pr IS NULL")
        sql = (
            "SELECT run_id, seq, repo, provider, pipeline_id, commit, branch, base_commit, pr, "  # noqa: S608
            "started_at FROM runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY coalesce(started_at, ingested_at) DESC, seq DESC LIMIT ?"
        )
        with self._lock:
            rows = self._con.execute(sql, [*params, limit]).fetchall()
        return [_run_meta(r) for r in rows]

    def shards(self, run_ids: Sequence[str]) -> list[ShardMeta]:
        with self._lock:
            rows = self._con.execute(
                "SELECT run_id, shard_id, runner_class, runner_name, runner_labels, job_url, "
                "duration_s, tests, passed, failed, errors, skipped, " + _WALL + ", interrupted "
                "FROM shards WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, shard_id",
                [list(run_ids)],
            ).fetchall()
        return [
            ShardMeta(
                run_id=r[0],
                shard_id=r[1],
                runner_class=r[2],
                runner_name=r[3],
                runner_labels=tuple(r[4] or ()),
                job_url=r[5],
                duration_s=float(r[6] or 0.0),
                tests=int(r[7] or 0),
                passed=int(r[8] or 0),
                failed=int(r[9] or 0),
                errors=int(r[10] or 0),
                skipped=int(r[11] or 0),
                wall_s=float(r[12] or 0.0),
                interrupted=r[13],
            )
            for r in rows
        ]

    def mark_interrupted(self, run_id: str, shard_id: str, why: str) -> bool:
        """Record why a shard's test process ended abnormally (an infrastructure error shown
        by the report even when all its tests were recovered); False if no such shard."""
        with self._tx() as con:
            row = _one(
                con,
                "UPDATE shards SET interrupted = ? WHERE run_id = ? AND shard_id = ? "
                "RETURNING shard_id",
                [why[:500], run_id, shard_id],
            )
        return row is not None

    def cases(self, run_ids: Sequence[str], *, details: bool = True) -> CaseRows:
        """All test rows of the given runs, columnar.

        ``details=False`` fetches only id, shard, outcome and duration (the base
        side of a comparison); the other columns are then empty lists, except ``message``
        when some row is an infrastructure error (``infra:``; the others are None then).
        """
        cols_sql = "test_id, shard_id, outcome, coalesce(duration_s, 0.0) AS duration_s"
        if not details:
            cols_sql += (
                ", CASE WHEN outcome = 'error' AND starts_with(message, 'infra:') "
                "THEN message END AS message"
            )
        if details:
            cols_sql += (
                ", coalesce(retries, 0) AS retries, coalesce(flaky, false) AS flaky, file, line, "
                "CASE WHEN outcome IN ('failed', 'error') "
                "OR (outcome = 'skipped' AND starts_with(message, 'not run: ')) "
                "THEN message END AS message"
            )
        with self._lock:
            tbl = self._con.sql(
                f"SELECT {cols_sql} FROM test_results "  # noqa: S608 - constant fragments
                "WHERE run_id IN (SELECT unnest(?))",
                params=[list(run_ids)],
            ).to_arrow_table()
        cols = {name: tbl.column(name).to_pylist() for name in tbl.column_names}
        if not details and not any(m is not None for m in cols["message"]):
            del cols["message"]
        return CaseRows(
            test_id=cols["test_id"],
            shard_id=cols["shard_id"],
            outcome=cols["outcome"],
            duration_s=cols["duration_s"],
            retries=cols.get("retries", []),
            flaky=cols.get("flaky", []),
            file=cols.get("file", []),
            line=cols.get("line", []),
            message=cols.get("message", []),
        )

    def history(
        self,
        *,
        branch: str | None = None,
        repo: str | None = None,
        test_ids: Sequence[str] | None = None,
        only_unstable: bool = True,
        max_runs: int = 600,
        before_seq: int | None = None,
    ) -> HistoryRows:
        """Outcomes of the last ``max_runs`` runs (PR runs excluded when ``branch`` is set).

        ``only_unstable`` keeps only tests that failed, errored or were retried
        at least once in the window: the others cannot be flaky, and skipping
        them keeps ``ci-app flaky`` fast on 10M-row histories.
        """
        where, params = _filters(branch=branch, repo=repo)
        if branch is not None:
            where.append("pr IS NULL")
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        run_sql = (
            "SELECT run_id, seq, commit FROM runs"  # noqa: S608
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY seq DESC LIMIT ?"
        )
        params.append(max_runs)
        test_filter = ""
        if test_ids is not None:
            test_filter = " AND t.test_id IN (SELECT unnest(?))"
            params.append(list(test_ids))
        unstable = ""
        if only_unstable:
            unstable = (
                " AND t.test_id IN (SELECT test_id FROM test_results u JOIN w USING (run_id) "
                "WHERE u.outcome IN ('failed', 'error') OR u.flaky)"
            )
        sql = (
            f"WITH w AS ({run_sql}) "  # noqa: S608 - fragments are constants
            "SELECT t.test_id, s.runner_class, w.seq, t.run_id, w.commit, t.outcome, "
            "coalesce(t.flaky, false) AS flaky, "
            "((s.tests - s.skipped > 0 AND s.passed = 0 "
            " AND s.errors >= greatest(1, (s.tests - s.skipped) // 2)) "
            " OR (t.outcome = 'error' AND coalesce(starts_with(t.message, 'infra:'), false))) "
            "AS infra "
            "FROM test_results t JOIN w USING (run_id) "
            "JOIN shards s ON s.run_id = t.run_id AND s.shard_id = t.shard_id "
            "WHERE t.outcome <> 'skipped'" + test_filter + unstable + " ORDER BY w.seq"
        )
        with self._lock:
            tbl = self._con.sql(sql, params=params).to_arrow_table()
        cols = {name: tbl.column(name).to_pylist() for name in tbl.column_names}
        return HistoryRows(
            test_id=cols["test_id"],
            runner_class=cols["runner_class"],
            seq=cols["seq"],
            run_id=cols["run_id"],
            commit=cols["commit"],
            outcome=cols["outcome"],
            flaky=cols["flaky"],
            infra=cols["infra"],
        )

    def durations(
        self,
        repo: str | None = None,
        branch: str | None = None,
        runner_labels: Sequence[str] | None = None,
        *,
        max_runs: int = 20,
    ) -> dict[str, float]:
        """Median duration per test id over the last ``max_runs`` matching runs (for the planner).

        ``runner_labels`` selects shards whose runner class is exactly that label set;
        skipped tests are ignored.
        """
        where, params = _filters(branch=branch, repo=repo)
        run_sql = (
            "SELECT run_id FROM runs"  # noqa: S608
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY seq DESC LIMIT ?"
        )
        params.append(max_runs)
        shard_filter = ""
        if runner_labels:
            shard_filter = " AND s.runner_class = ?"
            params.append(runner_class_of(runner_labels))
        sql = (
            f"WITH w AS ({run_sql}) "  # noqa: S608 - fragments are constants
            "SELECT t.test_id, median(t.duration_s) FROM test_results t JOIN w USING (run_id) "
            "JOIN shards s ON s.run_id = t.run_id AND s.shard_id = t.shard_id "
            "WHERE t.outcome <> 'skipped' AND t.duration_s IS NOT NULL"
            + shard_filter
            + " GROUP BY t.test_id"
        )
        with self._lock:
            tbl = self._con.sql(sql, params=params).to_arrow_table()
        return dict(
            zip(
                tbl.column(0).to_pylist(),
                (float(v) for v in tbl.column(1).to_pylist()),
                strict=True,
            )
        )

    def run_totals(self, run_ids: Sequence[str]) -> list[RunTotals]:
        """Totals per run, in the order of ``run_ids``: each test id counts once per run, with
        its worst outcome over the shards (as in the report); wall time is the longest shard's
        own start to end, machine time the sum over shards."""
        with self._lock:
            rows = self._con.execute(
                "WITH t AS (SELECT run_id, test_id, max(CASE outcome WHEN 'error' THEN 3 "  # noqa: S608 - constant fragments
                "WHEN 'failed' THEN 2 WHEN 'passed' THEN 1 ELSE 0 END) AS worst "
                "FROM test_results WHERE run_id IN (SELECT unnest(?)) "
                "AND shard_id NOT IN (SELECT unnest(?)) GROUP BY run_id, test_id), "
                "c AS (SELECT run_id, count(*) AS tests, count(*) FILTER (worst = 1) AS passed, "
                "count(*) FILTER (worst = 2) AS failed, count(*) FILTER (worst = 3) AS errors, "
                "count(*) FILTER (worst = 0) AS skipped FROM t GROUP BY run_id), "
                "w AS (SELECT run_id, sum(wall) AS machine, max(wall) AS wall FROM (SELECT run_id, "
                + _WALL
                + " AS wall FROM shards WHERE run_id IN (SELECT unnest(?)) "
                "AND shard_id NOT IN (SELECT unnest(?))) GROUP BY run_id) "
                "SELECT w.run_id, r.commit, c.tests, c.passed, c.failed, c.errors, c.skipped, "
                "w.machine, w.wall FROM w JOIN runs r USING (run_id) LEFT JOIN c USING (run_id)",
                [list(run_ids), sorted(SYNTHETIC_SHARDS), list(run_ids), sorted(SYNTHETIC_SHARDS)],
            ).fetchall()
        by_id = {
            r[0]: RunTotals(
                run_id=r[0],
                commit=r[1],
                tests=int(r[2] or 0),
                passed=int(r[3] or 0),
                failed=int(r[4] or 0),
                errors=int(r[5] or 0),
                skipped=int(r[6] or 0),
                duration_s=float(r[7] or 0.0),
                wall_s=float(r[8] or 0.0),
            )
            for r in rows
        }
        return [by_id[r] for r in run_ids if r in by_id]

    def metrics(self, run_ids: Sequence[str]) -> list[MetricValue]:
        """Metric values of runs (mean over shards of the same runner class)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT m.name, avg(m.value), any_value(m.unit), any_value(m.direction), "
                "s.runner_class FROM metrics m JOIN shards s USING (run_id, shard_id) "
                "WHERE m.run_id IN (SELECT unnest(?)) GROUP BY m.name, s.runner_class "
                "ORDER BY m.name, s.runner_class",
                [list(run_ids)],
            ).fetchall()
        return [
            MetricValue(
                name=r[0],
                value=float(r[1]),
                unit=r[2] or "",
                direction=r[3] or "lower",
                runner_class=r[4],
            )
            for r in rows
        ]

    def metric_series(
        self,
        names: Sequence[str],
        run_ids: Sequence[str],
    ) -> dict[tuple[str, str], list[SeriesPoint]]:
        """History of metrics over the given runs (ordered as given), per (name, runner class)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT m.name, s.runner_class, m.run_id, any_value(r.commit), avg(m.value), "
                "any_value(r.started_at) FROM metrics m JOIN shards s USING (run_id, shard_id) "
                "JOIN runs r ON r.run_id = m.run_id "
                "WHERE m.name IN (SELECT unnest(?)) AND m.run_id IN (SELECT unnest(?)) "
                "GROUP BY m.name, s.runner_class, m.run_id",
                [list(names), list(run_ids)],
            ).fetchall()
        order = {r: i for i, r in enumerate(run_ids)}
        out: dict[tuple[str, str], list[SeriesPoint]] = {}
        for name, rclass, run_id, commit, value, started in sorted(
            rows, key=lambda r: (r[0], r[1], order[r[2]])
        ):
            out.setdefault((name, rclass), []).append(
                SeriesPoint(
                    run_id=run_id, commit=commit, value=float(value), started_at=_iso(started)
                )
            )
        return out

    def test_duration_series(
        self, test_ids: Sequence[str], run_ids: Sequence[str]
    ) -> dict[str, list[SeriesPoint]]:
        """Per-test duration (summed over shards) across runs, ordered as ``run_ids``."""
        with self._lock:
            rows = self._con.execute(
                "SELECT t.test_id, t.run_id, any_value(r.commit), sum(t.duration_s) "
                "FROM test_results t JOIN runs r USING (run_id) "
                "WHERE t.test_id IN (SELECT unnest(?)) AND t.run_id IN (SELECT unnest(?)) "
                "AND t.outcome = 'passed' GROUP BY t.test_id, t.run_id",
                [list(test_ids), list(run_ids)],
            ).fetchall()
        order = {r: i for i, r in enumerate(run_ids)}
        out: dict[str, list[SeriesPoint]] = {}
        for test_id, run_id, commit, value in sorted(rows, key=lambda r: (r[0], order[r[1]])):
            out.setdefault(test_id, []).append(
                SeriesPoint(run_id=run_id, commit=commit, value=float(value or 0.0))
            )
        return out

    def count_rows(self, table: str) -> int:
        if table not in {"runs", "shards", "test_results", "metrics", "jobs", "deliveries"}:
            raise StoreError(f"unknown table {table!r}")
        with self._lock:
            row = _one(self._con, f"SELECT count(*) FROM {table}")  # noqa: S608
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ deliveries
    def record_delivery(
        self, provider: str, delivery_id: str, event: str, body: str | None, *, received_at: float
    ) -> bool:
        """Remember a webhook delivery; False when it was seen before (drop the duplicate)."""
        with self._lock:
            rows = self._con.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING "
                "RETURNING delivery_id",
                [provider, delivery_id, event, received_at, body],
            ).fetchall()
        return bool(rows)

    def prune_deliveries(self, older_than: float) -> int:
        with self._lock:
            rows = self._con.execute(
                "DELETE FROM deliveries WHERE received_at < ? RETURNING delivery_id", [older_than]
            ).fetchall()
        return len(rows)

    # ------------------------------------------------------------------ jobs (durable queue)
    def enqueue_job(
        self,
        kind: str,
        payload: Any,
        *,
        now: float,
        run_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Queue a job; with an ``idempotency_key`` already queued, return that job's id."""
        with self._tx() as con:
            if idempotency_key is not None:
                row = _one(con, "SELECT id FROM jobs WHERE idempotency_key = ?", [idempotency_key])
                if row is not None:
                    return int(row[0])
            row = _one(
                con,
                "INSERT INTO jobs (kind, payload, run_after, idempotency_key, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [kind, json.dumps(payload), run_after or now, idempotency_key, now, now],
            )
            assert row is not None
            return int(row[0])

    def lease_job(
        self, now: float, lease_s: float, *, kinds: Sequence[str] | None = None
    ) -> Job | None:
        """Lease the oldest runnable job (queued and due, or leased with an expired lease)."""
        kind_sql = " AND kind IN (SELECT unnest(?))" if kinds else ""
        params: list[Any] = [now, now]
        if kinds:
            params.append(list(kinds))
        with self._tx() as con:
            row = _one(
                con,
                "SELECT id FROM jobs WHERE ((state = 'queued' AND run_after <= ?) "  # noqa: S608
                "OR (state = 'leased' AND lease_until < ?))" + kind_sql + " ORDER BY run_after, id "
                "LIMIT 1",
                params,
            )
            if row is None:
                return None
            con.execute(
                "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_until = ?, "
                "updated_at = ? WHERE id = ?",
                [now + lease_s, now, row[0]],
            )
            return self._job(con, int(row[0]))

    def complete_job(self, job_id: int, *, now: float) -> None:
        with self._lock:
            self._con.execute(
                "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = ? WHERE id = ?",
                [now, job_id],
            )

    def fail_job(
        self, job_id: int, error: str, *, now: float, backoff_s: float, max_attempts: int = 5
    ) -> str:
        """Record a failure: requeue after ``backoff_s``, or park after ``max_attempts``.

        Returns the new state (``queued`` or ``parked``).
        """
        with self._tx() as con:
            row = _one(con, "SELECT attempts FROM jobs WHERE id = ?", [job_id])
            if row is None:
                raise StoreError(f"no job {job_id}")
            state = "parked" if int(row[0]) >= max_attempts else "queued"
            con.execute(
                "UPDATE jobs SET state = ?, last_error = ?, run_after = ?, lease_until = NULL, "
                "updated_at = ? WHERE id = ?",
                [state, error[:MESSAGE_LIMIT], now + backoff_s, now, job_id],
            )
            return state

    def park_job(self, job_id: int, error: str, *, now: float) -> None:
        with self._lock:
            self._con.execute(
                "UPDATE jobs SET state = 'parked', last_error = ?, lease_until = NULL, "
                "updated_at = ? WHERE id = ?",
                [error[:MESSAGE_LIMIT], now, job_id],
            )

    def requeue_parked(self, job_id: int, *, now: float) -> None:
        with self._lock:
            self._con.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, updated_at = ? "
                "WHERE id = ? AND state = 'parked'",
                [now, now, job_id],
            )

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._job(self._con, job_id)

    def job_counts(self) -> dict[str, int]:
        """Jobs per state (for /metrics and the dashboard)."""
        with self._lock:
            rows = self._con.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    @staticmethod
    def _job(con: duckdb.DuckDBPyConnection, job_id: int) -> Job | None:
        row = _one(
            con,
            "SELECT id, kind, payload, state, attempts, lease_until, last_error, run_after, "
            "idempotency_key FROM jobs WHERE id = ?",
            [job_id],
        )
        if row is None:
            return None
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

    # ------------------------------------------------------------------ runners
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
        with self._lock:
            self._con.execute(
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
        with self._lock:
            row = _one(
                self._con,
                "SELECT name, provider, labels, profile, profile_hash, last_seen, status "
                "FROM runners WHERE name = ?",
                [name],
            )
        return None if row is None else _runner(row)

    def list_runners(self, *, status: str | None = None) -> list[Runner]:
        sql = "SELECT name, provider, labels, profile, profile_hash, last_seen, status FROM runners"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY name", params).fetchall()
        return [_runner(r) for r in rows]

    def mark_stale_runners(self, *, now: float, offline_after_s: float) -> list[str]:
        """Mark runners without a heartbeat for ``offline_after_s`` offline; returns their names."""
        with self._lock:
            rows = self._con.execute(
                "UPDATE runners SET status = 'offline' WHERE status <> 'offline' "
                "AND (last_seen IS NULL OR last_seen < ?) RETURNING name",
                [now - offline_after_s],
            ).fetchall()
        return sorted(r[0] for r in rows)

    def record_heartbeat(
        self,
        runner_name: str,
        *,
        now: float,
        load: float | None = None,
        busy: bool | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        with self._tx() as con:
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
        with self._lock:
            rows = self._con.execute(
                "DELETE FROM heartbeats WHERE (runner_name, received_at) IN ("
                "SELECT runner_name, received_at FROM (SELECT runner_name, received_at, "
                "row_number() OVER (PARTITION BY runner_name ORDER BY received_at DESC) AS n "
                "FROM heartbeats) WHERE n > ?) RETURNING runner_name",
                [keep_per_runner],
            ).fetchall()
        return len(rows)

    def latest_heartbeat(self, runner_name: str) -> tuple[float, float | None, bool | None] | None:
        with self._lock:
            row = _one(
                self._con,
                "SELECT received_at, load, busy FROM heartbeats WHERE runner_name = ? "
                "ORDER BY received_at DESC LIMIT 1",
                [runner_name],
            )
        return None if row is None else (float(row[0]), row[1], row[2])

    def add_runner_token(self, name: str, token_hash: str, *, now: float) -> None:
        with self._lock:
            self._con.execute(
                "INSERT INTO runner_tokens (token_hash, name, created) VALUES (?, ?, ?)",
                [token_hash, name, now],
            )

    def runner_for_token(self, token_hash: str) -> str | None:
        """The runner a (hashed) token belongs to, unless revoked."""
        with self._lock:
            row = _one(
                self._con,
                "SELECT name FROM runner_tokens WHERE token_hash = ? AND revoked IS NULL",
                [token_hash],
            )
        return None if row is None else str(row[0])

    def revoke_runner_tokens(self, name: str, *, now: float) -> int:
        with self._lock:
            rows = self._con.execute(
                "UPDATE runner_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL "
                "RETURNING token_hash",
                [now, name],
            ).fetchall()
        return len(rows)

    # ------------------------------------------------------------------ test queue
    def enqueue_tests(self, run_id: str, pool: str, test_ids: Sequence[str]) -> int:
        """Add tests to a run's dynamic queue (ignored when already queued)."""
        if not test_ids:
            return 0
        tbl = pa.table(
            {
                "run_id": pa.array([run_id] * len(test_ids), pa.string()),
                "pool": pa.array([pool] * len(test_ids), pa.string()),
                "test_id": pa.array(list(test_ids), pa.string()),
            }
        )
        with self._tx() as con:
            con.register("_enqueue_tests", tbl)
            try:
                rows = con.execute(
                    "INSERT INTO test_queue (run_id, pool, test_id) "
                    "SELECT DISTINCT run_id, pool, test_id FROM _enqueue_tests "
                    "ON CONFLICT DO NOTHING RETURNING test_id"
                ).fetchall()
            finally:
                con.unregister("_enqueue_tests")
        return len(rows)

    def lease_tests(
        self, run_id: str, pool: str, lease_id: str, *, n: int, now: float, lease_s: float
    ) -> list[str]:
        """Lease up to ``n`` queued (or lease-expired) tests for one worker."""
        with self._tx() as con:
            rows = con.execute(
                "SELECT test_id FROM test_queue WHERE run_id = ? AND pool = ? AND "
                "(state = 'queued' OR (state = 'leased' AND lease_until < ?)) "
                "ORDER BY attempts, test_id LIMIT ?",
                [run_id, pool, now, n],
            ).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                con.execute(
                    "UPDATE test_queue SET state = 'leased', lease_id = ?, lease_until = ?, "
                    "attempts = attempts + 1 WHERE run_id = ? AND pool = ? "
                    "AND test_id IN (SELECT unnest(?))",
                    [lease_id, now + lease_s, run_id, pool, ids],
                )
            return ids

    def complete_tests(
        self, run_id: str, pool: str, lease_id: str, results: Mapping[str, str]
    ) -> int:
        """Record outcomes for leased tests; only the current lease holder may complete."""
        if not results:
            return 0
        with self._tx() as con:
            rows = con.execute(
                "UPDATE test_queue SET state = 'done', result = r.outcome, lease_until = NULL "
                "FROM (SELECT unnest(?) AS test_id, unnest(?) AS outcome) r "
                "WHERE test_queue.run_id = ? AND test_queue.pool = ? "
                "AND test_queue.test_id = r.test_id AND test_queue.lease_id = ? "
                "AND test_queue.state = 'leased' RETURNING test_queue.test_id",
                [list(results), list(results.values()), run_id, pool, lease_id],
            ).fetchall()
        return len(rows)

    def test_queue_counts(self, run_id: str, pool: str | None = None) -> dict[str, int]:
        sql = "SELECT state, count(*) FROM test_queue WHERE run_id = ?"
        params: list[Any] = [run_id]
        if pool is not None:
            sql += " AND pool = ?"
            params.append(pool)
        with self._lock:
            rows = self._con.execute(sql + " GROUP BY state", params).fetchall()
        return {str(s): int(n) for s, n in rows}


#: a shard's wall time: its own start to end when it recorded both, else its duration
_WALL = (
    "CASE WHEN finished_at > started_at "
    "THEN (epoch_ms(finished_at) - epoch_ms(started_at)) / 1000.0 "
    "ELSE coalesce(duration_s, 0) END"
)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    """First row or None, consuming the whole result (a half-read result blocks ``con.sql``)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _filters(**kwargs: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in kwargs.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


def _run_meta(row: Sequence[Any]) -> RunMeta:
    return RunMeta(
        run_id=row[0],
        seq=int(row[1]),
        repo=row[2],
        provider=row[3],
        pipeline_id=row[4],
        commit=row[5],
        branch=row[6],
        base_commit=row[7],
        pr=row[8],
        started_at=_iso(row[9]),
    )


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


class ShardWriter:
    """Appends one shard's test rows in batches, each in its own transaction.

    The shard row (with the summary) is written last by ``finish``, so a shard row
    means all its rows are in: a shard already stored makes every call a no-op
    (idempotent, like ``ingest``), and rows left by an attempt that died before
    ``finish`` are deleted when the next attempt starts. Memory holds one batch.
    """

    def __init__(self, store: Store, run: RunInfo, batch_rows: int = 50_000) -> None:
        run_id = run.run_id
        if not run_id:
            raise StoreError(
                "cannot store results without a run id; pass --run-id (or set run.run_id)"
            )
        self._store = store
        self._run_id = run_id
        self._shard_id = run.shard_id or DEFAULT_SHARD
        self._batch_rows = batch_rows
        self._pending: list[TestCase] = []
        self._counter = SummaryCounter()
        self.rows = 0
        with store._tx() as con:
            self.skip = (
                _one(
                    con,
                    "SELECT 1 FROM shards WHERE run_id = ? AND shard_id = ?",
                    [self._run_id, self._shard_id],
                )
                is not None
            )
            if not self.skip:
                con.execute(
                    "DELETE FROM test_results WHERE run_id = ? AND shard_id = ?",
                    [self._run_id, self._shard_id],
                )

    def add(self, cases: Iterable[TestCase]) -> None:
        if self.skip:
            return
        for case in cases:
            self._counter.add(case)
            self._pending.append(case)
        if len(self._pending) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.rows += self._store._append_cases(self._run_id, self._shard_id, self._pending)
            self._pending = []

    def finish(self, head: ResultSet, summary: Summary | None = None) -> int:
        """Write the last batch, the run and the shard row; returns the rows inserted."""
        if self.skip:
            return 0
        self._flush()
        final = summary if summary is not None else self._counter.summary(head.duration_s)
        now = _now()
        with self._store._tx() as con:
            Store._upsert_run(con, head.run, self._run_id, now)
            Store._insert_shard(con, head, self._run_id, self._shard_id, now, final)
            metric_rows = [
                (self._run_id, self._shard_id, m.name, float(m.value), m.unit, m.direction)
                for m in head.metrics
            ]
            if metric_rows:
                con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", metric_rows)
        return self.rows


def _cases_table(batch: Sequence[tuple[ResultSet, str, str]]) -> pa.Table:
    """Arrow table of all test cases in the batch.

    One list comprehension per column (~50 ns a value) then ``pa.array``; a
    per-row tuple + transpose is 5x slower.
    """
    run_col: list[str] = []
    shard_col: list[str] = []
    tests: list[TestCase] = []
    for rs, run_id, shard_id in batch:
        n = len(rs.tests)
        run_col.extend([run_id] * n)
        shard_col.extend([shard_id] * n)
        tests.extend(rs.tests)
    if not tests:
        return _CASE_SCHEMA.empty_table()
    data: dict[str, list[Any]] = {
        "run_id": run_col,
        "shard_id": shard_col,
        "test_id": [t.id for t in tests],
        "suite": [t.suite for t in tests],
        "classname": [t.classname for t in tests],
        "name": [t.name for t in tests],
        "file": [t.file for t in tests],
        "line": [t.line for t in tests],
        "outcome": [t.outcome for t in tests],
        "duration_s": [t.duration_s for t in tests],
        "retries": [t.retries for t in tests],
        "flaky": [t.flaky for t in tests],
        "message": [
            None
            if t.outcome in _QUIET and not _is_not_run(t.message)
            else _message(t.message, t.details)
            for t in tests
        ],
    }
    return pa.Table.from_arrays(
        [pa.array(data[f.name], f.type) for f in _CASE_SCHEMA], schema=_CASE_SCHEMA
    )


def _is_not_run(message: str | None) -> bool:
    """A skipped case the planner could not place keeps its reason (shown in the report)."""
    return message is not None and message.startswith("not run: ")


def _message(message: str | None, details: str | None) -> str | None:
    text = message or details
    if text is None:
        return None
    return text[:MESSAGE_LIMIT]


def is_fatal_error(exc: BaseException) -> bool:
    """True when DuckDB says the database must be restarted (e.g. a checkpoint failed on a
    full disk): every later call on this connection fails, so the process must start over."""
    if isinstance(exc, duckdb.FatalException):
        return True
    return isinstance(exc, duckdb.Error) and "database has been invalidated" in str(exc)


def open_store(path: str | Path = "ci-fanout.duckdb", *, read_only: bool = False) -> Store:
    """Open (creating and migrating) a store; use as ``with open_store(p) as store:``.

    ``":memory:"`` gives a throwaway in-memory store (tests, demos).
    """
    target = str(path)
    if target != ":memory:":
        parent = Path(target).parent
        if not read_only:
            parent.mkdir(parents=True, exist_ok=True)
        elif not Path(target).exists():
            raise StoreError(f"no database at {target}; run `ci-app ingest --db {target}` first")
    try:
        con = duckdb.connect(target, read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot open {target}: {exc} (another process may hold it for writing; "
            "DuckDB allows one writer)"
        ) from exc
    store = Store(con, read_only=read_only)
    if read_only:
        if store.schema_version() < LATEST_VERSION:
            raise StoreError(f"{target} needs migrating; open it once read-write")
    else:
        store.migrate()
    return store
