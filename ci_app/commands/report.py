"""``ci-app report``: the PR comment (markdown) or JSON for one stored run, plus charts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ci_app.reporting.render import COMMENT_BUDGET, render_comment
from ci_app.reporting.report import Report, build_report


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """All ``report`` options in one place (publishers add their ``--publish`` flags here)."""
    parser.add_argument("--db", required=True, help="DuckDB store written by `ci-app ingest --db`")
    parser.add_argument("--run-id", required=True, help="run to report on")
    parser.add_argument(
        "--format", choices=("markdown", "json"), default="markdown", help="output format"
    )
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument("--charts", metavar="DIR", help="also write PNG charts into DIR")
    parser.add_argument(
        "--base-branch",
        help="branch whose history is the baseline (default: the run's merge-base runs, "
        "then main/master)",
    )
    parser.add_argument(
        "--history-runs", type=int, default=200, help="base-branch runs used for flaky and trends"
    )
    parser.add_argument(
        "--budget", type=int, default=COMMENT_BUDGET, help="max characters of the markdown"
    )
    parser.add_argument("--dashboard-url", help="link for 'N more — see dashboard'")
    from ci_app.providers.publish import add_publish_arguments

    add_publish_arguments(parser)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="render the PR comment / JSON report for a stored run",
        description=(
            "Compare a stored run with its base (merge base, else the latest run on the base "
            "branch): new failures, fixed, flaky (with evidence), hardware-specific failures, "
            "duration and metric regressions, trend chart. Exit 0 when the report was written."
        ),
    )
    add_report_arguments(p)
    p.set_defaults(func=run)


def make_report(args: argparse.Namespace) -> Report:
    from ci_app.store import open_store

    _merge_queue_record(args.db, args.run_id)
    with open_store(args.db, read_only=True) as store:
        return build_report(
            store.results,
            args.run_id,
            base_branch=args.base_branch,
            history_runs=args.history_runs,
            dashboard_url=args.dashboard_url,
        )


def run(args: argparse.Namespace) -> int:
    report = make_report(args)
    if args.format == "json":
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_comment(report, budget=args.budget)
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.charts:
        from ci_app.reporting.charts import render_charts

        out = Path(args.charts)
        out.mkdir(parents=True, exist_ok=True)
        for name, png in render_charts(report).items():
            (out / name).write_bytes(png)
    if getattr(args, "publish", None):
        _publish(args, report)
    return 0


def _publish(args: argparse.Namespace, report: Report) -> None:
    """``--publish``: post the budgeted comment (+ check run with ``--head-sha``)."""
    from ci_app.providers.publish import describe, publish_from_args
    from ci_app.reporting.render import render_check_run

    comment = render_comment(report, budget=args.budget)
    check_run = render_check_run(report) if args.head_sha else None
    result = publish_from_args(args, comment, check_run=check_run)
    if result is not None:
        print(describe(result), file=sys.stderr)


def _merge_queue_record(db: str, run_id: str) -> None:
    """A queue-mode run in the app's store: merge the queue's record first (the results a
    killed runner completed, and which runners died), as the app's own report does."""
    from ci_app.errors import StoreError
    from ci_app.store import open_store
    from ci_app.store.queue_record import merge_record

    with open_store(db, read_only=True) as store:
        if not store.queue.has_run(run_id):
            return
    try:
        with open_store(db) as store:
            inserted, marked = merge_record(store.results, store.queue, run_id)
    except StoreError as exc:
        print(f"warning: the queue's record was not merged: {exc}", file=sys.stderr)
        return
    if inserted or marked:
        print(
            f"ci-app report: {inserted} result(s) recovered from the queue's record, "
            f"{marked} shard(s) marked as died",
            file=sys.stderr,
        )
