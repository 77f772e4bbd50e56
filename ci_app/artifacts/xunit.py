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
    element_text,
    reject_entities,
    split_qualified,
    strip_prefix,
)
from ci_app.artifacts.xmlsafe import local, parse_tree
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
    root = parse_tree(stream, ctx)
    reject_entities(root)
    tag = local(root.tag)
    if tag == "assembly":
        assemblies = [root]
    elif tag == "assemblies":
        assemblies = [a for a in root if local(a.tag) == "assembly"]
    else:
        raise ReportParseError(f"not an xUnit.net report: root element <{tag}>")
    ctx.tool = "xunit.net"
    _declared(assemblies, ctx)
    return _walk(assemblies, CaseBuilder(ctx))


def _declared(assemblies: list[etree._Element], ctx: ParseContext) -> None:
    if not assemblies or any(a.get("total") is None for a in assemblies):
        return
    totals = {"total": 0, "passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for a in assemblies:
        for key in totals:
            totals[key] += to_int(a.get(key)) or 0
    ctx.declared = Summary(
        tests=totals["total"] + totals["errors"],
        passed=totals["passed"],
        failed=totals["failed"],
        errors=totals["errors"],
        skipped=totals["skipped"],
    )
    ctx.duration_s = sum(to_float(a.get("time")) for a in assemblies)


def _walk(assemblies: list[etree._Element], builder: CaseBuilder) -> Iterator[TestCase]:
    for assembly in assemblies:
        for el in assembly.iter("test", "error"):
            if el.tag == "test":
                yield _case(el, builder)
            else:
                parent = el.getparent()
                if parent is not None and local(parent.tag) == "errors":
                    yield _error_case(el, assembly, builder)


def _case(el: etree._Element, builder: CaseBuilder) -> TestCase:
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
    parent = el.getparent()
    suite = parent.get("name") if parent is not None else None
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


def _error_case(el: etree._Element, assembly: etree._Element, builder: CaseBuilder) -> TestCase:
    kind = el.get("type") or "error"
    what = el.get("name") or assembly.get("name") or "(assembly)"
    failure = el.find("failure")
    message = details = None
    if failure is not None:
        message = element_text(failure.find("message"))
        details = element_text(failure.find("stack-trace"))
    return builder.case(
        name=f"[{kind}]",
        classname=what,
        suite=assembly.get("name"),
        outcome=Outcome.ERROR,
        message=message,
        details=details,
    )
