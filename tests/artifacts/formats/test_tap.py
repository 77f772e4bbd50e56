"""TAP parser: directives, YAML, bail out, plans, subtests (node and TAP::Harness rules)."""

from __future__ import annotations

import pytest

from ci_app.artifacts.base import ReportParseError
from ci_app.model.results import Outcome

from .util import by_name, counts, parse_bytes

TAP13 = b"""TAP version 13
1..6
ok 1 - adds numbers
not ok 2 - divides
  ---
  message: 'expected 2, got 3'
  severity: fail
  at:
    file: t/calc.t
    line: 17
  ...
ok 3 # SKIP no database
not ok 4 - the future # TODO not written yet
ok 5 - escaped \\# hash
ok 6 - timed # time=12.5ms
"""


def test_tap13_directives_yaml_and_names() -> None:
    cases, ctx = parse_bytes(TAP13)
    assert ctx.tool == "tap"
    c = by_name(cases)
    failed = c["divides"]
    assert (failed.outcome, failed.message, failed.file, failed.line) == (
        Outcome.FAILED,
        "expected 2, got 3",
        "t/calc.t",
        17,
    )
    assert failed.details is not None and "severity: fail" in failed.details
    assert c["test 3"].outcome is Outcome.SKIPPED and c["test 3"].message == "no database"
    assert (
        c["the future"].outcome is Outcome.SKIPPED and c["the future"].message == "not written yet"
    )
    assert "escaped # hash" in c
    assert c["timed"].duration_s == pytest.approx(0.0125)
    assert counts(cases) == (6, 3, 1, 0, 2)
    assert not ctx.warnings


def test_bail_out_is_an_error_and_stops_reading() -> None:
    data = b"1..4\nok 1 - a\nBail out! database went away\nok 2 - never read\n"
    cases, _ = parse_bytes(data)
    assert [c.name for c in cases] == ["a", "Bail out!"]
    assert cases[1].outcome is Outcome.ERROR and cases[1].message == "database went away"


def test_missing_planned_tests_are_one_error() -> None:
    cases, _ = parse_bytes(b"1..3\nok 1 - a\n")
    assert counts(cases) == (2, 1, 0, 1, 0)
    assert cases[-1].message == "planned 3 tests but only 1 ran"


def test_no_plan_warns_and_skip_all_plan() -> None:
    _, ctx = parse_bytes(b"ok 1 - a\nok 2 - b\n", "tap")
    assert any("no plan" in w for w in ctx.warnings)
    cases, ctx = parse_bytes(b"1..0 # SKIP no display\n", "tap")
    assert cases == []
    assert any("no display" in w for w in ctx.warnings)


def test_tap14_subtests_count_at_top_level_like_tap_harness() -> None:
    data = b"""TAP version 14
# Subtest: group
    1..2
    ok 1 - inner a
    not ok 2 - inner b
ok 1 - group ok
# Subtest: other
    1..1
    not ok 1 - inner c
not ok 2 - other
1..2
"""
    cases, _ = parse_bytes(data)
    assert [c.name for c in cases] == ["group ok", "other"]
    assert cases[1].outcome is Outcome.FAILED
    assert cases[1].message == "failed subtests: inner c"


def test_node_style_counts_every_level_and_suites_are_not_tests() -> None:
    data = b"""TAP version 13
# Subtest: math
    # Subtest: adds
    ok 1 - adds
      ---
      duration_ms: 1.5
      ...
    1..1
ok 1 - math
  ---
  duration_ms: 2
  type: 'suite'
  ...
# Subtest: db
    # Subtest: reads
    not ok 1 - reads
      ---
      duration_ms: 0
      location: '/src/db.test.mjs:4:3'
      failureType: 'cancelledByParent'
      error: 'test did not finish before its parent and was cancelled'
      ...
    1..1
not ok 2 - db
  ---
  duration_ms: 3
  type: 'suite'
  failureType: 'hookFailed'
  error: 'connect refused'
  ...
# Subtest: teardown
    # Subtest: t1
    ok 1 - t1
      ---
      duration_ms: 1
      ...
    1..1
not ok 3 - teardown
  ---
  duration_ms: 3
  type: 'suite'
  failureType: 'hookFailed'
  error: 'after hook broke'
  ...
1..3
# tests 3
# suites 3
# pass 2
# fail 0
# cancelled 1
# skipped 0
# todo 0
# duration_ms 50.5
"""
    cases, ctx = parse_bytes(data)
    assert ctx.tool == "node:test"
    c = {x.id: x for x in cases}
    assert c["math::adds"].duration_s == pytest.approx(0.0015)
    reads = c["db::reads"]
    assert reads.outcome is Outcome.ERROR
    assert (reads.file, reads.line) == ("/src/db.test.mjs", 4)
    assert reads.message is not None and "connect refused" in reads.message
    # an after-hook failure with no failed test becomes one error named after the suite
    assert c["teardown"].outcome is Outcome.ERROR
    assert c["teardown"].message == "after hook broke"
    assert counts(cases) == (4, 2, 0, 2, 0)
    assert ctx.declared is not None
    assert (ctx.declared.tests, ctx.declared.passed, ctx.declared.errors) == (3, 2, 1)
    assert ctx.duration_s == pytest.approx(0.0505)


def test_yaml_aliases_are_refused_without_expanding() -> None:
    data = b"1..1\nnot ok 1 - x\n  ---\n  a: &a [1, 2]\n  b: [*a, *a]\n  ...\n"
    cases, ctx = parse_bytes(data)
    assert cases[0].outcome is Outcome.FAILED
    assert any("aliases" in w for w in ctx.warnings)


@pytest.mark.parametrize("data", [b"", b"hello world\n", b"# only a comment\n"])
def test_not_tap_raises(data: bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_bytes(data, "tap")
