"""Browser results in the store, the report and the comment: infrastructure apart from the
tests, retries never flaky, the pool's own timings trended but never a regression."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.model.browser import metric_name
from ci_app.model.results import Metric, Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.charts import render_charts
from ci_app.reporting.flaky import FLAKY, classify_history
from ci_app.reporting.render import render_check_run, render_comment
from ci_app.reporting.report import Report, build_report
from ci_app.store import Store, open_store
from tests.reporting.gfm import parse

P, F, E = Outcome.PASSED, Outcome.FAILED, Outcome.ERROR
SW = "google-swiftshader-fallback"
MATMUL = "tests/test_webgpu.py::test_matmul"
CRASH = "tests/test_webgpu.py::test_crash"
LYING = "tests/test_webgpu.py::test_needs_hardware"
FLAKY_INFRA = "tests/test_webgpu.py::test_sometimes_infra"
FLAKY_REAL = "tests/test_webgpu.py::test_sometimes_fails"
HOSTILE = "tests/test_webgpu.py::test_x[@octo/team <img src=x onerror=alert(1)> #12 | `]"
LIE = "infra: label-mismatch: the runner's label webgpu promised a hardware WebGPU adapter"


def _run(
    run_id: str,
    n: int,
    outcomes: dict[str, tuple[Outcome, str | None]],
    metrics: dict[str, float],
    *,
    pr: int | None = None,
) -> ResultSet:
    commit = f"{n:02d}" + "ab" * 19
    return ResultSet(
        run=RunInfo(
            run_id=run_id,
            shard_id="webgpu-sw-1",
            repo="o/r",
            commit=commit,
            branch="feat" if pr else "main",
            pr=pr,
            base_commit=f"{n - 1:02d}" + "ab" * 19 if pr else None,
            runner_name="lab-1",
            runner_labels=("webgpu-sw", "x64"),
        ),
        tests=tuple(
            TestCase(id=t, name=t.rsplit("::", 1)[-1], outcome=o, message=m, duration_s=0.5)
            for t, (o, m) in outcomes.items()
        ),
        metrics=tuple(
            Metric(
                name=name,
                value=v,
                unit="GFLOP/s" if "gflops" in name else "ms",
                direction="higher" if "gflops" in name else "lower",
            )
            for name, v in metrics.items()
        ),
    )


def _metrics(gflops: float, context: float, *, crash: bool = False) -> dict[str, float]:
    out = {
        metric_name(SW, "gflops", MATMUL): gflops,
        metric_name(SW, "context_ms", MATMUL): context,
        metric_name(SW, "compile_ms", MATMUL): 40.0,
        metric_name(SW, "context_ms", HOSTILE): context,
        metric_name(SW, "frame_ms", HOSTILE): 16.0,
        metric_name(SW, "launch_ms", "*"): 900.0,
        metric_name(SW, "chromium", "*"): 156.0,
    }
    if crash:
        out[metric_name(SW, "infra.renderer-crash", CRASH)] = 1.0
        out[metric_name(SW, "infra.label-mismatch", LYING)] = 1.0
    return out


def _fill(store: Store) -> None:
    for i in range(8):
        outcomes: dict[str, tuple[Outcome, str | None]] = {
            MATMUL: (P, None),
            CRASH: (P, None),
            LYING: (P, None),
            HOSTILE: (P, None),
            # infrastructure errors between passes twice: never flaky
            FLAKY_INFRA: (E, "infra: renderer-crash: crashed again") if i in (2, 5) else (P, None),
            # the same pattern as real failures: flaky
            FLAKY_REAL: (F, "assert 1 == 2") if i in (2, 5) else (P, None),
        }
        store.results.ingest(
            _run(f"main-{i}", i, outcomes, _metrics(2.0 + 0.01 * (i % 3), 5.0 + i % 2))
        )
    head: dict[str, tuple[Outcome, str | None]] = {
        MATMUL: (P, None),
        CRASH: (P, None),  # passed on the retry after a renderer crash
        LYING: (E, LIE),
        HOSTILE: (P, None),
        FLAKY_INFRA: (P, None),
        FLAKY_REAL: (P, None),
    }
    # gflops halves (the change's regression); context time triples (the runner's, not flagged)
    store.results.ingest(_run("pr-1", 8, head, _metrics(1.0, 15.0, crash=True), pr=3))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    path = tmp_path_factory.mktemp("browser-report") / "ci.duckdb"
    with open_store(path) as s:
        _fill(s)
    with open_store(path, read_only=True) as s:
        yield build_report(s.results, "pr-1")
        hist = s.results.history(branch="main", repo="o/r", test_ids=[FLAKY_INFRA, FLAKY_REAL])
        verdicts = classify_history(hist)
        assert verdicts[FLAKY_REAL].verdict == FLAKY
        assert FLAKY_INFRA not in verdicts  # infrastructure errors are not flakiness


def test_infrastructure_errors_are_apart_from_failures(report: Report) -> None:
    c = report.comparison
    assert c.infra_errors == ((LYING, LIE),)
    assert not c.new_failures and not c.still_failing and not c.flaky and not c.fixed
    assert not report.ok  # an infrastructure error is never green
    d = report.to_dict()
    assert d["summary"]["infra_errors"] == 1 and d["infra_errors"][0]["test"] == LYING
    check = render_check_run(report)
    assert check["conclusion"] == "failure"
    assert check["title"].startswith("1 infrastructure error(s)")


def test_the_pools_timings_are_trended_but_never_a_regression(report: Report) -> None:
    what = {r.what for r in report.regressions}
    assert metric_name(SW, "gflops", MATMUL) in what
    assert not any("context_ms" in w or "launch_ms" in w for w in what)
    names = {t.name for t in report.metric_trends}
    assert metric_name(SW, "context_ms", MATMUL) in names
    charts = render_charts(report)
    assert any("gflops" in name for name in charts)  # the test's own figure charted first


def test_browser_section_in_the_comment(report: Report) -> None:
    body = render_comment(report)
    assert "## 🛑 ci-fanout: 1 infrastructure error(s)" in body
    assert "### 🛑 Infrastructure errors (1) — not counted against the tests" in body
    assert "### 🌐 Browser tests per WebGPU adapter" in body
    row = next(line for line in body.splitlines() if line.startswith(f"| `{SW}`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # adapter, browser, tests, passed, failed, infrastructure, launch, context, compile
    assert cells[1] == "Chromium 156"
    assert cells[2:6] == ["4", "3", "0", "1 retried, 1 error(s)"]
    assert cells[7] == "15 ms (+150.0 %)"  # mean context time against the base run (6 ms)
    assert "🌐 Browser metrics vs base" in body
    assert "`gflops` (higher is better)" in body and "| -50.2 % |" in body
    assert "### 🔧 Infrastructure retries (1)" in body
    assert f"`{CRASH}` on `{SW}`: renderer crash — passed on a fresh browser" in body
    hostile_row = (
        "| ``tests/test_webgpu.py::test_x[@octo/team <img src=x onerror=alert(1)> #12 \\| `]`` "
    )
    assert hostile_row + "| `frame_ms` (lower is better) |" in body
    html = parse(body)
    assert not html.unknown_tags and not html.images and not html.mentions()
    assert not html.ragged_tables()
    assert html.gitlab_references() == ["#3"]  # the footer's own "PR #3", not the test id's #12


def test_no_browser_metrics_no_section(tmp_path: Path) -> None:
    with open_store(tmp_path / "x.duckdb") as s:
        s.results.ingest(_run("r1", 1, {"t::a": (P, None)}, {"throughput": 3.0}))
        body = render_comment(build_report(s.results, "r1"))
    assert "Browser" not in body and "Infrastructure" not in body


def test_a_base_infrastructure_error_is_not_fixed_by_a_pass(tmp_path: Path) -> None:
    with open_store(tmp_path / "x.duckdb") as s:
        ok = {f"t::ok{i}": (P, None) for i in range(3)}  # a shard that ran, not a dead one
        s.results.ingest(_run("main-1", 1, {**ok, LYING: (E, LIE), MATMUL: (F, "real")}, {}))
        s.results.ingest(_run("pr-1", 2, {**ok, LYING: (P, None), MATMUL: (P, None)}, {}, pr=3))
        report = build_report(s.results, "pr-1")
    assert report.comparison.fixed == (MATMUL,)
    assert report.base is not None and report.base.run_id == "main-1"
