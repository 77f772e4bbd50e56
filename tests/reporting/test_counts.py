"""The report counts tests, not entries; its wall time is the longest shard's own start to end
(issue 13, item 6); a shard that died is named as an infrastructure error even when every test
of it was recovered."""

from __future__ import annotations

from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.render import render_comment
from ci_app.reporting.report import build_report
from ci_app.store import open_store


def _case(test_id: str, outcome: Outcome, duration: float = 0.5) -> TestCase:
    return TestCase(id=test_id, name=test_id.rsplit("::", 1)[-1], outcome=outcome,
                    duration_s=duration)  # fmt: skip


def _shard(shard: str, cases: list[TestCase], start: str, end: str) -> ResultSet:
    run = RunInfo(
        run_id="r1",
        shard_id=shard,
        repo="o/r",
        commit="c" * 40,
        branch="main",
        runner_name=f"runner-{shard}",
        runner_labels=("x64",),
        started_at=start,
        finished_at=end,
    )
    return ResultSet(run=run, tests=tuple(cases))


def test_each_test_counts_once_and_wall_time_is_the_longest_shard() -> None:
    skip = "tests/test_opt.py"  # an import-time skip: every shard collects and reports it
    s1 = _shard(
        "cpu-1",
        [
            _case(skip, Outcome.SKIPPED, 0.0),
            _case("tests/test_a.py::test_1", Outcome.PASSED),
            _case("tests/test_both.py::test_x", Outcome.PASSED),  # in both shards' files
        ],
        "2026-01-01T10:00:00.000+00:00",
        "2026-01-01T10:01:02.900+00:00",  # 62.9 s, far more than its test times
    )
    s2 = _shard(
        "cpu-2",
        [
            _case(skip, Outcome.SKIPPED, 0.0),
            _case("tests/test_b.py::test_2", Outcome.PASSED),
            _case("tests/test_both.py::test_x", Outcome.FAILED),
        ],
        "2026-01-01T10:00:00.500+00:00",
        "2026-01-01T10:00:40.500+00:00",  # 40 s
    )
    with open_store(":memory:") as store:
        store.results.ingest_many([s1, s2])
        report = build_report(store.results, "r1")
        (totals,) = store.results.run_totals(["r1"])
    h = report.head
    assert (h.tests, h.passed, h.failed, h.skipped) == (4, 2, 1, 1)  # not 6 entries
    assert h.wall_s == 62.9 and h.duration_s == 102.9
    assert (totals.tests, totals.passed, totals.failed, totals.skipped) == (4, 2, 1, 1)
    assert totals.wall_s == 62.9
    comment = render_comment(report)
    assert "4 tests: 2 passed, 1 failed, 1 skipped in 1.0 min" in comment


def test_a_dead_shard_is_red_even_when_all_its_tests_were_recovered() -> None:
    from ci_app.matrix.record import RECOVERED_SHARD
    from ci_app.store.queue_record import mark_interrupted

    ok = _shard("cpu-1", [_case("t::a", Outcome.PASSED)], "", "")
    dead = _shard("cpu-2", [_case("t::b", Outcome.PASSED)], "", "")  # from its journal
    recovered = _shard(RECOVERED_SHARD, [_case("t::c", Outcome.PASSED)], "", "")
    with open_store(":memory:") as store:
        store.results.ingest_many([ok, dead, recovered])
        marked = mark_interrupted(
            store.results,
            "r1",
            shards={"cpu-2": "its test command was killed by signal 9 (SIGKILL)"},
            runners={"ghost": "runner ghost stopped answering"},
        )
        assert marked == 2
        report = build_report(store.results, "r1")
    assert (report.head.tests, report.head.passed, report.head.lost) == (3, 3, 0)
    assert sorted(s.shard_id for s in report.comparison.infra_shards) == ["cpu-2", "runner:ghost"]
    assert not report.ok and report.comparison.new_failures == ()
    comment = render_comment(report)
    headline = comment.splitlines()[2]
    assert "2 shard(s) died (infrastructure error); no test failed" in headline
    # the reason is escaped as inert text (a runner's name in it comes from a client)
    assert "killed by signal 9 \\(SIGKILL\\) — the 1 test(s) it finished are counted" in comment
