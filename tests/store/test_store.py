"""Store: migrations, idempotent ingest, history queries, durations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import StoreError
from ci_app.model.results import Metric, Outcome, ResultSet, RunInfo, TestCase
from ci_app.store import LATEST_VERSION, Store, open_store


def _rs(
    run_id: str,
    shard_id: str | None = "s1",
    *,
    commit: str = "c1",
    branch: str = "main",
    labels: tuple[str, ...] = ("linux", "x64"),
    outcomes: dict[str, Outcome] | None = None,
    durations: dict[str, float] | None = None,
    pr: int | None = None,
    flaky: frozenset[str] = frozenset(),
    metrics: tuple[Metric, ...] = (),
) -> ResultSet:
    outcomes = outcomes or {"t::a": Outcome.PASSED, "t::b": Outcome.FAILED}
    durations = durations or {}
    tests = tuple(
        TestCase(
            id=tid,
            name=tid.split("::")[-1],
            outcome=o,
            file="tests/test_t.py",
            line=3,
            duration_s=durations.get(tid, 1.0),
            message="assert 1 == 2" if o is Outcome.FAILED else None,
            retries=1 if tid in flaky else 0,
            flaky=tid in flaky,
        )
        for tid, o in outcomes.items()
    )
    return ResultSet(
        run=RunInfo(
            run_id=run_id,
            shard_id=shard_id,
            repo="org/repo",
            provider="github",
            commit=commit,
            branch=branch,
            pr=pr,
            runner_name="box-1",
            runner_labels=labels,
            started_at="2026-01-02T03:04:05Z",
        ),
        tests=tests,
        metrics=metrics,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "db" / "ci.duckdb") as s:
        yield s


def test_migrations_applied_once_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ci.duckdb"
    with open_store(path) as s:
        assert s.db.schema_version() == LATEST_VERSION
        s.results.ingest(_rs("r1"))
    with open_store(path) as s:  # re-open: migrations not re-run, data kept
        assert s.db.schema_version() == LATEST_VERSION
        assert s.db.count_rows("test_results") == 2
    with open_store(path, read_only=True) as s:
        assert s.db.count_rows("runs") == 1


def test_read_only_missing_db_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        open_store(tmp_path / "nope.duckdb", read_only=True)


def test_ingest_is_idempotent_per_run_and_shard(store: Store) -> None:
    assert store.results.ingest(_rs("r1")) == 2
    assert store.results.ingest(_rs("r1")) == 0
    assert store.results.ingest(_rs("r1", "s2")) == 2
    assert store.results.ingest_many([_rs("r2"), _rs("r2"), _rs("r1")]) == 2
    assert store.db.count_rows("test_results") == 6
    assert store.db.count_rows("shards") == 3
    assert store.db.count_rows("runs") == 2


def test_ingest_requires_run_id(store: Store) -> None:
    with pytest.raises(StoreError, match="run id"):
        store.results.ingest(ResultSet(run=RunInfo(shard_id="x")))


def test_default_shard_and_run_metadata(store: Store) -> None:
    store.results.ingest(_rs("r1", None, pr=7, metrics=(Metric(name="lat", value=3.5, unit="ms"),)))
    run = store.results.run("r1")
    assert run is not None
    assert (run.commit, run.branch, run.pr, run.repo) == ("c1", "main", 7, "org/repo")
    assert run.started_at == "2026-01-02T03:04:05"
    (shard,) = store.results.shards(["r1"])
    assert shard.shard_id == "default"
    assert shard.runner_class == "linux,x64"
    assert (shard.tests, shard.passed, shard.failed) == (2, 1, 1)
    (m,) = store.results.metrics(["r1"])
    assert (m.name, m.value, m.unit, m.runner_class) == ("lat", 3.5, "ms", "linux,x64")
    assert store.results.run("missing") is None


def test_cases_columns(store: Store) -> None:
    store.results.ingest(_rs("r1", flaky=frozenset({"t::a"})))
    rows = store.results.cases(["r1"])
    by_id = dict(zip(rows.test_id, range(len(rows)), strict=True))
    a, b = by_id["t::a"], by_id["t::b"]
    assert rows.outcome[a] == "passed" and rows.flaky[a] and rows.retries[a] == 1
    assert rows.outcome[b] == "failed" and rows.message[b] == "assert 1 == 2"
    assert rows.message[a] is None
    assert rows.file[b] == "tests/test_t.py" and rows.line[b] == 3


def test_durations_by_branch_and_runner_class(store: Store) -> None:
    for i, d in enumerate([1.0, 2.0, 9.0]):
        store.results.ingest(_rs(f"m{i}", durations={"t::a": d, "t::b": 5.0}))
    store.results.ingest(_rs("f1", branch="feature", durations={"t::a": 100.0}))
    store.results.ingest(_rs("g1", labels=("gpu",), durations={"t::a": 50.0}))
    assert store.results.durations(branch="main", runner_labels=["x64", "linux"])["t::a"] == 2.0
    assert store.results.durations(branch="feature")["t::a"] == 100.0
    assert store.results.durations(runner_labels=["gpu"]) == {"t::a": 50.0, "t::b": 1.0}
    assert store.results.durations(repo="other/repo") == {}


def test_history_only_unstable_and_infra_flag(store: Store) -> None:
    store.results.ingest(_rs("r1", commit="c1"))
    store.results.ingest(
        _rs("r2", commit="c2", outcomes={"t::a": Outcome.ERROR, "t::b": Outcome.ERROR})
    )
    store.results.ingest(
        _rs("r3", commit="c3", outcomes={"t::a": Outcome.PASSED, "t::b": Outcome.PASSED})
    )
    store.results.ingest(_rs("p1", commit="c9", pr=3))
    hist = store.results.history(branch="main")
    # t::a only errored in the infra run (r2), which still counts as "unstable" in SQL,
    # but the row carries infra=True so the detector can drop it.
    rows = list(hist.rows())
    assert {r[3] for r in rows} == {"r1", "r2", "r3"}  # PR run excluded on a branch query
    infra = {(r[0], r[3]) for r in rows if r[7]}
    assert infra == {("t::a", "r2"), ("t::b", "r2")}
    assert hist.seq == sorted(hist.seq)
    only_b = store.results.history(branch="main", test_ids=["t::b"])
    assert set(only_b.test_id) == {"t::b"}


def test_run_selection_and_totals(store: Store) -> None:
    store.results.ingest(_rs("r1", commit="c1"))
    store.results.ingest(_rs("r2", commit="c2"))
    store.results.ingest(_rs("r2", "s2", commit="c2"))
    store.results.ingest(_rs("p1", commit="c3", branch="feature", pr=5))
    assert [r.run_id for r in store.results.runs(branch="main")] == ["r2", "r1"]
    assert [r.run_id for r in store.results.runs(commit="c1")] == ["r1"]
    assert [r.run_id for r in store.results.runs(exclude_prs=True)] == ["r2", "r1"]
    r2 = store.results.run("r2")
    assert r2 is not None
    assert [r.run_id for r in store.results.runs(before_seq=r2.seq)] == ["r1"]
    totals = store.results.run_totals(["r1", "r2"])
    # r2's two shards ran the same two tests: each test id counts once per run (worst outcome)
    assert [t.tests for t in totals] == [2, 2]
    assert [(t.passed, t.failed) for t in totals] == [(1, 1), (1, 1)]
    assert totals[1].duration_s == 4.0 and totals[1].wall_s == 2.0


def test_series_queries(store: Store) -> None:
    for i, v in enumerate([10.0, 11.0, 30.0]):
        store.results.ingest(
            _rs(
                f"r{i}",
                commit=f"c{i}",
                durations={"t::a": v},
                metrics=(Metric(name="rps", value=v, direction="higher"),),
            )
        )
    ms = store.results.metric_series(["rps"], ["r0", "r1", "r2"])
    assert [p.value for p in ms[("rps", "linux,x64")]] == [10.0, 11.0, 30.0]
    ds = store.results.test_duration_series(["t::a"], ["r0", "r1", "r2"])
    assert [p.commit for p in ds["t::a"]] == ["c0", "c1", "c2"]


def test_cases_without_details(store: Store) -> None:
    store.results.ingest(_rs("r1"))
    rows = store.results.cases(["r1"], details=False)
    assert sorted(rows.outcome) == ["failed", "passed"]
    assert rows.duration_s == [1.0, 1.0]
    assert rows.message == [] and rows.file == []


def test_streamed_shard_stores_what_a_whole_ingest_stores(store: Store) -> None:
    """ShardWriter (CSV batches, ``ingest --db``) and ingest (Arrow) write the same rows,
    whatever the batch boundaries and the text (quotes, commas, newlines, NUL, '' vs None)."""
    from ci_app.store.ingest import MESSAGE_LIMIT, ShardWriter

    cases = [
        TestCase(
            id=f"t::c{i}",
            name=f'c{i} — ünïcode, "q" \r\n\x00 ' if i % 3 else "",
            outcome=[Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED, Outcome.ERROR][i % 4],
            suite=None if i % 2 else "s",
            classname="t",
            file=None if i < 4 else "t.py",
            line=None if i % 5 else i,
            duration_s=0 if i < 7 else 1.5 + i,
            message=None if i % 4 == 0 else ("x" * (MESSAGE_LIMIT + 10) if i == 5 else f"m{i}"),
            details="trace" if i == 6 else None,
            retries=i % 2,
            flaky=i == 9,
        )
        for i in range(12)
    ]
    cases.append(
        TestCase(id="t::nr", name="nr", outcome=Outcome.SKIPPED, message="not run: no runner")
    )
    whole = ResultSet(run=RunInfo(run_id="r1", shard_id="s1"), tests=tuple(cases))
    assert store.results.ingest(whole) == len(cases)
    for run_id, memory_limit_mb in (("r2", 64), ("r3", None)):  # CSV batches, Arrow ones
        run = RunInfo(run_id=run_id, shard_id="s1")
        writer = ShardWriter(store.db, run, batch_rows=7, memory_limit_mb=memory_limit_mb)
        writer.add(cases[:3])
        writer.add(cases[3:])
        assert writer.finish(ResultSet(run=run)) == len(cases)

    def rows(run_id: str) -> list[tuple[object, ...]]:
        return store.db.all(
            "SELECT * EXCLUDE (run_id) FROM test_results WHERE run_id = ? ORDER BY test_id",
            [run_id],
        )

    streamed = rows("r2")
    assert streamed == rows("r1") == rows("r3")
    by_id = {r[1]: r for r in streamed}
    assert by_id["t::c8"][8] == 9.5 and by_id["t::c0"][8] == 0.0
    assert by_id["t::c5"][-1] == "x" * MESSAGE_LIMIT and by_id["t::nr"][-1] == "not run: no runner"
    # a batch whose first float comes after 2,999 ints: no type guessed from the first values
    zeros = [
        TestCase(id=f"t::f{j}", name="f", outcome=Outcome.PASSED, duration_s=0 if j < 2999 else 2.5)
        for j in range(3000)
    ]
    writer = ShardWriter(store.db, RunInfo(run_id="r4"), memory_limit_mb=64)
    writer.add(zeros)
    assert writer.finish(ResultSet(run=RunInfo(run_id="r4"))) == 3000
    assert store.db.one("SELECT max(duration_s) FROM test_results WHERE run_id = 'r4'") == (2.5,)


def test_shard_writer_leaves_no_batch_file(store: Store, tmp_path: Path) -> None:
    """A batch is a temporary file: removed once stored, or when a writer that died
    mid-shard is dropped (its rows are redone by the next attempt)."""
    import gc
    import tempfile

    from ci_app.store.ingest import ShardWriter

    def files() -> list[Path]:
        return sorted(tmp_path.glob("ci-fanout-rows-*"))

    cases = [TestCase(id=f"t{i}", name=f"t{i}", outcome=Outcome.PASSED) for i in range(5)]
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        done = ShardWriter(store.db, RunInfo(run_id="r1"), batch_rows=3, memory_limit_mb=64)
        done.add(cases)
        assert len(files()) == 1  # the second batch, not yet stored
        assert done.finish(ResultSet(run=RunInfo(run_id="r1"))) == 5
        assert files() == []
        died = ShardWriter(store.db, RunInfo(run_id="r2"), batch_rows=3, memory_limit_mb=64)
        died.add(cases[:2])
        assert len(files()) == 1
        del died
        gc.collect()
        assert files() == []
    finally:
        tempfile.tempdir = old


def test_capped_writer_stores_a_row_of_megabytes(store: Store) -> None:
    """``ingest --db`` caps DuckDB at 16 MB; a batch with a row of megabytes (a test name
    nobody should write, but a report may hold) raises the cap instead of failing."""
    long = TestCase(id="t::long", name="é" * (6 << 20), outcome=Outcome.FAILED, message="m")
    short = [TestCase(id=f"t::{i}", name=str(i), outcome=Outcome.PASSED) for i in range(3)]
    writer = store.results.shard_writer(RunInfo(run_id="r1"), memory_limit_mb=16)
    writer.add([*short, long])
    assert writer.finish(ResultSet(run=RunInfo(run_id="r1"))) == 4
    assert store.db.one("SELECT max(length(name)) FROM test_results") == (6 << 20,)
