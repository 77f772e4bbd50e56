"""End to end over a real (in-memory or file) store: build_report, comment, check run, charts, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.cli import main
from ci_app.errors import StoreError
from ci_app.model.results import Metric, Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.charts import render_charts
from ci_app.reporting.render import (
    marker,
    render_check_run,
    render_comment,
    render_job_summary,
    sparkline,
)
from ci_app.reporting.report import Report, build_report
from ci_app.store import Store, open_store

P, F, E, S = Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED


def _shard(
    run_id: str,
    commit: str,
    rclass: str,
    outcomes: dict[str, Outcome],
    *,
    branch: str = "main",
    pr: int | None = None,
    base: str | None = None,
    retried: frozenset[str] = frozenset(),
    metric: float | None = None,
    dur: float = 1.0,
) -> ResultSet:
    tests = tuple(
        TestCase(
            id=t,
            name=t,
            outcome=o,
            file=f"tests/{t}.py",
            line=10,
            duration_s=dur,
            message=f"{t} broke" if o in (F, E) else None,
            flaky=t in retried,
            retries=1 if t in retried else 0,
        )
        for t, o in outcomes.items()
    )
    return ResultSet(
        run=RunInfo(
            run_id=run_id,
            shard_id=rclass,
            repo="o/r",
            commit=commit,
            branch=branch,
            pr=pr,
            base_commit=base,
            runner_name=f"{rclass}-box",
            runner_labels=(rclass,),
            job_url=f"https://ci.example/{run_id}/{rclass}",
        ),
        tests=tests,
        metrics=()
        if metric is None
        else (Metric(name="throughput", value=metric, unit="req/s", direction="higher"),),
    )


def _fill(store: Store) -> None:
    for i in range(12):
        c = f"m{i:02d}" + "0" * 38
        base = {
            "t_ok": P,
            "t_flaky": P,
            "t_hw": P,
            "t_fixed": F if i == 11 else P,
            "t_removed": P,
            "t_new": P,
            "t_skip": P,
        }
        store.results.ingest(
            _shard(
                f"main-{i}",
                c,
                "cpu",
                base,
                retried=frozenset({"t_flaky"}) if i == 3 else frozenset(),
                metric=100.0 + (i % 3),
            )
        )
        store.results.ingest(
            _shard(f"main-{i}", c, "gpu", {**base, "t_hw": F}, metric=100.0 + (i % 2))
        )
    head = {"t_ok": P, "t_flaky": F, "t_hw": P, "t_fixed": P, "t_new": F, "t_added": P, "t_skip": S}
    store.results.ingest(
        _shard(
            "pr-1",
            "p1" + "0" * 38,
            "cpu",
            head,
            branch="feat",
            pr=5,
            base="m11" + "0" * 38,
            metric=70.0,
            dur=1.2,
        )
    )
    store.results.ingest(
        _shard(
            "pr-1",
            "p1" + "0" * 38,
            "gpu",
            {**head, "t_hw": F, "t_flaky": P},
            branch="feat",
            pr=5,
            base="m11" + "0" * 38,
            metric=70.0,
        )
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rep") / "ci.duckdb"
    with open_store(path) as s:
        _fill(s)
    return path


@pytest.fixture(scope="module")
def report(db: Path) -> Iterator[Report]:
    with open_store(db, read_only=True) as s:
        yield build_report(s.results, "pr-1", dashboard_url="https://dash.example/run/pr-1")


def test_comparison_categories(report: Report) -> None:
    c = report.comparison
    assert [f.test_id for f in c.new_failures] == ["t_new"]
    assert c.new_failures[0].job_url == "https://ci.example/pr-1/cpu"
    assert c.fixed == ("t_fixed",)
    assert [f.test_id for f in c.flaky] == ["t_flaky"]  # fails on cpu here, retry evidence on main
    assert c.flaky[0].evidence[0].kind == "retry"
    (hw,) = c.hardware_specific
    assert (hw.test_id, hw.failing, hw.passing) == ("t_hw", ("gpu",), ("cpu",))
    assert c.added == ("t_added",) and c.removed == ("t_removed",)
    assert c.newly_skipped == ("t_skip",)
    assert report.base is not None and report.base.run_id == "main-11"
    assert report.base_reason.startswith("merge base")


def test_metric_regression_direction_aware(report: Report) -> None:
    regs = [r for r in report.regressions if r.kind == "metric"]
    assert {r.runner_class for r in regs} == {"cpu", "gpu"}
    r = regs[0]
    assert r.what == "throughput" and r.after == 70.0 and r.change < -0.25
    assert r.since_commit == "p1" + "0" * 38 and r.scope == "this change"
    assert r.confidence > 0.99


def test_json_shape(report: Report) -> None:
    d = report.to_dict()
    assert set(d) >= {
        "summary",
        "new_failures",
        "fixed",
        "flaky",
        "hardware_specific",
        "regressions",
    }
    assert d["summary"]["deltas"]["tests"] == 0  # 7 tests vs 7
    assert d["flaky"][0]["evidence"][0]["kind"] == "retry"
    assert set(d["regressions"][0]) >= {
        "what",
        "before",
        "after",
        "change",
        "confidence",
        "since_commit",
    }
    json.dumps(d)


def test_comment_layout(report: Report) -> None:
    text = render_comment(report)
    lines = text.splitlines()
    assert lines[0] == marker("pr-1") == "<!-- ci-fanout:report v1 run=pr-1 -->"
    assert "1 new failure" in lines[2]
    order = [
        text.index(h)
        for h in (
            "New failures",
            "Regressions",
            "Flaky",
            "Hardware-specific",
            "```mermaid",
            "<details>",
        )
    ]
    assert order == sorted(order)
    assert ("xychart-beta" in text and "▁" in text) or "▄" in text
    assert "Compared `p100000000`" in text and "`m110000000`" in text
    assert "[job](https://ci.example/pr-1/cpu)" in text


def test_budget_truncates_by_section_never_exceeds(db: Path) -> None:
    with open_store(":memory:") as s:
        s.results.ingest(_shard("b-1", "b" * 40, "cpu", {"t": P}))
        many = {f"tests/test_{i:05d}.py::test_case_with_a_long_name": F for i in range(3000)}
        s.results.ingest(_shard("b-2", "c" * 40, "cpu", many, pr=1, branch="x"))
        rep = build_report(s.results, "b-2", base_branch="main")
    assert len(rep.comparison.new_failures) == 3000
    for budget in (65_536, 8_000, 2_000, 300):
        text = render_comment(rep, budget=budget)
        assert len(text) <= budget
        assert text.startswith("<!-- ci-fanout:report v1 run=b-2 -->")
    text = render_comment(rep, budget=8_000)
    assert "more — see dashboard" in text and "Compared" in text
    assert len(render_job_summary(rep)) > len(render_comment(rep))


def test_check_run_payload(report: Report) -> None:
    cr = render_check_run(report)
    assert cr["conclusion"] == "failure" and "1 new failure" in cr["title"]
    assert len(cr["summary"]) <= 65_535
    levels = {(a["path"], a["annotation_level"]) for a in cr["annotations"]}
    assert ("tests/t_new.py", "failure") in levels
    assert ("tests/t_hw.py", "warning") in levels and ("tests/t_flaky.py", "notice") in levels
    assert all(a["start_line"] == 10 for a in cr["annotations"])


def test_charts_are_pngs(report: Report) -> None:
    charts = render_charts(report)
    assert {"trend.png", "slowest.png", "runner-classes.png", "metric-throughput.png"} <= set(
        charts
    )
    assert all(png.startswith(b"\x89PNG") for png in charts.values())


def test_sparkline() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([2.0, 2.0]) == "▄▄"
    assert sparkline([]) == ""


def test_infra_shard_not_counted_against_tests() -> None:
    with open_store(":memory:") as s:
        s.results.ingest(_shard("m-1", "a" * 40, "cpu", {"t1": P, "t2": P}))
        s.results.ingest(_shard("m-2", "b" * 40, "cpu", {"t1": P, "t2": P}))
        s.results.ingest(_shard("m-2", "b" * 40, "gpu", {"t1": E, "t2": E}))
        rep = build_report(s.results, "m-2")
    assert rep.comparison.new_failures == ()
    assert [x.shard_id for x in rep.comparison.infra_shards] == ["gpu"]
    assert "Infrastructure failures" in render_comment(rep)
    assert rep.base is not None and rep.base.run_id == "m-1"


def test_missing_run_is_store_error() -> None:
    with open_store(":memory:") as s, pytest.raises(StoreError, match="no run"):
        build_report(s.results, "nope")


def test_cli_report_and_flaky(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "report",
                "--db",
                str(db),
                "--run-id",
                "pr-1",
                "--format",
                "json",
                "--output",
                str(out),
                "--charts",
                str(tmp_path / "charts"),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert [f["test_id"] for f in doc["new_failures"]] == ["t_new"]
    assert (tmp_path / "charts" / "trend.png").stat().st_size > 1000
    assert main(["report", "--db", str(db), "--run-id", "pr-1"]) == 0
    assert capsys.readouterr().out.startswith("<!-- ci-fanout:report v1 run=pr-1 -->")
    assert main(["flaky", "--db", str(db), "--branch", "main", "--json"]) == 0
    flaky = json.loads(capsys.readouterr().out)
    assert [v["test_id"] for v in flaky["flaky"]] == ["t_flaky"]
    assert [v["test_id"] for v in flaky["hardware_specific"]] == ["t_hw"]
    assert main(["report", "--db", str(db), "--run-id", "missing"]) == 5
