"""xUnit.net v1/v2 parser."""

from __future__ import annotations

import pytest

from ci_app.artifacts.base import ReportParseError
from ci_app.model.results import Outcome

from .util import by_name, counts, parse_bytes

V2 = b"""<?xml version="1.0" encoding="utf-8"?>
<assemblies>
 <assembly name="T.dll" total="5" passed="2" failed="1" skipped="2" time="0.5" errors="1">
  <errors>
   <error type="test-class-cleanup" name="Ns.DbTests">
    <failure exception-type="System.InvalidOperationException"><message>dispose failed</message><stack-trace>at Dispose()</stack-trace></failure>
   </error>
  </errors>
  <collection name="Test collection for Ns.DbTests" total="5" passed="2" failed="1" skipped="2">
   <test name="Ns.DbTests.Reads" type="Ns.DbTests" method="Reads" time="0.1" result="Pass"><output>hello</output></test>
   <test name="Ns.DbTests.Writes" type="Ns.DbTests" method="Writes" time="0.2" result="Fail">
    <failure exception-type="Xunit.Sdk.EqualException"><message>Assert.Equal() Failure</message><stack-trace>at Writes()</stack-trace></failure>
   </test>
   <test name="Ns.DbTests.Later" type="Ns.DbTests" method="Later" time="0" result="Skip"><reason><![CDATA[flaky db]]></reason></test>
   <test name="Ns.DbTests.Explicit" type="Ns.DbTests" method="Explicit" time="0" result="NotRun"/>
   <test name="Ns.DbTests.Theory(x: 1)" type="Ns.DbTests" method="Theory" time="0" result="Pass"/>
  </collection>
 </assembly>
</assemblies>
"""

V1 = b"""<assembly name="T.dll" total="2" passed="1" failed="1" skipped="0" time="0.3">
 <class name="Ns.Feature" total="2" passed="1" failed="1" skipped="0">
  <test name="Ns.Feature.Works" type="Ns.Feature" method="Works" result="Pass" time="0.1"/>
  <test name="Ns.Feature.Breaks" type="Ns.Feature" method="Breaks" result="Fail" time="0.2">
   <failure exception-type="Xunit.Sdk.TrueException"><message>Assert.True() Failure</message><stack-trace>at Breaks()</stack-trace></failure>
  </test>
 </class>
</assembly>
"""


def test_xunit2_outcomes_and_cleanup_errors() -> None:
    cases, ctx = parse_bytes(V2)
    assert ctx.tool == "xunit.net"
    c = by_name(cases)
    assert c["Reads"].outcome is Outcome.PASSED and c["Reads"].stdout == "hello"
    assert c["Reads"].id == "Ns.DbTests::Reads"
    writes = c["Writes"]
    assert writes.outcome is Outcome.FAILED
    assert writes.message == "Xunit.Sdk.EqualException: Assert.Equal() Failure"
    assert writes.details == "at Writes()"
    assert c["Later"].outcome is Outcome.SKIPPED and c["Later"].message == "flaky db"
    assert c["Explicit"].outcome is Outcome.SKIPPED
    assert c["Theory(x: 1)"].outcome is Outcome.PASSED
    cleanup = c["[test-class-cleanup]"]
    assert cleanup.outcome is Outcome.ERROR and cleanup.classname == "Ns.DbTests"
    assert counts(cases) == (6, 2, 1, 1, 2)
    assert ctx.declared is not None and ctx.declared.tests == 6
    assert ctx.duration_s == 0.5


def test_xunit1() -> None:
    cases, ctx = parse_bytes(V1)
    assert counts(cases) == (2, 1, 1, 0, 0)
    assert by_name(cases)["Breaks"].classname == "Ns.Feature"
    assert ctx.declared is not None and ctx.declared.failed == 1


def test_unknown_result_is_an_error_with_a_warning() -> None:
    data = b'<assemblies><assembly><collection><test name="A.b" type="A" result="Exploded"/></collection></assembly></assemblies>'
    cases, ctx = parse_bytes(data, "xunit2")
    assert cases[0].outcome is Outcome.ERROR
    assert any("Exploded" in w for w in ctx.warnings)


@pytest.mark.parametrize("data", [b"", b"<assemblies><assembly>", b"<not-xunit/>"])
def test_unusable_xunit_raises(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "xunit2")
