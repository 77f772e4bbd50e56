"""Dashboard page timings on a big history: the test page (target p95 < 300 ms at 1M result
rows, issue 17), beside the bare DuckDB lookup of the test's rows it cannot beat, and the run
page, test search and an uncached duration chart on the same store.

The history: ``--runs`` runs (four in five on ``main``, the rest pull requests on their own
branches), two shards each on two runner classes, ``--rows`` result rows in all (default 1M:
500 runs x 2,000 tests), written straight into the store's tables as Arrow batches (what
``Results.ingest`` does, without building a million ``TestCase`` objects first). Tests fail,
retry and slow down on a schedule so the pages have strips, verdicts and change points to show.
Every page is requested through the real Flask app (routing, SQL, views, templates), in this
one process, one request at a time.

Run: ``.venv/bin/python bench/dashboard.py [--rows 1000000] [--runs 500] [--pages 60]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]

from ci_app.options.server import Settings
from ci_app.reporting.links import page_key
from ci_app.store import Store, open_store
from ci_app.store.database import insert_arrow
from ci_app.store.explorer import rows_of_test
from ci_app.web.app import create_app

TARGET_MS = 300.0
CASE_KEYS = ("run_id", "shard_id", "test_id", "outcome", "duration_s", "retries", "flaky",
             "message", "file", "line")  # fmt: skip
CLASSES = (
    ("cpu", "cpu-avx2,cpu-avx512,cpus-ge-8,mem-ge-16g,x64"),
    ("gpu", "gpu,gpu-mem-ge-24g,gpu-model-rtx-4090,gpu-nvidia,mem-ge-64g,x64"),
)


def test_name(i: int) -> str:
    return f"tests/pkg{i // 500}/test_mod{i // 25}.py::TestThing::test_case_{i}[p{i % 7}]"


def fill(store: Store, *, runs: int, tests: int, seed: int = 7) -> float:
    """Write the history; returns seconds taken."""
    rng = random.Random(seed)
    started = time.perf_counter()
    t0 = datetime(2026, 1, 1)
    run_keys = ("run_id", "repo", "provider", "commit", "branch", "pr", "started_at",
                "ingested_at")  # fmt: skip
    run_rows: dict[str, list[object]] = {k: [] for k in run_keys}
    shard_keys = ("run_id", "shard_id", "runner_name", "runner_labels", "runner_class",
                  "duration_s", "tests", "passed", "failed", "errors", "skipped", "flaky",
                  "unreadable_files", "ingested_at")  # fmt: skip
    shard_rows: dict[str, list[object]] = {k: [] for k in shard_keys}
    ids = [test_name(i) for i in range(tests)]
    half = tests // 2
    flaky = set(rng.sample(range(tests), max(1, tests // 200)))
    broken = set(rng.sample(range(tests), max(1, tests // 1000)))
    slowed = set(rng.sample(range(tests), max(1, tests // 500)))
    base_dur = [rng.expovariate(20.0) for _ in range(tests)]
    for r in range(runs):
        is_pr = r % 5 == 4
        run_id = f"run-{r:05d}"
        at = t0 + timedelta(minutes=10 * r)
        run_rows["run_id"].append(run_id)
        run_rows["repo"].append("octo/big")
        run_rows["provider"].append("github")
        run_rows["commit"].append(f"{r:08x}" + "0" * 32)
        run_rows["branch"].append(f"feature/{r}" if is_pr else "main")
        run_rows["pr"].append(r if is_pr else None)
        run_rows["started_at"].append(at)
        run_rows["ingested_at"].append(at)
        cols: dict[str, list[object]] = {k: [] for k in CASE_KEYS}
        for s, (shard, rclass) in enumerate(CLASSES):
            lo, hi = (0, half) if s == 0 else (half, tests)
            failed = passed = retried = 0
            total = 0.0
            for i in range(lo, hi):
                outcome, message, retry = "passed", None, 0
                if i in flaky and rng.random() < 0.15:
                    if rng.random() < 0.5:
                        outcome, message = "failed", f"AssertionError: flaky {i}"
                    else:
                        retry = 1
                if i in broken and r > runs // 2:
                    outcome, message = "failed", f"RuntimeError: broken since half way ({i})"
                d = base_dur[i] * (2.0 if i in slowed and r > runs * 2 // 3 else 1.0)
                d *= rng.uniform(0.9, 1.1)
                cols["run_id"].append(run_id)
                cols["shard_id"].append(shard)
                cols["test_id"].append(ids[i])
                cols["outcome"].append(outcome)
                cols["duration_s"].append(d)
                cols["retries"].append(retry)
                cols["flaky"].append(bool(retry))
                cols["message"].append(message)
                cols["file"].append(ids[i].split("::", 1)[0])
                cols["line"].append(10 + i % 300)
                failed += outcome == "failed"
                passed += outcome == "passed"
                retried += retry
                total += d
            for key, value in (("run_id", run_id), ("shard_id", shard),
                               ("runner_name", f"{shard}-box-{r % 3}"),
                               ("runner_labels", rclass.split(",")), ("runner_class", rclass),
                               ("duration_s", total), ("tests", hi - lo), ("passed", passed),
                               ("failed", failed), ("errors", 0), ("skipped", 0),
                               ("flaky", retried), ("unreadable_files", 0),
                               ("ingested_at", at)):  # fmt: skip
                shard_rows[key].append(value)
        _append(store, "test_results", cols)
    _append(store, "runs", run_rows)
    _append(store, "shards", shard_rows)
    return time.perf_counter() - started


def _append(store: Store, table: str, cols: dict[str, list[object]]) -> None:
    with store.db.transaction() as con:
        insert_arrow(con, table, pa.table(cols))


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def line(what: str, ms: list[float], note: str = "") -> None:
    print(
        f"{what:<44} p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 0.95):7.1f} ms   "
        f"max {max(ms):7.1f} ms {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="result rows in all")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--pages", type=int, default=60, help="test pages requested")
    args = parser.parse_args()
    tests = max(2, args.rows // args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        with open_store(db) as store:
            took = fill(store, runs=args.runs, tests=tests)
            rows = store.db.one("SELECT count(*) FROM test_results")
            n_rows = int(rows[0]) if rows else 0
            print(f"history: {n_rows:,} result rows, {args.runs} runs x {tests:,} tests, "
                  f"2 runner classes; written in {took:.1f} s")  # fmt: skip
            settings = Settings(api_token="bench-admin-token-0123456789")
            app = create_app(settings, store=store, start_worker=False)
            client = app.test_client()
            rng = random.Random(3)
            picks = [test_name(rng.randrange(tests)) for _ in range(args.pages)]

            def get(path: str) -> None:
                resp = client.get(path)
                if resp.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {resp.status_code}")

            get(f"/tests/{page_key(picks[0])}")  # warm-up: templates compiled, caches filled
            it = iter(picks)
            page_ms = timed(lambda: get(f"/tests/{page_key(next(it))}"), len(picks))
            it2 = iter(picks)
            lookup_ms = timed(lambda: rows_of_test(store.db, next(it2)), len(picks))
            last = f"run-{args.runs - 1:05d}"
            run_ms = timed(lambda: get(f"/runs/{last}?page=2"), 10)
            filter_ms = timed(lambda: get(f"/runs/{last}?status=failing&q=test_mod1"), 10)
            search_ms = timed(lambda: get("/tests?q=test_case_12&status=failed"), 10)
            it3 = iter(range(10))
            chart_ms = timed(
                lambda: get(f"/tests/{page_key(picks[next(it3)])}/duration.png?branch=main"), 10
            )
    p95 = pct(page_ms, 0.95)
    print()
    print(f"{'':<44} {'':>10}   {'':>10}   (one process; Flask test client; sequential)")
    line(f"test page at {n_rows / 1e6:.1f}M rows ({len(picks)} tests)", page_ms,
         f"  target p95 < {TARGET_MS:.0f} ms: {'OK' if p95 < TARGET_MS else 'MISSED'} "
         f"({p95 / TARGET_MS:.2f}x of target)")  # fmt: skip
    line("  anchor: bare DuckDB lookup of its rows", lookup_ms,
         f"  page / lookup p95: {p95 / pct(lookup_ms, 0.95):.1f}x")  # fmt: skip
    line("run page (build_report, page 2 of tests)", run_ms, "  (report cached after 1st)")
    line("run page, status + id filter", filter_ms)
    line("test search (id fragment + status)", search_ms)
    line("duration chart PNG (uncached render)", chart_ms)


if __name__ == "__main__":
    main()
