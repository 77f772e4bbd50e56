"""Render Markdown as GitHub does (cmark-gfm via ``cmarkgfm``) and read back what a reader gets:
tags, links, images, table shapes, and the text nodes where GitHub and GitLab look for mentions,
references and bare links (everything outside ``<code>``, ``<pre>`` and ``<a>``)."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

#: The extensions GitHub enables for comments; raw HTML kept (UNSAFE) to see what reaches
#: GitHub's sanitizer, which is stricter than checking the sanitizer's output.
EXTENSIONS = ("table", "autolink", "strikethrough", "tagfilter")

#: Tags the renderer itself writes. Anything else came from a hostile string.
OUR_TAGS = frozenset(
    {
        "p",
        "h2",
        "h3",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "pre",
        "ul",
        "li",
        "details",
        "summary",
        "sub",
        "hr",
        "em",
        "strong",
        "a",
    }
)

#: GitHub's mention rule is ``(?:^|\W)@name``; this is stricter: any ``@`` + name character.
MENTION = re.compile(r"@[A-Za-z0-9_]")
#: GitLab references: @user, #issue, !MR, ~label, %milestone, $snippet, &epic, *iteration.
GITLAB_REFERENCE = re.compile(r"[@#!~%$&*][A-Za-z0-9_\"]")
#: Bare links GitHub or GitLab make from text: www., scheme://, GH-1, commit SHAs.
BARE_LINK = re.compile(r"(?i)www\.|://|\bgh-[0-9]|\b[0-9a-f]{7,40}\b")


def to_html(markdown: str) -> str:
    html: str = cmarkgfm.markdown_to_html_with_extensions(
        markdown, options=Options.CMARK_OPT_UNSAFE, extensions=list(EXTENSIONS)
    )
    return html


class Html(HTMLParser):
    """What one rendered document contains."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.images: list[dict[str, str | None]] = []
        self.live_text: list[str] = []  # text outside code/pre/a
        self.code_text: list[str] = []  # each <code> element's text
        self.tables: list[list[list[str]]] = []  # table -> rows -> text of each cell
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._code: list[str] | None = None
        self._link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        if tag == "img":
            self.images.append(dict(attrs))
            return  # void element
        if tag in ("br", "hr", "input"):
            return
        self._stack.append(tag)
        if tag == "code":
            self._code = []
        elif tag == "a":
            self._link = (dict(attrs).get("href") or "", [])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag == "code" and self._code is not None:
            self.code_text.append("".join(self._code))
            self._code = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], "".join(self._link[1])))
            self._link = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._code is not None:
            self._code.append(data)
        if self._link is not None:
            self._link[1].append(data)
        if not {"code", "pre", "a"} & set(self._stack):
            self.live_text.append(data)

    @property
    def unknown_tags(self) -> set[str]:
        return set(self.tags) - OUR_TAGS

    def mentions(self) -> list[str]:
        return [m.group(0) for t in self.live_text for m in MENTION.finditer(t)]

    def gitlab_references(self) -> list[str]:
        return [m.group(0) for t in self.live_text for m in GITLAB_REFERENCE.finditer(t)]

    def bare_links(self) -> list[str]:
        return [m.group(0) for t in self.live_text for m in BARE_LINK.finditer(t)]

    def ragged_tables(self) -> list[list[list[str]]]:
        """Tables whose rows do not all have the header's number of cells (cmark-gfm pads
        short rows and drops extra cells, so a split cell mostly shows as shifted content:
        compare :attr:`tables` cell by cell too)."""
        return [t for t in self.tables if t and any(len(r) != len(t[0]) for r in t)]


def parse(markdown: str) -> Html:
    html = Html()
    html.feed(to_html(markdown))
    html.close()
    return html
