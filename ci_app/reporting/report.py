"""The report pipeline: store → comparison, flaky, regressions, trends → :class:`Report`.

``build_report`` only *calls* a store (anything with the methods of
:class:`ResultStore`); it imports no database driver, so it stays testable
with a fake and keeps ``reporting`` pure.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ci_app.errors import StoreError
from ci_app.model.browser import parse_metric_name
from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD, SYNTHETIC_SHARDS, Summary
from ci_app.reporting.changepoint import check_value, detect_change_points
from ci_app.reporting.compare import (
    Comparison,
    FailureItem,
    FlakyItem,
    HardwareItem,
    compare_runs,
)
from ci_app.reporting.data import (
    FAILING,
    CaseRows,
    HistoryRows,
    MetricValue,
    RunMeta,
    RunTotals,
    SeriesPoint,
    ShardMeta,
)
from ci_app.reporting.flaky import classify_history

DEFAULT_BASE_BRANCHES = ("main", "master", "trunk", "develop")


class ResultStore(Protocol):
    """What the report needs from the store (``ci_app.store.results.Results`` provides it)."""

    def run(self, run_id: str) -> RunMeta | None: ...
    def runs(
        self,
        *,
        branch: str | None = ...,
        commit: str | None = ...,
        repo: str | None = ...,
        before_seq: int | None = ...,
        exclude_prs: bool = ...,
        limit: int = ...,
    ) -> list[RunMeta]: ...
    def shards(self, run_ids: Sequence[str]) -> list[ShardMeta]: ...
    def cases(self, run_ids: Sequence[str], *, details: bool = ...) -> CaseRows: ...
    def history(
        self,
        *,
        branch: str | None = ...,
        repo: str | None = ...,
        test_ids: Sequence[str] | None = ...,
        only_unstable: bool = ...,
        max_runs: int = ...,
        before_seq: int | None = ...,
    ) -> HistoryRows: ...
    def run_totals(self, run_ids: Sequence[str]) -> list[RunTotals]: ...
    def metrics(self, run_ids: Sequence[str]) -> list[MetricValue]: ...
    def metric_series(
        self, names: Sequence[str], run_ids: Sequence[str]
    ) -> dict[tuple[str, str], list[SeriesPoint]]: ...
    def test_duration_series(
        self, test_ids: Sequence[str], run_ids: Sequence[str]
    ) -> dict[str, list[SeriesPoint]]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Counts(Summary):
    """A report's headline: the :class:`Summary` of the shards that ran, each test once, with
    ``duration_s`` their machine time (the sum of the shards' wall times)."""

    wall_s: float = 0.0  # the longest shard, from its own start to end
    #: planned tests no runner could take (no hardware), not counted in ``tests``
    not_run: int = 0
    #: planned tests no shard reported (their shard died), not counted in ``tests``
    lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Summary's keys, the planned-but-missing tests next to ``tests``, times rounded to the
        # millisecond (a repeated key keeps its first place). Summary.to_dict, not super():
        # zero-argument super() fails in a slots dataclass.
        counts = Summary.to_dict(self)
        return {
            "tests": counts.pop("tests"),
            "not_run": self.not_run,
            "lost": self.lost,
            **counts,
            "duration_s": round(self.duration_s, 3),
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Regression:
    what: str
    kind: str  # suite_duration | test_duration | metric
    before: float
    after: float
    change: float  # relative, signed (after - before) / before
    confidence: float
    since_commit: str | None
    scope: str  # "this change" | "base branch"
    unit: str = "s"
    direction: str = "lower"
    runner_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "kind": self.kind,
            "before": round(self.before, 6),
            "after": round(self.after, 6),
            "change": round(self.change, 4),
            "confidence": round(self.confidence, 4),
            "since_commit": self.since_commit,
            "scope": self.scope,
            "unit": self.unit,
            "direction": self.direction,
            "runner_class": self.runner_class,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricTrend:
    name: str
    runner_class: str
    unit: str
    direction: str
    points: tuple[SeriesPoint, ...]  # base history then this run (last)
    change_points: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    run: RunMeta
    base: RunMeta | None
    base_reason: str
    base_branch: str | None
    head: Counts
    base_counts: Counts | None
    comparison: Comparison
    regressions: tuple[Regression, ...]
    trend: tuple[RunTotals, ...]  # base-branch history, oldest first, then this run
    metric_trends: tuple[MetricTrend, ...]
    runner_classes: tuple[tuple[str, Counts], ...]
    slowest: tuple[tuple[str, float, float | None], ...]  # test, duration, base duration
    history_runs: int
    dashboard_url: str | None = None

    @property
    def new_failures(self) -> tuple[FailureItem, ...]:
        return self.comparison.new_failures

    @property
    def flaky(self) -> tuple[FlakyItem, ...]:
        return self.comparison.flaky

    @property
    def hardware_specific(self) -> tuple[HardwareItem, ...]:
        return self.comparison.hardware_specific

    @property
    def ok(self) -> bool:
        """No new failures, nothing still failing, no infra failure, no regression."""
        c = self.comparison
        return (
            not (
                c.new_failures
                or c.still_failing
                or c.infra_shards
                or c.lost
                or c.infra_errors
                or self.regressions
            )
            and not self.empty
        )

    @property
    def empty(self) -> bool:
        """No test ran (all shards died, or nothing could be placed): never green."""
        return self.head.tests == 0

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        summary: dict[str, Any] = {
            **self.head.to_dict(),
            "run_id": self.run.run_id,
            "commit": self.run.commit,
            "branch": self.run.branch,
            "pr": self.run.pr,
            "base": None
            if self.base is None
            else {"run_id": self.base.run_id, "commit": self.base.commit, "how": self.base_reason},
            "deltas": None if self.base_counts is None else _deltas(self.head, self.base_counts),
            "new_failures": len(c.new_failures),
            "still_failing": len(c.still_failing),
            "fixed": len(c.fixed),
            "flaky": len(c.flaky),
            "hardware_specific": len(c.hardware_specific),
            "regressions": len(self.regressions),
            "infra_failed_shards": [s.shard_id for s in c.infra_shards],
            "lost": len(c.lost),
            "infra_errors": len(c.infra_errors),
            "history_runs": self.history_runs,
            "ok": self.ok,
        }
        return {
            "version": "ci-fanout/report/v1",
            "summary": summary,
            "new_failures": [f.to_dict() for f in c.new_failures],
            "still_failing": [f.to_dict() for f in c.still_failing],
            "fixed": list(c.fixed),
            "flaky": [f.to_dict() for f in c.flaky],
            "hardware_specific": [h.to_dict() for h in c.hardware_specific],
            "regressions": [r.to_dict() for r in self.regressions],
            "added": list(c.added),
            "removed": list(c.removed),
            "newly_skipped": list(c.newly_skipped),
            "not_run": [{"test": t, "reason": why} for t, why in c.not_run],
            "lost": [{"test": t, "reason": why} for t, why in c.lost],
            "infra_errors": [{"test": t, "reason": why} for t, why in c.infra_errors],
            "runner_classes": [{"runner_class": k, **v.to_dict()} for k, v in self.runner_classes],
            "slowest": [
                {"test_id": t, "duration_s": d, "base_duration_s": b} for t, d, b in self.slowest
            ],
            "trend": [
                {
                    "run_id": t.run_id,
                    "commit": t.commit,
                    "wall_s": t.wall_s,
                    "duration_s": t.duration_s,
                    "pass_rate": round(t.pass_rate, 4),
                }
                for t in self.trend
            ],
        }


def _deltas(head: Counts, base: Counts) -> dict[str, float]:
    return {
        "tests": head.tests - base.tests,
        "passed": head.passed - base.passed,
        "failed": head.failed + head.errors - base.failed - base.errors,
        "skipped": head.skipped - base.skipped,
        "duration_s": round(head.duration_s - base.duration_s, 3),
        "wall_s": round(head.wall_s - base.wall_s, 3),
    }


_RANK = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}


def _test_counts(rows: CaseRows, shard_ids: set[str]) -> Summary | None:
    """Outcome counts with each test id once, at its worst outcome over ``shard_ids`` (a test
    in two shards' files, import-time skips every shard repeats, a killed shard's journal and
    the re-run of its batch). None when no test appears twice: the shard totals are exact."""
    idx = [i for i, s in enumerate(rows.shard_id) if s in shard_ids]
    if len(idx) == len(rows.shard_id):
        ids: Sequence[str] = rows.test_id
        outcomes: Sequence[str] = rows.outcome
    else:
        ids = [rows.test_id[i] for i in idx]
        outcomes = [rows.outcome[i] for i in idx]
    if len(set(ids)) == len(ids):
        return None
    worst: dict[str, int] = {}
    for t, o in zip(ids, outcomes, strict=True):
        r = _RANK.get(o, 3)
        if r > worst.get(t, -1):
            worst[t] = r
    by_rank = [0, 0, 0, 0]
    for r in worst.values():
        by_rank[r] += 1
    skipped, passed, failed, errors = by_rank
    return Summary(tests=len(worst), passed=passed, failed=failed, errors=errors, skipped=skipped)


def _flaky(rows: CaseRows, shard_ids: set[str]) -> int:
    """Tests retried into a pass (each once), over ``shard_ids``."""
    if not rows.flaky:
        return 0
    bad: set[str] = set()
    retried: set[str] = set()
    for t, s, o, f in zip(rows.test_id, rows.shard_id, rows.outcome, rows.flaky, strict=True):
        if s not in shard_ids:
            continue
        if o in FAILING:
            bad.add(t)
        elif f:
            retried.add(t)
    return len(retried - bad)


def _counts(shards: Sequence[ShardMeta], rows: CaseRows | None = None) -> Counts:
    """Totals over the shards that ran, each test id once (its worst outcome over shards, as
    the comparison sees it); wall time is the longest shard's own start to end, machine time
    the sum. The synthetic not-run and lost shards are counted apart (``not_run``, ``lost``)."""
    ran = [s for s in shards if s.shard_id not in SYNTHETIC_SHARDS]
    ran_ids = {s.shard_id for s in ran}
    exact = _test_counts(rows, ran_ids) if rows is not None else None
    if exact is None:
        exact = sum(ran, Summary())  # each shard row is its own Summary
    return Counts(
        tests=exact.tests,
        passed=exact.passed,
        failed=exact.failed,
        errors=exact.errors,
        skipped=exact.skipped,
        flaky=_flaky(rows, ran_ids) if rows is not None else 0,
        duration_s=sum(s.wall for s in ran),
        wall_s=max((s.wall for s in ran), default=0.0),
        not_run=sum(s.tests for s in shards if s.shard_id == NOT_RUN_SHARD),
        lost=sum(s.tests for s in shards if s.shard_id == LOST_SHARD),
    )


def _resolve_base(
    store: ResultStore, run: RunMeta, base_branch: str | None
) -> tuple[list[RunMeta], str, str | None]:
    """Base runs: the merge base's runs, else the latest run on the base branch."""
    if run.base_commit:
        at = [
            r
            for r in store.runs(commit=run.base_commit, repo=run.repo, limit=10)
            if r.run_id != run.run_id
        ]
        if at:
            return at, f"merge base {run.base_commit[:10]}", base_branch or at[0].branch
    candidates = [base_branch] if base_branch else []
    if run.pr is None and run.branch:
        candidates.append(run.branch)
    candidates.extend(b for b in DEFAULT_BASE_BRANCHES if b not in candidates)
    for branch in candidates:
        found = [
            r
            for r in store.runs(
                branch=branch, repo=run.repo, exclude_prs=True, before_seq=run.seq, limit=1
            )
            if r.run_id != run.run_id
        ]
        if found:
            how = f"latest run on {branch}"
            if run.base_commit:
                how += f" (merge base {run.base_commit[:10]} has no results)"
            return found, how, branch
    return [], "no base run found", base_branch or (candidates[0] if candidates else None)


def build_report(
    store: ResultStore,
    run_id: str,
    *,
    base_branch: str | None = None,
    history_runs: int = 200,
    trend_points: int = 30,
    max_duration_checks: int = 20,
    dashboard_url: str | None = None,
) -> Report:
    """Everything the comment, check run, job summary and JSON need, for one run."""
    run = store.run(run_id)
    if run is None:
        raise StoreError(f"no run {run_id!r} in the store; ingest its results first")
    shards = store.shards([run_id])
    head = store.cases([run_id])
    base_runs, base_reason, branch = _resolve_base(store, run, base_branch)
    base_ids = [r.run_id for r in base_runs]
    base_rows = store.cases(base_ids, details=False) if base_ids else None
    base_shards = store.shards(base_ids) if base_ids else []

    # history of the base branch, oldest first, strictly before this run
    hist_runs = (
        store.runs(
            branch=branch, repo=run.repo, exclude_prs=True, before_seq=run.seq, limit=history_runs
        )
        if branch
        else []
    )
    hist_runs = [r for r in reversed(hist_runs) if r.run_id != run_id]
    hist_ids = [r.run_id for r in hist_runs]

    interesting = sorted(
        {
            t
            for t, o, f in zip(head.test_id, head.outcome, head.flaky, strict=True)
            if f or o in FAILING
        }
    )
    verdicts = {}
    if interesting and branch:
        hist = store.history(
            branch=branch,
            repo=run.repo,
            test_ids=interesting,
            only_unstable=True,
            max_runs=history_runs,
            before_seq=run.seq,
        )
        verdicts = classify_history(hist)
    comparison = compare_runs(head, shards, base_rows, verdicts, base_shards=base_shards)

    head_counts = _counts(shards, head)
    base_counts = _counts(base_shards, base_rows) if base_shards else None
    totals = store.run_totals(hist_ids) if hist_ids else []
    head_total = RunTotals(
        run_id=run.run_id,
        commit=run.commit,
        tests=head_counts.tests,
        passed=head_counts.passed,
        failed=head_counts.failed,
        errors=head_counts.errors,
        skipped=head_counts.skipped,
        duration_s=head_counts.duration_s,
        wall_s=head_counts.wall_s,
    )
    regressions: list[Regression] = []
    regressions.extend(_suite_regressions(totals, head_total))
    metric_trends, metric_regs = _metric_regressions(store, run, hist_ids)
    regressions.extend(metric_regs)
    regressions.extend(_test_regressions(store, comparison, hist_ids, run, max_duration_checks))

    by_class: dict[str, list[ShardMeta]] = {}
    for s in shards:
        if s.shard_id not in SYNTHETIC_SHARDS:  # not run / lost: not a runner class
            by_class.setdefault(s.runner_class, []).append(s)
    slowest = [
        (t, d, comparison.base_durations.get(t))
        for t, d in heapq.nlargest(10, comparison.head_durations.items(), key=lambda kv: kv[1])
    ]
    return Report(
        run=run,
        base=base_runs[0] if base_runs else None,
        base_reason=base_reason,
        base_branch=branch,
        head=head_counts,
        base_counts=base_counts,
        comparison=comparison,
        regressions=tuple(regressions),
        trend=(*totals[-trend_points:], head_total),
        metric_trends=tuple(metric_trends),
        runner_classes=tuple((k, _counts(v, head)) for k, v in sorted(by_class.items())),
        slowest=tuple(slowest),
        history_runs=len(hist_ids),
        dashboard_url=dashboard_url,
    )


def _series_regressions(
    *,
    what: str,
    kind: str,
    values: Sequence[float],
    commits: Sequence[str | None],
    head_value: float,
    head_commit: str | None,
    unit: str,
    direction: str,
    runner_class: str | None = None,
    min_magnitude: float = 0.05,
    recent: int = 10,
) -> tuple[list[Regression], tuple[int, ...]]:
    cps = detect_change_points(values) if len(values) >= 10 else []
    out: list[Regression] = []
    check = check_value(
        values, head_value, direction=direction, change_points=cps, min_magnitude=min_magnitude
    )
    if check is not None and check.significant and check.worse:
        out.append(
            Regression(
                what=what,
                kind=kind,
                before=check.baseline,
                after=head_value,
                change=check.change,
                confidence=check.confidence,
                since_commit=head_commit,
                scope="this change",
                unit=unit,
                direction=direction,
                runner_class=runner_class,
            )
        )
    if cps:
        last = cps[-1]
        worse = last.after > last.before if direction == "lower" else last.after < last.before
        if worse and last.index >= len(values) - recent:
            out.append(
                Regression(
                    what=what,
                    kind=kind,
                    before=last.before,
                    after=last.after,
                    change=last.change,
                    confidence=last.confidence,
                    since_commit=commits[last.index],
                    scope="base branch",
                    unit=unit,
                    direction=direction,
                    runner_class=runner_class,
                )
            )
    return out, tuple(c.index for c in cps)


def _suite_regressions(totals: Sequence[RunTotals], head: RunTotals) -> list[Regression]:
    if len(totals) < 5 or head.wall_s <= 0:
        return []
    regs, _ = _series_regressions(
        what="suite wall time (longest shard)",
        kind="suite_duration",
        values=[t.wall_s for t in totals],
        commits=[t.commit for t in totals],
        head_value=head.wall_s,
        head_commit=head.commit,
        unit="s",
        direction="lower",
    )
    return regs


def _metric_regressions(
    store: ResultStore, run: RunMeta, hist_ids: Sequence[str]
) -> tuple[list[MetricTrend], list[Regression]]:
    values = store.metrics([run.run_id])
    if not values:
        return [], []
    series = store.metric_series(sorted({m.name for m in values}), hist_ids) if hist_ids else {}
    trends: list[MetricTrend] = []
    regs: list[Regression] = []
    for m in values:
        points = series.get((m.name, m.runner_class), [])
        browser = parse_metric_name(m.name)
        # the pool's own figures (launch/context times, retries) describe the runner, not the
        # change: trended, never flagged as this change's regression
        infra_figure = browser is not None and browser.describes_runner
        found, cps = (
            _series_regressions(
                what=m.name,
                kind="metric",
                values=[p.value for p in points],
                commits=[p.commit for p in points],
                head_value=m.value,
                head_commit=run.commit,
                unit=m.unit,
                direction=m.direction,
                runner_class=m.runner_class,
            )
            if len(points) >= 5
            else ([], ())
        )
        if not infra_figure:
            regs.extend(found)
        head_point = SeriesPoint(run_id=run.run_id, commit=run.commit, value=m.value)
        trends.append(
            MetricTrend(
                name=m.name,
                runner_class=m.runner_class,
                unit=m.unit,
                direction=m.direction,
                points=(*points, head_point),
                change_points=cps,
            )
        )
    return trends, regs


def _test_regressions(
    store: ResultStore,
    comparison: Comparison,
    hist_ids: Sequence[str],
    run: RunMeta,
    limit: int,
) -> list[Regression]:
    """Per-test slowdowns: only tests ≥ 1 s that got ≥ 50 % slower than base are checked."""
    if not hist_ids or limit <= 0:
        return []
    base = comparison.base_durations
    cands = [
        (tid, d, b)
        for tid, d in comparison.head_durations.items()
        if d >= 1.0 and (b := base.get(tid)) is not None and d >= 1.5 * b
    ]
    cands = sorted(cands, key=lambda c: -(c[1] - c[2]))[:limit]
    if not cands:
        return []
    series = store.test_duration_series([c[0] for c in cands], hist_ids)
    out: list[Regression] = []
    for tid, d, _b in cands:
        pts = series.get(tid, [])
        if len(pts) < 5:
            continue
        regs, _ = _series_regressions(
            what=tid,
            kind="test_duration",
            values=[p.value for p in pts],
            commits=[p.commit for p in pts],
            head_value=d,
            head_commit=run.commit,
            unit="s",
            direction="lower",
            min_magnitude=0.2,
        )
        out.extend(r for r in regs if r.scope == "this change")
    return out
