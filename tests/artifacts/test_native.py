"""The native JUnit reader and results.json encoder against the pure-Python reference.

``ci_app.artifacts._speedups`` must give exactly what the reference code gives:
the same cases in the same order, the same declared counts and warnings, the
same bytes of results.json. Anything it does not mirror hands the file back to
the reference parser (``FallbackError``), which skips the cases already emitted.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.artifacts import native
from ci_app.artifacts.base import ParseContext
from ci_app.artifacts.ingest import ingest_paths, ingest_to_json
from ci_app.artifacts.junit import parse_junit
from ci_app.model.results import Outcome, TestCase, case_to_json, new_case

DATA = Path(__file__).resolve().parents[1] / "data"
BENCH = Path(__file__).resolve().parents[2] / "bench"

speedups = native.speedups()
needs_native = pytest.mark.skipif(speedups is None, reason="native module not built here")


def test_native_module_is_built_in_ci() -> None:
    """CI builds the extension (gcc is there), so the fast path is what CI tests."""
    if not os.environ.get("CI") or os.environ.get("CI_FANOUT_PURE_PYTHON"):
        pytest.skip("only required in CI")
    assert native.available(), "ci_app.artifacts._speedups was not built"


def _parse(data: bytes, *, pure: bool, clip: int = 64 * 1024) -> dict[str, Any]:
    ctx = ParseContext(path="mem.xml", max_message_chars=clip)
    cases: list[dict[str, Any]] = []
    error = None
    try:
        if pure:
            with native.disabled():
                cases = [c.to_dict() for c in parse_junit(io.BytesIO(data), ctx)]
        else:
            cases = [c.to_dict() for c in parse_junit(io.BytesIO(data), ctx)]
    except Exception as exc:  # the error itself must match too
        error = f"{type(exc).__name__}: {exc}"
    return {
        "cases": cases,
        "error": error,
        "declared": ctx.declared,
        "duration": ctx.duration_s,
        "warnings": ctx.warnings,
    }


def _same(data: bytes, clip: int = 64 * 1024) -> dict[str, Any]:
    fast = _parse(data, pure=False, clip=clip)
    ref = _parse(data, pure=True, clip=clip)
    if fast != ref:  # NaN durations are unequal to themselves: compare their reprs
        assert repr(fast) == repr(ref)
    return fast


def _native_only(data: bytes) -> list[TestCase]:
    """The native reader alone (no fallback): raises FallbackError where it hands over."""
    assert speedups is not None
    parser = speedups.JUnitParser(ParseContext(path="mem.xml").clip)
    return parser.feed(data, True)


def _report_files() -> list[Path]:
    return sorted(
        p
        for sub in ("reports", "runners", "junit", "formats")
        for p in (DATA / sub).rglob("*")
        if p.is_file() and p.suffix.lower() in (".xml", ".junit", ".trx", "")
    )


def test_docs_say_how_many_reports_are_compared() -> None:
    """docs/artifacts.md names the number of stored reports the two readers are compared on."""
    docs = (DATA.parents[1] / "docs" / "artifacts.md").read_text(encoding="utf-8")
    assert f"each of the {len(_report_files())} report files" in " ".join(docs.split())


@needs_native
@pytest.mark.parametrize("path", _report_files(), ids=lambda p: str(p.relative_to(DATA)))
def test_every_stored_report_reads_the_same(path: Path) -> None:
    fast = ingest_paths([path]).to_dict()
    with native.disabled():
        ref = ingest_paths([path]).to_dict()
    assert fast == ref


@needs_native
def test_generated_benchmark_report_gives_identical_results_json(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from gen_junit import generate
    finally:
        sys.path.remove(str(BENCH))
    path = tmp_path / "junit.xml"
    truth = generate(path, cases=3000, suites=7)
    fast, ref = io.StringIO(), io.StringIO()
    summary, _ = ingest_to_json([path], fast)
    with native.disabled():
        ingest_to_json([path], ref)
    assert fast.getvalue() == ref.getvalue()
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (
        truth["passed"],
        truth["failed"],
        truth["error"],
        truth["skipped"],
    )


@needs_native
def test_results_json_written_to_a_file_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(
        '<testsuite name="s" tests="3">'
        '<testcase classname="c" name="ünï &quot;q&quot;" time="0.1"/>'
        '<testcase classname="c" name="t2"><failure message="m">x\ty\n数据</failure></testcase>'
        '<testcase classname="c" name="t3"><skipped/></testcase></testsuite>',
        encoding="utf-8",
    )
    for pure in (False, True):
        out = tmp_path / f"out-{pure}.json"
        with out.open("w", encoding="utf-8") as fh:
            if pure:
                with native.disabled():
                    ingest_to_json([path], fh)
            else:
                ingest_to_json([path], fh)
    fast, ref = (
        (tmp_path / "out-False.json").read_bytes(),
        (tmp_path / "out-True.json").read_bytes(),
    )
    assert fast == ref
    assert json.loads(fast)["summary"]["failed"] == 1


@needs_native
@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("<!DOCTYPE r [<!ENTITY a 'x'>]><r/>", "DOCTYPE"),
        ('<r xmlns="urn:x"><testcase name="a"/></r>', "default namespace"),
        ('<x:r xmlns:x="urn:x"/>', "namespaced element"),
        ('<r><testcase name="a" x:k="1"/></r>', "undeclared namespace prefix"),
        ('<r><testcase name="a"><!-- c --></testcase></r>', "comment inside a test case"),
        ('<r><testcase name="a"><?pi x?></testcase></r>', "processing instruction"),
        ('<r><testcase name="a"><testcase name="b"/></testcase></r>', "test case or suite"),
        ("<r>" + "<d>" * 300 + "</d>" * 300 + "</r>", "deep nesting"),
        ("<r><testcase name='a'/>", "XML error"),
        ("<r/><r/>", "XML error"),
    ],
)
def test_native_reader_hands_over_what_it_does_not_mirror(snippet: str, reason: str) -> None:
    assert speedups is not None
    with pytest.raises(speedups.FallbackError, match=reason):
        _native_only(snippet.encode())
    _same(snippet.encode())  # and the whole parse still equals the reference


@needs_native
def test_declared_prefixes_and_comments_outside_cases_stay_native() -> None:
    data = (
        b'<?xml version="1.0"?><!-- header --><testsuites>'
        b'<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:noNamespaceSchemaLocation="s.xsd" name="S" tests="2"><!-- between -->'
        b'<testcase classname="C" name="a" xml:lang="en"/><testcase classname="C" name="b"/>'
        b"</testsuite></testsuites>"
    )
    assert [c.id for c in _native_only(data)] == ["C::a", "C::b"]
    _same(data)


@needs_native
def test_fallback_after_many_cases_skips_the_ones_already_emitted() -> None:
    cases = "".join(f'<testcase classname="C" name="t{i}"/>' for i in range(5000))
    late = '<testcase classname="C" name="late"><!-- comment --><failure/></testcase>'
    data = f'<testsuite name="S" tests="5001">{cases}{late}</testsuite>'.encode()
    result = _same(data)
    ids = [c["id"] for c in result["cases"]]
    assert len(ids) == 5001 and len(set(ids)) == 5001
    assert result["cases"][-1]["outcome"] == "failed"


@needs_native
def test_chunk_boundaries_do_not_matter() -> None:
    assert speedups is not None
    data = (
        '<testsuite name="pytest" tests="3"><testcase classname="tests.test_a.TestX" name="t" '
        'file="tests/test_a.py" line="4" time="1.5"><failure message="boom">tr&amp;ce'
        "<![CDATA[ cdata ]]>数据</failure><system-out>out</system-out></testcase>"
        '<testcase classname="tests.test_a" name="u" time="2"/></testsuite>'
    ).encode()
    whole = [c.to_dict() for c in _native_only(data)]
    parser = speedups.JUnitParser(ParseContext(path="x").clip)
    pieces: list[TestCase] = []
    for i in range(len(data)):
        pieces += parser.feed(data[i : i + 1])
    pieces += parser.feed(b"", True)
    assert [c.to_dict() for c in pieces] == whole
    assert whole[0]["id"] == "tests/test_a.py::TestX::t"
    assert whole[0]["line"] == 5 and whole[0]["details"] == "tr&ce cdata 数据"


# ---- generated reports: every dialect feature the reader mirrors, at random ----

_NAMES = st.one_of(
    st.none(),
    st.sampled_from(["", "a", "t", "test_x[1]", "ünï", "数据", "a b", "pytest", "pytest tests"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=6),
)
_NUMS = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "12", "0012", "1.5", "1.", ".5", "-3", " 7 ", "1,234.5", "x", "1e3"]),
    st.sampled_from(["nan", "inf", "99999999999999", "1_0", "١٢"]),
)
_TEXT = st.one_of(
    st.sampled_from(
        ["", "  \n\t", "trace\nline", "<![CDATA[ raw <x> ]]>", "&lt;&amp;&#10;", "\u00a0"]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
)
_CHILD_TAGS = [
    "failure",
    "error",
    "skipped",
    "flakyFailure",
    "flakyError",
    "rerunFailure",
    "rerunError",
    "system-out",
    "system-err",
    "properties",
]


def _attr(name: str, value: str | None) -> str:
    if value is None:
        return ""
    esc = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return f' {name}="{esc}"'


def _text(value: str) -> str:
    if value.startswith(("<![CDATA[", "&")):
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;")


@st.composite
def _child(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from(_CHILD_TAGS))
    attrs = _attr("message", draw(_NAMES)) + _attr("type", draw(st.none() | st.just("T")))
    body = _text(draw(_TEXT))
    if tag.startswith(("flaky", "rerun")) and draw(st.booleans()):
        st_text = _text(draw(_TEXT))
        body += f"<stackTrace>{st_text}<x>in</x>tail</stackTrace>" + _text(draw(_TEXT))
    if draw(st.booleans()):
        body += f"<b>{_text(draw(_TEXT))}</b>{_text(draw(_TEXT))}"
    return f"<{tag}{attrs}>{body}</{tag}>"


@st.composite
def _case(draw: st.DrawFn, names: list[str]) -> str:
    name = draw(st.sampled_from(names) | _NAMES)
    attrs = (
        _attr("name", name)
        + _attr(draw(st.sampled_from(["classname", "class"])), draw(_NAMES))
        + _attr("file", draw(st.none() | st.sampled_from(["", "tests/test_a.py", "a\\b.py"])))
        + _attr("line", draw(_NUMS))
        + _attr(draw(st.sampled_from(["time", "duration"])), draw(_NUMS))
        + _attr(
            "status", draw(st.none() | st.sampled_from(["", "Skipped", "FAIL", "error", "run"]))
        )
        + _attr("result", draw(st.none() | st.sampled_from(["", "skipped", "failed"])))
        + _attr("failure", draw(st.none() | st.sampled_from(["", "why"])))
        + _attr("error", draw(st.none() | st.just("oops")))
    )
    children = draw(st.lists(_child(), max_size=3))
    return f"<testcase{attrs}>{''.join(children)}</testcase>" if children else f"<testcase{attrs}/>"


@st.composite
def _suite(draw: st.DrawFn, depth: int = 0) -> str:
    names = ["t1", "t2", "t3"]
    items = draw(st.lists(_case(names), max_size=6))
    if depth < 2 and draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), draw(_suite(depth + 1)))
    tag = draw(st.sampled_from(["testsuite", "testsuite", "group"]))
    attrs = (
        _attr("name", draw(_NAMES))
        + _attr("file", draw(st.none() | st.just("suite.py")))
        + _attr("filepath", draw(st.none() | st.just("fp.py")))
        + _attr("tests", draw(_NUMS))
        + _attr("failures", draw(_NUMS))
        + _attr("errors", draw(_NUMS))
        + _attr("skipped", draw(_NUMS))
        + _attr("disabled", draw(_NUMS))
        + _attr("time", draw(_NUMS))
    )
    return f"<{tag}{attrs}>{''.join(items)}</{tag}>"


@st.composite
def _document(draw: st.DrawFn) -> bytes:
    suites = draw(st.lists(_suite(), min_size=1, max_size=3))
    root = draw(st.sampled_from(["testsuites", "testsuites", "wrapper"]))
    doc = f"<{root}{_attr('name', draw(_NAMES))}>{''.join(suites)}</{root}>"
    if len(suites) == 1 and draw(st.booleans()):
        doc = suites[0]
    decl = draw(st.sampled_from(["", '<?xml version="1.0" encoding="utf-8"?>\n']))
    return (decl + doc).encode()


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document(), st.sampled_from([5, 64 * 1024]))
def test_generated_reports_read_the_same(data: bytes, clip: int) -> None:
    _same(data, clip=clip)


# ---- encode_cases against case_to_json + SummaryCounter ----

_STR = st.text(max_size=12)
_OPT = st.none() | _STR


@st.composite
def _test_case(draw: st.DrawFn) -> TestCase:
    return new_case(
        draw(_STR),
        draw(_STR),
        draw(st.sampled_from(list(Outcome))),
        draw(_OPT),
        draw(_OPT),
        draw(_OPT),
        draw(st.none() | st.integers(-(2**70), 2**70)),
        draw(st.floats(allow_nan=True, allow_infinity=True)),
        draw(_OPT),
        draw(_OPT),
        draw(_OPT),
        draw(_OPT),
        draw(st.integers(0, 5)),
        draw(st.booleans()),
    )


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.lists(_test_case(), max_size=8), st.floats(0, 1e6))
def test_encode_cases_matches_case_to_json(cases: list[TestCase], start: float) -> None:
    assert speedups is not None
    data, skipped, passed, failed, errors, flaky, total = speedups.encode_cases(cases, start)
    ref = ",\n".join(case_to_json(c) for c in cases)
    text = data.decode("utf-8")
    if _has_surrogate(ref):
        # UTF-8 cannot carry a lone surrogate: the native encoder escapes it instead
        assert json.loads(f"[{text}]") == json.loads(f"[{ref}]")
    else:
        assert text == ref
    outcomes = [c.outcome for c in cases]
    assert (skipped, passed, failed, errors) == tuple(
        outcomes.count(o) for o in (Outcome.SKIPPED, Outcome.PASSED, Outcome.FAILED, Outcome.ERROR)
    )
    assert flaky == sum(c.flaky for c in cases)
    expected = start
    for c in cases:
        expected += c.duration_s
    assert total == expected or (math.isnan(total) and math.isnan(expected))


@needs_native
def test_native_reader_folds_pytest_reruns_and_numbers_duplicates() -> None:
    data = (
        b'<testsuites><testsuite name="pytest" tests="3">'
        b'<testcase classname="tests.test_a" name="test_f" time="1.0">'
        b'<failure message="first">boom</failure></testcase>'
        b'<testcase classname="tests.test_a" name="test_f" time="2.0"/>'
        b'<testcase classname="tests.test_a" name="test_g" time="0.5"/>'
        b'</testsuite><testsuite name="mocha" tests="2">'
        b'<testcase classname="spec" name="same" time="0.1"/>'
        b'<testcase classname="spec" name="same" time="0.2"/>'
        b"</testsuite></testsuites>"
    )
    cases = _native_only(data)
    assert [(c.id, c.outcome, c.retries, c.flaky, c.duration_s) for c in cases] == [
        ("tests/test_a.py::test_f", Outcome.PASSED, 1, True, 3.0),
        ("tests/test_a.py::test_g", Outcome.PASSED, 0, False, 0.5),
        ("spec::same", Outcome.PASSED, 0, False, 0.1),
        ("spec::same#2", Outcome.PASSED, 0, False, 0.2),
    ]
    assert cases[0].message == "first"
    _same(data)
