"""Dart and Flutter JSON reporter event streams (``dart test -r json``, ``flutter test --machine``).

One JSON event per line (protocol 0.1.x): ``testStart`` announces a test,
``error``/``print`` attach to it, ``testDone`` ends it with ``result``
(success/failure/error) plus ``skipped`` and ``hidden``. Hidden tests are the
runner's own "loading <file>" pseudo-tests: they are counted only when they
did not succeed (a suite that fails to compile or load is an error). A test
that started but never finished (the runner crashed or was killed) is an
error. Cases stream out as each test finishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import CaseBuilder, iter_lines, join_texts, text_of
from ci_app.model.results import Outcome, TestCase


@dataclass(slots=True)
class _Running:
    name: str
    suite: str | None
    file: str | None
    line: int | None
    start_ms: float
    errors: list[str] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)
    skip_reason: str | None = None


def parse_dart_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a Dart/Flutter JSON reporter stream."""
    lines = iter_lines(stream, "Dart JSON report")
    first = _first_event(lines)
    ctx.tool = "flutter" if first.get("runnerVersion") is None else "dart"
    return _events(first, lines, ctx)


def _first_event(lines: Iterator[str]) -> dict[str, Any]:
    """The first JSON event; a few plain lines before it (tool banners) are skipped."""
    for count, line in enumerate(lines):
        if count >= 50:
            break
        try:
            event = json.loads(line) if line.lstrip().startswith("{") else None
        except (ValueError, RecursionError):
            event = None
        if isinstance(event, dict) and "type" in event:
            return event
    raise ReportParseError("not a Dart JSON reporter stream: no JSON event with a 'type'")


class _State:
    """What the event stream has told us so far."""

    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self.builder = CaseBuilder(ctx)
        self.suites: dict[Any, str | None] = {}
        self.running: dict[Any, _Running] = {}
        self.done = False

    def handle(self, ev: dict[str, Any]) -> TestCase | None:
        kind = ev.get("type")
        try:
            if kind == "suite":
                suite = ev["suite"]
                self.suites[suite["id"]] = text_of(suite.get("path"))
            elif kind == "testStart":
                self._start(ev)
            elif kind == "error":
                test = self.running.get(ev.get("testID"))
                if test is not None:
                    test.errors.append(str(ev.get("error") or ""))
                    test.traces.append(str(ev.get("stackTrace") or ""))
            elif kind == "print":
                test = self.running.get(ev.get("testID"))
                if test is not None:
                    message = str(ev.get("message") or "")
                    if ev.get("messageType") == "skip":
                        test.skip_reason = message
                    else:
                        test.prints.append(message)
            elif kind == "testDone":
                test = self.running.pop(ev["testID"], None)
                if test is not None:
                    return _finish(test, ev, self.builder)
            elif kind == "done":
                self.done = True
                if ev.get("time") is not None:
                    self.ctx.duration_s = float(ev["time"]) / 1000.0
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ReportParseError(
                f"malformed Dart JSON {kind!r} event: {type(exc).__name__}: {exc}"
            ) from None
        return None

    def _start(self, ev: dict[str, Any]) -> None:
        test = ev["test"]
        meta = test.get("metadata") or {}
        line = test.get("root_line") or test.get("line")
        suite = self.suites.get(test.get("suiteID"))
        self.running[test["id"]] = _Running(
            name=str(test.get("name") or ""),
            suite=suite,
            file=text_of(test.get("root_url") or test.get("url")) or suite,
            line=line if isinstance(line, int) else None,
            start_ms=float(ev.get("time") or 0),
            skip_reason=text_of(meta.get("skipReason")),
        )

    def unfinished(self) -> Iterator[TestCase]:
        for test in self.running.values():
            yield self.builder.case(
                name=test.name,
                suite=test.suite,
                file=test.file,
                line=test.line,
                outcome=Outcome.ERROR,
                message=join_texts(
                    ["test started but never finished (runner crashed or was killed)", *test.errors]
                ),
                details=join_texts(test.traces),
                stdout=join_texts(test.prints),
            )


def _events(first: dict[str, Any], lines: Iterator[str], ctx: ParseContext) -> Iterator[TestCase]:
    state = _State(ctx)
    case = state.handle(first)
    if case is not None:
        yield case
    not_json = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            not_json += 1
            continue
        if isinstance(event, dict):
            case = state.handle(event)
            if case is not None:
                yield case
    if not_json:
        ctx.warn(f"ignored {not_json} line(s) that are not JSON events")
    yield from state.unfinished()
    if not state.done:
        ctx.warn("stream ended without a 'done' event: the run may have been cut short")


def _finish(test: _Running, ev: dict[str, Any], builder: CaseBuilder) -> TestCase | None:
    result = ev.get("result")
    if ev.get("hidden") and result == "success":
        return None
    if result == "success":
        outcome = Outcome.SKIPPED if ev.get("skipped") else Outcome.PASSED
    elif result == "failure":
        outcome = Outcome.FAILED
    else:
        outcome = Outcome.ERROR
    message = join_texts(test.errors) if test.errors else None
    if outcome is Outcome.SKIPPED:
        message = test.skip_reason
    return builder.case(
        name=test.name,
        suite=test.suite,
        file=test.file,
        line=test.line,
        outcome=outcome,
        duration_s=max(0.0, (float(ev.get("time") or 0) - test.start_ms) / 1000.0),
        message=message,
        details=join_texts(test.traces),
        stdout=join_texts(test.prints),
    )
