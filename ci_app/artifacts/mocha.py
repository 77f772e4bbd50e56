"""Mocha JSON reporter output (``mocha --reporter json``).

``tests`` lists every test that ran or was pending; ``pending``/``failures``
/``passes`` repeat them by outcome. A failing ``before``/``after`` hook shows
up only in ``failures`` (title ``"before all" hook for "…"``): such entries
become ``error`` cases, because the tests under that hook never ran. A test
with a non-empty ``err`` failed; Mocha has no separate error state, so an
exception in a test is ``failed`` (Mocha's own "N failing" count).
``currentRetry`` (``this.retries(n)``) is the number of extra attempts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError, to_float, to_int
from ci_app.artifacts.cases import CaseBuilder, expect_dict, expect_list, load_json, text_of
from ci_app.model.results import Outcome, Summary, TestCase


def parse_mocha_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a Mocha JSON report."""
    doc = expect_dict(load_json(stream, "Mocha JSON report"), "Mocha JSON report")
    if "stats" not in doc or "tests" not in doc:
        raise ReportParseError("not a Mocha JSON report: needs 'stats' and 'tests'")
    ctx.tool = "mocha"
    try:
        return iter(list(_cases(doc, ctx)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportParseError(
            f"malformed Mocha JSON report: {type(exc).__name__}: {exc}"
        ) from None


def _key(test: Mapping[str, Any]) -> tuple[str, str]:
    return (str(test.get("fullTitle") or test.get("title") or ""), str(test.get("file") or ""))


def _cases(doc: Mapping[str, Any], ctx: ParseContext) -> Iterator[TestCase]:
    stats = expect_dict(doc.get("stats") or {}, "stats")
    tests = expect_list(doc.get("tests"), "tests")
    pending = {
        _key(expect_dict(t, "pending[]")) for t in expect_list(doc.get("pending"), "pending")
    }
    failures = [expect_dict(t, "failures[]") for t in expect_list(doc.get("failures"), "failures")]
    _declared(stats, ctx)
    builder = CaseBuilder(ctx)
    seen: set[tuple[str, str]] = set()
    for raw in tests:
        test = expect_dict(raw, "tests[]")
        key = _key(test)
        seen.add(key)
        err = test.get("err") or {}
        if not isinstance(err, Mapping):
            err = {"message": text_of(err)}
        if err:
            outcome = Outcome.FAILED
        elif key in pending or test.get("pending") is True:
            outcome = Outcome.SKIPPED
        else:
            outcome = Outcome.PASSED
        yield _case(test, outcome, err, builder)
    for test in failures:
        if _key(test) in seen:
            continue
        # Only hooks (and tests lost from `tests`) are here: the tests under them never ran.
        err = test.get("err") or {}
        if not isinstance(err, Mapping):
            err = {"message": text_of(err)}
        yield _case(test, Outcome.ERROR, err, builder)


def _case(
    test: Mapping[str, Any], outcome: Outcome, err: Mapping[str, Any], builder: CaseBuilder
) -> TestCase:
    title = str(test.get("title") or "")
    full = str(test.get("fullTitle") or title)
    suite = full[: -len(title)].strip() if title and full.endswith(title) else None
    retries = to_int(str(test.get("currentRetry"))) if test.get("currentRetry") is not None else 0
    retries = max(0, retries or 0)
    message = text_of(err.get("message"))
    name = text_of(err.get("name"))
    if name and message and name not in ("Error", "AssertionError"):
        message = f"{name}: {message}"
    return builder.case(
        name=title or full,
        suite=suite or None,
        file=text_of(test.get("file")),
        outcome=outcome,
        duration_s=to_float(test.get("duration")) / 1000.0,
        message=message,
        details=text_of(err.get("stack")),
        retries=retries,
        flaky=outcome is Outcome.PASSED and retries > 0,
    )


def _declared(stats: Mapping[str, Any], ctx: ParseContext) -> None:
    tests = to_int(str(stats.get("tests"))) if stats.get("tests") is not None else None
    if tests is None:
        return
    passed = to_int(str(stats.get("passes", 0))) or 0
    failed = to_int(str(stats.get("failures", 0))) or 0
    skipped = to_int(str(stats.get("pending", 0))) or 0
    ctx.declared = Summary(tests=tests, passed=passed, failed=failed, errors=0, skipped=skipped)
    if stats.get("duration") is not None:
        ctx.duration_s = to_float(stats.get("duration")) / 1000.0
