"""Shared-corpus expectations for every non-JUnit format (tests/data/reports/MANIFEST.json)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ci_app.artifacts.base import ReportParseError
from ci_app.artifacts.detect import HEAD_BYTES, detect_format
from ci_app.artifacts.formats import get_parser

from .util import FORMATS_DATA, REPORTS, counts, parse_file

MY_FORMATS = {
    "nunit2",
    "nunit3",
    "xunit1",
    "xunit2",
    "trx",
    "mocha-json",
    "dart-json",
    "go-test-json",
    "rspec-json",
    "tap",
    "ctrf-json",
    "ci-fanout",
}
MANIFEST = json.loads((REPORTS / "MANIFEST.json").read_text(encoding="utf-8"))
DIFFERENCES: dict[str, dict[str, Any]] = json.loads(
    (FORMATS_DATA / "corpus_differences.json").read_text(encoding="utf-8")
)["entries"]


def _detected(entry: dict[str, Any]) -> str:
    with (REPORTS / entry["path"]).open("rb") as fh:
        return detect_format(fh.read(HEAD_BYTES))


ENTRIES = [e for e in MANIFEST["entries"] if _detected(e) in MY_FORMATS]


def test_the_corpus_has_entries_for_every_format_it_should() -> None:
    found = {_detected(e) for e in ENTRIES}
    assert found >= {"nunit2", "nunit3", "xunit1", "xunit2", "trx", "mocha-json", "dart-json"}
    assert found >= {"go-test-json", "rspec-json"}
    assert len(ENTRIES) == 54  # 60 non-JUnit entries minus 6 empty/unknown inputs


def _want(expected: dict[str, Any]) -> tuple[int, ...]:
    return (
        expected["tests"],
        expected["passed"],
        expected["failures"],
        expected["errors"],
        expected["skipped"],
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"] for e in ENTRIES])
def test_manifest_entry(entry: dict[str, Any]) -> None:
    path = REPORTS / entry["path"]
    expected = entry["expected"]
    difference = DIFFERENCES.get(entry["path"])
    if expected["parse_error"] and difference is None:
        fmt = _detected(entry)
        with path.open("rb") as fh, pytest.raises(ReportParseError) as info:
            from ci_app.artifacts.base import ParseContext

            list(get_parser(fmt)(fh, ParseContext(path=str(path))))
        assert str(info.value)
        return
    fmt, cases, ctx = parse_file(path)
    got = counts(cases)
    if difference is not None:
        assert got == _want(difference["expected"]), difference["reason"]
        if "warning" in difference:
            assert any(difference["warning"] in w for w in ctx.warnings), ctx.warnings
        return
    if expected["errors"] is None:  # test-reporter has no separate error state
        tests, passed, failed, errors, skipped = got
        assert (tests, passed, failed + errors, skipped) == (
            expected["tests"],
            expected["passed"],
            expected["failures"],
            expected["skipped"],
        )
    else:
        assert got == _want(expected)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "ids must be unique within one file"
    assert ctx.tool, f"{fmt} parser must name the tool"


def test_every_deliberate_difference_is_a_corpus_entry_and_documented() -> None:
    paths = {e["path"] for e in MANIFEST["entries"]}
    docs = (REPORTS.parent.parent.parent / "docs" / "formats.md").read_text(encoding="utf-8")
    for path in DIFFERENCES:
        assert path in paths
        assert path in docs, f"{path} must be listed in docs/formats.md"


@pytest.mark.parametrize("name", ["NUnit-sec1752-file.xml", "NUnit-sec1752-https.xml"])
def test_xxe_entities_are_never_resolved(name: str) -> None:
    path = REPORTS / "publish-unit-test-result-action/nunit/nunit3/jenkins" / name
    with pytest.raises(ReportParseError) as info:
        parse_file(path)
    message = str(info.value)
    assert "entit" in message
    # Neither the referenced file's content nor its location leaks into the message.
    assert "abc" not in message
    assert "NUnit-sec1752-file.txt" not in message
    assert "http" not in message
