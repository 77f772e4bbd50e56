"""Small helpers for the format tests."""

from __future__ import annotations

import io
from pathlib import Path

from ci_app.artifacts.base import ParseContext
from ci_app.artifacts.detect import HEAD_BYTES, detect_format
from ci_app.artifacts.formats import get_parser
from ci_app.model.results import Summary, TestCase, summarize

DATA = Path(__file__).parent.parent.parent / "data"
REPORTS = DATA / "reports"
FORMATS_DATA = DATA / "formats"


def parse_bytes(
    data: bytes, fmt: str | None = None, path: str = "report"
) -> tuple[list[TestCase], ParseContext]:
    """Detect (unless given) and parse ``data``; returns the cases and the context."""
    fmt = fmt or detect_format(data[:HEAD_BYTES])
    ctx = ParseContext(path=path)
    cases = list(get_parser(fmt)(io.BytesIO(data), ctx))
    return cases, ctx


def parse_file(path: Path) -> tuple[str, list[TestCase], ParseContext]:
    data = path.read_bytes()
    fmt = detect_format(data[:HEAD_BYTES])
    cases, ctx = parse_bytes(data, fmt, str(path))
    return fmt, cases, ctx


def counts(cases: list[TestCase]) -> tuple[int, int, int, int, int]:
    s: Summary = summarize(cases)
    return (s.tests, s.passed, s.failed, s.errors, s.skipped)


def by_name(cases: list[TestCase]) -> dict[str, TestCase]:
    return {c.name: c for c in cases}
