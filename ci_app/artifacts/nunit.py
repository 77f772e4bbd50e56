"""NUnit 2 (``<test-results>``) and NUnit 3 (``<test-run>``) XML reports.

One walker reads both: NUnit 2.x writes ``executed``/``success``/``result``
(Success, Failure, Error, Ignored, NotRunnable, Inconclusive …) on
``<test-case>``; NUnit 3 writes ``result`` (Passed, Failed, Skipped,
Inconclusive, Warning) with an optional ``label`` and ``site``. Some files mix
them (a bare ``<test-suite>`` root), so the attributes decide, not the root.

Mapping (see docs/formats.md): Failure/Failed -> failed (NUnit 3 reports
exceptions as ``Failed`` + ``label="Error"``; NUnit's own ``failed`` total
counts them, so do we), Error -> error, Ignored/Skipped/NotRunnable/
Inconclusive/not executed -> skipped, Warning -> passed. A fixture whose
OneTimeTearDown failed (``site="TearDown"`` on a ``<test-suite>``) is not
attributed to any test by NUnit; it becomes one extra ``error`` case so a red
run never looks green.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts.base import ParseContext, ReportParseError, to_float, to_int
from ci_app.artifacts.cases import (
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

_V2_RESULTS = {
    "success": Outcome.PASSED,
    "failure": Outcome.FAILED,
    "error": Outcome.ERROR,
    "ignored": Outcome.SKIPPED,
    "skipped": Outcome.SKIPPED,
    "notrunnable": Outcome.SKIPPED,
    "inconclusive": Outcome.SKIPPED,
    "cancelled": Outcome.SKIPPED,
    "notrun": Outcome.SKIPPED,
}
_V3_RESULTS = {
    "passed": Outcome.PASSED,
    "failed": Outcome.FAILED,
    "skipped": Outcome.SKIPPED,
    "inconclusive": Outcome.SKIPPED,
    "warning": Outcome.PASSED,
}


def parse_nunit2(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse an NUnit 2.x ``<test-results>`` document."""
    return _parse(stream, ctx, "nunit2")


def parse_nunit3(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse an NUnit 3 ``<test-run>`` (or bare ``<test-suite>``) document."""
    return _parse(stream, ctx, "nunit3")


def _parse(stream: BinaryIO, ctx: ParseContext, dialect: str) -> Iterator[TestCase]:
    ctx.tool = "nunit"
    return collect_xml(stream, ctx, lambda source, builder: _collect(source, builder, dialect))


def _collect(source: BinaryIO, builder: CaseBuilder, dialect: str) -> Iterator[TestCase]:
    """Stream the document: each ``<test-case>`` is read at its end tag, then released."""
    suites: list[tuple[str | None, str | None]] = []  # (type, name) of open <test-suite>s
    root_seen = False
    for event, el in iter_xml(source):
        tag = local(el.tag)
        if event == "start":
            if not root_seen:
                root_seen = True
                if tag not in ("test-results", "test-run", "test-suite", WRAPPER):
                    raise ReportParseError(f"not an NUnit report: root element <{tag}>")
                _declared(el, builder.ctx)
            if tag == "test-suite":
                suites.append((el.get("type"), el.get("fullname") or el.get("name")))
            continue
        if tag == "test-case":
            yield _case(el, builder, dialect, _suite_of(suites))
            release(el)
        elif tag == "test-suite":
            suites.pop()
            if (
                el.get("site") == "TearDown"
                and (el.get("result") or "").lower() == "failed"
                and el.find("failure") is not None
            ):
                yield _teardown_case(el, builder)
            release(el)


def _declared(root: etree._Element, ctx: ParseContext) -> None:
    a = root.attrib
    total = to_int(a.get("total"))
    if total is None:
        return
    if "passed" in a:  # NUnit 3 counters
        failed = to_int(a.get("failed")) or 0
        skipped = (to_int(a.get("skipped")) or 0) + (to_int(a.get("inconclusive")) or 0)
        passed = (to_int(a.get("passed")) or 0) + (to_int(a.get("warnings")) or 0)
        ctx.declared = Summary(tests=total, passed=passed, failed=failed, errors=0, skipped=skipped)
        if a.get("duration"):
            ctx.duration_s = to_float(a.get("duration"))
        return
    # NUnit 2: from 2.5 on, `total` counts executed tests and `not-run` the rest.
    failed = to_int(a.get("failures")) or 0
    errors = to_int(a.get("errors")) or 0
    not_run = to_int(a.get("not-run")) or 0
    inconclusive = to_int(a.get("inconclusive")) or 0
    tests = total + not_run if "inconclusive" in a else total
    skipped = not_run + inconclusive
    ctx.declared = Summary(
        tests=tests,
        passed=max(0, tests - failed - errors - skipped),
        failed=failed,
        errors=errors,
        skipped=skipped,
    )


def _suite_of(suites: list[tuple[str | None, str | None]]) -> str | None:
    """Nearest enclosing fixture name, else the innermost suite's."""
    for kind, name in reversed(suites):
        if kind in ("TestFixture", "GenericFixture", "SetUpFixture"):
            return name
    return suites[-1][1] if suites else None


def _case(el: etree._Element, builder: CaseBuilder, dialect: str, suite: str | None) -> TestCase:
    full = el.get("fullname") or el.get("name") or ""
    classname = el.get("classname")
    name = el.get("name") or full
    if classname:
        name = strip_prefix(name, classname)
    else:
        classname, name = split_qualified(name)
    outcome, note = _outcome(el, dialect, builder.ctx)
    failure = el.find("failure")
    reason = el.find("reason")
    message = element_text(failure.find("message")) if failure is not None else None
    details = element_text(failure.find("stack-trace")) if failure is not None else None
    if message is None and reason is not None:
        message = element_text(reason.find("message")) or element_text(reason)
    if message is None and outcome in (Outcome.FAILED, Outcome.ERROR):
        message = join_texts(
            element_text(a.find("message"))
            for a in el.iterfind("assertions/assertion")
            if (a.get("result") or "").lower() == "failed"
        )
    if note:
        message = f"[{note}] {message}" if message else f"[{note}]"
    duration = el.get("duration") if el.get("duration") is not None else el.get("time")
    return builder.case(
        name=name,
        classname=classname,
        suite=suite,
        outcome=outcome,
        duration_s=to_float(duration),
        message=message,
        details=details,
        stdout=element_text(el.find("output")),
    )


def _outcome(el: etree._Element, dialect: str, ctx: ParseContext) -> tuple[Outcome, str | None]:
    """Outcome plus a note (NUnit 3 label/site) for the message."""
    result = (el.get("result") or "").strip()
    key = result.replace(" ", "").lower()
    note: str | None = None
    label, site = el.get("label"), el.get("site")
    if label or (site and site != "Test"):
        note = ", ".join(p for p in (label, f"site={site}" if site else None) if p)
    if key in _V3_RESULTS and (dialect == "nunit3" or "executed" not in el.attrib):
        return _V3_RESULTS[key], note
    if key in _V2_RESULTS:
        return _V2_RESULTS[key], note
    if key in _V3_RESULTS:
        return _V3_RESULTS[key], note
    if result:
        ctx.warn(f"unknown NUnit result {result!r}; counted from its other attributes")
    executed = (el.get("executed") or "true").strip().lower()
    if executed == "false":
        return Outcome.SKIPPED, note
    if (el.get("success") or "").strip().lower() == "false" or el.find("failure") is not None:
        return Outcome.FAILED, note
    return Outcome.PASSED, note


def _teardown_case(el: etree._Element, builder: CaseBuilder) -> TestCase:
    failure = el.find("failure")
    fixture = el.get("fullname") or el.get("name") or "(fixture)"
    return builder.case(
        name="[OneTimeTearDown]",
        classname=fixture,
        suite=fixture,
        outcome=Outcome.ERROR,
        message=element_text(failure.find("message")) if failure is not None else None,
        details=element_text(failure.find("stack-trace")) if failure is not None else None,
    )
