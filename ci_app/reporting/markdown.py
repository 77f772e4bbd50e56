"""Inert Markdown for hostile strings: test ids, messages, labels, branches, commits, URLs.

Everything a report carries came from a test run, and a test run can be anyone's pull request.
A string rendered into the PR/MR comment must not ping anyone (``@user``, ``@org/team``), link
anywhere (``[x](y)``, ``<http://…>``, bare ``www.x.com`` / ``http://`` / e-mail autolinks,
GitHub ``#123``/``GH-123``/SHA references, GitLab ``#1 !1 ~label %milestone $1 &1``), embed an
image, add HTML (``<details>``, ``<img>``), split a table row (``|``, newlines), end a code span
or fence early, or inject into the Mermaid block. Checked against GitHub's own cmark-gfm
(``cmarkgfm``) by ``tests/reporting/test_markdown.py``, including a property-based test.

Three ways to render a hostile string:

* :func:`code` — an identifier as a code span. Nothing inside a code span is parsed (no links,
  mentions, references or HTML on GitHub or GitLab); the delimiter is one backtick longer than
  the longest backtick run inside, and ``|`` is escaped in table cells.
* :func:`text` — prose: every ASCII punctuation character backslash-escaped, plus a WORD JOINER
  (U+2060, invisible) after the characters that start mentions, references and autolinks,
  which GitHub and GitLab detect on the rendered text rather than in the Markdown.
* :func:`fenced` — a multi-line block in a fence longer than any backtick run inside, with a
  WORD JOINER before a ``/`` that starts a line: GitLab runs ``/merge``-style quick actions
  from note text and only skips plain ```` ``` ```` fences, not longer ones.

Each takes a per-cell ``limit`` (middle-truncated with ``…``) so one huge value cannot crowd out
the rest of the comment. Control characters, line breaks and bidi overrides are removed first.
"""

from __future__ import annotations

import re
import string
from typing import Final
from urllib.parse import quote, urlsplit

__all__ = [
    "WORD_JOINER",
    "clean",
    "clip",
    "code",
    "fenced",
    "link",
    "mermaid_text",
    "safe_url",
    "text",
]

#: Invisible, not a word character: ``@\u2060user`` is no mention, ``#\u2060123`` no reference.
WORD_JOINER: Final = "\u2060"
ELLIPSIS: Final = "…"

_PUNCT: Final = frozenset(string.punctuation)
#: Characters after which GitHub or GitLab may start a mention, reference, emoji or autolink
#: scheme: ``@user``, ``#1``, ``!1``, ``~label``, ``%milestone``, ``$1``, ``&1``, ``^1``,
#: ``*iteration:1``, ``http:``/``mailto:``/``:emoji:``.
_TRIGGERS: Final = frozenset("@#!~%$&^*:")
#: C0/C1 controls, line/paragraph separators, bidi embeddings/overrides/isolates, BOM.
_INVISIBLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff]"
)
_SPACES: Final = re.compile(r"\s+")
_WWW: Final = re.compile(r"(?i)(www)(?=\.)")
_GH_REF: Final = re.compile(r"(?i)(?<![0-9a-z])(gh-)(?=[0-9])")
_HEX_RUN: Final = re.compile(r"[0-9a-fA-F]{7,}")
_BACKTICKS: Final = re.compile(r"`+")
_MERMAID_UNSAFE: Final = re.compile(r"[^0-9A-Za-z ._/+-]")
#: A line starting with ``/`` is a GitLab quick action (``/merge``, ``/approve``, ``/assign``)
#: run as the token's user when the note is saved; GitLab skips ```` ``` ```` blocks only.
_QUICK_ACTION: Final = re.compile(r"(?m)^([ \t]*)/")


def clean(value: str, *, keep_newlines: bool = False) -> str:
    """``value`` without control characters, bidi overrides and (unless ``keep_newlines``)
    line breaks; tabs and line breaks become spaces."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if keep_newlines:
        lines = value.split("\n")
        return "\n".join(_INVISIBLE.sub(_replacement, line) for line in lines)
    return _INVISIBLE.sub(_replacement, value)


def _replacement(match: re.Match[str]) -> str:
    ch = match.group(0)
    return " " if ch in "\t\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029" else ""


def clip(value: str, limit: int) -> str:
    """At most ``limit`` characters, cut in the middle (``head…tail``): test ids keep both their
    file and their name."""
    if limit <= 0:
        return ""
    if len(value) <= limit:
        return value
    if limit == 1:
        return ELLIPSIS
    head = (limit - 1) * 3 // 5
    tail = limit - 1 - head
    return value[:head] + ELLIPSIS + (value[-tail:] if tail else "")


def code(value: str, *, limit: int = 200, table: bool = False) -> str:
    """``value`` as one inert code span (``table=True`` escapes ``|`` for a GFM table cell)."""
    content = clip(clean(value), limit)
    if not content.strip():
        return "` `"  # an empty span is not a code span; show a blank one
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    fence = "`" * (longest + 1)
    pad = (
        " "
        if content[0] == "`" or content[-1] == "`" or (content[0] == " " and content[-1] == " ")
        else ""
    )
    if table:
        content = content.replace("|", "\\|")
    return f"{fence}{pad}{content}{pad}{fence}"


def _break_autolinks(value: str) -> str:
    value = _WWW.sub(lambda m: m.group(1) + WORD_JOINER, value)
    value = _GH_REF.sub(lambda m: m.group(1) + WORD_JOINER, value)
    # GitHub and GitLab link 7-40 hex digits to a commit: break long hex runs every 6 chars.
    return _HEX_RUN.sub(
        lambda m: WORD_JOINER.join(m.group(0)[i : i + 6] for i in range(0, len(m.group(0)), 6)),
        value,
    )


def text(value: str, *, limit: int = 300) -> str:
    """``value`` as inert inline prose, safe in paragraphs, list items and table cells."""
    content = clip(_SPACES.sub(" ", clean(value)).strip(), limit)
    content = _break_autolinks(content)
    out: list[str] = []
    for ch in content:
        if ch in _PUNCT:
            out.append("\\" + ch)
            if ch in _TRIGGERS:
                out.append(WORD_JOINER)
        else:
            out.append(ch)
    return "".join(out)


def fenced(value: str, *, info: str = "text", limit: int = 2000) -> str:
    """``value`` as a fenced code block that its content cannot close."""
    content = clip(clean(value, keep_newlines=True), limit).rstrip("\n")
    content = _QUICK_ACTION.sub(lambda m: m.group(1) + WORD_JOINER + "/", content)
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    fence = "`" * max(3, longest + 1)
    info = re.sub(r"[^0-9A-Za-z_+-]", "", info)
    return f"{fence}{info}\n{content}\n{fence}"


def safe_url(url: str | None, *, limit: int = 2000) -> str | None:
    """``url`` fit for a Markdown link destination, or ``None``: only absolute ``http(s)`` URLs
    with a host; characters that could end the destination (``( ) < > [ ]`` quotes, spaces,
    backslashes) are percent-encoded."""
    if not url:
        return None
    url = url.strip()
    if len(url) > limit or _INVISIBLE.search(url) or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(url, safe="!#$%&'*+,/:;=?@-._~")


def link(url: str | None, label: str) -> str:
    """``[label](url)`` for a safe URL (see :func:`safe_url`), else ``""``."""
    safe = safe_url(url)
    return f"[{text(label)}]({safe})" if safe else ""


def mermaid_text(value: str, *, limit: int = 40) -> str:
    """``value`` reduced to characters that cannot end a Mermaid string, directive or fence."""
    return clip(_MERMAID_UNSAFE.sub("", clean(value)), limit).strip()
