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
    collect_xml,
    element_text,
    iter_xml,
    join_texts,
    release,
    split_qualified,
    strip_prefix,
)
from ci_app.artifacts.xmlsafe import WRAPPER, local
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
    ctx.tool = "mstest"
    return collect_xml(stream, ctx, _collect_all)


_RESULT_TAGS = ("UnitTestResult", "TestResult", "TestResultAggregation")


def _collect_all(source: BinaryIO, builder: CaseBuilder) -> Iterator[TestCase]:
    """Stream the document; results are joined to definitions (which may come later) at the end."""
    ctx = builder.ctx
    raw: list[tuple[str, str, str, Attempt]] = []  # (testId, testName, dataRowInfo, attempt)
    definitions: dict[str, tuple[str | None, str | None]] = {}
    adapters: set[str] = set()
    root_seen = False
    for event, el in iter_xml(source):
        tag = local(el.tag)
        if event == "start":
            if not root_seen:
                root_seen = True
                if tag not in ("TestRun", WRAPPER):
                    raise ReportParseError(f"not a TRX report: root element <{tag}>")
            continue
        parent = el.getparent()
        parent_tag = local(parent.tag) if parent is not None else ""
        if tag in _RESULT_TAGS and parent_tag == "Results":
            _collect(el, raw, ctx)
            release(el)
        elif tag == "UnitTest" and parent_tag == "TestDefinitions":
            _definition(el, definitions, adapters)
            release(el)
        elif tag == "Times":
            _times(el, ctx)
        elif tag == "ResultSummary":
            _summary(el, ctx)
            release(el)
    joined = " ".join(adapters)
    ctx.tool = "nunit" if "nunit" in joined else "xunit.net" if "xunit" in joined else "mstest"
    tests: dict[str, _Test] = {}
    for test_id, test_name, row, attempt in raw:
        # Reruns share testId and name; data rows share testId but not the name.
        key = f"{test_id}\x00{test_name}\x00{row}"
        test = tests.get(key)
        if test is None:
            classname, method = definitions.get(test_id, (None, None))
            name = test_name or method or test_id
            if classname:
                name = strip_prefix(name, classname)
            elif "(" not in name.split(".")[0]:
                classname, name = split_qualified(name)
            test = tests[key] = _Test(key=key, name=name, classname=classname)
        test.attempts.append(attempt)
    for t in tests.values():
        yield builder.from_attempts(t.attempts, name=t.name, classname=t.classname)


def _definition(
    test: etree._Element,
    out: dict[str, tuple[str | None, str | None]],
    adapters: set[str],
) -> None:
    test_id = test.get("id")
    if not test_id:
        return
    classname = method = None
    for child in test:
        if local(child.tag) == "TestMethod":
            classname = (child.get("className") or "").split(",", 1)[0].strip() or None
            method = child.get("name")
            adapters.add((child.get("adapterTypeName") or "").lower())
    out[test_id] = (classname, method)


def _times(times: etree._Element, ctx: ParseContext) -> None:
    start, finish = _timestamp(times.get("start")), _timestamp(times.get("finish"))
    try:
        if start and finish and finish >= start:
            ctx.duration_s = (finish - start).total_seconds()
    except TypeError:  # one naive, one aware timestamp
        pass


def _summary(summary: etree._Element, ctx: ParseContext) -> None:
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
    el: etree._Element, raw: list[tuple[str, str, str, Attempt]], ctx: ParseContext
) -> None:
    inner = next((c for c in el if local(c.tag) == "InnerResults"), None)
    rows = [c for c in inner if local(c.tag) in _RESULT_TAGS] if inner is not None else []
    if rows:  # data-driven parent: its rows are the cases
        for row in rows:
            _collect(row, raw, ctx)
        return
    test_name = el.get("testName") or ""
    raw.append(
        (
            el.get("testId") or "",
            test_name,
            el.get("dataRowInfo") or "",
            _attempt(el, test_name, ctx),
        )
    )


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
