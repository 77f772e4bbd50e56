"""Metric values and their trends over runs, and per-test duration series (the report's
regression checks). :class:`~ci_app.store.results.Results` inherits these queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ci_app.reporting.data import MetricValue, SeriesPoint
from ci_app.store.database import Database

__all__ = ["Trends", "iso"]


def iso(value: Any) -> str | None:
    """A DuckDB ``TIMESTAMP`` as ISO 8601 text (None when absent)."""
    return value.isoformat() if isinstance(value, datetime) else None


class Trends:
    """Queries over the ``metrics`` table and test durations across runs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def metrics(self, run_ids: Sequence[str]) -> list[MetricValue]:
        """Metric values of runs (mean over shards of the same runner class)."""
        rows = self._db.all(
            "SELECT m.name, avg(m.value), any_value(m.unit), any_value(m.direction), "
            "s.runner_class FROM metrics m JOIN shards s USING (run_id, shard_id) "
            "WHERE m.run_id IN (SELECT unnest(?)) GROUP BY m.name, s.runner_class "
            "ORDER BY m.name, s.runner_class",
            [list(run_ids)],
        )
        return [
            MetricValue(
                name=r[0],
                value=float(r[1]),
                unit=r[2] or "",
                direction=r[3] or "lower",
                runner_class=r[4],
            )
            for r in rows
        ]

    def metric_series(
        self,
        names: Sequence[str],
        run_ids: Sequence[str],
    ) -> dict[tuple[str, str], list[SeriesPoint]]:
        """History of metrics over the given runs (ordered as given), per (name, runner class)."""
        rows = self._db.all(
            "SELECT m.name, s.runner_class, m.run_id, any_value(r.commit), avg(m.value), "
            "any_value(r.started_at) FROM metrics m JOIN shards s USING (run_id, shard_id) "
            "JOIN runs r ON r.run_id = m.run_id "
            "WHERE m.name IN (SELECT unnest(?)) AND m.run_id IN (SELECT unnest(?)) "
            "GROUP BY m.name, s.runner_class, m.run_id",
            [list(names), list(run_ids)],
        )
        order = {r: i for i, r in enumerate(run_ids)}
        out: dict[tuple[str, str], list[SeriesPoint]] = {}
        for name, rclass, run_id, commit, value, started in sorted(
            rows, key=lambda r: (r[0], r[1], order[r[2]])
        ):
            out.setdefault((name, rclass), []).append(
                SeriesPoint(
                    run_id=run_id, commit=commit, value=float(value), started_at=iso(started)
                )
            )
        return out

    def test_duration_series(
        self, test_ids: Sequence[str], run_ids: Sequence[str]
    ) -> dict[str, list[SeriesPoint]]:
        """Per-test duration (summed over shards) across runs, ordered as ``run_ids``."""
        rows = self._db.all(
            "SELECT t.test_id, t.run_id, any_value(r.commit), sum(t.duration_s) "
            "FROM test_results t JOIN runs r USING (run_id) "
            "WHERE t.test_id IN (SELECT unnest(?)) AND t.run_id IN (SELECT unnest(?)) "
            "AND t.outcome = 'passed' GROUP BY t.test_id, t.run_id",
            [list(test_ids), list(run_ids)],
        )
        order = {r: i for i, r in enumerate(run_ids)}
        out: dict[str, list[SeriesPoint]] = {}
        for test_id, run_id, commit, value in sorted(rows, key=lambda r: (r[0], order[r[1]])):
            out.setdefault(test_id, []).append(
                SeriesPoint(run_id=run_id, commit=commit, value=float(value or 0.0))
            )
        return out
