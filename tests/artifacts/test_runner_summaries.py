"""Reports written by the real tools (issue 15, issue 13 item 5): our counts against the
runner's own summary line, kept beside each report in ``tests/data/real-runners/``.

Both JUnit readers are checked: the native one where it is built, and the reference
(``native.disabled()``); they must agree on every report.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_app.artifacts import native
from ci_app.artifacts.ingest import ingest_paths
from ci_app.model.results import Outcome, ResultSet

DATA = Path(__file__).parent.parent / "data" / "real-runners"


def _read(path: Path, pure: bool = False) -> ResultSet:
    if pure:
        with native.disabled():
            return ingest_paths([path])
    return ingest_paths([path])


def _summary(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(params=[False, True], ids=["native", "reference"])
def pure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_gotestsum_reruns_are_one_test_each(pure: bool) -> None:
    # DONE 3 runs, 12 tests, 1 skipped, 6 failures: gotestsum counts every attempt.
    line = _summary(DATA / "gotestsum" / "summary.txt")
    runs, attempts, skipped, failing_attempts = map(
        int,
        re.search(r"(\d+) runs, (\d+) tests, (\d+) skipped, (\d+) failures", line).groups(),  # type: ignore[union-attr]
    )
    rs = _read(DATA / "gotestsum" / "gotestsum-rerun.xml", pure)
    s = rs.summary
    by = {t.name: t for t in rs.tests}
    assert len(by) == s.tests == 7  # the suite's 7 tests (the parent TestTable included)
    assert s.tests + sum(t.retries for t in rs.tests) == attempts  # 12 attempts in all
    assert s.skipped == skipped
    assert (s.passed, s.failed) == (5, 1)
    assert by["TestAlwaysFails"].outcome is Outcome.FAILED
    assert by["TestAlwaysFails"].retries == runs - 1
    assert {n for n, t in by.items() if t.flaky} == {"TestFlaky", "TestTable", "TestTable/two"}
    # failing attempts: the 4 of run 1 (3 flaky + TestAlwaysFails) and 1 in each rerun
    assert sum(t.retries for t in rs.tests) + s.failed == failing_attempts


def test_libtest_ignored_tests_count_as_skipped(pure: bool) -> None:
    line = _summary(DATA / "libtest" / "summary.txt")
    passed, failed, ignored = map(
        int,
        re.search(r"(\d+) passed; (\d+) failed; (\d+) ignored", line).groups(),  # type: ignore[union-attr]
    )
    rs = _read(DATA / "libtest" / "libtest-ignored.xml", pure)
    s = rs.summary
    assert (s.tests, s.passed, s.failed, s.skipped) == (
        passed + failed + ignored,
        passed,
        failed,
        ignored,
    )
    unlisted = [t for t in rs.tests if t.outcome is Outcome.SKIPPED]
    assert len({t.id for t in unlisted}) == ignored  # unique placeholder ids
    assert all("not list" in (t.message or "") for t in unlisted)


def _node_counts(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"ℹ (\w+) (\d+)", _summary(path))}


def test_node_tests_with_subtests_are_tests(pure: bool) -> None:
    node = _node_counts(DATA / "node" / "summary-subtests.txt")
    rs = _read(DATA / "node" / "node-subtests.xml", pure)
    s = rs.summary
    assert node["suites"] == 0
    assert (s.tests, s.passed, s.failed, s.skipped) == (
        node["tests"],
        node["pass"],
        node["fail"],
        node["skipped"] + node["todo"],
    )
    parent = next(t for t in rs.tests if t.name == "parent bad")
    assert parent.outcome is Outcome.FAILED  # node fails a test whose subtest failed


def test_node_describe_blocks_and_subtests_cannot_be_told_apart(pure: bool) -> None:
    # Documented difference: node writes both as <testsuite>; with describe blocks
    # in the file, tests with subtests are not counted, and a warning says so.
    node = _node_counts(DATA / "node" / "summary-describe-and-subtests.txt")
    rs = _read(DATA / "node" / "node-describe-and-subtests.xml", pure)
    s = rs.summary
    assert node["suites"] == 1
    assert s.tests == node["tests"] - 2  # "parent ok", "parent bad" are not in the file
    assert s.failed == node["fail"] - 1  # "parent bad" itself
    assert any("describe" in w for w in rs.files[0].warnings)


def test_jest_suite_that_fails_to_run_is_a_file_error_not_a_test() -> None:
    text = _summary(DATA / "jest" / "summary.txt")
    failed, skipped, passed, total = map(
        int,
        re.search(
            r"Tests:\s+(\d+) failed, (\d+) skipped, (\d+) passed, (\d+) total", text
        ).groups(),  # type: ignore[union-attr]
    )
    suites_failed = int(re.search(r"Test Suites:\s+(\d+) failed", text).group(1))  # type: ignore[union-attr]
    rs = _read(DATA / "jest" / "jest-suite-fails.json")
    s = rs.summary
    assert (s.tests, s.passed, s.failed, s.errors, s.skipped) == (total, passed, failed, 0, skipped)
    broken = [f for f in rs.files if f.error]
    assert sorted(Path(f.path.split("!", 1)[1]).name for f in broken) == [
        "broken.test.js",
        "syntax.test.js",
    ]
    assert all("failed to run" in (f.error or "") for f in broken)
    assert "does-not-exist" in next(f.error or "" for f in broken if "broken" in f.path)
    assert len(broken) == suites_failed - 1  # the third failed suite ran: it had a failing test
    # jest-junit leaves the suites that failed to run out of its file (documented)
    xml = _read(DATA / "jest" / "jest-suite-fails.xml").summary
    assert (xml.tests, xml.passed, xml.failed, xml.skipped) == (total, passed, failed, skipped)


@pytest.mark.parametrize("name", ["mocha-hook.json", "mocha-hook-xunit.xml"])
def test_mocha_failing_before_all_hook_is_one_failing_entry(name: str) -> None:
    text = _summary(DATA / "mocha" / "summary.txt")
    passing, pending, failing = (
        int(re.search(rf"(\d+) {w}", text).group(1))  # type: ignore[union-attr]
        for w in ("passing", "pending", "failing")
    )
    s = _read(DATA / "mocha" / name).summary
    assert (s.tests, s.passed, s.failed + s.errors, s.skipped) == (
        passing + pending + failing,
        passing,
        failing,
        pending,
    )


# -- pytest node ids for every junit_family (issue 13 item 5) ---------------------------
PYTEST = DATA / "pytest-ids"
NODE_IDS = {
    "tests/sub/test_skipmod.py": Outcome.SKIPPED,  # module-level skip: a node id, not dotted
    "tests/Peer/test_x.py::TestT::test_m": Outcome.PASSED,  # capitalised directory
    "tests/Peer/test_x.py::TestT::test_p[1]": Outcome.FAILED,
    "tests/Peer/test_x.py::TestT::test_p[a.b]": Outcome.PASSED,
    "tests/Peer/test_x.py::TestT::test_p[x::y]": Outcome.PASSED,
    "tests/Peer/test_x.py::test_top": Outcome.PASSED,
    "tests/sub/test_Mixed.py::TestOuter::TestInner::test_deep": Outcome.PASSED,
    "tests/sub/test_Mixed.py::test_plain": Outcome.PASSED,
    "tests/test_root.py::test_teardown_error": Outcome.ERROR,
    "tests/test_root.py::test_ok": Outcome.PASSED,
    "tests/test_sub_t.py::TestSub::test_loop": Outcome.FAILED,
}


@pytest.mark.parametrize("family", ["xunit1", "xunit2", "legacy"])
def test_pytest_node_ids_are_exact_for_every_junit_family(family: str, pure: bool) -> None:
    rs = _read(PYTEST / f"pytest-{family}.xml", pure)
    assert {t.id: t.outcome for t in rs.tests} == NODE_IDS


def test_pytest_summary_line_differences_are_the_documented_ones() -> None:
    # pytest: "2 failed, 9 passed, 1 skipped, 1 error, 2 subtests passed"
    counts = {
        w: int(n)
        for n, w in re.findall(
            r"(\d+) (failed|passed|skipped|error)\b", _summary(PYTEST / "summary.txt")
        )
    }
    s = _read(PYTEST / "pytest-xunit2.xml").summary
    # a teardown error is also a pass, and a test whose subtest failed passes, for pytest
    assert counts["passed"] == s.passed + 2
    # pytest's "failed" counts the failed subtest instead of its test
    assert counts["failed"] == s.failed
    assert (counts["error"], counts["skipped"]) == (s.errors, s.skipped)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
@pytest.mark.parametrize("family", ["xunit1", "xunit2", "legacy"])
def test_live_pytest_run_gives_node_ids(tmp_path: Path, family: str) -> None:
    """The stored project run by this machine's pytest: the ids are its node ids."""
    project = tmp_path / "project"
    for src in (PYTEST / "project").rglob("*.py.txt"):
        dest = project / src.relative_to(PYTEST / "project").with_suffix("")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    report = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         f"junit_family={family}", f"--junitxml={report}", "-W", "ignore", "tests"],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert report.exists(), proc.stdout + proc.stderr
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         "tests"],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    node_ids = {line for line in collected.splitlines() if "::" in line}
    ids = {t.id for t in _read(report).tests}
    assert node_ids <= ids  # every collected node id, exactly
    assert ids - node_ids == {"tests/sub/test_skipmod.py"}  # the module pytest skipped
