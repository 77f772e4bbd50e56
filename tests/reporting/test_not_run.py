"""Tests the planner could not place are listed in the report as not run, with the reason."""

from __future__ import annotations

from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.compare import NOT_RUN_PREFIX, NOT_RUN_SHARD
from ci_app.reporting.render import render_comment
from ci_app.reporting.report import build_report
from ci_app.store import open_store


def _run(run_id: str, commit: str) -> list[ResultSet]:
    info = RunInfo(run_id=run_id, repo="o/r", commit=commit, branch="main", runner_labels=("x64",))
    cpu = ResultSet(
        run=info,
        tests=(TestCase(id="t::ok", name="ok", outcome=Outcome.PASSED, duration_s=1.0),),
    )
    gpu = ResultSet(
        run=RunInfo(
            run_id=run_id, shard_id=NOT_RUN_SHARD, repo="o/r", commit=commit, branch="main"
        ),
        tests=(
            TestCase(
                id="t::gpu",
                name="gpu",
                outcome=Outcome.SKIPPED,
                message=f"{NOT_RUN_PREFIX} [gpu-mem-ge-24g, gpu-nvidia]",
            ),
            TestCase(id="t::plain_skip", name="plain_skip", outcome=Outcome.SKIPPED, message="no"),
        ),
    )
    return [cpu, gpu]


def test_not_run_section_and_json() -> None:
    with open_store(":memory:") as store:
        for rs in _run("r1", "a" * 40) + _run("r2", "b" * 40):
            store.results.ingest(rs)
        report = build_report(store.results, "r2")
    assert report.comparison.not_run == (
        ("t::gpu", "not run: no runner with [gpu-mem-ge-24g, gpu-nvidia]"),
    )
    assert report.to_dict()["not_run"] == [
        {"test": "t::gpu", "reason": "not run: no runner with [gpu-mem-ge-24g, gpu-nvidia]"}
    ]
    comment = render_comment(report)
    assert "Not run: no online runner has the hardware (1)" in comment
    assert "`t::gpu` — no runner with `gpu-mem-ge-24g`, `gpu-nvidia`" in comment
    assert "plain_skip" not in comment.split("Not run")[1].split("###")[0]
