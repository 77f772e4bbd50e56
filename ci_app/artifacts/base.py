"""Parser interface shared by every report format.

A parser is a function ``(stream, ctx) -> Iterator[TestCase]`` over a binary
stream: it streams cases
and records side facts (declared counts, warnings, tool) on the ``ParseContext``.
It raises ``ReportParseError`` when the input is unusable; the caller turns that
into a ``ReportFile.error`` entry, never a crash of the whole ingest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ci_app.model.results import Outcome, Summary, TestCase, strip_ansi


class ReportParseError(Exception):
    """The input cannot be read as a test report (message says why)."""


@dataclass(slots=True)
class ParseContext:
    """Mutable side channel a parser fills while it streams cases."""

    path: str
    warnings: list[str] = field(default_factory=list)
    declared: Summary | None = None
    tool: str | None = None
    duration_s: float | None = None
    max_message_chars: int = 64 * 1024
    #: (part, error) for a part of the report that could not run or be read — a Jest
    #: test file that failed to run — shown as its own error entry, not as a test.
    part_errors: list[tuple[str, str]] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if len(self.warnings) < 100:
            self.warnings.append(message)

    def part_error(self, part: str, message: str) -> None:
        if len(self.part_errors) < 1000:
            self.part_errors.append((part, message))

    def clip(self, text: str | None) -> str | None:
        """Cap stored texts (messages, stdout) so one huge case cannot blow memory; terminal
        escape sequences (colour codes) are removed."""
        if text is None:
            return None
        text = strip_ansi(text).strip("\n")
        if not text:
            return None
        if len(text) > self.max_message_chars:
            cut = len(text) - self.max_message_chars
            return text[: self.max_message_chars] + f"\n… [{cut} more characters truncated]"
        return text


Parser = Callable[[BinaryIO, ParseContext], Iterator[TestCase]]


def read_capped(stream: BinaryIO, cap: int, what: str = "report") -> bytes:
    """Read a whole (non-streaming) input, refusing more than ``cap`` bytes."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise ReportParseError(
            f"{what} is larger than {cap:,} bytes; raise the limit or split the file"
        )
    return data


def make_id(classname: str | None, name: str, suite: str | None = None) -> str:
    """The standard test id: ``classname::name`` (or ``suite::name``, or ``name``)."""
    prefix = classname or suite
    return f"{prefix}::{name}" if prefix else name


def to_float(value: str | float | int | None) -> float:
    """Parse a duration attribute leniently ('1,234.5', '', None -> 0.0)."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().replace(",", "")
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


__all__ = [
    "Outcome",
    "ParseContext",
    "Parser",
    "ReportParseError",
    "TestCase",
    "make_id",
    "read_capped",
    "to_float",
    "to_int",
]
