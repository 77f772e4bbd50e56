"""Our own ``results.json`` (ResultSet v1), read back: merge shards, re-ingest artifacts.

Ids stay as written (made unique if a hand-edited file repeats one); the
file's ``summary`` is what it declares; input files that had failed to parse
when it was written are repeated as warnings so they stay visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import CaseBuilder, expect_dict, load_json
from ci_app.model.results import ResultSet, Summary, TestCase


def parse_resultset_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a ci-fanout ``results.json``."""
    doc = expect_dict(load_json(stream, "results.json"), "results.json")
    try:
        rs = ResultSet.from_dict(doc)
        declared = Summary.from_dict(expect_dict(doc.get("summary") or {}, "summary"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportParseError(
            f"not a usable ci-fanout results.json: {type(exc).__name__}: {exc}"
        ) from None
    ctx.tool = rs.tool
    ctx.duration_s = rs.duration_s
    ctx.declared = declared
    for f in rs.files:
        if f.error:
            ctx.warn(f"{f.path}: could not be parsed when this file was written: {f.error}")
    builder = CaseBuilder(ctx)
    return iter(
        [
            replace(
                t,
                id=builder.unique_id(t.id),
                message=ctx.clip(t.message),
                details=ctx.clip(t.details),
                stdout=ctx.clip(t.stdout),
                stderr=ctx.clip(t.stderr),
            )
            for t in rs.tests
        ]
    )
