"""Streaming JUnit XML parser (every dialect of the corpus).

Reads with ``lxml.etree.iterparse`` and clears each ``<testcase>`` once
classified, so memory stays flat whatever the file size. Dialect rules:

* the most severe child wins (error > failure > passed > skipped);
  ``status="disabled|skipped|notrun"`` and ``<skipped>`` (pytest xfail) are skipped;
  a ``failure``/``error`` attribute on ``<testcase>`` counts like the child;
* Surefire/Gradle reruns: ``flakyFailure``/``flakyError`` (failed, then passed:
  ``flaky``) and ``rerunFailure``/``rerunError`` (failed every time) add ``retries``;
* pytest-rerunfailures writes each rerun as an extra, empty ``<testcase>`` with the
  same name right before the final one: in a pytest suite, consecutive duplicates
  are merged into one case (final outcome, ``retries``, ``flaky`` when it passed);
* elsewhere duplicates are distinct tests (e.g. Mocha data-driven titles): ids get
  ``#2``, ``#3`` suffixes so every id in a suite is unique;
* cases with neither a classname nor a name attribute are dropped (they cannot be
  identified); present-but-empty attributes (jest) still count, named ``(unnamed)``;
* not well-formed files (raw control characters, ``&#x1B;``, several concatenated
  documents, as jest-junit, mocha and cargo write) are re-read through a repairing
  stream with a warning; cases already emitted are not emitted twice.

Where the optional native module is built (``native.py``), well-formed files
are read by its expat-based twin of these rules, about twice as fast; anything
it does not mirror exactly hands the file back to this reference code, which
skips the cases already emitted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts import native
from ci_app.artifacts.base import (
    ParseContext,
    ReportParseError,
    make_id,
    to_float,
    to_int,
)
from ci_app.artifacts.xmlsafe import WRAPPER, describe, parser_options
from ci_app.model.results import Outcome, Summary, TestCase, new_case

SKIP_STATUS = frozenset({"disabled", "skipped", "skip", "notrun", "not run", "ignored", "pending"})
_RESULT_TAGS = {
    "failure": Outcome.FAILED,
    "error": Outcome.ERROR,
    "skipped": Outcome.SKIPPED,
}
_RETRY_TAGS = {"flakyFailure", "flakyError", "rerunFailure", "rerunError"}


@dataclass(slots=True)
class _Suite:
    name: str | None
    file: str | None
    pytest: bool
    seen: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Declared:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    time: float = 0.0
    any: bool = False

    def add(self, el: etree._Element) -> None:
        self.add_values(
            el.get("tests"),
            el.get("failures"),
            el.get("errors"),
            el.get("skipped"),
            el.get("disabled"),
            el.get("time"),
        )

    def add_values(
        self,
        tests: str | None,
        failures: str | None,
        errors: str | None,
        skipped: str | None,
        disabled: str | None,
        time: str | None,
    ) -> None:
        """The counts a ``<testsuite>`` declares in its attributes."""
        n = to_int(tests)
        if n is None:
            return
        self.any = True
        self.tests += n
        self.failures += to_int(failures) or 0
        self.errors += to_int(errors) or 0
        self.skipped += (to_int(skipped) or 0) + (to_int(disabled) or 0)
        self.time += to_float(time)

    def summary(self) -> Summary:
        return Summary(
            tests=self.tests,
            passed=max(0, self.tests - self.failures - self.errors - self.skipped),
            failed=self.failures,
            errors=self.errors,
            skipped=self.skipped,
            duration_s=self.time,
        )


def _text(el: etree._Element) -> str | None:
    # itertext joins CDATA and text; most result elements are a single text node.
    if len(el):
        return "".join(str(t) for t in el.itertext())
    return el.text


def parse_duration(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        return to_float(value)


def parse_line(value: str | None, zero_based: bool = False) -> int | None:
    """Line number; pytest writes 0-based lines (its ``item.location``), others 1-based."""
    if value is None:
        return None
    try:
        return int(value) + 1 if zero_based else int(value)
    except ValueError:
        return None


def _suite_info(el: etree._Element) -> _Suite:
    """Facts about the ``<testsuite>`` holding a case (pytest dialect, file, name)."""
    pytest = False
    node: etree._Element | None = el
    while node is not None:
        name = node.get("name") or ""
        if (node.tag == "testsuite" and name == "pytest") or name == "pytest tests":
            pytest = True
            break
        node = node.getparent()
    tag = el.tag
    is_suite = tag == "testsuite"
    return _Suite(
        name=el.get("name") if is_suite else None,
        file=(el.get("file") or el.get("filepath")) if is_suite else None,
        pytest=pytest,
    )


def _build_full(el: etree._Element, suite: _Suite, ctx: ParseContext) -> TestCase | None:
    """Slow path: a case with result children or status attributes."""
    name = el.get("name")
    classname = el.get("classname") or el.get("class")
    if name is None and classname is None:
        return None  # no identity at all (attributes missing, not merely empty)
    name = name or classname or "(unnamed)"
    outcome = Outcome.PASSED
    severity = -1
    messages: list[str] = []
    details: list[str] = []
    stdout: str | None = None
    stderr: str | None = None
    retries = 0
    got_result = False
    for child in el.iterchildren(etree.Element):  # elements only, no comments/PIs
        tag = child.tag
        if "}" in tag:
            tag = tag.rsplit("}", 1)[1]
        res = _RESULT_TAGS.get(tag)
        if res is not None:
            got_result = True
            if res.severity > severity:
                outcome, severity = res, res.severity
            msg = child.get("message")
            if msg:
                messages.append(msg)
            body = _text(child)
            if body and body.strip():
                details.append(body)
        elif tag in _RETRY_TAGS:
            retries += 1
            if not details:
                body = child.findtext("stackTrace") or _text(child)
                msg = child.get("message")
                if msg:
                    messages.append(msg)
                if body and body.strip():
                    details.append(body)
        elif tag == "system-out":
            stdout = _text(child)
        elif tag == "system-err":
            stderr = _text(child)
    if not got_result:
        status = (el.get("status") or el.get("result") or "").lower()
        if status in SKIP_STATUS:
            outcome = Outcome.SKIPPED
        elif status in ("failed", "failure", "fail"):
            outcome = Outcome.FAILED
        elif status == "error":
            outcome = Outcome.ERROR
        failure = el.get("failure")
        if failure is not None:
            outcome = Outcome.FAILED
            messages.append(failure)
        error = el.get("error")
        if error is not None:
            outcome = Outcome.ERROR
            messages.append(error)
    clip = ctx.clip
    return new_case(
        pytest_node_id(classname, name, el.get("file"))
        if suite.pytest
        else make_id(classname, name, suite.name),
        name,
        outcome,
        suite.name,
        classname,
        el.get("file") or suite.file,
        parse_line(el.get("line"), suite.pytest),
        parse_duration(el.get("time") or el.get("duration")),
        clip("\n".join(messages)) if messages else None,
        clip("\n\n".join(details)) if details else None,
        clip(stdout),
        clip(stderr),
        retries,
        retries > 0 and outcome is Outcome.PASSED,
    )


def pytest_node_id(classname: str | None, name: str, file: str | None = None) -> str:
    """The pytest node id (``tests/test_x.py::TestC::test_y[p]``) of a pytest JUnit case.

    pytest writes ``classname="tests.test_x.TestC"``; the planner and pytest-split key
    durations by node id, so pytest reports get node ids. With the xunit1 ``file``
    attribute the module part is known; without it (xunit2, pytest's default) the
    first component that starts with an upper-case letter starts the class part.
    """
    prefix = pytest_node_prefix(classname, file)
    return f"{prefix}::{name}" if prefix else name


def pytest_node_prefix(classname: str | None, file: str | None = None) -> str | None:
    """The node id up to the test name (``tests/test_x.py::TestC``); None for none.

    Depends on the classname and file only, so it is computed once per class.
    """
    if not classname:
        return file or None
    parts = classname.split(".")
    if file and file.endswith(".py"):
        module = file[:-3].replace("\\", "/").split("/")
        if parts[: len(module)] == module:
            return "::".join([file.replace("\\", "/"), *parts[len(module) :]])
    split = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    if split == 0:
        return classname
    path = "/".join(parts[:split]) + ".py"
    return "::".join([path, *parts[split:]])


def merge_rerun(previous: TestCase, final: TestCase) -> TestCase:
    """pytest-rerunfailures: ``previous`` attempts failed (they were rerun)."""
    return replace(
        final,
        duration_s=previous.duration_s + final.duration_s,
        message=final.message or previous.message,
        details=final.details or previous.details,
        retries=previous.retries + 1 + final.retries,
        flaky=final.outcome is Outcome.PASSED,
    )


def _iter_cases(source: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    declared = _Declared()
    pending: TestCase | None = None
    cur_parent: etree._Element | None = None
    suite = _Suite(name=None, file=None, pytest=False)
    suites: dict[etree._Element, _Suite] = {}  # open suites that held cases (keeps proxies)
    passed = Outcome.PASSED
    count = 0
    events = etree.iterparse(
        source, events=("end",), tag=("testcase", "testsuite"), **parser_options()
    )
    try:
        for _, el in events:
            if el.tag == "testsuite":
                if suites.pop(el, None) is None and not any(c.tag == "testsuite" for c in el):
                    declared.add(el)  # an empty leaf suite still declares counts
                if el is cur_parent:
                    cur_parent = None
                el.clear()
                continue
            parent = el.getparent()
            if parent is not cur_parent:
                cur_parent = parent
                if parent is not None:
                    known = suites.get(parent)
                    if known is None:
                        known = suites[parent] = _suite_info(parent)
                        if parent.tag == "testsuite":
                            declared.add(parent)
                    suite = known
            get = el.get
            name = get("name")
            classname = get("classname")
            if (
                len(el)
                or not name
                or not classname
                or get("status") is not None
                or get("result") is not None
                or get("failure") is not None
                or get("error") is not None
            ):
                case = _build_full(el, suite, ctx)
                if case is None:
                    _drop(el, parent)
                    continue
            else:
                # What _build_full gives for a named case with no result (hot path).
                file = get("file")
                case = new_case(
                    (
                        pytest_node_id(classname, name, file)
                        if suite.pytest
                        else f"{classname}::{name}"
                    ),
                    name,
                    passed,
                    suite.name,
                    classname,
                    file or suite.file,
                    parse_line(get("line"), suite.pytest),
                    parse_duration(get("time") or get("duration")),
                )
            el.clear()
            count += 1
            if not count & 1023 and parent is not None:
                # Free finished siblings in batches so memory stays flat.
                while el.getprevious() is not None:
                    del parent[0]
            if pending is not None:
                if suite.pytest and pending.id == case.id:
                    pending = merge_rerun(pending, case)
                    continue
                yield pending
            seen = suite.seen
            n = seen.get(case.id, 0) + 1
            seen[case.id] = n
            pending = case if n == 1 else replace(case, id=f"{case.id}#{n}")
    except etree.XMLSyntaxError:
        if pending is not None:
            yield pending  # the cases before the damage are real results
        raise
    if pending is not None:
        yield pending
    if declared.any:
        ctx.declared = declared.summary()
        ctx.duration_s = declared.time


def _drop(el: etree._Element, parent: etree._Element | None) -> None:
    """Free a handled case and its finished siblings so memory stays flat."""
    el.clear()


_ILLEGAL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ILLEGAL_REFS = re.compile(
    rb"&#(?:0*(?:[0-8]|1[124-9]|2\d|3[01])|x0*(?:[0-8]|[bBcCeEfF]|1[0-9a-fA-F]));"
)
_DECL = re.compile(rb"<\?xml[^>]*\?>")
_DOCTYPE = re.compile(rb"<!DOCTYPE[^>\[]*(?:\[[^\]]*\])?\s*>", re.IGNORECASE)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CARRY = 512


class RepairingReader(io.RawIOBase):
    """A read-only stream that repairs common reporter output on the fly.

    Drops XML-1.0-illegal control characters and their references, removes
    every XML declaration and DOCTYPE, and wraps the content in one root element
    so concatenated documents parse as one. Counts what it changed.
    """

    def __init__(self, raw: BinaryIO, chunk: int = 1 << 20) -> None:
        super().__init__()
        self._raw = raw
        self._chunk = chunk
        self._buf = b""
        self._carry = b""
        self._started = False
        self._eof = False
        self.removed_chars = 0
        self.removed_refs = 0
        self.documents = 0

    def readable(self) -> bool:
        return True

    def _clean(self, data: bytes) -> bytes:
        data, n = _ILLEGAL_BYTES.subn(b"", data)
        self.removed_chars += n
        data, n = _ILLEGAL_REFS.subn(b"", data)
        self.removed_refs += n
        data, n = _DECL.subn(b"", data)
        self.documents += n
        return _DOCTYPE.sub(b"", data)

    def _fill(self) -> None:
        while not self._buf and not self._eof:
            data = self._raw.read(self._chunk)
            if not self._started:
                self._started = True
                head = data.lstrip(b"\xef\xbb\xbf")
                m = _DECL.match(head.lstrip())
                enc = _ENCODING.search(m.group(0)) if m else None
                prefix = b""
                if enc and enc.group(1).lower() not in (b"utf-8", b"utf8"):
                    prefix = b'<?xml version="1.0" encoding="' + enc.group(1) + b'"?>'
                self._buf = prefix + b"<" + WRAPPER.encode() + b">"
                data = head
            if not data:
                self._eof = True
                self._buf += self._clean(self._carry) + b"</" + WRAPPER.encode() + b">"
                self._carry = b""
                return
            data = self._carry + data
            # Keep a short tail back when it may hold half a reference or declaration.
            tail_start = max(0, len(data) - _CARRY)
            cut = max(data.rfind(b"<", tail_start), data.rfind(b"&", tail_start))
            if cut != -1 and data.find(b">", cut) == -1 and data.find(b";", cut) == -1:
                self._carry = data[cut:]
                data = data[:cut]
            else:
                self._carry = b""
            self._buf += self._clean(data)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


_NATIVE_CHUNK = 1 << 20


def parse_junit(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Stream the test cases of a JUnit XML report (see the module doc for rules)."""
    emitted = 0
    fast = native.speedups()
    if fast is not None and stream.seekable():
        parser = fast.JUnitParser(ctx.clip)
        read = stream.read
        try:
            while True:
                data = read(_NATIVE_CHUNK)
                batch = parser.feed(data, not data)
                emitted += len(batch)
                yield from batch
                if not data:
                    break
        except fast.FallbackError:
            stream.seek(0)  # the reference parser reads it again, skipping `emitted`
        else:
            declared = _Declared()
            for values in parser.declared:
                declared.add_values(*values)
            if declared.any:
                ctx.declared = declared.summary()
                ctx.duration_s = declared.time
            return
    yield from _parse_reference(stream, ctx, emitted)


def _parse_reference(stream: BinaryIO, ctx: ParseContext, skip: int = 0) -> Iterator[TestCase]:
    """The lxml reader, with the repairing second pass; the first ``skip`` cases are
    not emitted (the native reader already did)."""
    emitted = 0
    try:
        for case in _iter_cases(stream, ctx):
            emitted += 1
            if emitted > skip:
                yield case
        return
    except etree.XMLSyntaxError as exc:
        first_error = exc
    emitted = max(emitted, skip)
    if not stream.seekable():
        raise ReportParseError(describe(first_error))
    stream.seek(0)
    reader = RepairingReader(stream)
    repaired = _iter_cases(io.BufferedReader(reader, buffer_size=1 << 20), ctx)
    index = 0
    try:
        for case in repaired:
            index += 1
            if index > emitted:
                yield case
    except etree.XMLSyntaxError as exc:
        if index:
            # Cases before the damage are kept; the file still reports the error.
            ctx.warn(f"{index} test case(s) were read before the error")
        repaired_something = reader.removed_chars or reader.removed_refs or reader.documents > 1
        raise ReportParseError(describe(exc if repaired_something else first_error)) from None
    if reader.removed_chars or reader.removed_refs or reader.documents > 1:
        if reader.removed_chars:
            ctx.warn(f"removed {reader.removed_chars} control character(s) that XML 1.0 forbids")
        if reader.removed_refs:
            ctx.warn(f"removed {reader.removed_refs} control-character reference(s)")
        if reader.documents > 1:
            ctx.warn(f"read {reader.documents} concatenated XML documents")
    else:
        raise ReportParseError(describe(first_error))
