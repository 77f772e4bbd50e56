"""Safe XML reading for untrusted reports.

Never resolves DTDs, entities or network resources (the corpus has XXE files
that older tools resolved). Billion-laughs input stays unexpanded; nesting past
libxml2's depth cap ends with a clear error. Files that mainstream reporters
write but that are not well-formed (raw control characters, ``&#x1B;``
references, several documents concatenated) are repaired by ``sanitize``.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from lxml import etree

from ci_app.artifacts.base import ParseContext, ReportParseError

# Bytes that XML 1.0 forbids even as references (tab, LF and CR are fine).
_ILLEGAL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ILLEGAL_REFS = re.compile(
    rb"&#(?:0*(?:[0-8]|1[124-9]|2\d|3[01])|x0*(?:[0-8]|[bBcCeEfF]|1[0-9a-fA-F]));"
)
_DECL = re.compile(rb"<\?xml[^>]*\?>")
_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.DOTALL | re.IGNORECASE)
WRAPPER = "ci-fanout-documents"


PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": True,
}


def parser_options() -> dict[str, bool]:
    """lxml options shared by every XML read: no DTD, entities or network."""
    return dict(PARSER_OPTIONS)


def safe_parser() -> etree.XMLParser:
    """A fresh ``XMLParser`` with the safe options."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def sanitize(data: bytes) -> tuple[bytes, list[str]]:
    """Repair common reporter output; returns the fixed bytes and what was fixed."""
    notes: list[str] = []
    fixed, n_bytes = _ILLEGAL_BYTES.subn(b"", data)
    if n_bytes:
        notes.append(f"removed {n_bytes} control character(s) that XML 1.0 forbids")
    fixed, n_refs = _ILLEGAL_REFS.subn(b"", fixed)
    if n_refs:
        notes.append(f"removed {n_refs} control-character reference(s) that XML 1.0 forbids")
    decls = _DECL.findall(fixed)
    if len(decls) > 1:
        notes.append(f"read {len(decls)} concatenated XML documents")
        fixed = _DECL.sub(b"", fixed)
        fixed = _DOCTYPE.sub(b"", fixed)
        fixed = b"<" + WRAPPER.encode() + b">" + fixed + b"</" + WRAPPER.encode() + b">"
    return fixed, notes


def describe(exc: Exception) -> str:
    """A one-line, user-facing description of an XML error."""
    if isinstance(exc, etree.XMLSyntaxError):
        msg = str(exc.msg or exc).strip()
        line = exc.lineno
        return (
            f"not well-formed XML (line {line}): {msg}" if line else f"not well-formed XML: {msg}"
        )
    return f"{type(exc).__name__}: {exc}"


def parse_tree(stream: BinaryIO, ctx: ParseContext, cap: int = 512 * 1024**2) -> etree._Element:
    """Parse a whole (small or medium) document safely, repairing it once if needed."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise ReportParseError(f"XML report larger than {cap:,} bytes; split it or raise the cap")
    if not data.strip():
        raise ReportParseError("empty file")
    try:
        return etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as first:
        fixed, notes = sanitize(data)
        if not notes:
            raise ReportParseError(describe(first)) from None
        try:
            root = etree.fromstring(fixed, safe_parser())
        except etree.XMLSyntaxError as exc:
            raise ReportParseError(describe(exc)) from None
        for note in notes:
            ctx.warn(note)
        return root


def local(tag: object) -> str:
    """Element tag without namespace (``{ns}TestRun`` -> ``TestRun``); '' for comments/PIs."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]
