"""Reports from real current runners: our counts equal the runner's own summary line."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ci_app.artifacts.ingest import ingest_paths
from ci_app.model.results import Outcome

RUNNERS = Path(__file__).parent.parent / "data" / "runners"

# file -> (tests, passed, failed, errors, skipped) from the runner's summary line
# (todo counted with skipped). See tests/data/runners/README.md.
EXPECTED = {
    "jest.json": (10, 7, 1, 0, 2),
    "mocha.json": (7, 5, 1, 0, 1),
    "mocha-xunit.xml": (7, 5, 1, 0, 1),
    "vitest.json": (6, 3, 1, 0, 2),
    "vitest.xml": (6, 3, 1, 0, 2),
}
# Known information loss in the file itself (documented in docs/formats.md).
LOSSY = {
    "jest.xml": (10, 8, 1, 0, 1),  # jest-junit writes todo as a passing testcase
    "node-test.xml": (9, 4, 3, 0, 2),  # node writes a test with subtests as a <testsuite>
}


@pytest.mark.parametrize("name", sorted(EXPECTED | LOSSY))
def test_counts_equal_runner_summary(name: str) -> None:
    rs = ingest_paths([RUNNERS / name])
    assert rs.files[0].error is None
    s = rs.summary
    assert (s.tests, s.passed, s.failed, s.errors, s.skipped) == (EXPECTED | LOSSY)[name]


def test_jest_json_keeps_titles_files_and_todo() -> None:
    rs = ingest_paths([RUNNERS / "jest.json"])
    todo = [t for t in rs.tests if t.message == "todo"]
    assert [t.name for t in todo] == ["later"]
    failing = [t for t in rs.tests if t.outcome is Outcome.FAILED]
    assert failing[0].classname == "math" and failing[0].file == "/repo/jsample.test.js"
    assert "strictEqual" in (failing[0].details or "")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_live_node_test_runner(tmp_path: Path) -> None:
    (tmp_path / "a.test.mjs").write_text(
        textwrap.dedent(
            """
            import { test, describe, it } from 'node:test';
            import assert from 'node:assert';
            test('passes', () => {});
            test('fails', () => { assert.strictEqual(1, 2); });
            test('skipped', { skip: true }, () => {});
            describe('group', () => {
              it('ok', () => {});
              it('red \\u001b[31mfail\\u001b[0m', () => { throw new Error('\\u001b[31mx'); });
            });
            """
        )
    )
    out = tmp_path / "node.xml"
    proc = subprocess.run(
        ["node", "--test", "--test-reporter=junit", f"--test-reporter-destination={out}",
         str(tmp_path / "a.test.mjs")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert out.exists(), proc.stderr
    text = out.read_text(errors="replace")
    declared = {
        k: int(text.split(f"<!-- {k} ")[1].split(" ")[0]) for k in ("tests", "pass", "fail")
    }
    rs = ingest_paths([out])
    s = rs.summary
    assert (s.tests, s.passed, s.failed) == (declared["tests"], declared["pass"], declared["fail"])


def test_malformed_jest_json_is_a_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "jest.json"
    bad.write_text('{"numTotalTests": 1, "testResults": [{"assertionResults": [{"status": 3}]}]}')
    rs = ingest_paths([bad])
    assert rs.files[0].error is not None or rs.files[0].warnings
    bad.write_text('{"numTotalTests": 1, "testResults": 7}')
    rs = ingest_paths([bad])
    assert rs.files[0].error is not None and "testResults" in rs.files[0].error
