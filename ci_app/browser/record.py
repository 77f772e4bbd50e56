"""The per-test record a shard's pytest writes beside its JUnit report, and its merge into
``results.json``.

JUnit has no place for a test's adapter, its timings, the metrics it reported or the
infrastructure retries it needed, so the plugin writes ``<junit name>.browser.json``
(``ci-fanout/browser-record/v1``) and the step that ingests the JUnit report merges it:

* metrics become :class:`~ci_app.model.results.Metric` rows named by
  :mod:`ci_app.model.browser` (``browser/<adapter class>/<metric>/<test id>``; a test without a
  browser gets ``test/<metric>/<test id>``), so the store, the trends, change-point detection
  and the comment see them like any other metric;
* a test whose *final* attempt failed because of the infrastructure becomes an ``error``
  whose message starts with ``infra:`` (reported apart from failures), and a retry that only
  the infrastructure caused never leaves the test marked flaky.

The record is written by the test process, i.e. by the code under test: it is read like any
other report — size-capped, every field checked, bad entries dropped with a warning, an
unreadable file kept as an error entry — and it can never turn a failure into a pass.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ci_app.browser.errors import infra_message
from ci_app.model.browser import (
    INFRA_KINDS,
    INFRA_METRIC_PREFIX,
    POOL_SCOPE,
    TIMINGS,
    metric_name,
    parse_metric_name,
)
from ci_app.model.results import (
    INFRA_PREFIX,
    Metric,
    Outcome,
    ReportFile,
    ResultSet,
    TestCase,
)

VERSION: Final = "ci-fanout/browser-record/v1"
FORMAT: Final = "ci-fanout-browser"
MAX_BYTES: Final = 16 * 1024 * 1024
MAX_TESTS: Final = 100_000
MAX_METRICS_PER_TEST: Final = 50
TEST_PREFIX: Final = "test/"
_TEXT_MAX: Final = 500


def record_path_for(junitxml: str | Path) -> Path:
    """``out/native-junit.xml`` -> ``out/native-junit.browser.json``."""
    p = Path(junitxml)
    return p.with_name(p.stem + ".browser.json")


class RecordWriter:
    """Collects the record during a pytest session; :meth:`flush` writes it atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.pool: dict[str, Any] | None = None

    def entry(self, test_id: str) -> dict[str, Any]:
        return self.tests.setdefault(
            test_id, {"attempts": 0, "timings": {}, "metrics": [], "infra": []}
        )

    def start_attempt(self, test_id: str) -> int:
        """A new attempt: timings and metrics describe the last attempt only."""
        e = self.entry(test_id)
        e["attempts"] += 1
        e["timings"] = {}
        e["metrics"] = []
        return int(e["attempts"])

    def attempt(self, test_id: str) -> int:
        return int(self.entry(test_id)["attempts"])

    def set_adapter(self, test_id: str, caps: Mapping[str, Any]) -> None:
        e = self.entry(test_id)
        e["adapter_class"] = caps.get("adapter_class")
        e["adapter"] = caps.get("adapter")
        e["hardware"] = caps.get("hardware")
        e["browser_version"] = caps.get("browser_version")

    def timing(self, test_id: str, name: str, ms: float, *, keep: str = "sum") -> None:
        timings = self.entry(test_id)["timings"]
        old = timings.get(name)
        if old is None:
            timings[name] = round(ms, 3)
        else:
            timings[name] = round(max(old, ms) if keep == "max" else old + ms, 3)

    def metric(
        self, test_id: str, name: str, value: float, *, unit: str = "", higher: bool = False
    ) -> None:
        metric_name("x", name, "x")  # raises ValueError for a bad name
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"metric {name!r} needs a finite number, not {value!r}")
        metrics = self.entry(test_id)["metrics"]
        metrics[:] = [m for m in metrics if m["name"] != name]
        if len(metrics) >= MAX_METRICS_PER_TEST:
            raise ValueError(f"more than {MAX_METRICS_PER_TEST} metrics in one test")
        metrics.append(
            {
                "name": name,
                "value": float(value),
                "unit": str(unit)[:32],
                "direction": "higher" if higher else "lower",
            }
        )

    def infra(self, test_id: str, kind: str, detail: str) -> None:
        e = self.entry(test_id)
        e["infra"].append({"kind": kind, "detail": detail[:_TEXT_MAX], "attempt": e["attempts"]})

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "pool": self.pool, "tests": self.tests}

    def flush(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        tmp.replace(self.path)


# -- reading and merging -----------------------------------------------------------------------


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(document, None), (None, None) when there is no file, or (None, why it is unusable)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc.strerror or exc}"
    if size > MAX_BYTES:
        return None, f"{path.name} is {size:,} bytes, over the {MAX_BYTES:,}-byte limit"
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{path.name} is not JSON: {str(exc)[:200]}"
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        return None, f"{path.name} is not a {VERSION} document"
    return doc, None


def _text(value: Any, limit: int = _TEXT_MAX) -> str:
    return " ".join(str(value).split())[:limit] if value is not None else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _events(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        ev
        for ev in entry.get("infra") or ()
        if isinstance(ev, dict)
        and ev.get("kind") in INFRA_KINDS
        and isinstance(ev.get("attempt"), int)
    ]


def _metrics_of(
    test_id: str, entry: Mapping[str, Any], warnings: list[str]
) -> tuple[list[Metric], str | None]:
    """The metrics of one test, and its adapter class (None: no browser)."""
    adapter = entry.get("adapter_class")
    out: list[Metric] = []

    def name_for(metric: str) -> str | None:
        try:
            if isinstance(adapter, str) and adapter:
                return metric_name(adapter, metric, test_id)
            metric_name("x", metric, test_id)
            return f"{TEST_PREFIX}{metric}/{test_id}"
        except ValueError as exc:
            warnings.append(f"{test_id[:200]}: {exc}")
            return None

    timings = entry.get("timings")
    if isinstance(timings, dict):
        for key in TIMINGS:
            v = _number(timings.get(key))
            if v is not None and v >= 0 and (name := name_for(key)):
                out.append(Metric(name=name, value=round(v, 3), unit="ms", direction="lower"))
    metrics = entry.get("metrics")
    if isinstance(metrics, list):
        for m in metrics[:MAX_METRICS_PER_TEST]:
            if not isinstance(m, dict):
                continue
            v = _number(m.get("value"))
            raw = m.get("name")
            if v is None or not isinstance(raw, str) or raw in TIMINGS:
                warnings.append(f"{test_id[:200]}: metric {str(raw)[:60]!r} dropped")
                continue
            if (name := name_for(raw)) is None:
                continue
            direction = "higher" if m.get("direction") == "higher" else "lower"
            out.append(
                Metric(name=name, value=v, unit=_text(m.get("unit"), 32), direction=direction)
            )
    kinds = Counter(str(ev["kind"]) for ev in _events(entry))
    for kind, n in sorted(kinds.items()):
        if (name := name_for(f"{INFRA_METRIC_PREFIX}{kind}")) is not None:
            out.append(Metric(name=name, value=float(n), unit="", direction="lower"))
    return out, adapter if isinstance(adapter, str) and adapter else None


def _apply_infra(case: TestCase, entry: Mapping[str, Any]) -> TestCase:
    """The case as the infrastructure left it (see the module docstring)."""
    events = _events(entry)
    if not events:
        return case
    attempts = entry.get("attempts")
    final = (
        attempts
        if isinstance(attempts, int) and attempts > 0
        else max(ev["attempt"] for ev in events)
    )
    last = [ev for ev in events if ev["attempt"] == final]
    if case.outcome in (Outcome.FAILED, Outcome.ERROR) and last:
        ev = last[-1]
        message = infra_message(str(ev["kind"]), _text(ev.get("detail")))
        earlier = len(events) - len(last)
        if earlier:
            message += f" (again on the retry on a fresh browser; {earlier} earlier)"
        details = "\n\n".join(x for x in (case.message, case.details) if x) or None
        return replace(case, outcome=Outcome.ERROR, message=message, details=details, flaky=False)
    if case.flaky and case.outcome is Outcome.PASSED:
        # every failed attempt before the pass was the infrastructure's: not flaky
        failed_attempts = max(0, final - 1)
        if len(events) >= failed_attempts:
            return replace(case, flaky=False)
    return case


def _pool_metrics(pool: Any, adapter: str | None) -> list[Metric]:
    """Shard figures: mean launch time, Chromium major version."""
    if not isinstance(pool, dict) or adapter is None:
        return []
    raw_caps = pool.get("capabilities")
    caps: dict[str, Any] = raw_caps if isinstance(raw_caps, dict) else {}
    named = caps.get("adapter_class")
    cls: str = named if isinstance(named, str) and named else adapter
    raw_launches = pool.get("launch_ms")
    numbers = [_number(x) for x in (raw_launches if isinstance(raw_launches, list) else [])[:1000]]
    launches = [v for v in numbers if v is not None and v >= 0]
    figures: list[tuple[str, float, str, str]] = []
    if launches:
        figures.append(("launch_ms", round(sum(launches) / len(launches), 1), "ms", "lower"))
    major = str(caps.get("browser_version") or "").split(".", 1)[0]
    if major.isdigit() and len(major) < 6:
        figures.append(("chromium", float(major), "", "higher"))
    try:
        return [
            Metric(name=metric_name(cls, name, POOL_SCOPE), value=v, unit=u, direction=d)
            for name, v, u, d in figures
        ]
    except ValueError:
        return []


def merge_record(rs: ResultSet, doc: Mapping[str, Any], *, source: str = "") -> ResultSet:
    """``rs`` with the record's metrics added and its infrastructure outcomes applied."""
    warnings: list[str] = []
    tests = doc.get("tests")
    if not isinstance(tests, dict):
        tests = {}
        warnings.append("no 'tests' object")
    if len(tests) > MAX_TESTS:
        warnings.append(f"{len(tests):,} tests in the record; the first {MAX_TESTS:,} kept")
    entries = {str(k): v for k, v in list(tests.items())[:MAX_TESTS] if isinstance(v, dict) and k}
    metrics: list[Metric] = []
    adapter_seen: str | None = None
    for test_id, entry in entries.items():
        found, adapter = _metrics_of(test_id, entry, warnings)
        metrics.extend(found)
        adapter_seen = adapter_seen or adapter
    metrics.extend(_pool_metrics(doc.get("pool"), adapter_seen))
    cases = tuple(_apply_infra(c, entries[c.id]) if c.id in entries else c for c in rs.tests)
    files = rs.files
    if warnings:
        files = (
            *files,
            ReportFile(path=source, format=FORMAT, warnings=tuple(w[:300] for w in warnings[:20])),
        )
    return replace(rs, tests=cases, metrics=(*rs.metrics, *metrics), files=files)


def merge_record_file(rs: ResultSet, path: Path) -> ResultSet:
    """Merge the record at ``path`` (nothing to do when there is none; an unusable one is kept
    as an error entry in ``files``, the results are left as they were)."""
    doc, error = read_record(path)
    if error is not None:
        return replace(
            rs, files=(*rs.files, ReportFile(path=str(path), format=FORMAT, error=error))
        )
    if doc is None:
        return rs
    return merge_record(rs, doc, source=str(path))


def is_infra_case(case: TestCase) -> bool:
    return case.outcome is Outcome.ERROR and (case.message or "").startswith(INFRA_PREFIX)


def browser_metric_names(rs: ResultSet) -> list[str]:
    return [m.name for m in rs.metrics if parse_metric_name(m.name) is not None]


__all__ = [
    "FORMAT",
    "VERSION",
    "RecordWriter",
    "browser_metric_names",
    "is_infra_case",
    "merge_record",
    "merge_record_file",
    "read_record",
    "record_path_for",
]
