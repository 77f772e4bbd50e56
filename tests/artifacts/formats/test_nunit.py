"""NUnit 2/3 parser: outcome mapping, names, teardown failures, malformed input."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.formats import get_parser
from ci_app.model.results import Outcome

from .util import by_name, counts, parse_bytes

NUNIT3 = b"""<?xml version="1.0" encoding="utf-8"?>
<test-run id="2" testcasecount="7" result="Failed" total="7" passed="2" failed="2" warnings="1"
  inconclusive="1" skipped="1" duration="1.5">
 <test-suite type="Assembly" name="A.dll" fullname="A.dll">
  <test-suite type="TestFixture" name="CalcTests" fullname="Ns.CalcTests" classname="Ns.CalcTests">
   <test-case name="Adds" fullname="Ns.CalcTests.Adds" classname="Ns.CalcTests" result="Passed" duration="0.25"/>
   <test-case name="Divides" fullname="Ns.CalcTests.Divides" classname="Ns.CalcTests" result="Failed" label="Error" duration="0.5">
     <failure><message><![CDATA[System.DivideByZeroException]]></message><stack-trace>at Ns.CalcTests.Divides()</stack-trace></failure>
     <output><![CDATA[dividing]]></output>
   </test-case>
   <test-case name="Asserts" fullname="Ns.CalcTests.Asserts" classname="Ns.CalcTests" result="Failed">
     <failure><message>Expected 2 but was 3</message></failure>
   </test-case>
   <test-case name="Ignored" fullname="Ns.CalcTests.Ignored" classname="Ns.CalcTests" result="Skipped" label="Ignored">
     <reason><message>not today</message></reason>
   </test-case>
   <test-case name="Maybe" fullname="Ns.CalcTests.Maybe" classname="Ns.CalcTests" result="Inconclusive"/>
   <test-case name="Warns" fullname="Ns.CalcTests.Warns" classname="Ns.CalcTests" result="Warning"/>
   <test-case name="Row(1)" fullname="Ns.CalcTests.Row(1)" classname="Ns.CalcTests" result="Passed"/>
  </test-suite>
  <test-suite type="TestFixture" name="DbTests" fullname="Ns.DbTests" result="Failed" site="TearDown">
   <failure><message>OneTimeTearDown: connection leaked</message></failure>
   <test-case name="Reads" fullname="Ns.DbTests.Reads" classname="Ns.DbTests" result="Passed"/>
  </test-suite>
 </test-suite>
</test-run>
"""

NUNIT2 = b"""<?xml version="1.0"?>
<test-results name="T.dll" total="5" errors="1" failures="1" not-run="2" inconclusive="0"
  ignored="1" skipped="0" invalid="1">
 <test-suite type="TestFixture" name="Fixture" executed="True" result="Failure">
  <results>
   <test-case name="Ns.Fixture.Ok" executed="True" result="Success" success="True" time="0.010"/>
   <test-case name="Ns.Fixture.Bad" executed="True" result="Failure" success="False" time="0.020">
    <failure><message>boom</message><stack-trace>trace</stack-trace></failure>
   </test-case>
   <test-case name="Ns.Fixture.Throws" executed="True" result="Error" success="False"/>
   <test-case name="Ns.Fixture.Skip" executed="False" result="Ignored"><reason><message>later</message></reason></test-case>
   <test-case name="Ns.Fixture.Broken" executed="False" result="NotRunnable"/>
   <test-case name="Ns.Fixture.Param(&quot;a.b&quot;)" executed="True" result="Success" success="True"/>
   <test-case name="Ns.Fixture.Param(&quot;a.b&quot;)" executed="True" result="Success" success="True"/>
  </results>
 </test-suite>
</test-results>
"""


def test_nunit3_outcomes_and_fields() -> None:
    cases, ctx = parse_bytes(NUNIT3)
    assert ctx.tool == "nunit"
    c = by_name(cases)
    assert c["Adds"].outcome is Outcome.PASSED
    assert c["Adds"].id == "Ns.CalcTests::Adds"
    assert c["Adds"].duration_s == 0.25
    # NUnit counts exceptions (label=Error) as Failed; so do we, keeping the label visible.
    assert c["Divides"].outcome is Outcome.FAILED
    assert c["Divides"].message is not None and c["Divides"].message.startswith("[Error]")
    assert c["Divides"].details == "at Ns.CalcTests.Divides()"
    assert c["Divides"].stdout == "dividing"
    assert c["Ignored"].outcome is Outcome.SKIPPED
    assert c["Ignored"].message is not None and "not today" in c["Ignored"].message
    assert c["Maybe"].outcome is Outcome.SKIPPED
    assert c["Warns"].outcome is Outcome.PASSED
    # A OneTimeTearDown failure is attributed to no test by NUnit: one extra error case.
    teardown = c["[OneTimeTearDown]"]
    assert teardown.outcome is Outcome.ERROR
    assert teardown.message == "OneTimeTearDown: connection leaked"
    assert counts(cases) == (9, 4, 2, 1, 2)
    assert ctx.declared is not None and ctx.declared.tests == 7
    assert ctx.duration_s == 1.5


def test_nunit2_outcomes_split_names_and_duplicate_ids() -> None:
    cases, ctx = parse_bytes(NUNIT2)
    assert ctx.declared is not None
    assert (ctx.declared.tests, ctx.declared.failed, ctx.declared.errors) == (7, 1, 1)
    assert counts(cases) == (7, 3, 1, 1, 2)
    c = by_name(cases)
    assert c["Bad"].classname == "Ns.Fixture"
    assert c["Bad"].message == "boom"
    assert c["Skip"].message == "later"
    params = [x for x in cases if x.name == 'Param("a.b")']
    assert [p.classname for p in params] == ["Ns.Fixture", "Ns.Fixture"]
    assert [p.id for p in params] == ['Ns.Fixture::Param("a.b")', 'Ns.Fixture::Param("a.b")#2']


def test_nunit2_without_result_attribute_uses_executed_and_success() -> None:
    data = b"""<test-results total="3"><test-suite name="S"><results>
      <test-case name="A.one" executed="True" success="True"/>
      <test-case name="A.two" executed="True" success="False"><failure><message>x</message></failure></test-case>
      <test-case name="A.three" executed="False"/>
    </results></test-suite></test-results>"""
    cases, _ = parse_bytes(data, "nunit2")
    assert [c.outcome for c in cases] == [Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<test-run><test-case name='x' result='Passed'>",
        b"<other/>",
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY e "x">]><test-run><test-case name="a" result="Failed"><failure><message>&e;</message></failure></test-case></test-run>',
    ],
)
def test_unusable_nunit_raises_report_parse_error(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "nunit3")


class _Pipe(io.RawIOBase):
    """A non-seekable stream (a pipe, a zip member)."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


BROKEN_MIDWAY = (
    b'<test-run total="3"><test-suite type="TestFixture" name="F" fullname="Ns.F">'
    + b"".join(
        f'<test-case name="T{i}" classname="Ns.F" result="Passed"/>'.encode() for i in range(5000)
    )
    + b'<test-case name="Bad" classname="Ns.F" result="Failed"><failure><message>nul \x00 here'
    + b"</message></failure></test-case>"
    + b'<test-case name="Last" classname="Ns.F" result="Passed"/></test-suite></test-run>'
)


@pytest.mark.parametrize("pipe", [False, True])
def test_repair_after_cases_were_streamed_yields_each_case_once(pipe: bool) -> None:
    stream: Any = io.BufferedReader(_Pipe(BROKEN_MIDWAY)) if pipe else io.BytesIO(BROKEN_MIDWAY)
    ctx = ParseContext(path="x")
    cases = list(get_parser("nunit3")(stream, ctx))
    assert len(cases) == 5002
    assert len({c.id for c in cases}) == 5002
    assert by_name(cases)["Bad"].message == "nul  here"
    assert any("control character" in w for w in ctx.warnings)
