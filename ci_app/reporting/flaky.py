"""Flaky-test detection from history, kept apart from regressions and hardware failures.

What separates flaky from broken is whether outcomes differ *for the same code
on the same kind of runner*. Evidence, strongest first:

1. ``retry`` — failed then passed within one run (the parser's ``flaky`` flag);
2. ``same_commit`` — passed and failed at the same commit on the same runner class;
3. ``isolated`` — a single failing run between passes on one runner class, while
   another runner class *passed* at that commit (so it was not the commit);
   without such corroboration, two isolated failures are needed.

Never counted: rows from whole-shard infrastructure failures; failures that
persist over consecutive runs (a regression, or a hardware-specific failure
when other runner classes pass meanwhile).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ci_app.reporting.classes import readable_class
from ci_app.reporting.data import FAILING, HistoryRows

FLAKY = "flaky"
REGRESSION = "regression"
HARDWARE = "hardware_specific"
RECOVERED = "recovered"


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    kind: str  # retry | same_commit | isolated
    runner_class: str
    run_id: str
    commit: str | None

    def describe(self) -> str:
        where = f"on `{readable_class(self.runner_class)}`"
        at = f" at `{(self.commit or '?')[:10]}`"
        if self.kind == "retry":
            run = "this run" if self.run_id == "this run" else f"run {self.run_id}"
            return f"failed then passed on retry in {run} {where}"
        if self.kind == "same_commit":
            return f"passed and failed{at} {where}"
        return f"failed once between passes{at} {where} (other runners passed)"


@dataclass(frozen=True, kw_only=True, slots=True)
class ClassStats:
    """Outcome statistics of one test on one runner class (infra rows excluded)."""

    runner_class: str
    runs: int
    failures: int
    flips: int

    @property
    def failure_rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0

    @property
    def flip_rate(self) -> float:
        return self.flips / (self.runs - 1) if self.runs > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "runner_class": self.runner_class,
            "runs": self.runs,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "flip_rate": round(self.flip_rate, 4),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    test_id: str
    verdict: str  # flaky | regression | hardware_specific | recovered
    confidence: str  # high | medium | low
    evidence: tuple[Evidence, ...] = ()
    stats: tuple[ClassStats, ...] = ()
    since_commit: str | None = None
    runner_classes: tuple[str, ...] = ()  # where it fails (hardware_specific / regression)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "evidence": [
                {
                    "kind": e.kind,
                    "runner_class": e.runner_class,
                    "run_id": e.run_id,
                    "commit": e.commit,
                    "text": e.describe(),
                }
                for e in self.evidence
            ],
            "stats": [s.to_dict() for s in self.stats],
            "since_commit": self.since_commit,
            "runner_classes": list(self.runner_classes),
        }


@dataclass(slots=True)
class _Obs:
    seq: int
    run_id: str
    commit: str | None
    fail: bool


def classify_history(
    history: HistoryRows, *, min_isolated: int = 2, max_evidence: int = 5
) -> dict[str, Verdict]:
    """A verdict for every test that failed (outside infra failures) or was retried.

    Tests that only ever passed get no verdict.
    """
    per_test: dict[str, list[tuple[str, int, str, str | None, bool, bool]]] = defaultdict(list)
    for test_id, rclass, seq, run_id, commit, outcome, flaky, infra in history.rows():
        if infra or outcome == "skipped":
            continue
        per_test[test_id].append((rclass, seq, run_id, commit, outcome in FAILING, flaky))
    out: dict[str, Verdict] = {}
    for test_id, rows in per_test.items():
        verdict = _classify_one(test_id, rows, min_isolated=min_isolated, max_evidence=max_evidence)
        if verdict is not None:
            out[test_id] = verdict
    return out


def _classify_one(
    test_id: str,
    rows: list[tuple[str, int, str, str | None, bool, bool]],
    *,
    min_isolated: int,
    max_evidence: int,
) -> Verdict | None:
    if not any(r[4] or r[5] for r in rows):
        return None
    strong: list[Evidence] = []
    # (commit) -> runner class -> set of outcomes (True = fail)
    by_commit: dict[str | None, dict[str, set[bool]]] = defaultdict(lambda: defaultdict(set))
    # runner class -> run id -> observation (a run fails if any of its shards failed)
    streams: dict[str, dict[str, _Obs]] = defaultdict(dict)
    for rclass, seq, run_id, commit, fail, retried in rows:
        if retried:
            strong.append(Evidence(kind="retry", runner_class=rclass, run_id=run_id, commit=commit))
        by_commit[commit][rclass].add(fail)
        obs = streams[rclass].get(run_id)
        if obs is None:
            streams[rclass][run_id] = _Obs(seq, run_id, commit, fail)
        elif fail != obs.fail:
            # two shards of one run on the same class disagree: same-commit evidence
            obs.fail = True
    for commit, classes in by_commit.items():
        if commit is None:
            continue
        for rclass, outcomes in classes.items():
            if len(outcomes) == 2:
                run_id = next(o.run_id for o in streams[rclass].values() if o.commit == commit)
                strong.append(
                    Evidence(kind="same_commit", runner_class=rclass, run_id=run_id, commit=commit)
                )

    stats: list[ClassStats] = []
    isolated_corroborated: list[Evidence] = []
    isolated_plain: list[Evidence] = []
    ongoing: dict[str, tuple[int, str | None]] = {}  # class -> (episode length, first commit)
    persistent_classes: set[str] = set()
    for rclass, runs in sorted(streams.items()):
        seqs = sorted(runs.values(), key=lambda o: o.seq)
        fails = [o.fail for o in seqs]
        flips = sum(1 for a, b in itertools.pairwise(fails) if a != b)
        stats.append(
            ClassStats(runner_class=rclass, runs=len(fails), failures=sum(fails), flips=flips)
        )
        i = 0
        n = len(seqs)
        while i < n:
            if not fails[i]:
                i += 1
                continue
            j = i
            while j < n and fails[j]:
                j += 1
            length = j - i
            if j == n:
                ongoing[rclass] = (length, seqs[i].commit)
                if length >= 2:
                    persistent_classes.add(rclass)
            elif length >= 2:
                persistent_classes.add(rclass)
            elif i > 0:  # single failing run between two passes
                obs = seqs[i]
                others = by_commit.get(obs.commit, {}) if obs.commit is not None else {}
                ev = Evidence(
                    kind="isolated", runner_class=rclass, run_id=obs.run_id, commit=obs.commit
                )
                if any(False in outs for c, outs in others.items() if c != rclass):
                    isolated_corroborated.append(ev)
                elif not any(c != rclass for c in others):
                    isolated_plain.append(ev)
                # else: every other class failed at this commit too: the commit broke it
            i = j
    stats_t = tuple(stats)

    # A failure that persists to the latest run on every class that ran it is a
    # regression, whatever happened before: that is what the author must fix.
    if ongoing and all(rclass in ongoing and ongoing[rclass][0] >= 2 for rclass in streams):
        since = min(
            (streams[c][r].seq, streams[c][r].commit)
            for c in ongoing
            for r in streams[c]
            if streams[c][r].commit == ongoing[c][1]
        )[1]
        return Verdict(
            test_id=test_id,
            verdict=REGRESSION,
            confidence="high",
            stats=stats_t,
            since_commit=since,
            runner_classes=tuple(sorted(ongoing)),
        )
    if strong:
        return Verdict(
            test_id=test_id,
            verdict=FLAKY,
            confidence="high",
            evidence=tuple(strong[-max_evidence:]),
            stats=stats_t,
        )
    if isolated_corroborated or len(isolated_plain) >= min_isolated:
        evidence = (isolated_corroborated + isolated_plain)[-max_evidence:]
        return Verdict(
            test_id=test_id,
            verdict=FLAKY,
            confidence="medium" if isolated_corroborated else "low",
            evidence=tuple(evidence),
            stats=stats_t,
        )
    failing_now = set(ongoing)
    passing_classes = set(streams) - failing_now
    if failing_now:
        sure = all(ongoing[c][0] >= 2 for c in failing_now)
        since = min(ongoing[c][1] or "" for c in failing_now) or None
        return Verdict(
            test_id=test_id,
            verdict=HARDWARE if passing_classes else REGRESSION,
            confidence="high" if sure else "medium",
            stats=stats_t,
            since_commit=since,
            runner_classes=tuple(sorted(failing_now)),
        )
    return Verdict(
        test_id=test_id,
        verdict=RECOVERED,
        confidence="low",
        stats=stats_t,
        runner_classes=tuple(sorted(persistent_classes)),
    )


def flaky_tests(verdicts: dict[str, Verdict], *, min_confidence: str = "low") -> list[Verdict]:
    """Flaky verdicts at or above ``min_confidence``, strongest first."""
    rank = {"high": 0, "medium": 1, "low": 2}
    limit = rank[min_confidence]
    chosen = [v for v in verdicts.values() if v.verdict == FLAKY and rank[v.confidence] <= limit]
    return sorted(chosen, key=lambda v: (rank[v.confidence], -len(v.evidence), v.test_id))
