"""Visual Studio TRX reports (``<TestRun>``; MSTest, and vstest for NUnit/xUnit.net adapters).

Results (``<UnitTestResult>``) are joined to their definitions
(``<UnitTest><TestMethod className>``) by ``testId``. Several results with the
same ``testId`` are reruns (one case: last attempt decides, ``retries``,
``flaky``); data-driven rows (``<InnerResults>``) are cases of their own and
the aggregate parent is not counted twice. xUnit.net's
``[Test Class Cleanup Failure (...)]`` pseudo-results are hook failures and
become errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts.base import ParseContext, ReportParseError, to_int
from ci_app.artifacts.cases import (
    Attempt,
    CaseBuilder,
    element_text,
    join_texts,
    reject_entities,
    split_qualified,
    strip_prefix,
)
from ci_app.artifacts.xmlsafe import local, parse_tree
from ci_app.model.results import Outcome, Summary, TestCase

_OUTCOMES = {
    "passed": Outcome.PASSED,
    "passedbutrunaborted": Outcome.PASSED,
    "completed": Outcome.PASSED,
    "warning": Outcome.PASSED,
    "failed": Outcome.FAILED,
    "timeout": Outcome.FAILED,
    "error": Outcome.ERROR,
    "notexecuted": Outcome.SKIPPED,
    "notrunnable": Outcome.SKIPPED,
    "inconclusive": Outcome.SKIPPED,
    "aborted": Outcome.SKIPPED,
    "disconnected": Outcome.SKIPPED,
    "inprogress": Outcome.SKIPPED,
    "pending": Outcome.SKIPPED,
}
_HOOK_FAILURE = re.compile(
    r"^\[(?:Test |Assembly |Collection )?.*(?:Cleanup|Setup|Initialize)[^]]*Failure\b", re.I
)
_PER_TEST_FAIL = re.compile(r"^\[xUnit\.net [\d:.]+\].*\[FAIL\]$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")


@dataclass(slots=True)
class _Test:
    key: str
    name: str
    classname: str | None
    attempts: list[Attempt] = field(default_factory=list)


def parse_trx(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a TRX document."""
    root = parse_tree(stream, ctx)
    reject_entities(root)
    if local(root.tag) != "TestRun":
        raise ReportParseError(f"not a TRX report: root element <{local(root.tag)}>")
    children = {local(c.tag): c for c in root}
    definitions = _definitions(children.get("TestDefinitions"), ctx)
    _summary(children.get("ResultSummary"), children.get("Times"), ctx)
    results = children.get("Results")
    tests: dict[str, _Test] = {}
    if results is not None:
        for el in results:
            if local(el.tag) in ("UnitTestResult", "TestResult", "TestResultAggregation"):
                _collect(el, definitions, tests, ctx)
    return _emit(tests, CaseBuilder(ctx))


def _definitions(
    el: etree._Element | None, ctx: ParseContext
) -> dict[str, tuple[str | None, str | None]]:
    """testId -> (className, method name)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    if el is None:
        return out
    adapters: set[str] = set()
    for test in el:
        test_id = test.get("id")
        if not test_id:
            continue
        classname = method = None
        for child in test:
            if local(child.tag) == "TestMethod":
                classname = (child.get("className") or "").split(",", 1)[0].strip() or None
                method = child.get("name")
                adapters.add((child.get("adapterTypeName") or "").lower())
        out[test_id] = (classname, method)
    joined = " ".join(adapters)
    ctx.tool = "nunit" if "nunit" in joined else "xunit.net" if "xunit" in joined else "mstest"
    return out


def _summary(
    summary: etree._Element | None, times: etree._Element | None, ctx: ParseContext
) -> None:
    if times is not None:
        start, finish = _timestamp(times.get("start")), _timestamp(times.get("finish"))
        try:
            if start and finish and finish >= start:
                ctx.duration_s = (finish - start).total_seconds()
        except TypeError:  # one naive, one aware timestamp
            pass
    if summary is None:
        return
    for child in summary.iter():
        tag = local(child.tag)
        if tag == "Counters":
            c = {str(k).lower(): to_int(str(v)) or 0 for k, v in child.attrib.items()}
            passed = sum(
                c.get(k, 0) for k in ("passed", "passedbutrunaborted", "warning", "completed")
            )
            failed = c.get("failed", 0) + c.get("timeout", 0)
            errors = c.get("error", 0)
            total = c.get("total", 0)
            ctx.declared = Summary(
                tests=total,
                passed=passed,
                failed=failed,
                errors=errors,
                skipped=max(0, total - passed - failed - errors),
            )
        elif tag == "RunInfo" and (child.get("outcome") or "").lower() in ("error", "failed"):
            text = element_text(next((t for t in child if local(t.tag) == "Text"), None))
            if text and not _PER_TEST_FAIL.match(text.strip()):
                ctx.warn(f"test run reported: {text.strip()[:500]}")


def _collect(
    el: etree._Element,
    definitions: dict[str, tuple[str | None, str | None]],
    tests: dict[str, _Test],
    ctx: ParseContext,
) -> None:
    inner = next((c for c in el if local(c.tag) == "InnerResults"), None)
    rows = (
        [c for c in inner if local(c.tag) in ("UnitTestResult", "TestResult")]
        if inner is not None
        else []
    )
    if rows:  # data-driven parent: its rows are the cases
        for row in rows:
            _collect(row, definitions, tests, ctx)
        return
    test_id = el.get("testId") or ""
    test_name = el.get("testName") or ""
    classname, method = definitions.get(test_id, (None, None))
    name = test_name or method or test_id
    if classname:
        name = strip_prefix(name, classname)
    elif "(" not in name.split(".")[0]:
        classname, name = split_qualified(name)
    # Reruns share testId and name; data rows share testId but not the name.
    key = f"{test_id}\x00{test_name}\x00{el.get('dataRowInfo') or ''}"
    test = tests.get(key)
    if test is None:
        test = tests[key] = _Test(key=key, name=name, classname=classname)
    test.attempts.append(_attempt(el, test_name, ctx))


def _attempt(el: etree._Element, test_name: str, ctx: ParseContext) -> Attempt:
    raw = el.get("outcome") or ""
    outcome = _OUTCOMES.get(raw.lower())
    if outcome is None:
        ctx.warn(f"unknown TRX outcome {raw!r} for {test_name!r}; counted as error")
        outcome = Outcome.ERROR
    if outcome is Outcome.FAILED and _HOOK_FAILURE.match(test_name):
        outcome = Outcome.ERROR
    output = next((c for c in el if local(c.tag) == "Output"), None)
    parts: dict[str, str | None] = {}
    if output is not None:
        for child in output:
            tag = local(child.tag)
            if tag == "ErrorInfo":
                for sub in child:
                    parts[local(sub.tag)] = element_text(sub)
            elif tag in ("StdOut", "StdErr", "DebugTrace"):
                parts[tag] = element_text(child)
            elif tag == "TextMessages":
                parts[tag] = join_texts(element_text(m) for m in child)
    message = parts.get("Message")
    if message is None and outcome is Outcome.SKIPPED:
        message = parts.get("TextMessages")
    return Attempt(
        outcome=outcome,
        duration_s=_timespan(el.get("duration")),
        message=message,
        details=parts.get("StackTrace"),
        stdout=join_texts([parts.get("StdOut"), parts.get("DebugTrace")]),
        stderr=parts.get("StdErr"),
    )


def _emit(tests: dict[str, _Test], builder: CaseBuilder) -> Iterator[TestCase]:
    for test in tests.values():
        yield builder.from_attempts(test.attempts, name=test.name, classname=test.classname)


def _timespan(value: str | None) -> float:
    """``[d.]hh:mm:ss[.fffffff]`` -> seconds (0.0 when absent or malformed)."""
    if not value:
        return 0.0
    m = _TIMESPAN.match(value.strip())
    if not m:
        return 0.0
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip()
    # .NET writes 7 fractional digits; Python reads at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
