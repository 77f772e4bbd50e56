"""CTRF <-> ResultSet mapping (round trip, official schema) and the CTRF / results.json parsers."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_app.artifacts.base import ReportParseError
from ci_app.model.ctrf import CtrfError, ctrf_to_resultset, resultset_to_ctrf
from ci_app.model.results import (
    Attachment,
    Metric,
    Outcome,
    ReportFile,
    ResultSet,
    RunInfo,
    Summary,
    TestCase,
)

from .util import FORMATS_DATA, counts, parse_bytes

SCHEMA = json.loads((FORMATS_DATA / "ctrf.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft7Validator(
    SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
)

_text = st.text(max_size=30)
_opt_text = st.none() | _text


@st.composite
def _cases(draw: st.DrawFn) -> tuple[TestCase, ...]:
    n = draw(st.integers(min_value=0, max_value=8))
    out = []
    for i in range(n):
        out.append(
            TestCase(
                id=f"{draw(_text)}#{i}",
                name=draw(st.text(min_size=0, max_size=20)),
                outcome=draw(st.sampled_from(list(Outcome))),
                suite=draw(_opt_text),
                classname=draw(_opt_text),
                file=draw(_opt_text),
                line=draw(st.none() | st.integers(min_value=1, max_value=10**6)),
                duration_s=draw(st.floats(min_value=0, max_value=1e6, allow_nan=False)),
                message=draw(_opt_text),
                details=draw(_opt_text),
                stdout=draw(_opt_text),
                stderr=draw(_opt_text),
                retries=draw(st.integers(min_value=0, max_value=5)),
                flaky=draw(st.booleans()),
            )
        )
    return tuple(out)


_iso = st.none() | st.sampled_from(
    ["2024-05-01T10:00:00+00:00", "2024-05-01T10:05:30.250000+00:00"]
)

_resultsets = st.builds(
    ResultSet,
    run=st.builds(
        RunInfo,
        run_id=st.none() | st.text(min_size=1, max_size=10),
        shard_id=_opt_text,
        commit=_opt_text,
        branch=_opt_text,
        repo=_opt_text,
        job_url=_opt_text,
        pipeline_id=_opt_text,
        pr=st.none() | st.integers(min_value=1, max_value=10**6),
        runner_labels=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
        started_at=_iso,
        finished_at=_iso,
    ),
    tests=_cases(),
    metrics=st.lists(
        st.builds(
            Metric,
            name=st.text(min_size=1, max_size=8),
            value=st.floats(allow_nan=False, allow_infinity=False),
            unit=_text,
        ),
        max_size=2,
    ).map(tuple),
    attachments=st.lists(
        st.builds(
            Attachment,
            path=st.text(min_size=1, max_size=8),
            sha256=st.just("0" * 64),
            bytes=st.integers(0, 10**9),
        ),
        max_size=2,
    ).map(tuple),
    files=st.lists(
        st.builds(
            ReportFile,
            path=st.text(min_size=1, max_size=8),
            format=st.sampled_from(["junit", "tap"]),
            error=_opt_text,
        ),
        max_size=2,
    ).map(tuple),
    tool=_opt_text,
    duration_s=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
)


def _sample() -> ResultSet:
    return ResultSet(
        run=RunInfo(run_id="run-7", shard_id="2", commit="abc123", branch="main", repo="o/r"),
        tool="pytest",
        tests=(
            TestCase(
                id="m.T::ok", name="ok", classname="m.T", outcome=Outcome.PASSED, duration_s=0.25
            ),
            TestCase(
                id="m.T::bad",
                name="bad",
                classname="m.T",
                outcome=Outcome.FAILED,
                message="assert 1 == 2",
                details="tb",
            ),
            TestCase(
                id="m.T::boom",
                name="boom",
                classname="m.T",
                outcome=Outcome.ERROR,
                message="RuntimeError",
            ),
            TestCase(
                id="m.T::skip", name="skip", classname="m.T", outcome=Outcome.SKIPPED, stdout="a\nb"
            ),
            TestCase(
                id="m.T::flaky",
                name="flaky",
                classname="m.T",
                outcome=Outcome.PASSED,
                retries=2,
                flaky=True,
            ),
        ),
    )


def test_export_is_valid_ctrf_and_maps_error_to_failed() -> None:
    doc = resultset_to_ctrf(_sample())
    VALIDATOR.validate(doc)
    summary = doc["results"]["summary"]
    assert (summary["tests"], summary["passed"], summary["failed"], summary["skipped"]) == (
        5,
        2,
        2,
        1,
    )
    assert summary["flaky"] == 1
    assert doc["runId"] == "run-7"
    assert doc["results"]["environment"]["shardId"] == "2"
    boom = doc["results"]["tests"][2]
    assert (boom["status"], boom["rawStatus"], boom["extra"]["outcome"]) == (
        "failed",
        "error",
        "error",
    )
    assert doc["results"]["tests"][3]["stdout"] == ["a", "b"]
    assert doc["results"]["tests"][4]["retries"] == 2


@settings(max_examples=60, deadline=None)
@given(_resultsets)
def test_round_trip_is_exact_and_always_schema_valid(rs: ResultSet) -> None:
    doc = json.loads(json.dumps(resultset_to_ctrf(rs)))
    errors = sorted(VALIDATOR.iter_errors(doc), key=str)
    assert not errors, errors[0].message
    assert ctrf_to_resultset(doc) == rs


FOREIGN: dict[str, Any] = {
    "results": {
        "tool": {"name": "playwright"},
        "summary": {
            "tests": 6,
            "passed": 1,
            "failed": 1,
            "skipped": 1,
            "pending": 1,
            "other": 1,
            "start": 1700000000000,
            "stop": 1700000004500,
        },
        "tests": [
            {
                "name": "logs in",
                "status": "passed",
                "duration": 1200,
                "suite": ["auth.spec.ts", "login"],
                "filePath": "tests/auth.spec.ts",
                "line": 12,
            },
            {
                "name": "logs out",
                "status": "failed",
                "duration": 300,
                "message": "expected visible",
                "trace": "at auth.spec.ts:20",
                "suite": ["auth.spec.ts", "login"],
                "retries": 2,
                "flaky": False,
            },
            {"name": "signs up", "status": "skipped", "duration": 0},
            {"name": "resets", "status": "pending", "duration": 0},
            {"name": "crashes", "status": "other", "duration": 0, "stdout": ["line 1", "line 2"]},
            {
                "name": "logs in",
                "status": "passed",
                "duration": 900,
                "suite": ["auth.spec.ts", "login"],
                "retries": 1,
                "flaky": True,
            },
        ],
    }
}


def test_foreign_ctrf_mapping() -> None:
    cases, ctx = parse_bytes(json.dumps(FOREIGN).encode())
    assert ctx.tool == "playwright"
    assert counts(cases) == (6, 2, 1, 1, 2)
    first = cases[0]
    assert (first.id, first.suite, first.classname, first.file, first.line) == (
        "auth.spec.ts > login::logs in",
        "auth.spec.ts > login",
        "login",
        "tests/auth.spec.ts",
        12,
    )
    assert first.duration_s == 1.2
    assert cases[5].id == "auth.spec.ts > login::logs in#2"
    assert (cases[5].retries, cases[5].flaky) == (1, True)
    assert cases[4].outcome is Outcome.ERROR and cases[4].stdout == "line 1\nline 2"
    assert ctx.duration_s == 4.5
    assert ctx.declared == Summary(tests=6, passed=1, failed=1, errors=1, skipped=2)


def test_parser_reads_our_own_export() -> None:
    rs = _sample()
    cases, ctx = parse_bytes(json.dumps(resultset_to_ctrf(rs)).encode())
    assert tuple(cases) == rs.tests
    assert ctx.declared is not None
    assert (ctx.declared.failed, ctx.declared.errors) == (1, 1)


@pytest.mark.parametrize(
    "doc",
    [
        {"results": {"tool": {"name": "x"}, "summary": {}}},
        {"results": {"tool": {"name": "x"}, "tests": [{"name": "a", "status": "exploded"}]}},
        {"results": {"tool": {"name": "x"}, "tests": ["nope"]}},
        {
            "results": {
                "tool": {"name": "x"},
                "tests": [{"name": "a", "status": "passed", "duration": "slow"}],
            }
        },
    ],
)
def test_malformed_ctrf(doc: dict[str, Any]) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(json.dumps(doc).encode(), "ctrf-json")
    with pytest.raises(CtrfError):
        ctrf_to_resultset(doc)


# -- our own results.json --------------------------------------------------


def test_resultset_json_round_trips_through_the_parser() -> None:
    rs = _sample()
    doc = rs.to_dict()
    doc["files"] = [{"path": "broken.xml", "format": "junit", "error": "not well-formed XML"}]
    data = json.dumps(doc).encode()
    cases, ctx = parse_bytes(data)
    assert tuple(cases) == rs.tests
    assert ctx.tool == "pytest"
    assert ctx.declared == rs.summary
    assert any("broken.xml" in w for w in ctx.warnings)


def test_resultset_duplicate_ids_are_made_unique() -> None:
    case = {"id": "a::b", "name": "b", "outcome": "passed"}
    doc = {"version": "ci-fanout/results/v1", "tests": [case, case]}
    cases, _ = parse_bytes(json.dumps(doc).encode(), "ci-fanout")
    assert [c.id for c in cases] == ["a::b", "a::b#2"]


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b'{"version": "ci-fanout/results/v1", "tests": [{"name": "x"}]}',
        b'{"version": "ci-fanout/results/v1", "tests": [{"id": "a", "name": "x", "outcome": "meh"}]}',
        b"[1, 2]",
    ],
)
def test_malformed_resultset(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "ci-fanout")
