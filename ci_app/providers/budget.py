"""Provider body limits: budget markdown by section, never reject; sticky-comment markers.

The reporting layer already renders within a budget; this is the adapters' safety net so that a
post never fails because a body is a few characters too long. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ci_app.providers.base import DEFAULT_KIND
from ci_app.reporting.marker import MARKER_PREFIX, MARKER_VERSION

T = TypeVar("T")

GITHUB_COMMENT_MAX = 65_536
GITHUB_CHECK_TEXT_MAX = 65_535
GITHUB_ANNOTATIONS_PER_REQUEST = 50
GITHUB_ANNOTATION_MESSAGE_MAX = 64 * 1024
GITHUB_ANNOTATION_TITLE_MAX = 255
GITHUB_STATUS_DESCRIPTION_MAX = 140
GITHUB_CHECK_TITLE_MAX = 255  # not documented as a hard cap; keep titles short anyway
GITHUB_WORKFLOW_INPUTS_MAX = 25
GITHUB_REPOSITORY_DISPATCH_PAYLOAD_KEYS = 10
GITLAB_NOTE_MAX = 1_000_000
GITLAB_STATUS_DESCRIPTION_MAX = 255
AZURE_COMMENT_MAX = 150_000

_HEADING = re.compile(r"^(#{1,6} |<details\b)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def marker_line(kind: str = DEFAULT_KIND) -> str:
    return f"{MARKER_PREFIX} {MARKER_VERSION} kind={kind} -->"


def marker_kind(body: str) -> str | None:
    """The kind named by the marker on ``body``'s first line, ``""`` if it names none,
    ``None`` if the first line is not a ci-fanout marker."""
    first = body.split("\n", 1)[0].strip()
    if not first.startswith(MARKER_PREFIX):
        return None
    inner = first[len(MARKER_PREFIX) :].removesuffix("-->")
    if inner and not inner[0].isspace():
        return None  # e.g. "<!-- ci-fanout:reporter", another tool's marker
    for token in inner.split():
        if token.startswith("kind="):
            return token[len("kind=") :].strip("\"'")
    return ""


def marker_matches(body: str, kind: str = DEFAULT_KIND) -> bool:
    """True if ``body`` is our sticky comment of ``kind`` (a marker without kind = default)."""
    found = marker_kind(body)
    if found is None:
        return False
    return found == kind or (found == "" and kind == DEFAULT_KIND)


def ensure_marker(body: str, kind: str = DEFAULT_KIND) -> str:
    """Prefix ``body`` with a marker line unless its first line already is one."""
    if marker_kind(body) is not None:
        return body
    return f"{marker_line(kind)}\n{body}"


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut plain text to ``limit`` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class Fitted:
    body: str
    truncated: bool
    omitted_sections: int = 0
    omitted_lines: int = 0


def _split_sections(lines: list[str]) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and _HEADING.match(line) and sections[-1]:
            sections.append([])
        sections[-1].append(line)
    return sections


def _closers(lines: Sequence[str]) -> list[str]:
    in_fence = False
    depth = 0
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            depth += line.count("<details") - line.count("</details>")
    closers = ["```"] if in_fence else []
    closers += ["</details>"] * max(0, depth)
    return closers


def _more(count: int, what: str, dashboard_url: str | None) -> str:
    where = f"[dashboard]({dashboard_url})" if dashboard_url else "dashboard"
    noun = what if count == 1 else f"{what}s"
    return f"_… {count} more {noun} — see {where}_"


def fit_markdown(body: str, limit: int, *, dashboard_url: str | None = None) -> Fitted:
    """Fit ``body`` into ``limit`` characters by dropping whole trailing sections (headings or
    ``<details>`` blocks), cutting the section that overflows line by line, closing any open code
    fence / ``<details>``, and saying how much was left out. Never returns more than ``limit``."""
    if len(body) <= limit:
        return Fitted(body, False)
    lines = body.split("\n")
    sections = _split_sections(lines)
    # Reserve room for the two notes (lines + sections) with generous digit counts.
    reserve = 2 * len(_more(10**7, "section", dashboard_url)) + 40
    budget = max(0, limit - reserve)
    kept: list[str] = []
    used = 0
    omitted_lines = 0
    omitted_sections = 0
    for index, section in enumerate(sections):
        size = sum(len(line) + 1 for line in section)
        if used + size <= budget:
            kept.extend(section)
            used += size
            continue
        # This section overflows: keep what fits of it, line by line.
        taken = 0
        for line in section:
            closers = _closers([*kept, line])
            extra = len(line) + 1 + sum(len(c) + 1 for c in closers)
            if used + extra > budget:
                break
            kept.append(line)
            used += len(line) + 1
            taken += 1
        omitted_lines = len(section) - taken
        omitted_sections = len(sections) - index - 1
        break
    out = list(kept)
    out.extend(_closers(kept))
    if omitted_lines:
        out += ["", _more(omitted_lines, "line", dashboard_url)]
    if omitted_sections:
        out += ["", _more(omitted_sections, "section", dashboard_url)]
    text = "\n".join(out)
    if len(text) > limit:  # a pathological single line; hard cut as a last resort
        note = "\n" + _more(1, "part", dashboard_url)
        text = text[: max(0, limit - len(note))] + note
        text = text[:limit]
    return Fitted(text, True, omitted_sections, omitted_lines)
