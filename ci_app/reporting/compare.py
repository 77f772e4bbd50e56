"""Head run vs base run: new failures, fixed, flaky, hardware-specific, added/removed.

Pure: takes the columnar rows the store returns plus history verdicts.
A test failing on one runner class while passing on another *in the same
run* is hardware-specific, not a plain failure and not flaky.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ci_app.model.results import (
    INFRA_PREFIX,
    LOST_PREFIX,
    LOST_SHARD,
    NOT_RUN_PREFIX,
    NOT_RUN_SHARD,
    SYNTHETIC_SHARDS,
)
from ci_app.reporting.data import FAILING, CaseRows, ShardMeta
from ci_app.reporting.flaky import FLAKY, HARDWARE, Evidence, Verdict

_RANK = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}


__all__ = [
    "INFRA_PREFIX",
    "LOST_PREFIX",
    "LOST_SHARD",
    "NOT_RUN_PREFIX",
    "NOT_RUN_SHARD",
    "Comparison",
    "FailureItem",
    "FlakyItem",
    "HardwareItem",
    "compare_runs",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class FailureItem:
    test_id: str
    shard_id: str
    runner_class: str
    runner_name: str | None = None
    job_url: str | None = None
    file: str | None = None
    line: int | None = None
    message: str | None = None
    new_test: bool = False  # not present in the base run at all

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "shard": self.shard_id,
            "runner_class": self.runner_class,
            "runner": self.runner_name,
            "job_url": self.job_url,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "new_test": self.new_test,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class FlakyItem:
    test_id: str
    failed_here: bool  # failed (final) in this run; else it passed on retry here
    retried_here: bool
    evidence: tuple[Evidence, ...] = ()
    verdict: Verdict | None = None  # history verdict, when there is one
    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        ev = [
            {
                "kind": e.kind,
                "runner_class": e.runner_class,
                "run_id": e.run_id,
                "commit": e.commit,
                "text": e.describe(),
            }
            for e in self.evidence
        ]
        return {
            "test_id": self.test_id,
            "failed_in_this_run": self.failed_here,
            "retried_in_this_run": self.retried_here,
            "evidence": ev,
            "history": None
            if self.verdict is None
            else {
                "confidence": self.verdict.confidence,
                "stats": [s.to_dict() for s in self.verdict.stats],
            },
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class HardwareItem:
    test_id: str
    failing: tuple[str, ...]  # runner classes
    passing: tuple[str, ...]
    source: str  # "this run" | "history"
    since_commit: str | None = None
    file: str | None = None
    line: int | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "failing_on": list(self.failing),
            "passing_on": list(self.passing),
            "source": self.source,
            "since_commit": self.since_commit,
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    new_failures: tuple[FailureItem, ...] = ()
    still_failing: tuple[FailureItem, ...] = ()
    fixed: tuple[str, ...] = ()
    flaky: tuple[FlakyItem, ...] = ()
    hardware_specific: tuple[HardwareItem, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    newly_skipped: tuple[str, ...] = ()
    #: tests the planner could not place: no online runner has their hardware (test, why)
    not_run: tuple[tuple[str, str], ...] = ()
    #: planned tests no shard reported: their shard died (test, why); infrastructure errors
    lost: tuple[tuple[str, str], ...] = ()
    #: tests the infrastructure failed (test, ``infra: …`` message): a runner whose label lied,
    #: a browser that crashed again on the retry; never a failure or flakiness of the test
    infra_errors: tuple[tuple[str, str], ...] = ()
    #: shards that failed as a whole or died (``interrupted``); not the synthetic
    #: ``lost``/``unsatisfied`` shards
    infra_shards: tuple[ShardMeta, ...] = ()
    head_durations: Mapping[str, float] = field(default_factory=dict)
    base_durations: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Agg:
    worst: str
    fail_classes: set[str]
    pass_classes: set[str]
    retried: bool
    first_fail: int  # row index of the first failing row (-1 none)
    duration: float


def _aggregate(
    rows: CaseRows,
    shard_class: Mapping[str, str],
    skip_shards: set[str],
    skip_rows: frozenset[int] = frozenset(),
) -> tuple[dict[str, _Agg], set[str], dict[str, float]]:
    """Detailed aggregates for tests with a non-passing or retried row; ids of the rest.

    Most tests simply passed: those only need their id and duration, which
    ``dict(zip())`` gives at C speed. Only the few interesting tests are walked
    row by row (100k-test runs stay well under a second).
    """
    durations = dict(zip(rows.test_id, rows.duration_s, strict=True))
    hot = {
        rows.test_id[i]
        for i, (o, f) in enumerate(zip(rows.outcome, rows.flaky, strict=True))
        if f or o != "passed"
    }
    if skip_shards:
        hot |= {t for t, s in zip(rows.test_id, rows.shard_id, strict=True) if s in skip_shards}
    out: dict[str, _Agg] = {}
    if hot:
        for i, tid in enumerate(rows.test_id):
            if tid not in hot or i in skip_rows:
                continue
            sid = rows.shard_id[i]
            if sid in skip_shards:
                continue
            outcome = rows.outcome[i]
            dur = rows.duration_s[i]
            agg = out.get(tid)
            if agg is None:
                agg = out[tid] = _Agg(outcome, set(), set(), False, -1, dur)
            else:
                if _RANK[outcome] > _RANK[agg.worst]:
                    agg.worst = outcome
                agg.duration = max(agg.duration, dur)
            if outcome in FAILING:
                agg.fail_classes.add(shard_class.get(sid, sid))
                if agg.first_fail < 0:
                    agg.first_fail = i
            elif outcome == "passed":
                agg.pass_classes.add(shard_class.get(sid, sid))
            if rows.flaky[i]:
                agg.retried = True
    skipped_only = hot - set(out)  # tests seen only in infra shards
    passed = set(durations) - hot
    for tid in skipped_only:
        durations.pop(tid, None)
    return out, passed, durations


def infra_rows(rows: CaseRows) -> frozenset[int]:
    """Rows of infrastructure errors: outcome ``error`` with an ``infra:`` message."""
    if not rows.message:
        return frozenset()
    return frozenset(
        i
        for i, (o, m) in enumerate(zip(rows.outcome, rows.message, strict=True))
        if o == "error" and m is not None and m.startswith(INFRA_PREFIX)
    )


def _base_outcomes(rows: CaseRows) -> tuple[dict[str, str], dict[str, float]]:
    """Worst outcome per test (passed unless a row says otherwise) and durations."""
    outcomes = dict.fromkeys(rows.test_id, "passed")
    for i, o in enumerate(rows.outcome):
        if o != "passed":
            tid = rows.test_id[i]
            if _RANK[o] > _RANK[outcomes[tid]] or (outcomes[tid] == "passed" and o == "skipped"):
                outcomes[tid] = o
    return outcomes, dict(zip(rows.test_id, rows.duration_s, strict=True))


def compare_runs(
    head: CaseRows,
    head_shards: Sequence[ShardMeta],
    base: CaseRows | None,
    verdicts: Mapping[str, Verdict] | None = None,
    *,
    base_shards: Sequence[ShardMeta] = (),
) -> Comparison:
    """Classify every non-passing or retried test of ``head`` against ``base``."""
    verdicts = verdicts or {}
    shard_by_id = {s.shard_id: s for s in head_shards}
    shard_class = {s.shard_id: s.runner_class for s in head_shards}
    # a shard that failed as a whole, or whose test process died (killed, lease expired):
    # an infrastructure error; only the first kind's rows say nothing about the tests
    infra = tuple(
        s
        for s in head_shards
        if (s.infra_failure or s.interrupted) and s.shard_id not in SYNTHETIC_SHARDS
    )
    skip = {s.shard_id for s in infra if s.infra_failure} | {LOST_SHARD}
    head_infra = infra_rows(head)
    agg, passed, head_durations = _aggregate(head, shard_class, skip, head_infra)
    if any(s.shard_id in SYNTHETIC_SHARDS for s in head_shards):
        for i, sid in enumerate(head.shard_id):  # no runner ran these: no duration
            if sid in SYNTHETIC_SHARDS:
                head_durations.pop(head.test_id[i], None)
    base_infra = {s.shard_id for s in base_shards if s.infra_failure or s.shard_id == LOST_SHARD}
    base_infra_rows = infra_rows(base) if base is not None else frozenset()
    if base is not None and (base_infra or base_infra_rows):
        keep = [
            i
            for i, s in enumerate(base.shard_id)
            if s not in base_infra and i not in base_infra_rows
        ]
        base = CaseRows(
            test_id=[base.test_id[i] for i in keep],
            shard_id=[base.shard_id[i] for i in keep],
            outcome=[base.outcome[i] for i in keep],
            duration_s=[base.duration_s[i] for i in keep],
        )
    base_map, base_durations = _base_outcomes(base) if base is not None else ({}, {})

    new_failures: list[FailureItem] = []
    still: list[FailureItem] = []
    flaky: list[FlakyItem] = []
    hardware: list[HardwareItem] = []
    fixed: list[str] = []
    newly_skipped: list[str] = []
    for tid, a in agg.items():
        verdict = verdicts.get(tid)
        if a.worst in FAILING:
            i = a.first_fail
            sid = head.shard_id[i]
            if a.pass_classes:
                if (
                    verdict is not None
                    and verdict.verdict == FLAKY
                    and ({e.runner_class for e in verdict.evidence} & a.fail_classes)
                ):
                    flaky.append(_flaky_item(tid, a, verdict, head, i))
                else:
                    hardware.append(
                        HardwareItem(
                            test_id=tid,
                            failing=tuple(sorted(a.fail_classes)),
                            passing=tuple(sorted(a.pass_classes)),
                            source="this run",
                            file=head.file[i],
                            line=head.line[i],
                            message=head.message[i],
                        )
                    )
                continue
            if verdict is not None and verdict.verdict == FLAKY:
                flaky.append(_flaky_item(tid, a, verdict, head, i))
                continue
            if (
                verdict is not None
                and verdict.verdict == HARDWARE
                and a.fail_classes <= set(verdict.runner_classes)
            ):
                hardware.append(
                    HardwareItem(
                        test_id=tid,
                        failing=tuple(sorted(a.fail_classes)),
                        passing=(),
                        source="history",
                        since_commit=verdict.since_commit,
                        file=head.file[i],
                        line=head.line[i],
                        message=head.message[i],
                    )
                )
                continue
            shard = shard_by_id.get(sid)
            item = FailureItem(
                test_id=tid,
                shard_id=sid,
                runner_class=shard_class.get(sid, sid),
                runner_name=shard.runner_name if shard else None,
                job_url=shard.job_url if shard else None,
                file=head.file[i],
                line=head.line[i],
                message=head.message[i],
                new_test=base is not None and tid not in base_map,
            )
            base_outcome = base_map.get(tid, "")
            (still if base_outcome in FAILING else new_failures).append(item)
        else:
            if a.retried:
                flaky.append(_flaky_item(tid, a, verdict, head, -1))
            b = base_map.get(tid)
            if b is not None:
                if a.worst == "passed" and b in FAILING:
                    fixed.append(tid)
                elif a.worst == "skipped" and b != "skipped":
                    newly_skipped.append(tid)
    fixed.extend(t for t, o in base_map.items() if o in FAILING and t in passed)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    lost = sorted(
        {
            (head.test_id[i], (head.message[i] or "").splitlines()[0])
            for i, sid in enumerate(head.shard_id)
            if sid == LOST_SHARD
        }
    )
    infra_errors = sorted(
        {
            (head.test_id[i], (head.message[i] or "").splitlines()[0])
            for i in head_infra
            if head.shard_id[i] not in skip
        }
    )
    if base is not None:
        head_ids = passed | set(agg) | {t for t, _ in lost} | {t for t, _ in infra_errors}
        added = tuple(sorted(head_ids - base_map.keys()))
        removed = tuple(sorted(base_map.keys() - head_ids))
    not_run = sorted(
        {
            (head.test_id[i], (head.message[i] or "").splitlines()[0])
            for i, outcome in enumerate(head.outcome)
            if outcome == "skipped" and (head.message[i] or "").startswith(NOT_RUN_PREFIX)
        }
    )
    return Comparison(
        not_run=tuple(not_run),
        lost=tuple(lost),
        infra_errors=tuple(infra_errors),
        new_failures=tuple(sorted(new_failures, key=lambda f: f.test_id)),
        still_failing=tuple(sorted(still, key=lambda f: f.test_id)),
        fixed=tuple(sorted(fixed)),
        flaky=tuple(sorted(flaky, key=lambda f: (not f.failed_here, f.test_id))),
        hardware_specific=tuple(sorted(hardware, key=lambda h: h.test_id)),
        added=added,
        removed=removed,
        newly_skipped=tuple(sorted(newly_skipped)),
        infra_shards=infra,
        head_durations=head_durations,
        base_durations=base_durations,
    )


def _flaky_item(tid: str, a: _Agg, verdict: Verdict | None, head: CaseRows, i: int) -> FlakyItem:
    evidence: tuple[Evidence, ...] = verdict.evidence if verdict is not None else ()
    if a.retried:
        here = Evidence(
            kind="retry",
            runner_class=",".join(sorted(a.pass_classes)) or "?",
            run_id="this run",
            commit=None,
        )
        evidence = (here, *evidence)
    return FlakyItem(
        test_id=tid,
        failed_here=a.worst in FAILING,
        retried_here=a.retried,
        evidence=evidence,
        verdict=verdict,
        file=head.file[i] if i >= 0 else None,
        line=head.line[i] if i >= 0 else None,
    )
