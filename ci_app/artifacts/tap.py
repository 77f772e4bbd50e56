"""TAP (Test Anything Protocol) versions 12, 13 and 14.

Test points (``ok``/``not ok`` N - description) become cases. ``# SKIP`` and
``# TODO`` directives are skipped (a TODO test is expected to fail).
``Bail out!`` ends the stream with an ``error`` case; a plan (``1..N``) that
more tests were promised than ran adds one ``error`` case, because the
missing tests did not pass. YAML diagnostic blocks (``---`` … ``...``) give
the message (``message``/``error``), details (``stack``, the rest of the
block), duration (``duration_ms``) and location.

Subtests (indented four spaces per level) are counted the way the producer
counts them:

* node's test runner (recognised by its ``duration_ms`` diagnostics or its
  ``# tests N`` trailer) counts every test at every level, and a
  ``describe`` suite (``type: 'suite'``) is not a test. Cases are named
  ``suite > … > test``. ``cancelledByParent`` and ``hookFailed`` are errors; a
  suite that failed (a ``before``/``after`` hook) while none of its tests
  failed gives one ``error`` case named after the suite.
* everything else (Test::More/``prove``, TAP 14) counts only the top level, as
  TAP::Harness does; failing subtests are listed in the parent's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import yaml

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import CaseBuilder, iter_lines, join_texts, text_of
from ci_app.model.results import Outcome, Summary, TestCase

_POINT = re.compile(r"^(not\s+)?ok\b\s*(\d+)?\s*(?:-\s*)?(.*)$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"(?<!\\)#\s*(skip\w*|todo\w*|time=\S+)\b\s*(.*)$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_BAIL = re.compile(r"^Bail out!\s*(.*)$", re.IGNORECASE)
_NODE_TRAILER = re.compile(
    r"^#\s*(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms)\s+([\d.]+)\s*$"
)
_TIME = re.compile(r"time=([\d.]+)(ms|s)?", re.IGNORECASE)
_MAX_YAML_BYTES = 1024 * 1024
_MAX_COMMENTS = 200


@dataclass(slots=True)
class _Point:
    ok: bool
    number: int | None
    description: str
    directive: str | None = None  # "skip" | "todo"
    reason: str | None = None
    time_s: float | None = None
    diag: dict[str, Any] = field(default_factory=dict)
    diag_text: str | None = None
    comments: list[str] = field(default_factory=list)
    children: list[_Point] = field(default_factory=list)
    child_plan: int | None = None


@dataclass(slots=True)
class _Stream:
    top: list[_Point] = field(default_factory=list)
    plan: int | None = None
    skip_all: str | None = None
    bail: str | None = None
    trailer: dict[str, float] = field(default_factory=dict)
    version: int | None = None


def parse_tap(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a TAP stream."""
    parsed = _read(iter_lines(stream, "TAP stream"), ctx)
    if not parsed.top and parsed.plan is None and parsed.bail is None:
        raise ReportParseError("no TAP test lines or plan found")
    node = bool(parsed.trailer) or _any_node_diag(parsed.top)
    ctx.tool = "node:test" if node else "tap"
    if parsed.trailer:
        t = parsed.trailer
        ctx.declared = Summary(
            tests=int(t.get("tests", 0)),
            passed=int(t.get("pass", 0)),
            failed=int(t.get("fail", 0)),
            errors=int(t.get("cancelled", 0)),
            skipped=int(t.get("skipped", 0) + t.get("todo", 0)),
        )
        if "duration_ms" in t:
            ctx.duration_s = t["duration_ms"] / 1000.0
    if parsed.skip_all is not None and not parsed.top:
        ctx.warn(f"whole file skipped: {parsed.skip_all or 'no reason given'}")
    return _emit(parsed, node, CaseBuilder(ctx))


# -- reading ---------------------------------------------------------------


def _read(lines: Iterator[str], ctx: ParseContext) -> _Stream:
    out = _Stream()
    pending: dict[int, list[_Point]] = {}
    plans: dict[int, int] = {}
    last: _Point | None = None
    last_level = 0
    yaml_lines: list[str] | None = None
    yaml_size = 0
    for raw in lines:
        line = raw.expandtabs(4)
        stripped = line.strip()
        if yaml_lines is not None:
            if stripped == "...":
                if last is not None:
                    _attach_yaml(last, yaml_lines, ctx)
                yaml_lines = None
            else:
                yaml_size += len(line)
                if yaml_size <= _MAX_YAML_BYTES:
                    yaml_lines.append(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        level = indent // 4
        if stripped == "---" and last is not None and indent > last_level * 4:
            yaml_lines, yaml_size = [], 0
            continue
        bail = _BAIL.match(stripped)
        if bail:
            out.bail = bail.group(1).strip() or "(no reason given)"
            break
        point = _POINT.match(stripped)
        if point:
            p = _make_point(point)
            deeper = [lvl for lvl in pending if lvl > level]
            for lvl in sorted(deeper):
                p.children.extend(pending.pop(lvl))
            p.child_plan = plans.pop(level + 1, None)
            for lvl in [lvl for lvl in plans if lvl > level + 1]:
                plans.pop(lvl)
            pending.setdefault(level, []).append(p)
            last, last_level = p, level
            continue
        plan = _PLAN.match(stripped)
        if plan:
            count = int(plan.group(1))
            if level == 0:
                out.plan = count
                if count == 0:
                    out.skip_all = (
                        (plan.group(2) or "").removeprefix("SKIP").removeprefix("skip").strip()
                    )
            else:
                plans[level] = count
            continue
        if stripped.startswith("TAP version"):
            try:
                out.version = int(stripped.split()[-1])
            except ValueError:
                ctx.warn(f"unreadable TAP version line: {stripped[:80]!r}")
            continue
        if stripped.startswith("#"):
            trailer = _NODE_TRAILER.match(stripped)
            if trailer and level == 0:
                out.trailer[trailer.group(1)] = float(trailer.group(2))
            elif (
                last is not None
                and not last.ok
                and not stripped.lower().startswith("# subtest")
                and len(last.comments) < _MAX_COMMENTS
            ):
                last.comments.append(stripped[1:].strip())
    if yaml_lines is not None and last is not None:
        _attach_yaml(last, yaml_lines, ctx)
    # Points left at deeper levels belong to a parent that never printed its line.
    out.top = pending.pop(0, [])
    for lvl in sorted(pending):
        out.top.extend(pending[lvl])
    return out


def _make_point(m: re.Match[str]) -> _Point:
    rest = m.group(3) or ""
    directive = reason = None
    time_s = None
    d = _DIRECTIVE.search(rest)
    if d:
        word = d.group(1).lower()
        description = rest[: d.start()].rstrip()
        if word.startswith("time="):
            t = _TIME.match(word)
            if t:
                time_s = float(t.group(1)) / (1000.0 if (t.group(2) or "ms") == "ms" else 1.0)
        else:
            directive = "skip" if word.startswith("skip") else "todo"
            reason = d.group(2).strip() or None
    else:
        description = rest.strip()
    return _Point(
        ok=m.group(1) is None,
        number=int(m.group(2)) if m.group(2) else None,
        description=description.replace("\\#", "#").strip(),
        directive=directive,
        reason=reason,
        time_s=time_s,
    )


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (no "billion laughs" in diagnostics)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not allowed in TAP diagnostics")
        return super().compose_node(parent, index)


def _attach_yaml(point: _Point, lines: list[str], ctx: ParseContext) -> None:
    if not lines:
        return
    margin = min((len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip()), default=0)
    text = "\n".join(ln[margin:] for ln in lines)
    point.diag_text = text
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        ctx.warn(
            f"unreadable YAML diagnostics after test {point.number}: {str(exc).splitlines()[0]}"
        )
        return
    if isinstance(data, Mapping):
        point.diag = {str(k): v for k, v in data.items()}


def _any_node_diag(points: list[_Point]) -> bool:
    stack = list(points)
    while stack:
        p = stack.pop()
        if "duration_ms" in p.diag or p.diag.get("type") == "suite":
            return True
        stack.extend(p.children)
    return False


# -- emitting --------------------------------------------------------------


def _outcome(p: _Point) -> Outcome:
    if p.directive is not None:
        return Outcome.SKIPPED
    if p.ok:
        return Outcome.PASSED
    kind = str(p.diag.get("failureType") or "")
    if kind in ("cancelledByParent", "hookFailed"):
        return Outcome.ERROR
    return Outcome.FAILED


def _message(p: _Point) -> str | None:
    if p.directive is not None:
        return p.reason
    diag = p.diag
    for key in ("message", "error", "msg"):
        if diag.get(key) is not None:
            return text_of(diag[key])
    return p.comments[0] if p.comments else None


def _details(p: _Point) -> str | None:
    if p.ok and p.directive is None:
        return None
    stack = text_of(p.diag.get("stack"))
    rest = p.diag_text if p.diag_text and not stack else None
    return join_texts([stack, rest, "\n".join(p.comments) or None])


def _location(p: _Point) -> tuple[str | None, int | None]:
    loc = p.diag.get("location")
    if isinstance(loc, str):
        parts = loc.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit():
            return parts[0], int(parts[1])
    at = p.diag.get("at")
    if isinstance(at, Mapping):
        line = at.get("line")
        return text_of(at.get("file")), line if isinstance(line, int) else None
    return None, None


def _duration(p: _Point) -> float:
    ms = p.diag.get("duration_ms")
    if isinstance(ms, int | float):
        return float(ms) / 1000.0
    return p.time_s or 0.0


def _case(p: _Point, path: list[str], builder: CaseBuilder, **overrides: Any) -> TestCase:
    file, line = _location(p)
    fields: dict[str, Any] = {
        "name": p.description or (f"test {p.number}" if p.number is not None else None),
        "suite": " > ".join(path) or None,
        "file": file,
        "line": line,
        "outcome": _outcome(p),
        "duration_s": _duration(p),
        "message": _message(p),
        "details": _details(p),
    }
    fields.update(overrides)
    return builder.case(**fields)


def _emit(parsed: _Stream, node: bool, builder: CaseBuilder) -> Iterator[TestCase]:
    if node:
        for p in parsed.top:
            yield from _emit_node(p, [], builder)
    else:
        for p in parsed.top:
            yield _emit_flat(p, builder)
    ran = len(parsed.top)
    if parsed.bail is not None:
        yield builder.case(name="Bail out!", outcome=Outcome.ERROR, message=parsed.bail)
    elif parsed.plan is not None and parsed.plan > ran:
        yield builder.case(
            name="[plan]",
            outcome=Outcome.ERROR,
            message=f"planned {parsed.plan} tests but only {ran} ran",
        )
    elif parsed.plan is None and parsed.top:
        builder.ctx.warn("no plan line (1..N): the run may have been cut short")


def _emit_node(p: _Point, path: list[str], builder: CaseBuilder) -> Iterator[TestCase]:
    if p.diag.get("type") == "suite":
        inner = list(_children(p, path, builder))
        cause = None if p.ok else _message(p)
        if cause:  # say why tests under a failed hook were cancelled
            inner = [
                replace(c, message=f"{c.message} (suite failed: {cause})")
                if c.outcome is Outcome.ERROR and str(p.diag.get("failureType")) == "hookFailed"
                else c
                for c in inner
            ]
        yield from inner
        if not p.ok and not any(c.outcome in (Outcome.FAILED, Outcome.ERROR) for c in inner):
            yield _case(p, path, builder, outcome=Outcome.ERROR)
        return
    yield _case(p, path, builder)
    yield from _children(p, path, builder)


def _children(p: _Point, path: list[str], builder: CaseBuilder) -> Iterator[TestCase]:
    sub = [*path, p.description or f"test {p.number}"]
    for child in p.children:
        yield from _emit_node(child, sub, builder)


def _emit_flat(p: _Point, builder: CaseBuilder) -> TestCase:
    if p.ok or not p.children:
        return _case(p, [], builder)
    failing = [c for c in p.children if not c.ok and c.directive is None]
    names = ", ".join(c.description or f"test {c.number}" for c in failing[:20])
    own = _message(p)
    message = join_texts([own, f"failed subtests: {names}" if names else None])
    child_details = [
        join_texts([f"not ok {c.number or ''} - {c.description}", _message(c), _details(c)])
        for c in failing
    ]
    return _case(
        p, [], builder, message=message, details=join_texts([_details(p), *child_details], "\n\n")
    )
