"""Detect a report's format from its content (never from its file name)."""

from __future__ import annotations

import json
import re

HEAD_BYTES = 64 * 1024

_XML_ROOTS = {
    "testsuites": "junit",
    "testsuite": "junit",
    "test-results": "nunit2",
    "test-run": "nunit3",
    "test-suite": "nunit3",
    "assemblies": "xunit2",
    "TestRun": "trx",
}
_PROLOG = re.compile(
    rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)", re.DOTALL | re.IGNORECASE
)
_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_TAP = re.compile(rb"^(?:TAP version \d+|1\.\.\d+|ok\b|not ok\b)", re.MULTILINE)


def _strip_bom(head: bytes) -> bytes:
    for bom in (b"\xef\xbb\xbf",):
        if head.startswith(bom):
            return head[len(bom) :]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return head
    return head


def xml_root(head: bytes) -> str | None:
    """Local name of the root element, skipping the prolog; None when not XML."""
    pos = 0
    while True:
        m = _PROLOG.match(head, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    m = _ROOT.match(head, pos)
    return m.group(2).decode("ascii") if m else None


def _json_kind(head: bytes) -> str:
    text = head.decode("utf-8", errors="replace")
    first_line = text.split("\n", 1)[0].strip()
    # Line-delimited event streams: go test -json, Dart/Flutter JSON reporter.
    try:
        first = json.loads(first_line)
    except (ValueError, RecursionError):  # not JSON, or nested past the decoder's depth
        first = None
    if isinstance(first, dict):
        if "Action" in first and ("Package" in first or "Time" in first):
            return "go-test-json"
        if "type" in first and ("protocolVersion" in first or "time" in first):
            return "dart-json"
    keys = set(re.findall(r'"([A-Za-z_$][\w$]*)"\s*:', text[:20000]))
    if "results" in keys and "tool" in keys and ("summary" in keys or "tests" in keys):
        return "ctrf-json"
    if "version" in keys and "ci-fanout/results/v1" in text[:4000]:
        return "ci-fanout"
    if "stats" in keys and ("passes" in keys or "failures" in keys or "pending" in keys):
        return "mocha-json"
    if "testResults" in keys and ("numTotalTests" in keys or "assertionResults" in keys):
        return "jest-json"
    if "examples" in keys and ("summary" in keys or "version" in keys):
        return "rspec-json"
    return "json-unknown"


def detect_format(head: bytes) -> str:
    """Return a format name; names starting with ``unknown``/``empty`` are not parseable.

    ``head`` is the first ``HEAD_BYTES`` of the input.
    """
    head = _strip_bom(head)
    stripped = head.lstrip()
    if not stripped:
        return "empty"
    if stripped.startswith(b"<"):
        root = xml_root(stripped)
        if root is None:
            return "unknown-xml"
        if root == "assembly":
            return "xunit1" if re.search(rb"<class[\s>]", stripped) else "xunit2"
        return _XML_ROOTS.get(root, f"unknown-xml-root:{root}")
    if stripped[:1] in (b"{", b"["):
        return _json_kind(stripped)
    streamed = _event_stream_after_noise(stripped)
    if streamed:
        return streamed
    if _TAP.search(stripped[:4096]):
        return "tap"
    return "unknown"


def _event_stream_after_noise(head: bytes) -> str | None:
    """go test -json / Dart JSON whose first lines are plain text (``2>&1`` build errors)."""
    for line in head.split(b"\n")[:50]:
        if line.lstrip().startswith(b"{"):
            kind = _json_kind(line.strip())
            return kind if kind in ("go-test-json", "dart-json") else None
    return None
