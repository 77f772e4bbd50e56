"""Read-only queries of the dashboard's test explorer: one test's history, a run's tests with
filters, searches over tests and runs (a runner's work and a queue run's timeline are in
:mod:`ci_app.store.activity`).

Every filter is a bound parameter; every list has a limit. ``test_results`` has no index (10M+
rows, appended in bulk), so a test's history is one scan with ``test_id = ?`` pushed down
into it; ``bench/dashboard.py`` keeps the test page under its 300 ms p95 at 1M rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD
from ci_app.reporting.data import RunMeta
from ci_app.reporting.explorer import TestRows
from ci_app.store.database import Database
from ci_app.store.results import query_runs
from ci_app.store.trends import iso

__all__ = [
    "RUN_STATUSES",
    "TEST_STATUSES",
    "RunCase",
    "TestMatch",
    "branches",
    "rows_of_test",
    "run_cases",
    "run_classes",
    "runner_classes",
    "search_runs",
    "search_tests",
]

#: the infrastructure-failure rule of ``ShardMeta.infra_failure``, in SQL over ``shards s``
_INFRA = (
    "(s.tests - s.skipped > 0 AND s.passed = 0 AND s.errors >= greatest(1, (s.tests - s.skipped) "
    "// 2))"
)


def _like(text: str) -> str:
    """``text`` as a literal ILIKE pattern fragment (``%`` and ``_`` escaped with ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _repo_branch(repo: str | None, branch: str | None) -> tuple[list[str], list[Any]]:
    """Conditions on ``runs`` for the filters given (an empty one filters nothing)."""
    where: list[str] = []
    params: list[Any] = []
    if repo:
        where.append("repo = ?")
        params.append(repo)
    if branch:
        where.append("branch = ?")
        params.append(branch)
    return where, params


def rows_of_test(db: Database, test_id: str, *, runs_per_branch: int = 60) -> TestRows:
    """The latest ``runs_per_branch`` runs of ``test_id`` on every branch, oldest first."""
    sql = (
        "WITH t AS (SELECT run_id, shard_id, outcome, duration_s, "  # noqa: S608 - constants
        "coalesce(retries, 0) AS retries, coalesce(flaky, false) AS flaky, message, file, line "
        "FROM test_results "
        "WHERE test_id = ?), "
        "r AS (SELECT run_id, seq, branch, pr, commit, coalesce(started_at, ingested_at) AS at, "
        "dense_rank() OVER (PARTITION BY coalesce(branch, '') ORDER BY seq DESC) AS k "
        "FROM runs WHERE run_id IN (SELECT run_id FROM t)) "
        "SELECT r.seq, t.run_id, r.branch, r.pr, r.commit, r.at, t.shard_id, s.runner_class, "
        "s.runner_name, t.outcome, t.duration_s, t.retries, t.flaky, t.message, t.file, t.line, "
        f"coalesce({_INFRA}, false) AS infra "
        "FROM t JOIN r USING (run_id) "
        "JOIN shards s ON s.run_id = t.run_id AND s.shard_id = t.shard_id "
        "WHERE r.k <= ? ORDER BY r.seq, t.shard_id"
    )
    rows = db.all(sql, [test_id, runs_per_branch])
    cols: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 17
    return TestRows(
        seq=[int(x) for x in cols[0]],
        run_id=cols[1],
        branch=cols[2],
        pr=cols[3],
        commit=cols[4],
        started_at=[iso(x) for x in cols[5]],
        shard_id=cols[6],
        runner_class=cols[7],
        runner_name=cols[8],
        outcome=cols[9],
        duration_s=cols[10],
        retries=[int(x) for x in cols[11]],
        flaky=[bool(x) for x in cols[12]],
        message=cols[13],
        file=cols[14],
        line=cols[15],
        infra=[bool(x) for x in cols[16]],
    )


# ---------------------------------------------------------------------------------- a run's tests
#: status filters of a run's test list
RUN_STATUSES = ("failing", "failed", "error", "passed", "skipped", "retried", "not-run", "lost")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunCase:
    test_id: str
    shard_id: str
    runner_class: str
    runner_name: str | None
    outcome: str
    duration_s: float | None
    retries: int
    flaky: bool
    file: str | None
    line: int | None
    message: str | None


def _status_sql(status: str) -> str:
    return {
        "failing": "t.outcome IN ('failed', 'error') AND t.shard_id <> '" + LOST_SHARD + "'",
        "failed": "t.outcome = 'failed'",
        "error": "t.outcome = 'error' AND t.shard_id <> '" + LOST_SHARD + "'",
        "passed": "t.outcome = 'passed'",
        "skipped": "t.outcome = 'skipped' AND t.shard_id <> '" + NOT_RUN_SHARD + "'",
        "retried": "(coalesce(t.flaky, false) OR coalesce(t.retries, 0) > 0)",
        "not-run": "t.shard_id = '" + NOT_RUN_SHARD + "'",
        "lost": "t.shard_id = '" + LOST_SHARD + "'",
    }[status]


def run_cases(
    db: Database,
    run_id: str,
    *,
    status: str | None = None,
    shard: str | None = None,
    runner_class: str | None = None,
    query: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[RunCase], int]:
    """A page of a run's tests (failing first, then by id) and how many match in all."""
    where = ["t.run_id = ?"]
    params: list[Any] = [run_id]
    if status:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(RUN_STATUSES)}")
        where.append(_status_sql(status))
    if shard:
        where.append("t.shard_id = ?")
        params.append(shard)
    if runner_class:
        where.append("s.runner_class = ?")
        params.append(runner_class)
    if query:
        where.append("t.test_id ILIKE ? ESCAPE '\\'")
        params.append(f"%{_like(query)}%")
    base = (
        "FROM test_results t JOIN shards s ON s.run_id = t.run_id AND s.shard_id = t.shard_id "
        "WHERE " + " AND ".join(where)
    )
    order = (
        " ORDER BY CASE WHEN t.shard_id = 'lost' THEN 0 WHEN t.outcome IN ('failed', 'error') "
        "THEN 1 WHEN coalesce(t.flaky, false) THEN 2 WHEN t.shard_id = 'unsatisfied' THEN 3 "
        "ELSE 4 END, t.test_id, t.shard_id LIMIT ? OFFSET ?"
    )
    with db.locked():
        total = db.one("SELECT count(*) " + base, params)
        rows = db.all(
            "SELECT t.test_id, t.shard_id, s.runner_class, s.runner_name, t.outcome, "
            "t.duration_s, coalesce(t.retries, 0), coalesce(t.flaky, false), t.file, t.line, "
            "t.message " + base + order,
            [*params, limit, offset],
        )
    return [
        RunCase(
            test_id=r[0],
            shard_id=r[1],
            runner_class=r[2],
            runner_name=r[3],
            outcome=r[4],
            duration_s=r[5],
            retries=int(r[6]),
            flaky=bool(r[7]),
            file=r[8],
            line=r[9],
            message=r[10],
        )
        for r in rows
    ], int(total[0]) if total else 0


def run_classes(db: Database, run_id: str) -> list[str]:
    """The runner classes of a run's shards (for its filter)."""
    rows = db.all(
        "SELECT DISTINCT runner_class FROM shards WHERE run_id = ? AND shard_id NOT IN (?, ?) "
        "ORDER BY 1",
        [run_id, LOST_SHARD, NOT_RUN_SHARD],
    )
    return [str(r[0]) for r in rows]


# ---------------------------------------------------------------------------------- search
#: status filters of the test search (over the window of runs searched)
TEST_STATUSES = ("failing", "failed", "retried", "passing", "skipped", "not-run")


@dataclass(frozen=True, kw_only=True, slots=True)
class TestMatch:
    __test__ = False  # not a pytest test class

    test_id: str
    runs: int
    failures: int
    retried: int
    last_outcome: str
    last_run: str
    classes: int


def search_tests(
    db: Database,
    *,
    query: str | None = None,
    status: str | None = None,
    repo: str | None = None,
    branch: str | None = None,
    runner_class: str | None = None,
    window: int = 200,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[TestMatch], int]:
    """Tests seen in the latest ``window`` runs (of ``repo``/``branch``) whose id contains
    ``query`` (case-insensitive), most failures first; and how many match in all."""
    run_where, params = _repo_branch(repo, branch)
    params.append(window)
    where: list[str] = []
    if query:
        where.append("t.test_id ILIKE ? ESCAPE '\\'")
        params.append(f"%{_like(query)}%")
    if runner_class:
        where.append("s.runner_class = ?")
        params.append(runner_class)
    having = ""
    if status:
        if status not in TEST_STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(TEST_STATUSES)}")
        having = (
            " WHERE "
            + {
                "failing": "last_outcome IN ('failed', 'error')",
                "failed": "failures > 0",
                "retried": "retried > 0",
                "passing": "last_outcome = 'passed'",
                "skipped": "last_outcome = 'skipped'",
                "not-run": "last_outcome = 'not-run'",
            }[status]
        )
    sql = (
        "WITH w AS (SELECT run_id, seq FROM runs"  # noqa: S608 - constant fragments
        + (" WHERE " + " AND ".join(run_where) if run_where else "")
        + " ORDER BY seq DESC LIMIT ?), "  # noqa: S608 - constant fragments
        "m AS (SELECT t.test_id, count(DISTINCT t.run_id) AS runs, "
        "count(DISTINCT t.run_id) FILTER (WHERE t.outcome IN ('failed', 'error') "
        f"AND t.shard_id <> '{LOST_SHARD}') AS failures, "
        "count(DISTINCT t.run_id) FILTER (WHERE coalesce(t.flaky, false)) AS retried, "
        f"arg_max(CASE WHEN t.shard_id = '{NOT_RUN_SHARD}' THEN 'not-run' "
        f"WHEN t.shard_id = '{LOST_SHARD}' THEN 'lost' ELSE t.outcome END, "
        "w.seq * 4 + CASE t.outcome WHEN 'error' THEN 3 WHEN 'failed' THEN 2 "
        "WHEN 'passed' THEN 1 ELSE 0 END) AS last_outcome, "
        "arg_max(t.run_id, w.seq) AS last_run, count(DISTINCT s.runner_class) AS classes "
        "FROM test_results t JOIN w USING (run_id) "
        "JOIN shards s ON s.run_id = t.run_id AND s.shard_id = t.shard_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY t.test_id) "
        "SELECT *, count(*) OVER () FROM m"
        + having
        + " ORDER BY failures DESC, retried DESC, test_id LIMIT ? OFFSET ?"
    )
    rows = db.all(sql, [*params, limit, offset])
    total = int(rows[0][7]) if rows else 0
    if not rows and offset:
        total = search_tests(
            db,
            query=query,
            status=status,
            repo=repo,
            branch=branch,
            runner_class=runner_class,
            window=window,
            limit=1,
        )[1]
    return [
        TestMatch(
            test_id=r[0],
            runs=int(r[1]),
            failures=int(r[2]),
            retried=int(r[3]),
            last_outcome=str(r[4]),
            last_run=str(r[5]),
            classes=int(r[6]),
        )
        for r in rows
    ], total


def search_runs(
    db: Database,
    *,
    repo: str | None = None,
    branch: str | None = None,
    query: str | None = None,
    pr: int | None = None,
    limit: int = 100,
) -> list[RunMeta]:
    """Runs, newest first, filtered by repo, branch, PR and a run id or commit fragment."""
    where, params = _repo_branch(repo, branch)
    if pr is not None:
        where.append("pr = ?")
        params.append(pr)
    if query:
        where.append("(run_id ILIKE ? ESCAPE '\\' OR starts_with(lower(commit), lower(?)))")
        params += [f"%{_like(query)}%", query]
    return query_runs(db, where, params, limit)


def branches(db: Database, repo: str | None = None, limit: int = 200) -> list[str]:
    """Branches with runs, most recent first (for filters)."""
    sql = "SELECT branch FROM runs WHERE branch IS NOT NULL"
    params: list[Any] = []
    if repo:
        sql += " AND repo = ?"
        params.append(repo)
    sql += " GROUP BY branch ORDER BY max(seq) DESC LIMIT ?"
    rows = db.all(sql, [*params, limit])
    return [str(r[0]) for r in rows]


def runner_classes(db: Database, limit: int = 200) -> list[str]:
    """Runner classes of the latest shards (for filters)."""
    rows = db.all(
        "SELECT runner_class FROM shards WHERE shard_id NOT IN (?, ?) GROUP BY runner_class "
        "ORDER BY max(ingested_at) DESC LIMIT ?",
        [LOST_SHARD, NOT_RUN_SHARD, limit],
    )
    return [str(r[0]) for r in rows]
