"""Helpers shared by the non-JUnit parsers: unique ids, rerun merging, safe JSON/XML reads.

Every parser builds its ``TestCase`` objects through ``CaseBuilder`` so that the
rules in ``docs/formats.md`` hold the same way for every format: texts are
clipped, ids are unique within one file (``a::b``, ``a::b#2``), and reruns fold
into one case (final outcome, ``retries`` extra attempts, ``flaky`` when an
earlier attempt failed and the last one passed).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from lxml import etree

from ci_app.artifacts.base import ParseContext, ReportParseError, make_id, read_capped
from ci_app.artifacts.xmlsafe import describe, parser_options, sanitize
from ci_app.model.results import Outcome, TestCase

#: Largest whole-document (non-streamed) JSON or text report we read.
MAX_DOCUMENT_BYTES = 512 * 1024**2

_FAILING = (Outcome.FAILED, Outcome.ERROR)


@dataclass(slots=True)
class Attempt:
    """One execution of a test (the first run or a rerun)."""

    outcome: Outcome
    duration_s: float = 0.0
    message: str | None = None
    details: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class CaseBuilder:
    """Builds clipped ``TestCase`` objects with ids unique within one file."""

    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self._seen: dict[str, int] = {}

    def unique_id(self, base: str) -> str:
        """``base`` the first time, then ``base#2``, ``base#3`` … (never a clash)."""
        n = self._seen.get(base, 0) + 1
        self._seen[base] = n
        if n == 1:
            return base
        candidate = f"{base}#{n}"
        while candidate in self._seen:
            n += 1
            candidate = f"{base}#{n}"
        self._seen[base] = n
        self._seen[candidate] = 1
        return candidate

    def case(
        self,
        *,
        name: str | None,
        outcome: Outcome,
        classname: str | None = None,
        suite: str | None = None,
        file: str | None = None,
        line: int | None = None,
        duration_s: float = 0.0,
        message: str | None = None,
        details: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        retries: int = 0,
        flaky: bool = False,
    ) -> TestCase:
        clean_name = (name or "").strip() or "(unnamed)"
        classname = (classname or "").strip() or None
        suite = (suite or "").strip() or None
        clip = self.ctx.clip
        return TestCase(
            id=self.unique_id(make_id(classname, clean_name, suite)),
            name=clean_name,
            outcome=outcome,
            suite=suite,
            classname=classname,
            file=file or None,
            line=line if line is None or line > 0 else None,
            duration_s=max(0.0, duration_s),
            message=clip(message),
            details=clip(details),
            stdout=clip(stdout),
            stderr=clip(stderr),
            retries=retries,
            flaky=flaky,
        )

    def from_attempts(
        self,
        attempts: list[Attempt],
        *,
        name: str | None,
        classname: str | None = None,
        suite: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> TestCase:
        """One case from all runs of a test: the last attempt decides the outcome."""
        if not attempts:
            raise ValueError("no attempts")
        final = attempts[-1]
        earlier_failures = [a for a in attempts[:-1] if a.outcome in _FAILING]
        flaky = final.outcome is Outcome.PASSED and bool(earlier_failures)
        shown = final
        if final.outcome not in _FAILING and earlier_failures:
            shown = earlier_failures[-1]  # why it flaked is the interesting text
        return self.case(
            name=name,
            outcome=final.outcome,
            classname=classname,
            suite=suite,
            file=file,
            line=line,
            duration_s=sum(a.duration_s for a in attempts),
            message=shown.message,
            details=shown.details,
            stdout=final.stdout,
            stderr=final.stderr,
            retries=len(attempts) - 1,
            flaky=flaky,
        )


def split_qualified(full: str) -> tuple[str | None, str]:
    """Split ``Ns.Class.Method(args)`` into (``Ns.Class``, ``Method(args)``).

    Dots inside parentheses, angle/square brackets and quotes belong to the
    method's arguments (``Test("a.b")``) or generic types and do not split.
    """
    depth = 0
    quote: str | None = None
    cut = -1
    for i, ch in enumerate(full):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth = max(0, depth - 1)
        elif ch == "." and depth == 0:
            cut = i
    if cut <= 0 or cut == len(full) - 1:
        return None, full
    return full[:cut], full[cut + 1 :]


def strip_prefix(name: str, prefix: str | None) -> str:
    """``Ns.Class.Method`` -> ``Method`` when ``prefix`` is ``Ns.Class``."""
    if prefix and name.startswith(prefix + ".") and len(name) > len(prefix) + 1:
        return name[len(prefix) + 1 :]
    return name


def load_json(stream: BinaryIO, what: str, cap: int = MAX_DOCUMENT_BYTES) -> Any:
    """Read and decode a whole JSON document; every failure is a ``ReportParseError``."""
    data = read_capped(stream, cap, what)
    if not data.strip():
        raise ReportParseError(f"empty {what}")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ReportParseError(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ReportParseError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except RecursionError:
        raise ReportParseError(
            f"{what} is nested deeper than {MAX_JSON_DEPTH} levels; not a test report"
        ) from None
    check_depth(doc, what)
    return doc


#: Deepest JSON nesting a report may have (real reports stay under 20 levels).
MAX_JSON_DEPTH = 256


def check_depth(doc: Any, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse documents nested deeper than ``limit`` (walked without recursion), so no
    parser that walks them recursively can run out of stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise ReportParseError(
                f"{what} is nested deeper than {limit} levels; not a test report"
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def expect_dict(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReportParseError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def expect_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportParseError(f"{what} must be a JSON array, not {type(value).__name__}")
    return value


def text_of(value: Any) -> str | None:
    """A JSON value as display text (strings as is, others JSON-encoded)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def join_texts(parts: Iterable[str | None], sep: str = "\n") -> str | None:
    kept = [p for p in parts if p and p.strip()]
    return sep.join(kept) if kept else None


def reject_entities(root: etree._Element) -> None:
    """Refuse documents that declare XML entities (the XXE / billion-laughs shapes).

    The parser never expands them (``resolve_entities=False``), but a report
    whose content lives in an unexpanded entity is not a usable report either,
    and silently dropping the text would hide that. The message never quotes
    the entity's target.
    """
    dtd: Any = root.getroottree().docinfo.internalDTD
    if dtd is None:
        return
    names = [str(e.name or "?") for e in dtd.iterentities()]
    if names:
        shown = ", ".join(sorted(set(names))[:5])
        raise ReportParseError(
            f"document declares XML entities ({shown}); entities are never expanded, "
            "so the report is refused"
        )


def element_text(el: etree._Element | None) -> str | None:
    """All text inside ``el`` (CDATA included), or None."""
    if el is None:
        return None
    text = "".join(t if isinstance(t, str) else t.decode() for t in el.itertext())
    return text if text.strip() else None


#: Longest single line of a line-delimited (JSON event / TAP) report.
MAX_LINE_BYTES = 64 * 1024**2


def iter_lines(stream: BinaryIO, what: str, max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Decoded lines of a streamed text report (UTF-8, BOM and CR tolerated)."""
    first = True
    while True:
        raw = stream.readline(max_line + 1)
        if not raw:
            return
        if len(raw) > max_line and not raw.endswith(b"\n"):
            raise ReportParseError(f"{what} has a line longer than {max_line:,} bytes")
        if first:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
            first = False
        yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


# -- streamed XML ------------------------------------------------------------

XmlCollector = Callable[[BinaryIO, CaseBuilder], Iterator[TestCase]]


def collect_xml(stream: BinaryIO, ctx: ParseContext, collect: XmlCollector) -> Iterator[TestCase]:
    """Stream ``collect`` over the document; once more over a repaired copy if not well-formed.

    ``collect`` walks ``iter_xml`` and releases each element once it is read,
    so memory holds neither the tree nor (for seekable inputs) the bytes. When
    the repaired pass runs, the cases already yielded are not yielded again.
    """
    seekable = stream.seekable()
    start = stream.tell() if seekable else 0
    source: BinaryIO = stream
    data: bytes | None = None
    if not seekable:
        data = read_capped(stream, MAX_DOCUMENT_BYTES, "XML report")
        source = io.BytesIO(data)
    emitted = 0
    try:
        for case in collect(source, CaseBuilder(ctx)):
            emitted += 1
            yield case
        return
    except etree.XMLSyntaxError as exc:
        error = exc
    if data is None:
        stream.seek(start)
        data = read_capped(stream, MAX_DOCUMENT_BYTES, "XML report")
    if not data.strip():
        raise ReportParseError("empty file")
    fixed, notes = sanitize(data)
    if not notes:
        raise ReportParseError(describe(error))
    try:
        for i, case in enumerate(collect(io.BytesIO(fixed), CaseBuilder(ctx))):
            if i >= emitted:
                yield case
    except etree.XMLSyntaxError as exc:
        raise ReportParseError(describe(exc)) from None
    for note in notes:
        ctx.warn(note)


def iter_xml(source: BinaryIO) -> Iterator[tuple[str, etree._Element]]:
    """``(event, element)`` for start/end of every element, safely; entity declarations refused."""
    first = True
    for event, el in etree.iterparse(source, events=("start", "end"), **parser_options()):
        if first:
            reject_entities(el)
            first = False
        yield event, el


def release(el: etree._Element) -> None:
    """Free a fully read element, and earlier released siblings of the same kind.

    Other siblings (a suite's own ``<failure>`` before its test cases) stay
    until their parent is read.
    """
    el.clear()
    parent = el.getparent()
    prev = el.getprevious()
    while parent is not None and prev is not None:
        if prev.tag != el.tag or len(prev) or prev.attrib:
            break  # not released yet: everything before it was handled when it was
        before = prev.getprevious()
        parent.remove(prev)
        prev = before
