"""The queue's record merged into a run's results (pure part)."""

from __future__ import annotations

from ci_app.matrix.queue import ExpiredLease, TestResult
from ci_app.matrix.record import RECOVERED_SHARD, dead_runners, recovered_results
from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase

RUN = RunInfo(run_id="r1", repo="o/r", commit="abc")


def test_only_what_no_shard_uploaded_is_recovered() -> None:
    record = {
        "t::a": TestResult("t::a", "passed", 0.5, runner="w1"),
        "t::b": TestResult("t::b", "failed", 1.0, "assert 2 == 3", runner="w1"),
        "t::c": TestResult("t::c", "passed", 0.1, runner="w2"),
        "t::d": TestResult("t::d", "missing", 0.0, runner="w2"),
    }
    uploaded = ResultSet(
        run=RunInfo(run_id="r1", shard_id="cpu-2"),
        tests=(TestCase(id="t::c", name="c", outcome=Outcome.PASSED),),
    )
    rs = recovered_results(record, [uploaded], RUN)
    assert rs is not None and rs.run.shard_id == RECOVERED_SHARD and rs.run.commit == "abc"
    by_id = {t.id: t for t in rs.tests}
    assert sorted(by_id) == ["t::a", "t::b"]  # t::c was uploaded; t::d never ran: lost
    assert by_id["t::b"].outcome is Outcome.FAILED and by_id["t::b"].message == "assert 2 == 3"
    assert "runner w1" in (by_id["t::a"].details or "")
    assert recovered_results({"t::c": record["t::c"]}, [uploaded], RUN) is None


def test_dead_runners_say_how_many_tests_went_back() -> None:
    shards, runners = dead_runners(
        [
            ExpiredLease("r/cpu/1", "cpu", "w1", 3),
            ExpiredLease("r/cpu/4", "cpu", "w1", 2),
            ExpiredLease("r/cpu/5", "cpu", "w2", 1, shard="cpu-2"),
        ]
    )
    assert list(runners) == ["w1"] and list(shards) == ["cpu-2"]
    assert "2 lease(s) expired" in runners["w1"] and "5 unfinished test(s)" in runners["w1"]
    assert shards["cpu-2"].startswith("runner w2 stopped answering: 1 lease(s)")
    assert dead_runners([]) == ({}, {})
