"""``go test -json`` event streams (test2json), including gotestsum's ``--jsonfile``.

Each (package, test) pair is one case; subtests keep Go's ``Parent/child``
names and the parent counts as a test of its own (as ``go test`` and
gotestsum count it). Output lines become ``stdout``; the first
``file_test.go:NN: message`` line of a failure gives ``message``, ``file``
and ``line``.

Failures not attributed to a test are errors, so a red ``go test`` never
reads as green: a package that fails while none of its tests failed
(``TestMain`` exit, init panic, ``[build failed]``, ``[setup failed]``) gives
one ``[package]`` error case; a test that started but never ended (panic in
another goroutine, ``-timeout``) is an error. A test that ends more than once
(gotestsum ``--rerun-fails`` appends reruns to the same file, or
``-count=N``) is one case: the last attempt decides, ``retries`` counts the
others, ``flaky`` when a failure was followed by a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ci_app.artifacts.base import ParseContext, ReportParseError, to_float
from ci_app.artifacts.cases import Attempt, CaseBuilder, iter_lines, join_texts
from ci_app.model.results import Outcome, TestCase

_TERMINAL = {"pass": Outcome.PASSED, "fail": Outcome.FAILED, "skip": Outcome.SKIPPED}
_FRAMING = re.compile(r"^\s*(?:=== (?:RUN|PAUSE|CONT|NAME)\b|--- (?:PASS|FAIL|SKIP)\b)")
_LOCATION = re.compile(r"^\s+([\w./\\-]+\.go):(\d+): ?(.*)$")
_PLAIN_FAIL = re.compile(r"^FAIL\s+(\S+)(?:\s+\S+)?\s+\[(build failed|setup failed)\]\s*$")
_MAX_OUTPUT_LINES = 2000  # per test; enough for a message, bounded for huge logs


@dataclass(slots=True)
class _Test:
    package: str
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    running: bool = False
    file: str | None = None
    line: int | None = None


@dataclass(slots=True)
class _Package:
    name: str
    output: list[str] = field(default_factory=list)
    failed_tests: int = 0
    elapsed: float = 0.0
    error: Attempt | None = None


class _State:
    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self.tests: dict[tuple[str, str], _Test] = {}
        self.packages: dict[str, _Package] = {}
        self.build_output: dict[str, list[str]] = {}
        self.plain: list[str] = []

    def plain_line(self, line: str) -> bool:
        """A non-JSON line: before Go 1.24 a build failure is only ``FAIL pkg [build failed]``
        on stdout (the compiler errors go to stderr, here too when 2>&1). True when used."""
        m = _PLAIN_FAIL.match(line)
        if not m:
            _append(self.plain, line + "\n")
            return False
        pkg = self.package(m.group(1))
        header = f"# {m.group(1)}"
        start = max((i for i, ln in enumerate(self.plain) if ln.startswith(header)), default=None)
        lines = [ln.rstrip("\n") for ln in self.plain[start + 1 :]] if start is not None else []
        self.plain = self.plain[: start if start is not None else len(self.plain)]
        first = next((ln.strip() for ln in lines if ln.strip()), None)
        pkg.error = Attempt(
            outcome=Outcome.ERROR,
            message=f"{m.group(2)}: {first}" if first else m.group(2),
            details="\n".join(lines) or None,
        )
        return True

    def package(self, name: str) -> _Package:
        pkg = self.packages.get(name)
        if pkg is None:
            pkg = self.packages[name] = _Package(name=name)
        return pkg

    def handle(self, ev: dict[str, Any]) -> None:
        action = ev.get("Action")
        package = str(ev.get("Package") or "")
        test_name = ev.get("Test")
        if action in ("build-output", "build-fail"):
            path = str(ev.get("ImportPath") or package)
            if action == "build-output":
                _append(self.build_output.setdefault(path, []), str(ev.get("Output") or ""))
            return
        if not test_name:
            self._package_event(action, package, ev)
            return
        key = (package, str(test_name))
        test = self.tests.get(key)
        if test is None:
            test = self.tests[key] = _Test(package=package, name=str(test_name))
        if action == "run":
            if test.running:  # restarted without ending: the earlier run was lost
                test.attempts.append(_unfinished(test))
            test.running = True
            test.output = []
        elif action == "output":
            text = str(ev.get("Output") or "")
            _append(test.output, text)
            if test.file is None:
                m = _LOCATION.match(text.rstrip("\n"))
                if m:
                    test.file, test.line = m.group(1), int(m.group(2))
        elif action in _TERMINAL:
            outcome = _TERMINAL[action]
            if outcome is Outcome.FAILED:
                self.package(package).failed_tests += 1
            test.attempts.append(_attempt(test, outcome, to_float(ev.get("Elapsed"))))
            test.running = False

    def _package_event(self, action: object, package: str, ev: dict[str, Any]) -> None:
        pkg = self.package(package)
        if action == "start":
            pkg.failed_tests = 0
        elif action == "output":
            _append(pkg.output, str(ev.get("Output") or ""))
        elif action in _TERMINAL:
            pkg.elapsed += to_float(ev.get("Elapsed"))
            unfinished = [t for (p, _), t in self.tests.items() if p == package and t.running]
            for test in unfinished:
                test.attempts.append(_unfinished(test))
                test.running = False
                pkg.failed_tests += 1
            if action == "fail" and pkg.failed_tests == 0:
                pkg.error = self._package_error(pkg, ev)
            elif action == "pass" and pkg.error is not None:
                pkg.error = None  # a later rerun of the package passed

    def _package_error(self, pkg: _Package, ev: dict[str, Any]) -> Attempt:
        failed_build = ev.get("FailedBuild")
        build = self.build_output.get(str(failed_build), []) if failed_build else []
        text = "".join(build or pkg.output)
        lines = [ln for ln in text.splitlines() if ln.strip() and not _FRAMING.match(ln)]
        summary = "build failed" if failed_build else "package failed outside of any test"
        first = next((ln.strip() for ln in lines if not ln.startswith(("FAIL", "ok "))), None)
        return Attempt(
            outcome=Outcome.ERROR,
            duration_s=to_float(ev.get("Elapsed")),
            message=f"{summary}: {first}" if first else summary,
            details="\n".join(lines) or None,
            stdout=text or None,
        )

    def cases(self) -> Iterator[TestCase]:
        builder = CaseBuilder(self.ctx)
        for test in self.tests.values():
            attempts = list(test.attempts)
            if test.running:
                attempts.append(_unfinished(test))
            if not attempts:
                continue
            yield builder.from_attempts(
                attempts,
                name=test.name,
                classname=test.package or None,
                file=test.file,
                line=test.line,
            )
        for pkg in self.packages.values():
            if pkg.error is not None:
                yield builder.from_attempts(
                    [pkg.error], name="[package]", classname=pkg.name or None
                )
        self.ctx.duration_s = sum(p.elapsed for p in self.packages.values())


def _append(lines: list[str], text: str) -> None:
    if len(lines) < _MAX_OUTPUT_LINES:
        lines.append(text)
    elif len(lines) == _MAX_OUTPUT_LINES:
        lines.append("… [further output dropped]\n")


def _attempt(test: _Test, outcome: Outcome, elapsed: float) -> Attempt:
    text = "".join(test.output)
    message = details = None
    if outcome is not Outcome.PASSED:
        meaningful = [ln for ln in text.splitlines() if ln.strip() and not _FRAMING.match(ln)]
        details = "\n".join(meaningful) or None
        for ln in meaningful:
            m = _LOCATION.match(ln)
            message = m.group(3).strip() if m else ln.strip()
            if message:
                break
    return Attempt(
        outcome=outcome, duration_s=elapsed, message=message, details=details, stdout=text or None
    )


def _unfinished(test: _Test) -> Attempt:
    text = "".join(test.output)
    meaningful = [ln for ln in text.splitlines() if ln.strip() and not _FRAMING.match(ln)]
    panic = next((ln.strip() for ln in meaningful if ln.lstrip().startswith("panic:")), None)
    return Attempt(
        outcome=Outcome.ERROR,
        message=join_texts(["test started but never ended (panic or timeout)", panic], ": "),
        details="\n".join(meaningful) or None,
        stdout=text or None,
    )


def parse_go_test_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse ``go test -json`` output (one test2json event per line)."""
    ctx.tool = "go"
    state = _State(ctx)
    events = 0
    for line in iter_lines(stream, "go test -json output"):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except (ValueError, RecursionError):  # a garbage or absurdly nested line
            ev = None
        if not isinstance(ev, dict) or "Action" not in ev:
            state.plain_line(line)
            continue
        events += 1
        bad = [
            k
            for k in ("Action", "Package", "Test", "Output")
            if k in ev and not isinstance(ev[k], str | None)
        ]
        if bad:
            raise ReportParseError(f"malformed go test event: {', '.join(bad)} must be a string")
        try:
            state.handle(ev)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ReportParseError(
                f"malformed go test event: {type(exc).__name__}: {exc}"
            ) from None
    if events == 0 and not any(p.error for p in state.packages.values()):
        raise ReportParseError("no go test -json events found")
    not_json = len(state.plain)
    if not_json:
        ctx.warn(f"ignored {not_json} line(s) that are not go test -json events")
    return state.cases()
