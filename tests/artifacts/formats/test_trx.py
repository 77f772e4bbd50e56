"""TRX parser: definitions join, reruns, data rows, hook failures, durations."""

from __future__ import annotations

import pytest

from ci_app.artifacts.base import ReportParseError
from ci_app.model.results import Outcome

from .util import by_name, counts, parse_bytes

NS = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"


def _trx(results: str, definitions: str, counters: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<TestRun id="r" name="run" xmlns="{NS}">
  <Times creation="2024-01-01T10:00:00.0000000+00:00" start="2024-01-01T10:00:00.0000000+00:00" finish="2024-01-01T10:00:02.5000000+00:00"/>
  <Results>{results}</Results>
  <TestDefinitions>{definitions}</TestDefinitions>
  <ResultSummary outcome="Failed">{counters}</ResultSummary>
</TestRun>""".encode()


def _def(test_id: str, cls: str, name: str, adapter: str = "executor://mstestadapter/v2") -> str:
    return (
        f'<UnitTest name="{name}" id="{test_id}"><TestMethod className="{cls}, Asm, Version=1.0" '
        f'name="{name}" adapterTypeName="{adapter}"/></UnitTest>'
    )


def _res(
    test_id: str, name: str, outcome: str, duration: str = "00:00:00.5000000", body: str = ""
) -> str:
    return (
        f'<UnitTestResult testId="{test_id}" testName="{name}" outcome="{outcome}" '
        f'duration="{duration}">{body}</UnitTestResult>'
    )


def test_outcomes_names_and_messages() -> None:
    err = (
        "<Output><StdOut>out text</StdOut><ErrorInfo><Message>Assert.AreEqual failed</Message>"
        "<StackTrace>at Ns.C.B()</StackTrace></ErrorInfo></Output>"
    )
    data = _trx(
        _res("1", "A", "Passed")
        + _res("2", "B", "Failed", body=err)
        + _res("3", "C", "NotExecuted")
        + _res("4", "D", "Timeout", "00:01:00")
        + _res("5", "E", "Error")
        + _res("6", "F", "Aborted"),
        "".join(_def(i, "Ns.C", n) for i, n in zip("123456", "ABCDEF", strict=True)),
        '<Counters total="6" executed="5" passed="1" failed="1" error="1" timeout="1" aborted="1" notExecuted="1"/>',
    )
    cases, ctx = parse_bytes(data)
    assert ctx.tool == "mstest"
    c = by_name(cases)
    assert c["A"].id == "Ns.C::A" and c["A"].classname == "Ns.C"
    assert c["A"].duration_s == 0.5
    assert c["B"].outcome is Outcome.FAILED
    assert (c["B"].message, c["B"].details, c["B"].stdout) == (
        "Assert.AreEqual failed",
        "at Ns.C.B()",
        "out text",
    )
    assert c["C"].outcome is Outcome.SKIPPED
    assert c["D"].outcome is Outcome.FAILED and c["D"].duration_s == 60.0
    assert c["E"].outcome is Outcome.ERROR
    assert c["F"].outcome is Outcome.SKIPPED
    assert counts(cases) == (6, 1, 2, 1, 2)
    assert ctx.declared is not None
    assert (ctx.declared.tests, ctx.declared.failed, ctx.declared.errors) == (6, 2, 1)
    assert ctx.duration_s == 2.5


def test_reruns_with_the_same_test_id_fold_into_one_flaky_case() -> None:
    fail = "<Output><ErrorInfo><Message>first try failed</Message></ErrorInfo></Output>"
    data = _trx(
        _res("1", "Retried", "Failed", body=fail)
        + _res("1", "Retried", "Passed")
        + _res("2", "Stable", "Failed")
        + _res("2", "Stable", "Failed"),
        _def("1", "Ns.C", "Retried") + _def("2", "Ns.C", "Stable"),
    )
    cases, _ = parse_bytes(data)
    assert len(cases) == 2
    c = by_name(cases)
    assert c["Retried"].outcome is Outcome.PASSED
    assert (c["Retried"].retries, c["Retried"].flaky) == (1, True)
    assert c["Retried"].message == "first try failed"
    assert c["Retried"].duration_s == 1.0
    assert c["Stable"].outcome is Outcome.FAILED
    assert (c["Stable"].retries, c["Stable"].flaky) == (1, False)


def test_data_rows_are_cases_and_the_parent_is_not_counted() -> None:
    rows = (
        _res("1", "Row (1)", "Passed")
        + _res("1", "Row (2)", "Failed")
        + _res("1", "Row (2)", "Failed")
    )
    parent = (
        f'<UnitTestResult testId="1" testName="Row" outcome="Failed" resultType="DataDrivenTest">'
        f"<InnerResults>{rows}</InnerResults></UnitTestResult>"
    )
    cases, _ = parse_bytes(_trx(parent, _def("1", "Ns.C", "Row")))
    assert [c.name for c in cases] == ["Row (1)", "Row (2)"]
    assert cases[1].retries == 1


def test_xunit_cleanup_failures_are_errors_and_tool_from_adapter() -> None:
    data = _trx(
        _res("1", "Ns.C.Works", "Passed")
        + _res("2", "[Test Class Cleanup Failure (Ns.C.Works)]", "Failed"),
        _def("1", "Ns.C", "Works", "executor://xunit/VsTestRunner2/netcoreapp"),
    )
    cases, ctx = parse_bytes(data)
    assert ctx.tool == "xunit.net"
    c = by_name(cases)
    assert c["Works"].classname == "Ns.C"
    assert c["[Test Class Cleanup Failure (Ns.C.Works)]"].outcome is Outcome.ERROR


@pytest.mark.parametrize("data", [b"", b"<TestRun>", b"<Other/>"])
def test_unusable_trx_raises(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "trx")
