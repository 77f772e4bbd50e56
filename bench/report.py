"""Store + report speed: ingest rate and time to build the comment and charts.

A history of 1M result rows (10 main-branch runs x 100k tests, in 2 shards on 2
runner classes) plus a 100k-test PR run; targets from issue 5: ingest >= 200k
rows/s, comment + charts < 2 s for the 100k-test run against 1M rows.

Run: ``.venv/bin/python bench/report.py [--tests N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from ci_app.model.results import Metric, Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.charts import render_charts
from ci_app.reporting.render import render_check_run, render_comment
from ci_app.reporting.report import build_report
from ci_app.store import open_store


def make_tests(n: int, rng: random.Random, fail: set[int], retried: set[int]) -> list[TestCase]:
    out = []
    for i in range(n):
        outcome = Outcome.FAILED if i in fail else Outcome.PASSED
        out.append(
            TestCase(
                id=f"tests/pkg{i // 5000}/test_mod{i // 50}.py::TestThing::test_case_{i}[p{i % 7}]",
                name=f"test_case_{i}[p{i % 7}]",
                classname=f"tests.pkg{i // 5000}.test_mod{i // 50}.TestThing",
                file=f"tests/pkg{i // 5000}/test_mod{i // 50}.py",
                line=10 + i % 400,
                outcome=outcome,
                duration_s=rng.expovariate(20.0),
                message="AssertionError: expected 1, got 2" if outcome is Outcome.FAILED else None,
                retries=1 if i in retried else 0,
                flaky=i in retried,
            )
        )
    return out


def resultsets(
    run_id: str,
    commit: str,
    tests: list[TestCase],
    *,
    pr: int | None,
    base: str | None,
    branch: str,
    metric_shift: float,
    t0: int,
) -> list[ResultSet]:
    half = len(tests) // 2
    out = []
    for k, (labels, chunk) in enumerate(
        ((("linux", "x64", "cpu-avx2"), tests[:half]), (("linux", "gpu-nvidia"), tests[half:]))
    ):
        out.append(
            ResultSet(
                run=RunInfo(
                    run_id=run_id,
                    shard_id=f"shard-{k}",
                    repo="org/big",
                    provider="github",
                    commit=commit,
                    branch=branch,
                    pr=pr,
                    base_commit=base,
                    runner_name=f"runner-{k}",
                    runner_labels=labels,
                    job_url=f"https://github.com/org/big/actions/runs/{run_id}/job/{k}",
                    started_at=f"2026-01-01T{t0 % 24:02d}:00:00Z",
                ),
                tests=tuple(chunk),
                metrics=tuple(
                    Metric(
                        name=f"bench_{m}",
                        value=100.0 + m + metric_shift + random.Random(t0 * 10 + m).gauss(0, 0.5),
                        unit="ms",
                    )
                    for m in range(5)
                ),
                duration_s=sum(t.duration_s for t in chunk),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tests", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=10, help="history runs (rows = runs x tests)")
    args = ap.parse_args()
    rng = random.Random(7)
    n = args.tests
    base_fail = set(rng.sample(range(n), 30))
    variants = [
        make_tests(n, rng, base_fail | set(rng.sample(range(n), 5)), set(rng.sample(range(n), 20)))
        for _ in range(3)
    ]
    head_fail = base_fail - set(list(base_fail)[:10]) | set(rng.sample(range(n), 40))
    head_tests = make_tests(n, rng, head_fail, set(rng.sample(range(n), 15)))
    history = [
        rs
        for i in range(args.runs)
        for rs in resultsets(
            f"main-{i}",
            f"{i:040x}",
            variants[i % 3],
            pr=None,
            base=None,
            branch="main",
            metric_shift=0.0,
            t0=i,
        )
    ]
    head = resultsets(
        "pr-1",
        "f" * 40,
        head_tests,
        pr=42,
        base=f"{args.runs - 1:040x}",
        branch="feature",
        metric_shift=12.0,
        t0=args.runs,
    )
    rows = sum(len(rs.tests) for rs in history)
    print(
        f"== Store + report: {rows:,} history rows ({args.runs} runs x {n:,} tests, 2 shards "
        f"each), PR run of {n:,} tests =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        with open_store(db) as store:
            t = time.perf_counter()
            inserted = store.results.ingest_many(history)
            dt = time.perf_counter() - t
            print(
                f"ingest history (ingest_many):   {inserted / dt:>10,.0f} rows/s "
                f"({dt:.2f} s)   target >= 200,000 rows/s"
            )
            t = time.perf_counter()
            inserted = sum(store.results.ingest(rs) for rs in head)
            dt = time.perf_counter() - t
            print(f"ingest PR run (ingest per shard): {inserted / dt:>8,.0f} rows/s ({dt:.2f} s)")
            assert store.results.ingest(head[0]) == 0  # idempotent
            t = time.perf_counter()
            durations = store.results.durations(
                repo="org/big", branch="main", runner_labels=["linux", "x64", "cpu-avx2"]
            )
            print(
                f"planner durations query:         {time.perf_counter() - t:8.3f} s "
                f"({len(durations):,} tests)"
            )
        import matplotlib  # warm import, as a long-lived app or the report step after ingest

        _ = matplotlib.__version__
        with open_store(db, read_only=True) as store:
            t = time.perf_counter()
            report = build_report(store.results, "pr-1")
            t_build = time.perf_counter() - t
            t = time.perf_counter()
            comment = render_comment(report)
            check = render_check_run(report)
            t_render = time.perf_counter() - t
            t = time.perf_counter()
            charts = render_charts(report)
            t_charts = time.perf_counter() - t
        total = t_build + t_render + t_charts
        c = report.comparison
        print(
            f"build_report:                    {t_build:8.3f} s  "
            f"(new failures {len(c.new_failures)}, "
            f"fixed {len(c.fixed)}, flaky {len(c.flaky)}, regressions {len(report.regressions)})"
        )
        print(
            f"render comment + check run:      {t_render:8.3f} s  ({len(comment):,} chars, "
            f"{len(check['annotations'])} annotations)"
        )
        print(
            f"charts ({len(charts)} PNGs):                {t_charts:8.3f} s  "
            f"({sum(map(len, charts.values())) // 1024} KiB)"
        )
        print(f"comment + charts total:          {total:8.3f} s   target < 2 s")


if __name__ == "__main__":
    main()
