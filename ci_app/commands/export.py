"""``ci-app export``: results.json -> standard JUnit XML (or CTRF JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ci_app.errors import InputError
from ci_app.model.results import ResultSet


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="convert results.json to JUnit XML or CTRF JSON",
        description="Convert a ResultSet v1 results.json into standard JUnit XML "
        "(GitLab's MR test widget, Jenkins) or CTRF JSON.",
    )
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--junit", metavar="RESULTS", help="results.json to write as JUnit XML")
    kind.add_argument("--ctrf", metavar="RESULTS", help="results.json to write as CTRF JSON")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    p.set_defaults(func=run)


def load_results(path: str) -> ResultSet:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return ResultSet.from_dict(data)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a ci-fanout results.json ({exc})") from None


def run(args: argparse.Namespace) -> int:
    if args.junit:
        from ci_app.artifacts.export import write_junit

        results = load_results(args.junit)
        if args.output == "-":
            write_junit(results, sys.stdout.buffer)
        else:
            with Path(args.output).open("wb") as out:
                write_junit(results, out)
        return 0
    from ci_app.model.ctrf import resultset_to_ctrf

    results = load_results(args.ctrf)
    text = json.dumps(resultset_to_ctrf(results), indent=2)
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0
