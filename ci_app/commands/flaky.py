"""``ci-app flaky``: flaky tests (with evidence) from the stored history of a branch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ci_app.reporting.flaky import FLAKY, HARDWARE, REGRESSION, classify_history


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "flaky",
        help="list flaky tests from stored history",
        description=(
            "Classify tests that failed in the last runs: flaky (retry or same-commit evidence, "
            "or isolated failures while other runners passed), regression, hardware-specific. "
            "Whole-shard infrastructure failures are ignored."
        ),
    )
    p.add_argument("--db", required=True, help="DuckDB store")
    p.add_argument("--branch", help="only runs of this branch (PR runs excluded)")
    p.add_argument("--repo", help="only runs of this repository")
    p.add_argument("--max-runs", type=int, default=600, help="newest runs to look at")
    p.add_argument(
        "--min-confidence",
        choices=("high", "medium", "low"),
        default="low",
        help="drop weaker flaky verdicts",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ci_app.store import open_store

    with open_store(args.db, read_only=True) as store:
        hist = store.results.history(branch=args.branch, repo=args.repo, max_runs=args.max_runs)
    verdicts = classify_history(hist)
    rank = {"high": 0, "medium": 1, "low": 2}
    flaky = sorted(
        (
            v
            for v in verdicts.values()
            if v.verdict == FLAKY and rank[v.confidence] <= rank[args.min_confidence]
        ),
        key=lambda v: (rank[v.confidence], v.test_id),
    )
    regressions = sorted(
        (v for v in verdicts.values() if v.verdict == REGRESSION), key=lambda v: v.test_id
    )
    hardware = sorted(
        (v for v in verdicts.values() if v.verdict == HARDWARE), key=lambda v: v.test_id
    )
    if args.json:
        doc = {
            "branch": args.branch,
            "runs": len(set(hist.run_id)),
            "flaky": [v.to_dict() for v in flaky],
            "regressions": [v.to_dict() for v in regressions],
            "hardware_specific": [v.to_dict() for v in hardware],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    if not flaky:
        print("no flaky tests found")
    for v in flaky:
        print(f"{v.test_id}  [{v.confidence}]")
        for e in v.evidence:
            print(f"    {e.describe()}")
    for v in regressions:
        print(f"{v.test_id}  [regression since {(v.since_commit or '?')[:10]}]")
    for v in hardware:
        print(f"{v.test_id}  [fails only on {', '.join(v.runner_classes)}]")
    return 0
