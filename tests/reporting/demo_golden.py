"""The full PR comment of ``make demo``'s history, as a golden (issue 15).

The demo runs real tests, so its timings differ on every run; its history is captured once
into ``tests/data/demo-history/results.json`` (one result set per shard of each of the six
simulated commits, from the demo's DuckDB file) and the comment for the pull request is
rendered from it by the current code. ``make goldens`` rewrites the comment; review the diff:
it is what users will read differently. Capture a new history with
``python -m tests.reporting.demo_golden --capture out/ci-fanout.duckdb`` after ``make demo``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.reporting.render import render_comment
from ci_app.reporting.report import build_report
from ci_app.store import open_store

DATA = Path(__file__).resolve().parents[1] / "data"
HISTORY = DATA / "demo-history" / "results.json"
GOLDEN = DATA / "goldens" / "demo-history" / "comment.md"
PR_RUN = "demo-6"
DASHBOARD = f"https://ci-fanout.example/runs/{PR_RUN}"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def capture(db: Path) -> list[dict[str, Any]]:
    """Every shard of every run in the demo's store, as results.json documents."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    out: list[dict[str, Any]] = []
    runs = con.execute(
        "SELECT run_id, repo, provider, pipeline_id, commit, branch, base_commit, pr, "
        "started_at FROM runs ORDER BY seq"
    ).fetchall()
    for run_id, repo, provider, pipeline, commit, branch, base, pr, _started in runs:
        shards = con.execute(
            "SELECT shard_id, runner_name, runner_labels, started_at, finished_at, duration_s "
            "FROM shards WHERE run_id = ? ORDER BY shard_id",
            [run_id],
        ).fetchall()
        for shard_id, runner, labels, s_start, s_end, duration in shards:
            cases = con.execute(
                "SELECT test_id, suite, classname, name, file, line, outcome, duration_s, "
                "retries, flaky, message FROM test_results WHERE run_id = ? AND shard_id = ? "
                "ORDER BY test_id",
                [run_id, shard_id],
            ).fetchall()
            run = RunInfo(
                run_id=run_id,
                shard_id=shard_id,
                repo=repo,
                provider=provider,
                pipeline_id=pipeline,
                commit=commit,
                branch=branch,
                base_commit=base,
                pr=pr,
                runner_name=runner,
                runner_labels=tuple(labels or ()),
                started_at=_iso(s_start),
                finished_at=_iso(s_end),
            )
            tests = tuple(
                TestCase(
                    id=c[0],
                    suite=c[1],
                    classname=c[2],
                    name=c[3],
                    file=c[4],
                    line=c[5],
                    outcome=Outcome(c[6]),
                    duration_s=float(c[7]),
                    retries=int(c[8]),
                    flaky=bool(c[9]),
                    message=c[10],
                )
                for c in cases
            )
            out.append(ResultSet(run=run, tests=tests, duration_s=duration).to_dict())
    con.close()
    return out


def render(history: Path = HISTORY) -> str:
    """The PR comment for the captured demo history, by the current code."""
    docs = json.loads(history.read_text(encoding="utf-8"))
    with open_store(":memory:") as store:
        for doc in docs:
            store.results.ingest(ResultSet.from_dict(doc))
        report = build_report(store.results, PR_RUN, dashboard_url=DASHBOARD)
    return render_comment(report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--capture", metavar="DB", help="capture the history from make demo's DB")
    p.add_argument("--write", action="store_true", help="rewrite the golden comment")
    args = p.parse_args(argv)
    if args.capture:
        HISTORY.parent.mkdir(parents=True, exist_ok=True)
        HISTORY.write_text(json.dumps(capture(Path(args.capture)), indent=1) + "\n", "utf-8")
        sys.stdout.write(f"wrote {HISTORY}\n")
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(render(), encoding="utf-8")
        sys.stdout.write(f"wrote {GOLDEN}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
