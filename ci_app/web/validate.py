"""Checks on what clients send, so that bad input is a 400 with a reason and never a 500.

Request bodies are read with a cap that also holds for chunked bodies (no Content-Length),
JSON is parsed with a bound on nesting, result sets are checked field by field before any of
it reaches the store, and runner load samples are reduced to the numbers the app shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from ci_app.errors import InputError
from ci_app.model.results import ResultSet

__all__ = [
    "MAX_JSON_DEPTH",
    "check_resultset",
    "http_url",
    "json_depth",
    "parse_json",
    "read_body",
    "sanitize_load",
]

#: deepest JSON nesting accepted in webhook and API bodies (real payloads stay under 12)
MAX_JSON_DEPTH = 64
INT32_MAX = 2**31 - 1
_MAX_GPUS = 64
_MAX_ID = 100_000  # characters of a test id, name, file or class
_READ_CHUNK = 64 * 1024


def read_body(request: Request, cap: int) -> bytes:
    """The whole body, at most ``cap`` bytes, else :class:`RequestEntityTooLarge` (413).

    A declared Content-Length over the cap is refused before reading anything; a chunked
    body is read until one byte past the cap (Werkzeug's own limit on streams silently
    truncates at the cap instead). Read in 64 KiB pieces: one ``read(cap)`` would allocate
    the whole cap for every request, and may return less than the body holds.
    """
    if request.content_length is not None and request.content_length > cap:
        raise RequestEntityTooLarge(f"body over {cap} bytes")
    request.max_content_length = cap + 1
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise RequestEntityTooLarge(f"body over {cap} bytes")
        chunks.append(chunk)


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counting stops once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def parse_json(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """UTF-8 JSON with at most ``max_depth`` levels of nesting; :class:`InputError` else.

    ``NaN`` and ``Infinity`` are refused (not JSON, and not a number anything here can use).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise InputError(f"body is not JSON: {exc}") from None
    if json_depth(value, max_depth) > max_depth:
        raise InputError(f"JSON nested deeper than {max_depth} levels")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _text(value: Any, where: str, *, limit: int = _MAX_ID) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InputError(f"{where} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"{where} is longer than {limit} characters")


def _int(value: Any, where: str, *, low: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where} must be an integer, got {type(value).__name__}")
    if not low <= value <= INT32_MAX:
        raise InputError(f"{where} = {value} is out of range {low}..{INT32_MAX}")


def _number(value: Any, where: str, *, low: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (low is not None and value < low):
        raise InputError(f"{where} = {value!r} is not a usable number")


def check_resultset(rs: ResultSet) -> None:
    """Every field of a parsed ``results.json`` has the type and range the store keeps.

    :meth:`ResultSet.from_dict` is lenient (it is also the reader of files on disk); what the
    server stores must be exact, or DuckDB/Arrow fail mid-insert.
    """
    r = rs.run
    for name in ("run_id", "shard_id", "repo", "provider", "pipeline_id", "commit", "branch",
                 "base_commit", "runner_name", "profile_hash", "started_at", "finished_at",
                 "job_url"):  # fmt: skip
        _text(getattr(r, name), f"run.{name}", limit=2000)
    _int(r.pr, "run.pr", low=0)
    if not isinstance(r.runner_labels, tuple) or len(r.runner_labels) > 1000:
        raise InputError("run.runner.labels must be a list of at most 1000 labels")
    for label in r.runner_labels:
        _text(label, "run.runner.labels[]", limit=200)
    _number(rs.duration_s, "summary.duration_s", low=0)
    _text(rs.tool, "tool", limit=200)
    _check_tests(rs)
    for i, m in enumerate(rs.metrics):
        _text(m.name, f"metrics[{i}].name", limit=500)
        _number(m.value, f"metrics[{i}].value")
        _text(m.unit, f"metrics[{i}].unit", limit=100)
        if m.direction not in ("lower", "higher"):
            raise InputError(f"metrics[{i}].direction must be 'lower' or 'higher'")


_TEXT_TYPES: frozenset[type] = frozenset({str, type(None)})
_INT_TYPES: frozenset[type] = frozenset({int, type(None)})
_NUMBER_TYPES: frozenset[type] = frozenset({int, float})


def _check_tests(rs: ResultSet) -> None:
    """Column by column (a result set may hold a million cases): the common case costs a
    set of types per column; only a column with a problem is walked for the message."""
    tests = rs.tests
    columns: tuple[tuple[str, frozenset[type], int], ...] = (
        ("id", _TEXT_TYPES, _MAX_ID),
        ("name", _TEXT_TYPES, _MAX_ID),
        ("suite", _TEXT_TYPES, _MAX_ID),
        ("classname", _TEXT_TYPES, _MAX_ID),
        ("file", _TEXT_TYPES, _MAX_ID),
        ("message", _TEXT_TYPES, 10_000_000),
        ("details", _TEXT_TYPES, 10_000_000),
        ("stdout", _TEXT_TYPES, 10_000_000),
        ("stderr", _TEXT_TYPES, 10_000_000),
    )
    for name, types, limit in columns:
        col = [getattr(t, name) for t in tests]
        if not {type(v) for v in col} <= types or any(v is not None and len(v) > limit
                                                         for v in col):  # fmt: skip
            for i, v in enumerate(col):
                _text(v, f"tests[{i}].{name}", limit=limit)
    for name in ("line", "retries"):
        col = [getattr(t, name) for t in tests]
        if not {type(v) for v in col} <= _INT_TYPES or any(
            v is not None and not 0 <= v <= INT32_MAX for v in col
        ):
            for i, v in enumerate(col):
                _int(v, f"tests[{i}].{name}")
    durations = [t.duration_s for t in tests]
    if not {type(v) for v in durations} <= _NUMBER_TYPES or not all(
        math.isfinite(v) and v >= 0 for v in durations
    ):
        for i, v in enumerate(durations):
            _number(v, f"tests[{i}].duration_s", low=0)


def sanitize_load(load: Any) -> dict[str, Any] | None:
    """The runner load sample reduced to the finite numbers the app uses (a heartbeat's
    ``load`` is client data: whatever else it holds is dropped, so a stored sample stays a
    few hundred bytes however large the request was)."""
    if not isinstance(load, Mapping):
        return None
    out: dict[str, Any] = {}
    for key in ("cpu_percent", "memory_used_bytes", "memory_total_bytes", "disk_free_bytes"):
        v = load.get(key)
        if _finite(v):
            out[key] = v
    gpus = load.get("gpus")
    if isinstance(gpus, list):
        kept = []
        for g in gpus[:_MAX_GPUS]:
            if not isinstance(g, Mapping):
                continue
            kept.append({k: v for k, v in g.items() if isinstance(k, str) and len(k) <= 40
                         and _finite(v)})  # fmt: skip
        out["gpus"] = kept
    return out


_HEALTH = ("ok", "degraded")


def sanitize_health(health: Any) -> dict[str, Any] | None:
    """A heartbeat's ``health`` (the runner's browser pool: ``ok`` or ``degraded`` after
    repeated browser crashes), reduced to a status, a count and a few short reasons."""
    if not isinstance(health, Mapping) or health.get("status") not in _HEALTH:
        return None
    raw: Any = health.get("browser_crashes")
    crashes = int(raw) if _finite(raw) and raw >= 0 else 0
    reasons = health.get("reasons")
    return {
        "status": health["status"],
        "browser_crashes": crashes,
        "reasons": [str(r)[:200] for r in reasons[:5]] if isinstance(reasons, list) else [],
    }


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def http_url(url: Any) -> str | None:
    """``url`` when it is an absolute http(s) URL (safe as a link target), else ``None``."""
    if not isinstance(url, str) or len(url) > 2000:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()
