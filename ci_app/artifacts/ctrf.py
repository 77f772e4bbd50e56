"""CTRF JSON reports (ctrf.io): Playwright, Cypress, Jest, WDIO … reporters, and our own export.

The mapping lives in ``ci_app.model.ctrf`` (pure, both ways); this adapter
reads the bytes, records what the file claims (``summary``) and clips texts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import expect_dict, load_json
from ci_app.model.ctrf import CtrfError, ctrf_to_resultset
from ci_app.model.results import Summary, TestCase


def parse_ctrf_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a CTRF JSON document."""
    doc = expect_dict(load_json(stream, "CTRF report"), "CTRF report")
    try:
        rs = ctrf_to_resultset(doc)
    except CtrfError as exc:
        raise ReportParseError(str(exc)) from None
    results = doc.get("results")
    tool = results.get("tool") if isinstance(results, Mapping) else None
    ctx.tool = rs.tool or (
        str(tool.get("name")) if isinstance(tool, Mapping) and tool.get("name") else None
    )
    ctx.duration_s = rs.duration_s
    if isinstance(results, Mapping):
        ctx.declared = _declared(results.get("summary"))
    return iter(
        [
            replace(
                t,
                message=ctx.clip(t.message),
                details=ctx.clip(t.details),
                stdout=ctx.clip(t.stdout),
                stderr=ctx.clip(t.stderr),
            )
            for t in rs.tests
        ]
    )


def _declared(summary: Any) -> Summary | None:
    if not isinstance(summary, Mapping):
        return None
    try:
        extra = summary.get("extra")
        errors = int(extra.get("errors", 0)) if isinstance(extra, Mapping) else 0
        return Summary(
            tests=int(summary["tests"]),
            passed=int(summary.get("passed", 0)),
            failed=int(summary.get("failed", 0)) - errors,
            errors=errors + int(summary.get("other", 0)),
            skipped=int(summary.get("skipped", 0)) + int(summary.get("pending", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None
