"""Streaming JUnit XML parser (every dialect of the corpus), over the rulebook.

Reads with ``lxml.etree.iterparse`` and clears each ``<testcase>`` once
classified, so memory stays flat whatever the file size. Every dialect rule (tag
names, status words, attribute aliases, id making, rerun policy per dialect) is
data in ``junit_rules.py``, which the native reader takes too; this module is the
reference that applies them:

* the most severe result child wins; a status attribute or a ``failure``/``error``
  attribute counts when there is no result child;
* retry children (Surefire/Gradle) add ``retries``; repeated cases follow the
  suite's dialect rerun policy (merged for pytest and Go, numbered ``#2``, ``#3``
  elsewhere, so every id in a suite is unique);
* node's tests with subtests (written as ``<testsuite>``) are cases too; skipped
  tests a suite declares but does not list become placeholder cases;
* cases with neither a classname nor a name attribute are dropped (they cannot be
  identified); present-but-empty attributes (jest) still count, named ``(unnamed)``;
* not well-formed files (raw control characters, ``&#x1B;``, several concatenated
  documents, as jest-junit, mocha and cargo write) are re-read through a repairing
  stream with a warning; cases already emitted are not emitted twice.

Where the optional native module is built (``native.py``), well-formed files
are read by its expat reader over the same rules, about twice as fast; anything
it does not mirror (``junit_rules.NATIVE_HANDS_OVER``) hands the file back to
this reference code, which skips the cases already emitted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts import junit_rules as rules
from ci_app.artifacts import native
from ci_app.artifacts.base import (
    ParseContext,
    ReportParseError,
    make_id,
    to_float,
    to_int,
)
from ci_app.artifacts.junit_rules import (
    merge_rerun,
    parse_duration,
    parse_line,
    pytest_node_id,
)
from ci_app.artifacts.xmlsafe import WRAPPER, describe, parser_options
from ci_app.model.results import Outcome, Summary, TestCase, new_case

__all__ = ["RepairingReader", "parse_junit", "pytest_node_id"]


@dataclass(slots=True)
class _Suite:
    name: str | None
    file: str | None
    dialect: str | None  # "pytest", "go", "node" or None (junit_rules)
    seen: dict[str, int] = field(default_factory=dict)
    listed: int = 0
    listed_skipped: int = 0
    held: dict[str, TestCase] = field(default_factory=dict)  # the "any" rerun policy

    @property
    def pytest(self) -> bool:
        return self.dialect == "pytest"

    @property
    def policy(self) -> str:
        return rules.RERUN_POLICY.get(self.dialect or "", rules.DEFAULT_RERUN_POLICY)


def _declared(rows: Iterable[Sequence[str | None]]) -> Summary | None:
    """What the ``<testsuite>`` attributes declare, summed (rows of ``_declared_values``);
    None when no suite declares a test count. Disabled tests count as skipped; ``passed`` is
    what the totals leave over."""
    total = Summary()
    declares = False
    for tests, failures, errors, skipped, disabled, time in rows:
        n = to_int(tests)
        if n is None:
            continue
        declares = True
        total += Summary(
            tests=n,
            failed=to_int(failures) or 0,
            errors=to_int(errors) or 0,
            skipped=(to_int(skipped) or 0) + (to_int(disabled) or 0),
            duration_s=to_float(time),
        )
    if not declares:
        return None
    return replace(total, passed=max(0, total.tests - total.failed - total.errors - total.skipped))


def _set_declared(ctx: ParseContext, rows: Iterable[Sequence[str | None]]) -> None:
    declared = _declared(rows)
    if declared is not None:
        ctx.declared = declared
        ctx.duration_s = declared.duration_s


def _text(el: etree._Element) -> str | None:
    # itertext joins CDATA and text; most result elements are a single text node.
    if len(el):
        return "".join(str(t) for t in el.itertext())
    return el.text


def _get(el: etree._Element, key: str) -> str | None:
    """The first alias of ``key`` with a non-empty value, else the last alias's value."""
    value: str | None = None
    for alias in rules.CASE_ATTRIBUTES[key]:
        value = el.get(alias)
        if value:
            return value
    return value  # ``a or b`` semantics: the last alias's value


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[1] if "}" in tag else tag


def _dialect(el: etree._Element) -> str | None:
    """The dialect of the ``<testsuite>`` (or other element) ``el`` holding cases."""
    node: etree._Element | None = el
    while node is not None:
        name = node.get(rules.SUITE_NAME_ATTRIBUTE) or ""
        if (node.tag == rules.SUITE_TAG and name == rules.PYTEST_SUITE_NAME) or (
            name == rules.PYTEST_ANY_NAME
        ):
            return "pytest"
        node = node.getparent()
    if el.tag != rules.SUITE_TAG:
        return None
    if _is_node_suite(el):
        return "node"
    for prop in el.iter(rules.PROPERTY_TAG):
        if prop.get("name") == rules.GO_PROPERTY:
            return "go"
    return None


def _is_node_suite(el: etree._Element) -> bool:
    return all(el.get(a) is not None for a in rules.NODE_SUITE_ATTRIBUTES) and (
        el.get(rules.NODE_SUITE_ABSENT) is None
    )


def _suite_info(el: etree._Element) -> _Suite:
    """Facts about the element holding a case (dialect, file, name)."""
    is_suite = el.tag == rules.SUITE_TAG
    file = None
    if is_suite:
        for attr in rules.SUITE_FILE_ATTRIBUTES:
            file = el.get(attr)
            if file:
                break
    return _Suite(
        name=el.get(rules.SUITE_NAME_ATTRIBUTE) if is_suite else None,
        file=file,
        dialect=_dialect(el),
    )


def _build(el: etree._Element, suite: _Suite, ctx: ParseContext) -> TestCase | None:
    """One ``<testcase>`` as a case, by the rulebook."""
    name = _get(el, "name")
    classname = _get(el, "classname")
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
        tag = _local(child.tag)
        res = rules.RESULT_TAGS.get(tag)
        if res is not None:
            got_result = True
            if res.severity > severity:
                outcome, severity = res, res.severity
            msg = child.get(rules.MESSAGE_ATTRIBUTE)
            if msg:
                messages.append(msg)
            body = _text(child)
            if body and body.strip():
                details.append(body)
        elif tag in rules.RETRY_TAGS:
            retries += 1
            if not details:
                body = child.findtext(rules.RETRY_TRACE_TAG) or _text(child)
                msg = child.get(rules.MESSAGE_ATTRIBUTE)
                if msg:
                    messages.append(msg)
                if body and body.strip():
                    details.append(body)
        elif tag == rules.STDOUT_TAG:
            stdout = _text(child)
        elif tag == rules.STDERR_TAG:
            stderr = _text(child)
    if not got_result:
        status = rules.STATUS_OUTCOMES.get((_get(el, "status") or "").lower())
        if status is not None:
            outcome = status
        failure = _get(el, "failure")
        if failure is not None:
            outcome = Outcome.FAILED
            messages.append(failure)
        error = _get(el, "error")
        if error is not None:
            outcome = Outcome.ERROR
            messages.append(error)
    clip = ctx.clip
    file = _get(el, "file")
    return new_case(
        pytest_node_id(classname, name, file)
        if suite.pytest
        else make_id(classname, name, suite.name),
        name,
        outcome,
        suite.name,
        classname,
        file or suite.file,
        parse_line(_get(el, "line"), suite.pytest),
        parse_duration(_get(el, "time")),
        clip("\n".join(messages)) if messages else None,
        clip("\n\n".join(details)) if details else None,
        clip(stdout),
        clip(stderr),
        retries,
        retries > 0 and outcome is Outcome.PASSED,
    )


def _numbered(suite: _Suite, case: TestCase) -> TestCase:
    seen = suite.seen
    n = seen.get(case.id, 0) + 1
    seen[case.id] = n
    return case if n == 1 else replace(case, id=f"{case.id}#{n}")


def _declared_values(el: etree._Element) -> list[str | None]:
    """(tests, failures, errors, skipped, disabled, time) as the suite writes them."""
    return [el.get(a) for a in rules.DECLARED_ATTRIBUTES]


def _unlisted_skipped(el: etree._Element, suite: _Suite, ctx: ParseContext) -> Iterator[TestCase]:
    """Placeholders for the skipped tests a leaf suite declares but does not list."""
    tests, _, _, skipped_s, disabled, _ = (to_int(v) for v in _declared_values(el))
    skipped = (skipped_s or 0) + (disabled or 0)
    if tests is None:
        return
    missing = tests - suite.listed
    if missing <= 0 or skipped - suite.listed_skipped != missing:
        return  # only when the missing cases are exactly the missing skipped ones
    if missing > rules.MAX_UNLISTED_SKIPPED:
        ctx.warn(
            f"suite {suite.name!r} declares {missing:,} skipped tests it does not list; "
            f"{rules.MAX_UNLISTED_SKIPPED:,} are counted"
        )
        missing = rules.MAX_UNLISTED_SKIPPED
    for _ in range(missing):
        yield _numbered(
            suite,
            new_case(
                make_id(None, rules.UNLISTED_SKIPPED_NAME, suite.name),
                rules.UNLISTED_SKIPPED_NAME,
                Outcome.SKIPPED,
                suite.name,
                None,
                suite.file,
                None,
                0.0,
                rules.UNLISTED_SKIPPED_MESSAGE,
            ),
        )


def _node_parent(el: etree._Element, ctx: ParseContext) -> TestCase:
    """node: the test a ``<testsuite>`` of subtests stands for (failed when one failed)."""
    _, failures, errors, _, _, time = _declared_values(el)
    failed = (to_int(failures) or 0) + (to_int(errors) or 0) > 0
    name = el.get(rules.SUITE_NAME_ATTRIBUTE) or "(unnamed)"
    return new_case(
        make_id(rules.NODE_CASE_CLASSNAME, name),
        name,
        Outcome.FAILED if failed else Outcome.PASSED,
        None,
        rules.NODE_CASE_CLASSNAME,
        None,
        None,
        parse_duration(time),
        "a subtest failed" if failed else None,
    )


_NODE_SUITES = re.compile(rb"<!--\s*suites\s+(\d+)\s*-->")


def _node_trailer(source: BinaryIO) -> int | None:
    """The ``<!-- suites N -->`` count node writes after the last element (describe blocks)."""
    try:
        if not source.seekable():
            return None
        end = source.seek(0, io.SEEK_END)
        source.seek(max(0, end - 4096))
        m = _NODE_SUITES.search(source.read(4096))
    except (OSError, ValueError):
        return None
    return int(m.group(1)) if m else None


def _node_tests(
    parents: list[TestCase], describes: int | None, ctx: ParseContext
) -> list[TestCase]:
    """Which node ``<testsuite>``s are tests with subtests (node counts those as tests).

    node writes a ``describe`` block and a test with subtests alike; only its trailer
    says how many ``describe`` blocks there were. With none, every such suite is a
    test; when all are ``describe`` blocks, none is; otherwise the file cannot tell
    which, and a warning says so.
    """
    if describes == 0:
        return parents
    if describes != len(parents):
        ctx.warn(
            f"node wrote {len(parents)} <testsuite> element(s) for describe blocks and tests "
            f"with subtests alike (trailer: {describes if describes is not None else '?'} "
            "describe block(s)); tests with subtests are not counted (use "
            "--test-reporter=tap for node's exact counts)"
        )
    return []


def _iter_cases(source: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    declared: list[list[str | None]] = []  # the suites' count attributes, summed at the end
    pending: TestCase | None = None
    cur_parent: etree._Element | None = None
    suite = _Suite(name=None, file=None, dialect=None)
    root = _Suite(name=None, file=None, dialect=None)  # scope of node's parent tests
    suites: dict[etree._Element, _Suite] = {}  # open suites that held cases (keeps proxies)
    node_parents: list[TestCase] = []
    count = 0
    events = etree.iterparse(
        source, events=("end",), tag=(rules.CASE_TAG, rules.SUITE_TAG), **parser_options()
    )

    def flush() -> Iterator[TestCase]:
        nonlocal pending
        if pending is not None:
            yield pending
            pending = None

    try:
        for _, el in events:
            if el.tag == rules.SUITE_TAG:
                held = suites.pop(el, None)
                leaf = not any(c.tag == rules.SUITE_TAG for c in el)
                if held is None and leaf:
                    declared.append(_declared_values(el))  # an empty leaf suite declares too
                if held is not None or leaf:
                    scope = held or _suite_info(el)
                    if scope.held:
                        yield from flush()
                        yield from scope.held.values()
                        scope.held.clear()
                    extra = list(_unlisted_skipped(el, scope, ctx)) if leaf else []
                    if extra:
                        yield from flush()
                        yield from extra
                if _is_node_suite(el) and el.getparent() is not None:
                    node_parents.append(_node_parent(el, ctx))
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
                        if parent.tag == rules.SUITE_TAG:
                            declared.append(_declared_values(parent))
                    suite = known
            case = _build(el, suite, ctx)
            el.clear()
            if case is None:
                continue
            suite.listed += 1
            suite.listed_skipped += case.outcome is Outcome.SKIPPED
            count += 1
            if not count & 1023 and parent is not None:
                # Free finished siblings in batches so memory stays flat.
                while el.getprevious() is not None:
                    del parent[0]
            policy = suite.policy
            if policy == "any":
                before = suite.held.get(case.id)
                suite.held[case.id] = case if before is None else merge_rerun(before, case)
                continue
            if pending is not None:
                if policy == "consecutive" and pending.id == case.id:
                    pending = merge_rerun(pending, case)
                    continue
                yield pending
            pending = _numbered(suite, case)
    except etree.XMLSyntaxError:
        yield from flush()  # the cases before the damage are real results
        for known in suites.values():
            yield from known.held.values()
        raise
    yield from flush()
    for known in suites.values():  # cases directly under the root
        yield from known.held.values()
    if node_parents:
        for case in _node_tests(node_parents, _node_trailer(source), ctx):
            yield _numbered(root, case)
    _set_declared(ctx, declared)


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
            _set_declared(ctx, parser.declared)
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
