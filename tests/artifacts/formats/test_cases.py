"""Shared helpers of the format parsers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import (
    Attempt,
    CaseBuilder,
    iter_lines,
    load_json,
    split_qualified,
)
from ci_app.model.results import Outcome


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        ("Ns.Class.Method", ("Ns.Class", "Method")),
        ('Ns.Class.Test("a.b", 1.5)', ("Ns.Class", 'Test("a.b", 1.5)')),
        ("Ns.Generic<System.Int32>.Test", ("Ns.Generic<System.Int32>", "Test")),
        ("Ns.Fixture(1.5).Test", ("Ns.Fixture(1.5)", "Test")),
        ("plain", (None, "plain")),
        (".hidden", (None, ".hidden")),
        ("trailing.", (None, "trailing.")),
    ],
)
def test_split_qualified(full: str, expected: tuple[str | None, str]) -> None:
    assert split_qualified(full) == expected


@given(st.lists(st.sampled_from(["a", "a#2", "b", "a#3", "a#2#2"]), max_size=30))
def test_unique_ids_never_collide(bases: list[str]) -> None:
    builder = CaseBuilder(ParseContext(path="x"))
    ids = [builder.unique_id(b) for b in bases]
    assert len(ids) == len(set(ids))
    if bases:
        assert ids[0] == bases[0]


def test_reruns_fold_into_one_case() -> None:
    builder = CaseBuilder(ParseContext(path="x"))
    flaky = builder.from_attempts(
        [Attempt(Outcome.FAILED, 1.0, message="boom"), Attempt(Outcome.PASSED, 2.0)], name="t"
    )
    assert (flaky.outcome, flaky.retries, flaky.flaky, flaky.message, flaky.duration_s) == (
        Outcome.PASSED,
        1,
        True,
        "boom",
        3.0,
    )
    broken = builder.from_attempts(
        [Attempt(Outcome.PASSED), Attempt(Outcome.FAILED, message="late")], name="u"
    )
    assert (broken.outcome, broken.flaky, broken.message) == (Outcome.FAILED, False, "late")


def test_texts_are_clipped() -> None:
    ctx = ParseContext(path="x", max_message_chars=10)
    case = CaseBuilder(ctx).case(name="t", outcome=Outcome.FAILED, message="x" * 50)
    assert case.message is not None and case.message.startswith("x" * 10)
    assert "40 more characters truncated" in case.message


def test_iter_lines_caps_line_length_and_strips_bom() -> None:
    assert list(iter_lines(io.BytesIO(b"\xef\xbb\xbfa\r\nb\n"), "x")) == ["a", "b"]
    with pytest.raises(ReportParseError, match="longer than"):
        list(iter_lines(io.BytesIO(b"x" * 100), "x", max_line=10))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"[" * 100_000, "nested|JSON"),
    ],
)
def test_load_json_errors_are_report_parse_errors(data: bytes, match: str) -> None:
    with pytest.raises(ReportParseError, match=match):
        load_json(io.BytesIO(data), "report")


def test_load_json_size_cap() -> None:
    with pytest.raises(ReportParseError, match="larger than"):
        load_json(io.BytesIO(b"[1, 2, 3]"), "report", cap=4)
