"""The pytest plugin's journal: one JSON line per finished test, written as it finishes.

A test process killed mid-run (SIGKILL, OOM, a runner going away) never writes its JUnit report;
its journal still holds every test it finished. :func:`merge_journal` adds those to the shard's
results, so a killed shard loses at most the test it was running. The journal is written by the
code under test's process: every line is read as untrusted input (bad lines are skipped, strings
clipped, unknown outcomes refused).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ci_app.model.results import Outcome, ReportFile, ResultSet, TestCase, summarize

JOURNAL_FILE: Final = "journal.jsonl"
JOURNAL_FORMAT: Final = "ci-fanout-journal"
_TEXT_LIMIT: Final = 4000
_OUTCOMES: Final = {o.value: o for o in Outcome}


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def read_journal(lines: Iterable[str]) -> Iterator[TestCase]:
    """Test cases from journal lines; malformed lines are skipped. The last line for an id
    wins (a test re-run in the same process, e.g. by a fallback, reports again)."""
    seen: dict[str, TestCase] = {}
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill
        if not isinstance(d, dict):
            continue
        test_id = _text(d.get("id"), 2000)
        outcome = _OUTCOMES.get(str(d.get("outcome")))
        if test_id is None or outcome is None:
            continue
        duration = d.get("duration_s")
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            duration = 0.0
        duration = float(duration) if math.isfinite(duration) and duration >= 0 else 0.0
        line_no = d.get("line")
        retries = d.get("retries")
        seen.pop(test_id, None)
        seen[test_id] = TestCase(
            id=test_id,
            name=test_id.rsplit("::", 1)[-1],
            file=_text(d.get("file"), 1000),
            line=line_no if isinstance(line_no, int) and not isinstance(line_no, bool) else None,
            outcome=outcome,
            duration_s=duration,
            message=_text(d.get("message")),
            retries=retries if isinstance(retries, int) and 0 <= retries < 1000 else 0,
            flaky=d.get("flaky") is True,
        )
    yield from seen.values()


def merge_journal(results: ResultSet, journal: Path, *, why: str) -> tuple[ResultSet, int]:
    """``results`` plus the journal's tests it does not hold; returns (merged, added).

    ``why`` says why the journal was needed (e.g. ``"the test command was killed by signal 9
    (SIGKILL)"``); it is kept as a warning on the journal's file entry.
    """
    try:
        with journal.open(encoding="utf-8", errors="replace") as fh:
            cases = list(read_journal(fh))
    except OSError:
        return results, 0
    have = {t.id for t in results.tests}
    added = tuple(c for c in cases if c.id not in have)
    entry = ReportFile(
        path=str(journal),
        format=JOURNAL_FORMAT,
        summary=summarize(added),
        warnings=(f"{why}; {len(added)} finished test result(s) recovered from the journal",),
    )
    return (
        replace(results, tests=(*results.tests, *added), files=(*results.files, entry)),
        len(added),
    )
