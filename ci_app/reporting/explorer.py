"""The test explorer's views, pure: one test's history → outcome strips, rates, verdicts,
duration series with change points, failure messages with the commit each started at.

The store hands over :class:`TestRows` (one row per run, shard and test, oldest first); this
module decides what each row means: a lost or not-run row is no outcome of the test, a row of
a shard that failed as a whole (``infra``) is not held against it, a pass after a retry is a
flip inside one run. The web layer only lays the result out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from ci_app.model.results import LOST_SHARD, NOT_RUN_PREFIX, NOT_RUN_SHARD
from ci_app.reporting.changepoint import ChangePoint, detect_change_points
from ci_app.reporting.data import FAILING, HistoryRows
from ci_app.reporting.flaky import Verdict, classify_history
from ci_app.reporting.report import DEFAULT_BASE_BRANCHES

__all__ = [
    "STATES",
    "Cell",
    "DurationSeries",
    "MessageGroup",
    "Rates",
    "Strip",
    "TestRows",
    "TestSummary",
    "cell_state",
    "summarise_test",
]

#: what a cell of an outcome strip can say, worst first (a run's cell shows its worst shard)
STATES = ("lost", "error", "failed", "infra", "retried", "passed", "skipped", "not-run")
_RANK = {s: i for i, s in enumerate(STATES)}
#: states that are a real outcome of the test (rates are computed over these)
_COUNTED = frozenset({"error", "failed", "retried", "passed"})
_FAILED = frozenset({"error", "failed"})


@dataclass(frozen=True, kw_only=True, slots=True)
class TestRows:
    """One test's results over runs, one entry per (run, shard), oldest first, columnar."""

    __test__ = False  # not a pytest test class

    seq: list[int] = field(default_factory=list)
    run_id: list[str] = field(default_factory=list)
    branch: list[str | None] = field(default_factory=list)
    pr: list[int | None] = field(default_factory=list)
    commit: list[str | None] = field(default_factory=list)
    started_at: list[str | None] = field(default_factory=list)
    shard_id: list[str] = field(default_factory=list)
    runner_class: list[str] = field(default_factory=list)
    runner_name: list[str | None] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    duration_s: list[float | None] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    flaky: list[bool] = field(default_factory=list)
    message: list[str | None] = field(default_factory=list)
    file: list[str | None] = field(default_factory=list)
    line: list[int | None] = field(default_factory=list)
    infra: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seq)


def cell_state(
    outcome: str, shard_id: str, message: str | None, flaky: bool, infra: bool = False
) -> str:
    """The state one row shows: ``lost`` (its shard died), ``not-run`` (no runner had the
    hardware), ``infra`` (a failure of a shard that failed as a whole), ``retried`` (passed
    after failing in the same run), else the outcome."""
    if shard_id == LOST_SHARD:
        return "lost"
    if shard_id == NOT_RUN_SHARD or (
        outcome == "skipped" and (message or "").startswith(NOT_RUN_PREFIX)
    ):
        return "not-run"
    if outcome in FAILING:
        return "infra" if infra else outcome
    if outcome == "passed" and flaky:
        return "retried"
    return outcome if outcome in _RANK else "skipped"


@dataclass(frozen=True, kw_only=True, slots=True)
class Cell:
    """One run of the test on one runner class (its worst shard)."""

    run_id: str
    seq: int
    commit: str | None
    state: str
    duration_s: float | None
    shard_id: str
    runner_name: str | None
    message: str  # first line of the failure message, if any


@dataclass(frozen=True, kw_only=True, slots=True)
class Rates:
    runs: int  # runs with a real outcome (passed, failed, error, retried)
    passed: int  # passed at the first attempt or on retry
    failures: int
    flips: int  # outcome changes between consecutive runs, plus passes after a retry

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.runs if self.runs else None

    @property
    def flip_rate(self) -> float | None:
        return self.flips / self.runs if self.runs else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Strip:
    branch: str
    runner_class: str
    cells: tuple[Cell, ...]  # oldest first, the latest ``limit`` runs
    rates: Rates
    pr_runs: bool  # the branch's runs are pull-request runs


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageGroup:
    """One failure message (first line) and where it was seen."""

    message: str
    full: str  # the longest text stored for it
    count: int
    first_run: str
    first_commit: str | None
    last_run: str
    last_commit: str | None
    last_seq: int
    runner_classes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class DurationSeries:
    """Durations per runner class on one branch (one value per run), with change points."""

    branch: str | None
    runner_class: str
    run_ids: tuple[str, ...]
    commits: tuple[str | None, ...]
    values: tuple[float, ...]
    change_points: tuple[ChangePoint, ...]
    #: index of the run asked for (``summarise_test(..., run=...)``), shown apart
    highlight: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TestSummary:
    __test__ = False  # not a pytest test class

    test_id: str
    file: str | None
    line: int | None
    branches: tuple[str, ...]  # most runs first, the base branch leading
    strips: tuple[Strip, ...]
    overall: Rates
    by_class: tuple[tuple[str, Rates], ...]
    verdicts: tuple[tuple[str, Verdict], ...]  # per branch, where there is one
    messages: tuple[MessageGroup, ...]  # most recently seen first
    durations: tuple[DurationSeries, ...]
    duration_branch: str | None
    runner_classes: tuple[str, ...]
    latest_state: str | None


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def _branch_key(branch: str | None) -> str:
    return branch if branch is not None else "(no branch)"


def _order_branches(rows: TestRows) -> list[str]:
    runs: dict[str, set[str]] = {}
    prs: dict[str, bool] = {}
    for b, pr, run in zip(rows.branch, rows.pr, rows.run_id, strict=True):
        key = _branch_key(b)
        runs.setdefault(key, set()).add(run)
        prs[key] = prs.get(key, False) or pr is not None
    base = [b for b in DEFAULT_BASE_BRANCHES if b in runs]

    def rank(b: str) -> tuple[int, int, str]:
        return (base.index(b) if b in base else len(base), prs[b], b)

    # base branches first, then branches without PR runs, most runs first within each
    return sorted(runs, key=lambda b: (*rank(b)[:2], -len(runs[b]), b))


def _runs(
    rows: TestRows, indexes: Sequence[int]
) -> Iterator[tuple[str, int, str | None, list[int]]]:
    """Group row indexes by run (rows are oldest first): (run_id, seq, commit, indexes)."""
    for (run, seq), grp in itertools.groupby(indexes, key=lambda i: (rows.run_id[i], rows.seq[i])):
        idx = list(grp)
        yield run, seq, rows.commit[idx[0]], idx


def _rates(states: Sequence[str]) -> Rates:
    real = [s for s in states if s in _COUNTED]
    fails = [s in _FAILED for s in real]
    flips = sum(1 for a, b in itertools.pairwise(fails) if a != b)
    flips += sum(1 for s in real if s == "retried")
    return Rates(
        runs=len(real),
        passed=sum(1 for s in real if s in ("passed", "retried")),
        failures=sum(fails),
        flips=flips,
    )


def summarise_test(
    test_id: str,
    rows: TestRows,
    *,
    strip_runs: int = 30,
    duration_branch: str | None = None,
    min_change_points: int = 10,
    run: str | None = None,
) -> TestSummary:
    """Everything the test page shows, from the test's rows (see :class:`TestRows`).

    The duration series are of ``duration_branch`` (default: the base branch, else the branch
    with the most runs); ``run`` adds that run's point to them (a pull request's run beside
    its base branch), marked as :attr:`DurationSeries.highlight`."""
    states = [
        cell_state(o, s, m, f, i)
        for o, s, m, f, i in zip(
            rows.outcome, rows.shard_id, rows.message, rows.flaky, rows.infra, strict=True
        )
    ]
    branches = _order_branches(rows)
    by_branch_class: dict[tuple[str, str], list[int]] = {}
    for i in range(len(rows)):
        if states[i] in ("lost", "not-run"):
            key = (_branch_key(rows.branch[i]), "(no runner)")
        else:
            key = (_branch_key(rows.branch[i]), rows.runner_class[i])
        by_branch_class.setdefault(key, []).append(i)

    strips: list[Strip] = []
    class_states: dict[str, list[str]] = {}
    for branch in branches:
        for (b, rclass), idx in sorted(by_branch_class.items()):
            if b != branch:
                continue
            cells: list[Cell] = []
            for run_id, seq, commit, grp in _runs(rows, idx):
                worst = min(grp, key=lambda i: _RANK[states[i]])
                durations = [d for i in grp if (d := rows.duration_s[i]) is not None]
                cells.append(
                    Cell(
                        run_id=run_id,
                        seq=seq,
                        commit=commit,
                        state=states[worst],
                        duration_s=max(durations) if durations else None,
                        shard_id=rows.shard_id[worst],
                        runner_name=rows.runner_name[worst],
                        message=_first_line(rows.message[worst])
                        if states[worst] in ("failed", "error", "infra", "lost", "not-run")
                        else "",
                    )
                )
            if rclass != "(no runner)":
                class_states.setdefault(rclass, []).extend(c.state for c in cells)
            strips.append(
                Strip(
                    branch=branch,
                    runner_class=rclass,
                    cells=tuple(cells[-strip_runs:]),
                    rates=_rates([c.state for c in cells]),
                    pr_runs=any(rows.pr[i] is not None for i in idx),
                )
            )

    # per-run outcome over all classes (a run failed if any shard failed) for overall rates
    per_run: dict[str, tuple[int, str]] = {}
    for i, st in enumerate(states):
        got = per_run.get(rows.run_id[i])
        if got is None or _RANK[st] < _RANK[got[1]]:
            per_run[rows.run_id[i]] = (rows.seq[i], st)
    overall = _rates([st for _, st in sorted(per_run.values())])
    latest = max(per_run.values())[1] if per_run else None

    verdicts: list[tuple[str, Verdict]] = []
    for branch in branches:
        idx = [
            i
            for i in range(len(rows))
            if _branch_key(rows.branch[i]) == branch and states[i] not in ("lost", "not-run")
        ]
        hist = HistoryRows(
            test_id=[test_id] * len(idx),
            runner_class=[rows.runner_class[i] for i in idx],
            seq=[rows.seq[i] for i in idx],
            run_id=[rows.run_id[i] for i in idx],
            commit=[rows.commit[i] for i in idx],
            outcome=[rows.outcome[i] for i in idx],
            flaky=[rows.flaky[i] for i in idx],
            infra=[rows.infra[i] for i in idx],
        )
        v = classify_history(hist).get(test_id)
        if v is not None:
            verdicts.append((branch, v))

    messages = _message_groups(rows, states)
    chart_branch = duration_branch if duration_branch in branches else _default_branch(branches)
    series = _duration_series(rows, states, chart_branch, min_change_points, run)
    last_file = next((f for f in reversed(rows.file) if f), None)
    last_line = next((ln for ln in reversed(rows.line) if ln), None)
    return TestSummary(
        test_id=test_id,
        file=last_file,
        line=last_line,
        branches=tuple(branches),
        strips=tuple(strips),
        overall=overall,
        by_class=tuple((c, _rates(s)) for c, s in sorted(class_states.items())),
        verdicts=tuple(verdicts),
        messages=tuple(messages),
        durations=tuple(series),
        duration_branch=chart_branch,
        runner_classes=tuple(sorted(class_states)),
        latest_state=latest,
    )


def _default_branch(branches: Sequence[str]) -> str | None:
    return branches[0] if branches else None


@dataclass(slots=True)
class _Group:
    full: str
    count: int
    first: int
    last: int
    classes: set[str]


def _message_groups(rows: TestRows, states: Sequence[str]) -> list[MessageGroup]:
    groups: dict[str, _Group] = {}
    for i, st in enumerate(states):
        if st not in _FAILED:
            continue
        first = _first_line(rows.message[i]) or "(no message)"
        full = rows.message[i] or ""
        g = groups.get(first)
        if g is None:
            groups[first] = _Group(full, 1, i, i, {rows.runner_class[i]})
            continue
        g.count += 1
        g.last = i
        g.classes.add(rows.runner_class[i])
        if len(full) > len(g.full):
            g.full = full
    out = [
        MessageGroup(
            message=text,
            full=g.full,
            count=g.count,
            first_run=rows.run_id[g.first],
            first_commit=rows.commit[g.first],
            last_run=rows.run_id[g.last],
            last_commit=rows.commit[g.last],
            last_seq=rows.seq[g.last],
            runner_classes=tuple(sorted(g.classes)),
        )
        for text, g in groups.items()
    ]
    return sorted(out, key=lambda g: -g.last_seq)


def _duration_series(
    rows: TestRows, states: Sequence[str], branch: str | None, min_points: int, run: str | None
) -> list[DurationSeries]:
    per_class: dict[str, dict[str, tuple[int, str | None, float]]] = {}
    for i, st in enumerate(states):
        if st not in _COUNTED:
            continue
        if _branch_key(rows.branch[i]) != branch and rows.run_id[i] != run:
            continue
        d = rows.duration_s[i]
        if d is None:
            continue
        runs = per_class.setdefault(rows.runner_class[i], {})
        got = runs.get(rows.run_id[i])
        if got is None or d > got[2]:
            runs[rows.run_id[i]] = (rows.seq[i], rows.commit[i], float(d))
    out = []
    for rclass, runs in sorted(per_class.items()):
        ordered = sorted(runs.items(), key=lambda kv: kv[1][0])
        values = [v for _, (_, _, v) in ordered]
        ids = [r for r, _ in ordered]
        # change points of the branch's own series (the extra run is checked against it)
        own = [v for r, (_, _, v) in ordered if r != run or run is None]
        cps = detect_change_points(own) if len(own) >= min_points else []
        at = ids.index(run) if run in ids else None
        if at is not None:  # indexes of the full series
            cps = [c if c.index <= at else replace(c, index=c.index + 1) for c in cps]
        out.append(
            DurationSeries(
                branch=branch,
                runner_class=rclass,
                run_ids=tuple(ids),
                commits=tuple(c for _, (_, c, _) in ordered),
                values=tuple(values),
                change_points=tuple(cps),
                highlight=at,
            )
        )
    return out
