"""JUnit parser: golden files, real runners, reruns, round-trips."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ci_app.artifacts import native
from ci_app.artifacts.base import ParseContext
from ci_app.artifacts.export import write_junit
from ci_app.artifacts.ingest import ingest_paths
from ci_app.artifacts.junit import parse_junit
from ci_app.model.results import Outcome, ResultSet, Summary

DATA = Path(__file__).parent.parent / "data" / "junit"
GOLDEN = sorted(DATA.glob("*.xml"))


def _normalise(results: ResultSet) -> dict[str, object]:
    d = results.to_dict()
    for f in d["files"]:
        f["path"] = Path(f["path"]).name
    return d


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden(path: Path) -> None:
    """input report -> expected ResultSet JSON (regenerate with UPDATE_GOLDEN=1)."""
    expected_path = path.with_suffix(".expected.json")
    got = _normalise(ingest_paths([path]))
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_path.read_text(encoding="utf-8"))


def test_surefire_reruns_become_retries() -> None:
    rs = ingest_paths([DATA / "surefire-flaky.xml"])
    by_name = {t.name: t for t in rs.tests}
    assert by_name["passesSecondTime"].outcome is Outcome.PASSED
    assert by_name["passesSecondTime"].flaky and by_name["passesSecondTime"].retries == 1
    assert by_name["alwaysFails"].outcome is Outcome.FAILED
    assert by_name["alwaysFails"].retries == 2 and not by_name["alwaysFails"].flaky
    assert rs.summary.flaky == 1


def test_multi_document_and_control_characters_recover_with_warning() -> None:
    rs = ingest_paths([DATA / "cargo-multi-doc.xml", DATA / "jest-control-chars.xml"])
    cargo, jest = rs.files
    assert cargo.error is None and cargo.summary.tests == 4
    assert any("concatenated" in w for w in cargo.warnings)
    assert jest.error is None and jest.summary.failed == 1
    assert any("control character" in w for w in jest.warnings)


def _run_pytest(tmp_path: Path, source: str, *args: str) -> Path:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(source))
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "-o", "junit_family=xunit1", *args, str(tmp_path / "test_sample.py")],
        cwd=tmp_path, capture_output=True, check=False, timeout=120,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
    )  # fmt: skip
    assert report.exists()
    return report


SAMPLE = """
    import os, pytest
    COUNTER = os.path.join(os.path.dirname(__file__), "count")
    def test_flaky():
        n = int(open(COUNTER).read()) if os.path.exists(COUNTER) else 0
        open(COUNTER, "w").write(str(n + 1))
        assert n >= 1
    def test_fails():
        assert 1 == 2
    def test_passes():
        pass
    @pytest.mark.skip(reason="not here")
    def test_skipped():
        pass
    @pytest.mark.xfail
    def test_xfail():
        assert False
    @pytest.fixture
    def broken():
        raise RuntimeError("fixture broke")
    def test_error(broken):
        pass
    @pytest.mark.parametrize("x", [1, 2])
    def test_param(x):
        assert x
"""


def test_real_pytest_report_counts_match_its_summary(tmp_path: Path) -> None:
    report = _run_pytest(tmp_path, SAMPLE)
    s = ingest_paths([report]).summary
    # pytest: 4 passed (flaky passes 2nd run? no reruns here: it fails), 2 failed...
    assert (s.tests, s.passed, s.failed, s.errors, s.skipped) == (8, 3, 2, 1, 2)


def test_real_pytest_rerunfailures_become_one_case_each(tmp_path: Path) -> None:
    report = _run_pytest(tmp_path, SAMPLE, "--reruns", "2")
    rs = ingest_paths([report])
    by_name = {t.name: t for t in rs.tests}
    assert by_name["test_flaky"].outcome is Outcome.PASSED
    assert by_name["test_flaky"].flaky and by_name["test_flaky"].retries == 1
    assert by_name["test_fails"].outcome is Outcome.FAILED
    assert by_name["test_fails"].retries == 2 and not by_name["test_fails"].flaky
    s = rs.summary
    # pytest's own line: 1 failed, 4 passed, 1 skipped, 1 xfailed, 1 error (+ reruns)
    assert (s.tests, s.passed, s.failed, s.errors, s.skipped, s.flaky) == (8, 4, 1, 1, 2, 1)


def test_real_unittest_xmlrunner_report(tmp_path: Path) -> None:
    (tmp_path / "test_ut.py").write_text(
        textwrap.dedent(
            """
            import unittest
            class T(unittest.TestCase):
                def test_ok(self): pass
                def test_fail(self): self.assertEqual(1, 2)
                def test_error(self): raise ValueError("x")
                @unittest.skip("no")
                def test_skip(self): pass
            """
        )
    )
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "xmlrunner", "discover", "-s", str(tmp_path), "-p", "test_ut.py",
         "--output", str(out)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "Ran 4 tests" in proc.stderr
    s = ingest_paths([out]).summary
    assert (s.tests, s.passed, s.failed, s.errors, s.skipped) == (4, 1, 1, 1, 1)


_names = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def junit_documents(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, str]]]:
    suites = draw(st.integers(min_value=1, max_value=3))
    root = etree.Element("testsuites")
    expected: list[tuple[str, str, str]] = []
    for s in range(suites):
        suite = etree.SubElement(root, "testsuite", name=f"suite{s}")
        names = draw(st.lists(_names, min_size=0, max_size=6, unique=True))
        for name in names:
            outcome = draw(st.sampled_from(["passed", "failed", "error", "skipped"]))
            case = etree.SubElement(suite, "testcase", classname=f"pkg.C{s}", name=name)
            case.set("time", f"{draw(st.floats(0, 100, allow_nan=False)):.3f}")
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(outcome)
            if tag:
                el = etree.SubElement(case, tag, message=draw(_names))
                el.text = draw(_names)
            expected.append((f"pkg.C{s}", name, outcome))
    return etree.tostring(root, xml_declaration=True, encoding="utf-8"), expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=junit_documents())
def test_random_junit_round_trips(
    tmp_path: Path, doc: tuple[bytes, list[tuple[str, str, str]]]
) -> None:
    data, expected = doc
    path = tmp_path / "r.xml"
    path.write_bytes(data)
    rs = ingest_paths([path])
    assert rs.files[0].error is None
    assert [(t.classname, t.name, t.outcome.value) for t in rs.tests] == expected
    # ... and back out through the exporter and in again, unchanged.
    exported = tmp_path / "e.xml"
    with exported.open("wb") as fh:
        write_junit(rs, fh)
    again = ingest_paths([exported])
    assert [(t.classname, t.name, t.outcome, t.message) for t in again.tests] == [
        (t.classname, t.name, t.outcome, t.message) for t in rs.tests
    ]


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_pytest_reports_get_pytest_node_ids(tmp_path: Path, family: str) -> None:
    """The planner keys durations by node id: ids from pytest JUnit must be node ids."""
    pkg = tmp_path / "tests"
    pkg.mkdir()
    (pkg / "test_ids.py").write_text(
        textwrap.dedent(
            """
            import pytest
            class TestThing:
                def test_a(self): pass
            @pytest.mark.parametrize("x", [1, "b c"])
            def test_p(x): pass
            """
        )
    )
    report = tmp_path / "r.xml"
    run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"junit_family={family}"]
    subprocess.run([*run, f"--junitxml={report}", "tests"], cwd=tmp_path, capture_output=True,
                   check=False, timeout=120)  # fmt: skip
    collected = subprocess.run([*run, "--collect-only", "-q", "tests"], cwd=tmp_path,
                               capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    node_ids = sorted(line for line in collected.stdout.splitlines() if "::" in line)
    assert len(node_ids) == 3
    assert sorted(t.id for t in ingest_paths([report]).tests) == node_ids


def test_pytest_line_numbers_are_one_based(tmp_path: Path) -> None:
    """pytest writes 0-based ``line`` attributes; annotations need the real line."""
    report = _run_pytest(tmp_path, "\n\ndef test_here():\n    assert False\n")
    case = ingest_paths([report]).tests[0]
    source = (tmp_path / "test_sample.py").read_text().splitlines()
    assert case.line is not None
    assert source[case.line - 1].startswith("def test_here")


@pytest.mark.parametrize("pure", [True, False], ids=["reference", "native-or-reference"])
def test_declared_counts_sum_the_suites_then_leave_passed_over(pure: bool) -> None:
    """The ``<testsuite>`` attributes summed over suites into one Summary: disabled counts as
    skipped, a suite without ``tests`` declares nothing, and ``passed`` is taken from the
    totals (one suite over-declaring failures does not eat another suite's passes)."""
    xml = textwrap.dedent(
        """\
        <testsuites>
          <testsuite name="a" tests="1" failures="3" time="0.5">
            <testcase name="x"><failure/></testcase>
          </testsuite>
          <testsuite name="b" tests="6" errors="1" skipped="1" disabled="1" time="1.25">
            <testcase name="y"/>
          </testsuite>
          <testsuite name="c" failures="9"><testcase name="z"/></testsuite>
        </testsuites>
        """
    ).encode()
    ctx = ParseContext(path="mem.xml")
    if pure:
        with native.disabled():
            list(parse_junit(io.BytesIO(xml), ctx))
    else:
        list(parse_junit(io.BytesIO(xml), ctx))
    assert ctx.declared == Summary(
        tests=7, passed=1, failed=3, errors=1, skipped=2, duration_s=1.75
    )
    assert ctx.duration_s == 1.75


def test_no_suite_declaring_a_count_declares_nothing() -> None:
    ctx = ParseContext(path="mem.xml")
    list(parse_junit(io.BytesIO(b'<testsuite name="s"><testcase name="x"/></testsuite>'), ctx))
    assert ctx.declared is None
    assert ctx.duration_s is None
