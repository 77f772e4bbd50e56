"""``ci-app ingest``: report files -> standard results.json (and optionally the store)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from ci_app.artifacts.formats import FORMATS
from ci_app.artifacts.ingest import ingest_to_json
from ci_app.errors import InputError
from ci_app.model.results import ReportFile, ResultSet, RunInfo, Summary, TestCase


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ingest",
        help="parse test reports into the standard results.json",
        description=(
            "Parse test reports (files, directories, globs, .zip archives; format detected from "
            "content) into one ResultSet v1 results.json, and optionally store it. Exits 0 when "
            "the reports were read, even if tests failed; 3 when no input was usable."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="report files, directories, globs, zips"
    )
    p.add_argument("-o", "--output", help="write results.json here ('-' for stdout)")
    p.add_argument("--format", choices=FORMATS, help="skip detection and read every input as this")
    p.add_argument("--db", help="also ingest into this DuckDB store")
    p.add_argument("--run-id", help="pipeline run id (stored runs are keyed by run id + shard id)")
    p.add_argument("--shard-id", help="shard id within the run")
    p.add_argument("--repo", help="OWNER/NAME or GitLab project path")
    p.add_argument("--provider", help="github, gitlab, jenkins, azure or local")
    p.add_argument("--pipeline-id", help="the CI's own id of the pipeline")
    p.add_argument("--commit", help="commit SHA the tests ran on")
    p.add_argument("--branch", help="branch name")
    p.add_argument("--base-commit", help="commit to compare with (merge base)")
    p.add_argument("--pr", type=int, help="pull/merge request number")
    p.add_argument("--runner-name", help="runner that ran the shard")
    p.add_argument("--runner-labels", help="comma-separated labels of that runner")
    p.add_argument("--timestamp", help="ISO 8601 time of the run (default: now)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=run)


def run_info_from_args(args: argparse.Namespace) -> RunInfo:
    """The flags name a run as a CI context does (``--run-id`` … ``--pr`` are its
    :class:`~ci_app.model.results.RunIdentity`), and this shard: the one builder of a
    ``RunInfo`` from a run's source."""
    labels = tuple(x.strip() for x in (args.runner_labels or "").split(",") if x.strip())
    return RunInfo.of(
        args,
        shard_id=args.shard_id,
        runner_name=args.runner_name,
        runner_labels=labels,
        started_at=args.timestamp,
    )


def summary_line(summary: Summary, files: list[ReportFile] | tuple[ReportFile, ...]) -> str:
    bad = sum(1 for f in files if f.error)
    text = (
        f"{summary.tests} tests: {summary.passed} passed, {summary.failed} failed, "
        f"{summary.errors} errors, {summary.skipped} skipped"
    )
    if summary.flaky:
        text += f" ({summary.flaky} flaky)"
    text += f" in {len(files)} file(s)"
    if bad:
        text += f"; {bad} unreadable"
    return text


def _report_problems(files: list[ReportFile] | tuple[ReportFile, ...]) -> None:
    for f in files:
        if f.error:
            print(f"error: {f.path}: {f.error}", file=sys.stderr)
        for w in f.warnings:
            print(f"warning: {f.path}: {w}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    run_info = run_info_from_args(args)
    store_cm: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if args.db:
        from ci_app.store import open_store

        store_cm = open_store(args.db)
    with store_cm as store:
        # DuckDB's buffers capped: this process only ingests, batch by batch
        writer = (
            store.results.shard_writer(run_info, memory_limit_mb=16) if store is not None else None
        )
        sink = writer.add if writer is not None else None
        target = args.output or ("results.json" if writer is None else None)
        if target == "-":
            summary, files = _stream(args, sys.stdout, run_info, sink)
        elif target is None:  # --db without --output: nothing to keep on disk
            with Path(os.devnull).open("w", encoding="utf-8") as out:
                summary, files = _stream(args, out, run_info, sink)
        else:
            summary, files = write_atomically(
                Path(target), lambda out: _stream(args, out, run_info, sink)
            )
        _check_usable(files)
        if writer is not None:
            writer.finish(ResultSet(run=run_info, files=tuple(files)), summary)
    _report_problems(files)
    if not args.quiet:
        print(f"ci-app ingest: {summary_line(summary, files)}", file=sys.stderr)
    return 0


T = TypeVar("T")


def write_atomically(path: Path, write: Callable[[IO[str]], T]) -> T:
    """Write ``path`` through a temporary file beside it, renamed into place only when
    ``write`` has finished: the target is either the old file or a complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            result = write(out)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    return result


def _stream(
    args: argparse.Namespace,
    out: IO[str],
    run_info: RunInfo,
    sink: Callable[[list[TestCase]], None] | None = None,
) -> tuple[Summary, list[ReportFile]]:
    return ingest_to_json(args.paths, out, run=run_info, fmt=args.format, sink=sink)


def _check_usable(files: list[ReportFile] | tuple[ReportFile, ...]) -> None:
    if not files:
        raise InputError("no input files found; pass report files, directories, globs or zips")
    if all(f.error for f in files):
        _report_problems(files)
        raise InputError(
            f"none of the {len(files)} input(s) could be read as a test report (see errors above)"
        )
