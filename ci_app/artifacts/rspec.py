"""RSpec JSON formatter output (``rspec --format json``).

``examples[].status`` is passed, failed or pending (pending and ``skip`` are
skipped). Errors outside of examples (a spec file that fails to load, an
exception in ``before(:suite)``) are counted by RSpec in
``summary.errors_outside_of_examples_count`` and described in ``messages``;
they become ``error`` cases, because the examples of that file never ran.
rspec-retry's extra attempts are not in the JSON, so ``retries`` stays 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError, to_float
from ci_app.artifacts.cases import (
    CaseBuilder,
    expect_dict,
    expect_list,
    join_texts,
    load_json,
    text_of,
)
from ci_app.model.results import Outcome, Summary, TestCase

_STATUS = {
    "passed": Outcome.PASSED,
    "failed": Outcome.FAILED,
    "pending": Outcome.SKIPPED,
    "skipped": Outcome.SKIPPED,
}


def parse_rspec_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse an RSpec JSON report."""
    doc = expect_dict(load_json(stream, "RSpec JSON report"), "RSpec JSON report")
    if "examples" not in doc:
        raise ReportParseError("not an RSpec JSON report: no 'examples'")
    ctx.tool = "rspec"
    try:
        return iter(list(_cases(doc, ctx)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportParseError(
            f"malformed RSpec JSON report: {type(exc).__name__}: {exc}"
        ) from None


def _cases(doc: Mapping[str, Any], ctx: ParseContext) -> Iterator[TestCase]:
    builder = CaseBuilder(ctx)
    for raw in expect_list(doc.get("examples"), "examples"):
        ex = expect_dict(raw, "examples[]")
        status = str(ex.get("status") or "")
        outcome = _STATUS.get(status)
        if outcome is None:
            ctx.warn(f"unknown RSpec status {status!r}; counted as error")
            outcome = Outcome.ERROR
        description = str(ex.get("description") or "")
        full = str(ex.get("full_description") or description)
        group = (
            full[: -len(description)].strip()
            if description and full.endswith(description)
            else None
        )
        exc = ex.get("exception") or {}
        message = details = None
        if isinstance(exc, Mapping) and exc:
            text = (text_of(exc.get("message")) or "").strip()
            message = join_texts([text_of(exc.get("class")), text], ": ")
            trace = exc.get("backtrace")
            details = (
                "\n".join(str(t) for t in trace) if isinstance(trace, list) else text_of(trace)
            )
        if outcome is Outcome.SKIPPED:
            message = text_of(ex.get("pending_message")) or message
        line = ex.get("line_number")
        yield builder.case(
            name=description or full or text_of(ex.get("id")),
            classname=group or None,
            file=text_of(ex.get("file_path")),
            line=line if isinstance(line, int) else None,
            outcome=outcome,
            duration_s=to_float(ex.get("run_time")),
            message=message,
            details=details,
        )
    summary = doc.get("summary")
    if isinstance(summary, Mapping):
        yield from _outside_errors(summary, doc, builder)
        _declared(summary, ctx)


def _outside_errors(
    summary: Mapping[str, Any], doc: Mapping[str, Any], builder: CaseBuilder
) -> Iterator[TestCase]:
    count = summary.get("errors_outside_of_examples_count")
    if not isinstance(count, int) or count <= 0:
        return
    messages = [str(m) for m in expect_list(doc.get("messages"), "messages")]
    detail = join_texts(messages, "\n\n")
    for i in range(count):
        yield builder.case(
            name="[errors outside of examples]"
            if count == 1
            else f"[error outside of examples {i + 1}]",
            outcome=Outcome.ERROR,
            message=messages[0].strip().splitlines()[0]
            if messages and messages[0].strip()
            else None,
            details=detail,
        )


def _declared(summary: Mapping[str, Any], ctx: ParseContext) -> None:
    try:
        examples = int(summary["example_count"])
        failures = int(summary.get("failure_count", 0))
        pending = int(summary.get("pending_count", 0))
        outside = int(summary.get("errors_outside_of_examples_count", 0))
    except (KeyError, TypeError, ValueError):
        return
    ctx.declared = Summary(
        tests=examples + outside,
        passed=max(0, examples - failures - pending),
        failed=failures,
        errors=outside,
        skipped=pending,
    )
    if summary.get("duration") is not None:
        ctx.duration_s = to_float(summary.get("duration"))
