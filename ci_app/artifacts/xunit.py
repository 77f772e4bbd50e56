"""xUnit.net XML reports: v1 (``<assembly><class><test>``) and v2/v3 (``<assemblies>``).

``result`` is Pass, Fail, Skip or NotRun. Cleanup failures that xUnit.net
cannot pin on one test (``<errors><error type="test-class-cleanup">`` and the
like, or ``fatal``) become ``error`` cases named after what failed: they are
hook failures, and without them a red run could look green.
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
    release,
    split_qualified,
    strip_prefix,
)
from ci_app.artifacts.xmlsafe import WRAPPER, local
from ci_app.model.results import Outcome, Summary, TestCase

_RESULTS = {
    "pass": Outcome.PASSED,
    "passed": Outcome.PASSED,
    "fail": Outcome.FAILED,
    "failed": Outcome.FAILED,
    "skip": Outcome.SKIPPED,
    "skipped": Outcome.SKIPPED,
    "notrun": Outcome.SKIPPED,
}


def parse_xunit1(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse an xUnit.net 1.x ``<assembly>`` document."""
    return _parse(stream, ctx)


def parse_xunit2(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse an xUnit.net 2.x/3.x ``<assemblies>`` (or single ``<assembly>``) document."""
    return _parse(stream, ctx)


def _parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    ctx.tool = "xunit.net"
    return collect_xml(stream, ctx, _collect)


def _collect(source: BinaryIO, builder: CaseBuilder) -> Iterator[TestCase]:
    """Stream the document: each ``<test>`` is read at its end tag, then released."""
    groups: list[str | None] = []  # open <collection>/<class> names
    assembly: str | None = None
    totals: dict[str, int] | None = {
        "total": 0,
        "passed": 0,
        "failed": 0,
        "skipped": 0,
        "errors": 0,
    }
    time_s = 0.0
    root_seen = False
    for event, el in iter_xml(source):
        tag = local(el.tag)
        if event == "start":
            if not root_seen:
                root_seen = True
                if tag not in ("assembly", "assemblies", WRAPPER):
                    raise ReportParseError(f"not an xUnit.net report: root element <{tag}>")
            if tag == "assembly":
                assembly = el.get("name")
                if totals is not None and el.get("total") is not None:
                    for key in totals:
                        totals[key] += to_int(el.get(key)) or 0
                    time_s += to_float(el.get("time"))
                else:
                    totals = None  # an assembly without totals: nothing reliable to declare
            elif tag in ("collection", "class"):
                groups.append(el.get("name"))
            continue
        if tag == "test":
            yield _case(el, groups[-1] if groups else None, builder)
            release(el)
        elif tag == "error":
            parent = el.getparent()
            if parent is not None and local(parent.tag) == "errors":
                yield _error_case(el, assembly, builder)
            release(el)
        elif tag in ("collection", "class"):
            if groups:
                groups.pop()
            release(el)
    if totals is not None and root_seen and assembly is not None:
        builder.ctx.declared = Summary(
            tests=totals["total"] + totals["errors"],
            passed=totals["passed"],
            failed=totals["failed"],
            errors=totals["errors"],
            skipped=totals["skipped"],
        )
        builder.ctx.duration_s = time_s


def _case(el: etree._Element, suite: str | None, builder: CaseBuilder) -> TestCase:
    full = el.get("name") or ""
    classname = el.get("type")
    if classname:
        name = strip_prefix(full, classname)
    else:
        classname, name = split_qualified(full)
    result = (el.get("result") or "").strip()
    outcome = _RESULTS.get(result.lower())
    if outcome is None:
        builder.ctx.warn(f"unknown xUnit.net result {result!r} for {full!r}; counted as error")
        outcome = Outcome.ERROR
    failure = el.find("failure")
    message = details = None
    if failure is not None:
        message = element_text(failure.find("message"))
        details = element_text(failure.find("stack-trace"))
        kind = failure.get("exception-type")
        if kind and message and not message.startswith(kind):
            message = f"{kind}: {message}"
        elif kind and not message:
            message = kind
    reason = el.find("reason")
    if message is None and reason is not None:
        message = element_text(reason.find("message")) or element_text(reason)
    return builder.case(
        name=name,
        classname=classname,
        suite=suite,
        outcome=outcome,
        duration_s=to_float(el.get("time")),
        message=message,
        details=details,
        stdout=element_text(el.find("output")),
    )


def _error_case(el: etree._Element, assembly: str | None, builder: CaseBuilder) -> TestCase:
    kind = el.get("type") or "error"
    what = el.get("name") or assembly or "(assembly)"
    failure = el.find("failure")
    message = details = None
    if failure is not None:
        message = element_text(failure.find("message"))
        details = element_text(failure.find("stack-trace"))
    return builder.case(
        name=f"[{kind}]",
        classname=what,
        suite=assembly,
        outcome=Outcome.ERROR,
        message=message,
        details=details,
    )
