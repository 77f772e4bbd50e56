"""Write a ResultSet as standard JUnit XML (for GitLab's MR test widget and other tools)."""

from __future__ import annotations

from collections import defaultdict
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts import junit_rules as rules
from ci_app.model.results import Outcome, ResultSet, TestCase, summarize


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}"


def write_junit(results: ResultSet, out: BinaryIO, name: str = "ci-fanout") -> None:
    """Stream ``results`` as one ``<testsuites>`` document, a ``<testsuite>`` per suite.

    Reruns are written the way Surefire does (``flakyFailure``/``rerunFailure``),
    which GitLab and Jenkins understand.
    """
    by_suite: dict[str, list[TestCase]] = defaultdict(list)
    for case in results.tests:
        by_suite[case.suite or case.classname or name].append(case)
    total = results.summary
    with etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(
            rules.SUITES_TAG,
            name=name,
            tests=str(total.tests),
            failures=str(total.failed),
            errors=str(total.errors),
            skipped=str(total.skipped),
            time=_fmt(total.duration_s),
        ):
            for suite_name, cases in by_suite.items():
                s = summarize(cases)
                with xf.element(
                    rules.SUITE_TAG,
                    name=suite_name,
                    tests=str(s.tests),
                    failures=str(s.failed),
                    errors=str(s.errors),
                    skipped=str(s.skipped),
                    time=_fmt(s.duration_s),
                ):
                    for case in cases:
                        xf.write(_case_element(case))


def _case_element(case: TestCase) -> etree._Element:
    attrs = {
        "name": case.name,
        "classname": case.classname or case.suite or "",
        "time": _fmt(case.duration_s),
    }
    if case.file:
        attrs["file"] = case.file
    if case.line is not None:
        attrs["line"] = str(case.line)
    el = etree.Element(rules.CASE_TAG, attrs)
    tag = rules.EXPORT_RESULT_TAGS.get(case.outcome)
    if tag:
        child = etree.SubElement(el, tag)
        if case.message:
            child.set(rules.MESSAGE_ATTRIBUTE, _xml_safe(case.message))
        if case.details and case.outcome is not Outcome.SKIPPED:
            child.text = _xml_safe(case.details)
    flaky_tag, rerun_tag = rules.EXPORT_RETRY_TAGS
    for _ in range(case.retries):
        retry = etree.SubElement(el, flaky_tag if case.flaky else rerun_tag)
        retry.set(rules.MESSAGE_ATTRIBUTE, "failed attempt before a rerun")
    if case.stdout:
        etree.SubElement(el, rules.STDOUT_TAG).text = _xml_safe(case.stdout)
    if case.stderr:
        etree.SubElement(el, rules.STDERR_TAG).text = _xml_safe(case.stderr)
    return el


def _xml_safe(text: str) -> str:
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r"
        or (" " <= ch <= "\ud7ff")
        or ("\ue000" <= ch <= "\ufffd")
        or ch >= "\U00010000"
    )
