"""The shared corpus's expectations (copied to tests/data/reports) as one parametrised test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_app.artifacts.ingest import ingest_paths

ROOT = Path(__file__).parent.parent / "data" / "reports"
MANIFEST = json.loads((ROOT / "MANIFEST.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["entries"]

# Deliberate differences from an expectation, with the reason and the counts we give
# instead (also listed in docs/formats.md).
DELIBERATE: dict[str, dict[str, Any]] = json.loads(
    (ROOT.parent / "formats" / "corpus_differences.json").read_text(encoding="utf-8")
)["entries"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"] for e in ENTRIES])
def test_manifest_entry(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    difference = DELIBERATE.get(entry["path"])
    if difference is not None:
        assert difference["reason"]
        expected = {**expected, "parse_error": False, **difference["expected"]}
    results = ingest_paths([ROOT / entry["path"]])
    assert len(results.files) == 1
    report = results.files[0]
    if expected["parse_error"]:
        assert report.error, f"expected a parse error, got {results.summary}"
        return
    assert report.error is None, report.error
    s = results.summary
    got: tuple[int, ...]
    want: tuple[int, ...]
    if expected["errors"] is None:  # test-reporter has no separate error state
        got = (s.tests, s.passed, s.failed + s.errors, s.skipped)
        want = (expected["tests"], expected["passed"], expected["failures"], expected["skipped"])
    else:
        got = (s.tests, s.passed, s.failed, s.errors, s.skipped)
        want = (
            expected["tests"],
            expected["passed"],
            expected["failures"],
            expected["errors"],
            expected["skipped"],
        )
    assert got == want
    # A file entry carries its own summary, equal to the set's for one input.
    assert report.summary.tests == s.tests


def test_every_case_id_is_unique_per_file() -> None:
    for entry in ENTRIES:
        if entry["expected"]["parse_error"]:
            continue
        results = ingest_paths([ROOT / entry["path"]])
        keys = [(t.suite, t.id) for t in results.tests]
        assert len(keys) == len(set(keys)), entry["path"]
