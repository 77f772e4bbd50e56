"""Results history: ingest and the queries of reports, flaky detection and the planner.

:class:`Results` implements :class:`~ci_app.reporting.report.ResultStore`. The history reads
are columnar (Arrow) because they scan 10M+ rows; writing lives in :mod:`ci_app.store.ingest`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ci_app.model.results import SYNTHETIC_SHARDS, ResultSet, RunInfo, Summary, TestCase
from ci_app.reporting.data import (
    CaseRows,
    HistoryRows,
    RunMeta,
    RunTotals,
    ShardMeta,
    runner_class_of,
)
from ci_app.store.database import Database
from ci_app.store.ingest import ShardWriter, ingest_batch, shard_key
from ci_app.store.trends import Trends, iso

__all__ = ["Results", "query_runs"]

#: a shard's wall time: its own start to end when it recorded both, else its duration
_WALL = (
    "CASE WHEN finished_at > started_at "
    "THEN (epoch_ms(finished_at) - epoch_ms(started_at)) / 1000.0 "
    "ELSE coalesce(duration_s, 0) END"
)


def query_runs(
    db: Database, where: Sequence[str], params: Sequence[Any], limit: int
) -> list[RunMeta]:
    """Runs matching every SQL condition of ``where`` (``?`` bound to ``params``), newest
    first (shared by :meth:`Results.runs` and the explorer's run search)."""
    sql = (
        "SELECT run_id, seq, repo, provider, pipeline_id, commit, branch, base_commit, pr, "  # noqa: S608
        "started_at FROM runs"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY coalesce(started_at, ingested_at) DESC, seq DESC LIMIT ?"
    )
    return [_run_meta(r) for r in db.all(sql, [*params, limit])]


class Results(Trends):
    """Runs, shards, test rows and (through :class:`Trends`) metrics. Every method is one
    locked call."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)

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
            run_id, shard_id = shard_key(rs.run)
            pending.append((rs, run_id, shard_id))
            pending_rows += len(rs.tests)
            if pending_rows >= batch_rows:
                total += ingest_batch(self._db, pending)
                pending, pending_rows = [], 0
        if pending:
            total += ingest_batch(self._db, pending)
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

        ``memory_limit_mb`` caps DuckDB's own buffers (see :meth:`Database.limit_memory`;
        raised for a batch with a row of megabytes)."""
        return ShardWriter(self._db, run, memory_limit_mb=memory_limit_mb)

    def mark_interrupted(self, run_id: str, shard_id: str, why: str) -> bool:
        """Record why a shard's test process ended abnormally (an infrastructure error shown
        by the report even when all its tests were recovered); False if no such shard."""
        with self._db.transaction() as con:
            rows = con.execute(
                "UPDATE shards SET interrupted = ? WHERE run_id = ? AND shard_id = ? "
                "RETURNING shard_id",
                [why[:500], run_id, shard_id],
            ).fetchall()
        return bool(rows)

    # ------------------------------------------------------------------ runs and shards
    def run(self, run_id: str) -> RunMeta | None:
        found = query_runs(self._db, ["run_id = ?"], [run_id], 1)
        return found[0] if found else None

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
        return query_runs(self._db, where, params, limit)

    def shards(self, run_ids: Sequence[str]) -> list[ShardMeta]:
        rows = self._db.all(
            "SELECT run_id, shard_id, runner_class, runner_name, runner_labels, job_url, "
            "duration_s, tests, passed, failed, errors, skipped, " + _WALL + ", interrupted "
            "FROM shards WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, shard_id",
            [list(run_ids)],
        )
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

    def run_totals(self, run_ids: Sequence[str]) -> list[RunTotals]:
        """Totals per run, in the order of ``run_ids``: each test id counts once per run, with
        its worst outcome over the shards (as in the report); wall time is the longest shard's
        own start to end, machine time the sum over shards."""
        rows = self._db.all(
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
        )
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

    # ------------------------------------------------------------------ test rows
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
        cols = _columns(
            self._db,
            f"SELECT {cols_sql} FROM test_results "  # noqa: S608 - constant fragments
            "WHERE run_id IN (SELECT unnest(?))",
            [list(run_ids)],
        )
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
        cols = _columns(self._db, sql, params)
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
        tbl = self._db.arrow(sql, params)
        return dict(
            zip(
                tbl.column(0).to_pylist(),
                (float(v) for v in tbl.column(1).to_pylist()),
                strict=True,
            )
        )


def _columns(db: Database, sql: str, params: Any) -> dict[str, list[Any]]:
    """A query's result as Python lists per column name (read through Arrow)."""
    tbl = db.arrow(sql, params)
    return {name: tbl.column(name).to_pylist() for name in tbl.column_names}


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
        started_at=iso(row[9]),
    )
