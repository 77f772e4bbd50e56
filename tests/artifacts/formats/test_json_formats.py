"""Mocha JSON, Dart/Flutter JSON, go test -json and RSpec JSON parsers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ci_app.artifacts.base import ReportParseError
from ci_app.artifacts.detect import HEAD_BYTES, detect_format
from ci_app.model.results import Outcome

from .util import FORMATS_DATA, by_name, counts, parse_bytes


def _jsonl(events: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(e) for e in events).encode() + b"\n"


# -- Mocha ------------------------------------------------------------------


def _mocha() -> dict[str, Any]:
    def t(title: str, full: str, **kw: Any) -> dict[str, Any]:
        return {
            "title": title,
            "fullTitle": full,
            "file": "/src/a.spec.js",
            "duration": 5,
            "err": {},
            **kw,
        }

    tests = [
        t("works", "Calc works"),
        t(
            "breaks",
            "Calc breaks",
            err={
                "message": "expected 1 to equal 2",
                "stack": "AssertionError: ...",
                "name": "AssertionError",
            },
        ),
        t("later", "Calc later"),
        t("flaky", "Calc flaky", currentRetry=2),
        t("works", "Calc works"),
    ]
    hook = {
        "title": '"before all" hook for "uses db"',
        "fullTitle": 'Db "before all" hook for "uses db"',
        "file": "/src/db.spec.js",
        "err": {"message": "connect ECONNREFUSED", "stack": "Error: connect"},
    }
    return {
        "stats": {
            "suites": 2,
            "tests": 5,
            "passes": 3,
            "pending": 1,
            "failures": 2,
            "duration": 40,
        },
        "tests": tests,
        "pending": [tests[2]],
        "failures": [tests[1], hook],
        "passes": [tests[0], tests[3], tests[4]],
    }


def test_mocha_outcomes_retries_hooks_and_duplicates() -> None:
    cases, ctx = parse_bytes(json.dumps(_mocha()).encode())
    assert ctx.tool == "mocha"
    assert counts(cases) == (6, 3, 1, 1, 1)
    c = {x.id: x for x in cases}
    assert c["Calc::works"].duration_s == 0.005
    assert c["Calc::works#2"].outcome is Outcome.PASSED
    assert c["Calc::breaks"].message == "expected 1 to equal 2"
    assert c["Calc::breaks"].details == "AssertionError: ..."
    assert c["Calc::later"].outcome is Outcome.SKIPPED
    assert (c["Calc::flaky"].retries, c["Calc::flaky"].flaky) == (2, True)
    hook = c['Db::"before all" hook for "uses db"']
    assert hook.outcome is Outcome.ERROR and hook.file == "/src/db.spec.js"
    assert ctx.declared is not None and ctx.declared.failed == 2
    assert ctx.duration_s == 0.04


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"stats": {}}',
        b'{"stats": {}, "tests": 3}',
        b'{"stats": {}, "tests": [1]}',
    ],
)
def test_mocha_malformed(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "mocha-json")


# -- Dart / Flutter ---------------------------------------------------------


def _dart_events() -> list[dict[str, Any]]:
    return [
        {"protocolVersion": "0.1.1", "runnerVersion": "1.25.0", "type": "start", "time": 0},
        {
            "suite": {"id": 0, "platform": "vm", "path": "test/a_test.dart"},
            "type": "suite",
            "time": 1,
        },
        {
            "test": {"id": 1, "name": "loading test/a_test.dart", "suiteID": 0, "groupIDs": []},
            "type": "testStart",
            "time": 1,
        },
        {
            "testID": 1,
            "result": "success",
            "skipped": False,
            "hidden": True,
            "type": "testDone",
            "time": 50,
        },
        {
            "test": {
                "id": 2,
                "name": "math adds",
                "suiteID": 0,
                "line": 5,
                "url": "file:///p/test/a_test.dart",
            },
            "type": "testStart",
            "time": 60,
        },
        {"testID": 2, "messageType": "print", "message": "hi", "type": "print", "time": 61},
        {
            "testID": 2,
            "result": "success",
            "skipped": False,
            "hidden": False,
            "type": "testDone",
            "time": 70,
        },
        {
            "test": {"id": 3, "name": "math fails", "suiteID": 0, "line": 9},
            "type": "testStart",
            "time": 71,
        },
        {
            "testID": 3,
            "error": "Expected: 3 Actual: 4",
            "stackTrace": "a_test.dart 9:5",
            "isFailure": True,
            "type": "error",
            "time": 72,
        },
        {
            "testID": 3,
            "result": "failure",
            "skipped": False,
            "hidden": False,
            "type": "testDone",
            "time": 80,
        },
        {"test": {"id": 4, "name": "math throws", "suiteID": 0}, "type": "testStart", "time": 81},
        {
            "testID": 4,
            "error": "StateError",
            "stackTrace": "x",
            "isFailure": False,
            "type": "error",
            "time": 82,
        },
        {
            "testID": 4,
            "result": "error",
            "skipped": False,
            "hidden": False,
            "type": "testDone",
            "time": 90,
        },
        {
            "test": {
                "id": 5,
                "name": "math later",
                "suiteID": 0,
                "metadata": {"skip": True, "skipReason": "todo"},
            },
            "type": "testStart",
            "time": 91,
        },
        {
            "testID": 5,
            "result": "success",
            "skipped": True,
            "hidden": False,
            "type": "testDone",
            "time": 91,
        },
        {
            "suite": {"id": 6, "platform": "vm", "path": "test/broken_test.dart"},
            "type": "suite",
            "time": 92,
        },
        {
            "test": {"id": 7, "name": "loading test/broken_test.dart", "suiteID": 6},
            "type": "testStart",
            "time": 92,
        },
        {
            "testID": 7,
            "error": "Compilation failed",
            "stackTrace": "",
            "isFailure": False,
            "type": "error",
            "time": 95,
        },
        {
            "testID": 7,
            "result": "error",
            "skipped": False,
            "hidden": True,
            "type": "testDone",
            "time": 96,
        },
        {"test": {"id": 8, "name": "never ends", "suiteID": 0}, "type": "testStart", "time": 97},
    ]


def test_dart_outcomes_hidden_loading_and_unfinished() -> None:
    events = _dart_events()
    cases, ctx = parse_bytes(_jsonl([*events, {"success": False, "type": "done", "time": 1234}]))
    assert ctx.tool == "dart"
    c = by_name(cases)
    assert "loading test/a_test.dart" not in c  # hidden and passed: not a test
    assert c["loading test/broken_test.dart"].outcome is Outcome.ERROR
    assert c["math adds"].outcome is Outcome.PASSED
    assert c["math adds"].stdout == "hi" and c["math adds"].line == 5
    assert c["math adds"].duration_s == pytest.approx(0.01)
    assert c["math fails"].outcome is Outcome.FAILED
    assert c["math fails"].message == "Expected: 3 Actual: 4"
    assert c["math throws"].outcome is Outcome.ERROR
    assert c["math later"].outcome is Outcome.SKIPPED and c["math later"].message == "todo"
    assert c["never ends"].outcome is Outcome.ERROR
    assert counts(cases) == (6, 1, 1, 3, 1)
    assert ctx.duration_s == 1.234
    assert not ctx.warnings


def test_flutter_stream_without_done_warns() -> None:
    events = _dart_events()[:7]
    events[0] = {**events[0], "runnerVersion": None}
    cases, ctx = parse_bytes(_jsonl(events) + b"not json line\n")
    assert ctx.tool == "flutter"
    assert counts(cases) == (1, 1, 0, 0, 0)
    assert any("done" in w for w in ctx.warnings)
    assert any("not JSON" in w for w in ctx.warnings)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"nonsense\n",
        b'{"no":"type"}\n',
        b'{"type":"start"}\n{"type":"testStart","test":{"name":"x"}}\n',
    ],
)
def test_dart_malformed(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "dart-json")


# -- go test -json ------------------------------------------------------------

PKG = "example.com/m/calc"


def _go(
    action: str,
    test: str | None = None,
    output: str | None = None,
    elapsed: float | None = None,
    pkg: str = PKG,
) -> dict[str, Any]:
    ev: dict[str, Any] = {"Time": "2024-01-01T00:00:00Z", "Action": action, "Package": pkg}
    if test is not None:
        ev["Test"] = test
    if output is not None:
        ev["Output"] = output
    if elapsed is not None:
        ev["Elapsed"] = elapsed
    return ev


def test_go_subtests_output_and_package_failures() -> None:
    events = [
        _go("start"),
        _go("run", "TestAdd"),
        _go("output", "TestAdd", "=== RUN   TestAdd\n"),
        _go("output", "TestAdd", "--- PASS: TestAdd (0.01s)\n"),
        _go("pass", "TestAdd", elapsed=0.01),
        _go("run", "TestTable"),
        _go("run", "TestTable/one"),
        _go("pass", "TestTable/one", elapsed=0),
        _go("run", "TestTable/two"),
        _go("output", "TestTable/two", "    calc_test.go:42: got 5, want 4\n"),
        _go("fail", "TestTable/two", elapsed=0),
        _go("fail", "TestTable", elapsed=0.02),
        _go("run", "TestSkip"),
        _go("output", "TestSkip", "    calc_test.go:50: needs network\n"),
        _go("skip", "TestSkip", elapsed=0),
        _go("run", "TestHang"),
        _go("output", "TestHang", "panic: test timed out after 1s\n"),
        _go("output", None, "FAIL\texample.com/m/calc\t1.5s\n"),
        _go("fail", elapsed=1.5),
        # a package whose TestMain failed: no test failed, yet the package did
        _go("start", pkg="example.com/m/db"),
        _go("output", None, "setup: cannot connect to db\n", pkg="example.com/m/db"),
        _go("output", None, "FAIL\texample.com/m/db\t0.1s\n", pkg="example.com/m/db"),
        _go("fail", elapsed=0.1, pkg="example.com/m/db"),
        # a package that did not build (go >= 1.24 build events)
        {
            "ImportPath": "example.com/m/bad [example.com/m/bad.test]",
            "Action": "build-output",
            "Output": "bad.go:3:1: syntax error\n",
        },
        {"ImportPath": "example.com/m/bad [example.com/m/bad.test]", "Action": "build-fail"},
        {
            **_go("fail", elapsed=0, pkg="example.com/m/bad"),
            "FailedBuild": "example.com/m/bad [example.com/m/bad.test]",
        },
        _go("skip", pkg="example.com/m/empty"),
    ]
    cases, ctx = parse_bytes(_jsonl(events))
    assert ctx.tool == "go"
    c = {x.id: x for x in cases}
    assert c[f"{PKG}::TestAdd"].outcome is Outcome.PASSED
    assert "=== RUN" in (c[f"{PKG}::TestAdd"].stdout or "")
    two = c[f"{PKG}::TestTable/two"]
    assert (two.outcome, two.message, two.file, two.line) == (
        Outcome.FAILED,
        "got 5, want 4",
        "calc_test.go",
        42,
    )
    assert c[f"{PKG}::TestTable"].outcome is Outcome.FAILED
    assert c[f"{PKG}::TestSkip"].outcome is Outcome.SKIPPED
    assert c[f"{PKG}::TestSkip"].message == "needs network"
    hang = c[f"{PKG}::TestHang"]
    assert hang.outcome is Outcome.ERROR and "timed out" in (hang.message or "")
    db = c["example.com/m/db::[package]"]
    assert db.outcome is Outcome.ERROR and "cannot connect" in (db.message or "")
    bad = c["example.com/m/bad::[package]"]
    assert bad.outcome is Outcome.ERROR and "syntax error" in (bad.message or "")
    assert f"{PKG}::[package]" not in c  # its failure is explained by failing tests
    assert counts(cases) == (8, 2, 2, 3, 1)
    assert ctx.duration_s == pytest.approx(1.6)


def test_go_reruns_are_one_flaky_case() -> None:
    events = [
        _go("start"),
        _go("run", "TestFlaky"),
        _go("output", "TestFlaky", "    x_test.go:9: boom\n"),
        _go("fail", "TestFlaky", elapsed=0.1),
        _go("fail", elapsed=0.2),
        # gotestsum --rerun-fails appends a second run to the same file
        _go("start"),
        _go("run", "TestFlaky"),
        _go("pass", "TestFlaky", elapsed=0.1),
        _go("pass", elapsed=0.2),
    ]
    cases, _ = parse_bytes(_jsonl(events))
    assert len(cases) == 1
    case = cases[0]
    assert (case.outcome, case.retries, case.flaky, case.message) == (
        Outcome.PASSED,
        1,
        True,
        "boom",
    )


@pytest.mark.parametrize(
    "data", [b"", b"hello\nworld\n", b'{"Action": "pass", "Package": 3, "Test": {}}\n']
)
def test_go_malformed(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "go-test-json")


# -- RSpec ------------------------------------------------------------------


def test_rspec_outcomes_and_errors_outside_examples() -> None:
    doc = {
        "version": "3.13.0",
        "messages": [
            "An error occurred while loading ./spec/broken_spec.rb.\nNameError: uninitialized constant Foo"
        ],
        "examples": [
            {
                "id": "./spec/a_spec.rb[1:1]",
                "description": "adds",
                "full_description": "Calc adds",
                "status": "passed",
                "file_path": "./spec/a_spec.rb",
                "line_number": 3,
                "run_time": 0.01,
            },
            {
                "id": "./spec/a_spec.rb[1:2]",
                "description": "fails",
                "full_description": "Calc fails",
                "status": "failed",
                "file_path": "./spec/a_spec.rb",
                "line_number": 7,
                "run_time": 0.02,
                "exception": {
                    "class": "RSpec::Expectations::ExpectationNotMetError",
                    "message": "expected 2",
                    "backtrace": ["./spec/a_spec.rb:8"],
                },
            },
            {
                "id": "./spec/a_spec.rb[1:3]",
                "description": "later",
                "full_description": "Calc later",
                "status": "pending",
                "pending_message": "Temporarily skipped with xit",
                "file_path": "./spec/a_spec.rb",
                "line_number": 11,
            },
        ],
        "summary": {
            "duration": 0.5,
            "example_count": 3,
            "failure_count": 1,
            "pending_count": 1,
            "errors_outside_of_examples_count": 1,
        },
        "summary_line": "3 examples, 1 failure, 1 pending, 1 error occurred outside of examples",
    }
    cases, ctx = parse_bytes(json.dumps(doc).encode())
    assert ctx.tool == "rspec"
    c = by_name(cases)
    assert c["adds"].id == "Calc::adds" and c["adds"].line == 3
    assert c["fails"].message == "RSpec::Expectations::ExpectationNotMetError: expected 2"
    assert c["fails"].details == "./spec/a_spec.rb:8"
    assert c["later"].message == "Temporarily skipped with xit"
    outside = c["[errors outside of examples]"]
    assert outside.outcome is Outcome.ERROR
    assert outside.message == "An error occurred while loading ./spec/broken_spec.rb."
    assert counts(cases) == (4, 1, 1, 1, 1)
    assert ctx.declared is not None and ctx.declared.errors == 1
    assert ctx.duration_s == 0.5


@pytest.mark.parametrize(
    "data", [b"", b"[1]", b'{"version": "3"}', b'{"examples": {"a": 1}}', b'{"examples": [3]}']
)
def test_rspec_malformed(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "rspec-json")


def test_go_before_1_24_build_failure_is_a_plain_line() -> None:
    # `go test -json ./... 2>&1` with Go < 1.24: compiler errors and the FAIL line are plain text.
    data = (
        b"# example.com/m/bad [example.com/m/bad.test]\n"
        b"bad/b_test.go:3:28: undefined: thing\n"
        b"FAIL\texample.com/m/bad [build failed]\n"
    ) + _jsonl([_go("run", "TestA"), _go("pass", "TestA", elapsed=0), _go("pass", elapsed=0.1)])
    assert detect_format(data[:HEAD_BYTES]) == "go-test-json"
    cases, ctx = parse_bytes(data)
    c = {x.id: x for x in cases}
    bad = c["example.com/m/bad::[package]"]
    assert bad.outcome is Outcome.ERROR
    assert bad.message == "build failed: bad/b_test.go:3:28: undefined: thing"
    assert c[f"{PKG}::TestA"].outcome is Outcome.PASSED
    assert not ctx.warnings


def test_real_mocha_10_output_matches_mochas_own_summary() -> None:
    # mocha printed: 4 passing, 1 pending, 4 failing (two of the failures are hooks).
    cases, ctx = parse_bytes((FORMATS_DATA / "mocha-10-real.json").read_bytes())
    tests, passed, failed, errors, skipped = counts(cases)
    assert (passed, failed + errors, skipped) == (4, 4, 1)
    assert tests == 9  # 7 tests mocha ran + 2 hook failures (tests under `before` never ran)
    c = {x.id: x for x in cases}
    assert c['Db::"before all" hook for "reads"'].outcome is Outcome.ERROR
    assert c['After::"after all" hook for "works"'].outcome is Outcome.ERROR
    assert (c["Calc::flaky"].retries, c["Calc::flaky"].flaky) == (1, True)
    assert c["Calc::adds#2"].outcome is Outcome.PASSED
    assert ctx.declared is not None and ctx.declared.failed == 4


def test_real_go_1_19_output_with_stderr_merged() -> None:
    cases, ctx = parse_bytes((FORMATS_DATA / "go-1.19-failures-2to1.json").read_bytes())
    assert counts(cases) == (4, 1, 0, 3, 0)
    assert ctx.tool == "go"
    c = {x.id: x for x in cases}
    assert "undefined: undefinedThing" in (c["example.com/x/buildfail::[package]"].message or "")
    assert "boom in goroutine" in (c["example.com/x/panics::TestPanic"].message or "")


def test_real_rspec_3_12_output_matches_rspecs_summary() -> None:
    # rspec printed: 7 examples, 3 failures, 2 pending
    cases, ctx = parse_bytes((FORMATS_DATA / "rspec-3.12-real.json").read_bytes())
    assert counts(cases) == (7, 2, 3, 0, 2)
    c = {x.id: x for x in cases}
    assert c["Calc::raises"].message == "ArgumentError: bad arg"
    assert (c["Calc::fails"].message or "").startswith(
        "RSpec::Expectations::ExpectationNotMetError: expected: 2\n     got: 1"
    )
    assert c["Calc::pending passes unexpectedly"].outcome is Outcome.FAILED
    assert c["Calc::pending fails as expected"].outcome is Outcome.SKIPPED
    assert c["Calc nested::adds"].line == 9
    assert ctx.declared is not None and counts(cases)[:3] == (
        ctx.declared.tests,
        ctx.declared.passed,
        ctx.declared.failed,
    )


def test_real_rspec_load_error_is_one_error() -> None:
    # rspec printed: 0 examples, 0 failures, 1 error occurred outside of examples
    cases, _ = parse_bytes((FORMATS_DATA / "rspec-3.12-load-error.json").read_bytes())
    assert counts(cases) == (1, 0, 0, 1, 0)
    assert "broken_spec.rb" in (cases[0].message or "")
    assert "uninitialized constant Foo" in (cases[0].details or "")
