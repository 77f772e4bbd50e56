"""Jest JSON (``jest --json``) and Vitest JSON (``vitest --reporter=json``) reports.

Both write ``{numTotalTests, …, testResults: [{name, status, message,
assertionResults: [{ancestorTitles, title, status, duration, failureMessages,
invocations, location}]}]}``. Statuses: ``passed``; ``failed``;
``pending``/``skipped``/``disabled``/``todo`` are skipped (so the counts equal
Jest's "Tests:" line, where todo and skipped are shown apart). ``invocations``
> 1 (``jest.retryTimes``) are retries; a test that passed after retries is
flaky. A test file that failed to run (syntax error, failing import) has no
assertion results: Jest reports it on its "Test Suites:" line, not on "Tests:",
so it is no test here either but an error entry of its own in the file list
(``report.json!path/to/file.test.js``), and the test totals stay Jest's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import CaseBuilder, expect_dict, expect_list, load_json, text_of
from ci_app.model.results import Outcome, Summary, TestCase

_STATUS = {
    "passed": Outcome.PASSED,
    "failed": Outcome.FAILED,
    "pending": Outcome.SKIPPED,
    "skipped": Outcome.SKIPPED,
    "disabled": Outcome.SKIPPED,
    "todo": Outcome.SKIPPED,
    "focused": Outcome.PASSED,
}


def parse_jest_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a Jest or Vitest JSON report."""
    doc = expect_dict(load_json(stream, "Jest JSON report"), "Jest JSON report")
    if "testResults" not in doc:
        raise ReportParseError("not a Jest/Vitest JSON report: needs 'testResults'")
    ctx.tool = "vitest" if "numTodoTests" in doc and "openHandles" not in doc else "jest"
    try:
        return iter(list(_cases(doc, ctx)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportParseError(f"malformed Jest JSON report: {type(exc).__name__}: {exc}") from None


def _ms(value: Any) -> float:
    return float(value) / 1000.0 if isinstance(value, int | float) else 0.0


def _cases(doc: Mapping[str, Any], ctx: ParseContext) -> Iterator[TestCase]:
    total = doc.get("numTotalTests")
    if isinstance(total, int):
        skipped = int(doc.get("numPendingTests") or 0) + int(doc.get("numTodoTests") or 0)
        failed = int(doc.get("numFailedTests") or 0)
        ctx.declared = Summary(
            tests=total,
            passed=int(doc.get("numPassedTests") or 0),
            failed=failed,
            skipped=skipped,
        )
    builder = CaseBuilder(ctx)
    for raw_file in expect_list(doc.get("testResults"), "testResults"):
        result = expect_dict(raw_file, "testResults[]")
        file = str(result.get("name") or result.get("testFilePath") or "") or None
        assertions = expect_list(result.get("assertionResults") or [], "assertionResults")
        if not assertions and result.get("status") == "failed":
            why = (text_of(result.get("message") or result.get("failureMessage")) or "").strip()
            ctx.part_error(
                file or "test file",
                "test suite failed to run (Jest counts it on its 'Test Suites:' line, "
                f"not under 'Tests:'){': ' + why[:2000] if why else ''}",
            )
            continue
        for raw in assertions:
            a = expect_dict(raw, "assertionResults[]")
            status = str(a.get("status") or "")
            outcome = _STATUS.get(status)
            if outcome is None:
                ctx.warn(f"unknown Jest status {status!r}; counted as an error")
                outcome = Outcome.ERROR
            ancestors = [str(t) for t in a.get("ancestorTitles") or []]
            title = str(a.get("title") or a.get("fullName") or "")
            invocations = a.get("invocations")
            retries = max(0, int(invocations) - 1) if isinstance(invocations, int) else 0
            failures = [text_of(m) or "" for m in a.get("failureMessages") or []]
            location = a.get("location") if isinstance(a.get("location"), Mapping) else None
            message = failures[0].split("\n", 1)[0] if failures else None
            if status == "todo":
                message = "todo"
            yield builder.case(
                name=title,
                outcome=outcome,
                classname=" › ".join(ancestors) or None,
                suite=file,
                file=file,
                line=int(location["line"]) if location and location.get("line") else None,
                duration_s=_ms(a.get("duration")),
                message=message,
                details="\n\n".join(failures) or None,
                retries=retries,
                flaky=retries > 0 and outcome is Outcome.PASSED,
            )


def _span(result: Mapping[str, Any]) -> float:
    start, end = result.get("startTime"), result.get("endTime")
    if isinstance(start, int | float) and isinstance(end, int | float) and end >= start:
        return float(end - start)
    return 0.0
