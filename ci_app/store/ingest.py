"""Writing results: shards, their test rows and metrics (the hot path of ``ci-app ingest``).

Columnar: test cases are appended with one ``INSERT ... SELECT`` per batch, never row by
row: Arrow tables for whole result sets (``ingest_batch``, the server) and CSV batches
read by DuckDB for the streamed shard of ``ingest --db`` (``ShardWriter``), which loads
neither pyarrow nor numpy (see its docstring). A shard row means all its test rows are in,
so ingest is idempotent per (run_id, shard_id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import duckdb

from ci_app.errors import StoreError
from ci_app.model.results import (
    Outcome,
    ResultSet,
    RunInfo,
    Summary,
    SummaryCounter,
    TestCase,
)
from ci_app.reporting.data import runner_class_of
from ci_app.store.csv_batch import CASE_COLUMNS, CsvBatch
from ci_app.store.database import Database, first_row, insert_arrow, insert_csv, now_utc

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

__all__ = ["DEFAULT_SHARD", "MESSAGE_LIMIT", "ShardWriter", "ingest_batch"]

DEFAULT_SHARD = "default"
MESSAGE_LIMIT = 4000
_QUIET = (Outcome.PASSED, Outcome.SKIPPED)


@cache
def _case_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
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


def shard_key(run: RunInfo) -> tuple[str, str]:
    """(run_id, shard_id) of results; a run id is required, the shard defaults."""
    if not run.run_id:
        raise StoreError("cannot store results without a run id; pass --run-id (or set run.run_id)")
    return run.run_id, run.shard_id or DEFAULT_SHARD


def ingest_batch(db: Database, batch: Sequence[tuple[ResultSet, str, str]]) -> int:
    """Store whole shards ``(results, run_id, shard_id)`` in one transaction, skipping those
    already stored; returns test rows inserted."""
    with db.transaction() as con:
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
        now = now_utc()
        for rs, run_id, shard_id in todo:
            _write_shard(con, rs, run_id, shard_id, now)
        table = _cases_table(todo)
        if table.num_rows:
            insert_arrow(con, "test_results", table)
        return int(table.num_rows)


class ShardWriter:
    """Appends one shard's test rows in batches, each in its own transaction.

    The shard row (with the summary) is written last by ``finish``, so a shard row
    means all its rows are in: a shard already stored makes every call a no-op
    (idempotent, like ``ingest``), and rows left by an attempt that died before
    ``finish`` are deleted when the next attempt starts.

    Batches are Arrow tables of 25,000 cases, unless ``memory_limit_mb`` caps DuckDB's
    buffers (:meth:`Database.limit_memory`, raised for a batch with a row of megabytes):
    then the process must stay small (``ingest --db``, issue 14,
    ``bench/ingest_memory.py``), so each case is written as it comes to a temporary CSV
    file (:class:`CsvBatch`) that DuckDB reads in one ``INSERT ... SELECT`` every 5,000
    cases or ``batch_chars`` characters. Memory then holds no batch, and neither pyarrow
    nor numpy is imported (~40 and ~16 MB of RSS; an Arrow table also copies every
    string); DuckDB holds a batch uncompressed until it commits. The Arrow batches stay
    where pyarrow is loaded anyway (the server): they are faster.
    """

    def __init__(
        self,
        db: Database,
        run: RunInfo,
        batch_rows: int | None = None,
        batch_chars: int = 4 << 20,
        *,
        memory_limit_mb: int | None = None,
    ) -> None:
        self._db = db
        self._run_id, self._shard_id = shard_key(run)
        self._batch_rows = batch_rows or (25_000 if memory_limit_mb is None else 5_000)
        self._batch_chars = batch_chars
        self._memory_base = self._memory_mb = memory_limit_mb
        if memory_limit_mb is not None:
            db.limit_memory(memory_limit_mb)
        self._pending: list[TestCase] = []  # the Arrow batch
        self._batch: CsvBatch | None = None
        self._counter = SummaryCounter()
        self.rows = 0
        with db.transaction() as con:
            self.skip = (
                first_row(
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
        count = self._counter.add
        if self._memory_mb is None:
            for case in cases:
                count(case)
                self._pending.append(case)
            if len(self._pending) >= self._batch_rows:
                self._flush()
            return
        for case in cases:
            count(case)
            if self._batch is None:
                self._batch = CsvBatch()
            batch = self._batch
            batch.write(case, _stored_message(case))
            if batch.rows >= self._batch_rows or batch.chars >= self._batch_chars:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            key = (self._run_id, self._shard_id)
            table = _cases_table([(ResultSet(tests=tuple(self._pending)), *key)])
            with self._db.transaction() as con:
                insert_arrow(con, "test_results", table)
            self.rows += len(self._pending)
            self._pending = []
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            batch.close()
            longest_mb = -(-batch.longest_bytes // (1 << 20))
            need = (self._memory_base or 0) + 3 * longest_mb
            if longest_mb > 1 and need > (self._memory_mb or need):
                # DuckDB holds a row whole: the capped process makes room for a long one
                self._memory_mb = need
                self._db.limit_memory(need)
            with self._db.transaction() as con:
                insert_csv(
                    con,
                    "test_results",
                    batch.path,
                    CASE_COLUMNS,
                    {"run_id": self._run_id, "shard_id": self._shard_id},
                    max_line_bytes=batch.longest_bytes,
                )
        finally:
            batch.remove()
        self.rows += batch.rows

    def finish(self, head: ResultSet, summary: Summary | None = None) -> int:
        """Write the last batch, the run and the shard row; returns the rows inserted."""
        if self.skip:
            return 0
        self._flush()
        final = summary if summary is not None else self._counter.summary(head.duration_s)
        with self._db.transaction() as con:
            _write_shard(con, head, self._run_id, self._shard_id, now_utc(), final)
        return self.rows


def _write_shard(
    con: duckdb.DuckDBPyConnection,
    rs: ResultSet,
    run_id: str,
    shard_id: str,
    now: datetime,
    summary: Summary | None = None,
) -> None:
    """The run (merged with what earlier shards said), the shard row and its metrics."""
    _upsert_run(con, rs.run, run_id, now)
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
    metric_rows = [
        (run_id, shard_id, m.name, float(m.value), m.unit, m.direction) for m in rs.metrics
    ]
    if metric_rows:
        con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", metric_rows)


def _upsert_run(con: duckdb.DuckDBPyConnection, run: RunInfo, run_id: str, now: datetime) -> None:
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


def _cases_table(batch: Sequence[tuple[ResultSet, str, str]]) -> pa.Table:
    """Arrow table of all test cases in the batch."""
    import pyarrow as pa

    schema = _case_schema()
    run_col: list[str] = []
    shard_col: list[str] = []
    tests: list[TestCase] = []
    for rs, run_id, shard_id in batch:
        n = len(rs.tests)
        run_col.extend([run_id] * n)
        shard_col.extend([shard_id] * n)
        tests.extend(rs.tests)
    if not tests:
        return schema.empty_table()
    data = {"run_id": run_col, "shard_id": shard_col, **_case_columns(tests)}
    return pa.Table.from_arrays([pa.array(data[f.name], f.type) for f in schema], schema=schema)


def _case_columns(tests: Sequence[TestCase]) -> dict[str, list[Any]]:
    """The cases' values column by column (all but run_id and shard_id).

    One list comprehension per column (~50 ns a value); a per-row tuple + transpose is
    5x slower.
    """
    return {
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
        "message": [_stored_message(t) for t in tests],
    }


def _stored_message(t: TestCase) -> str | None:
    """A passed or skipped case keeps no message, unless the planner could not place it."""
    if t.outcome in _QUIET and not _is_not_run(t.message):
        return None
    return _message(t.message, t.details)


def _is_not_run(message: str | None) -> bool:
    """A skipped case the planner could not place keeps its reason (shown in the report)."""
    return message is not None and message.startswith("not run: ")


def _message(message: str | None, details: str | None) -> str | None:
    text = message or details
    if text is None:
        return None
    return text[:MESSAGE_LIMIT]
