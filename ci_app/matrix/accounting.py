"""Every planned test ends reported exactly once: ran, not run, or lost.

The plan (:class:`~ci_app.matrix.planner.Matrix`) is the record of what should have run. Against
the shards' result sets each planned test is

* **ran** — some shard reported it (with its status);
* **not run** — no online runner has the hardware it needs (the matrix's ``unsatisfied``); it is
  reported as a skipped case of the synthetic shard ``unsatisfied`` naming the labels;
* **lost** — planned on a shard that ended without reporting it (the job died, was cancelled or
  never started); reported as an error case of the synthetic shard ``lost``, an infrastructure
  error that fails the report but never counts as a test failure or flakiness.

Pure: the report steps (CI, app, demo) call it with the matrix and the result sets they have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ci_app.matrix.planner import Matrix
from ci_app.model.results import (
    LOST_PREFIX,
    LOST_SHARD,
    NOT_RUN_PREFIX,
    NOT_RUN_SHARD,
    SYNTHETIC_SHARDS,
    Outcome,
    ResultSet,
    RunInfo,
    TestCase,
)

__all__ = [
    "Accounting",
    "account",
    "account_ids",
    "accounted_sets",
    "lost_results",
    "not_run_results",
    "planned_tests",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Accounting:
    """Where each planned test ended."""

    planned: int
    ran: int
    not_run: int
    #: (test id, shard it was planned on)
    lost: tuple[tuple[str, str], ...] = ()
    #: planned shards that reported no result set at all
    silent_shards: tuple[str, ...] = ()
    #: tests a shard reported that the plan did not list (run anyway, reported)
    unplanned: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No test lost and no planned shard silent."""
        return not self.lost and not self.silent_shards


def _case_name(test_id: str) -> tuple[str, str | None]:
    name = test_id.rsplit("::", 1)[-1]
    file = test_id.split("::", 1)[0] if "::" in test_id else None
    return name, file


def planned_tests(matrix: Matrix) -> dict[str, str]:
    """Test id → the shard (static) or ``queue:<pool>`` (queue mode) it was planned on."""
    out: dict[str, str] = {}
    for s in matrix.shards:
        for t in s.tests:
            out.setdefault(t, s.id)
    for p in matrix.pools:
        for item in p.queue:
            for t in item.test_ids:
                out.setdefault(t, f"queue:{p.key}")
    return out


def _unsatisfied(matrix: Matrix) -> dict[str, tuple[str, ...]]:
    return {t: u.requires for u in matrix.unsatisfied for t in u.tests}


def account(matrix: Matrix, sets: Iterable[ResultSet]) -> Accounting:
    """Match the plan with what the shards reported."""
    reported: set[str] = set()
    shards_seen: set[str] = set()
    for rs in sets:
        shard = rs.run.shard_id or ""
        if shard in SYNTHETIC_SHARDS:
            continue
        shards_seen.add(shard)
        reported.update(t.id for t in rs.tests)
    return account_ids(matrix, reported, shards_seen)


def account_ids(matrix: Matrix, reported: set[str], shards_seen: set[str]) -> Accounting:
    """:func:`account` from the test ids and shard ids a store already holds."""
    planned = planned_tests(matrix)
    not_run = _unsatisfied(matrix)
    lost = tuple(
        sorted(
            ((t, where) for t, where in planned.items() if t not in reported and t not in not_run),
            key=lambda x: (x[1], x[0]),
        )
    )
    silent = tuple(s.id for s in matrix.shards if s.id not in shards_seen)
    known = planned.keys() | not_run.keys()
    return Accounting(
        planned=len(known),
        ran=len(reported & known),
        not_run=len(not_run.keys() - reported),
        lost=lost,
        silent_shards=silent,
        unplanned=tuple(sorted(reported - known)),
    )


def not_run_results(matrix: Matrix, run: RunInfo) -> ResultSet:
    """The tests no runner can take, as skipped cases of the shard ``unsatisfied``."""
    cases: list[TestCase] = []
    for u in matrix.unsatisfied:
        for test in u.tests:
            name, file = _case_name(test)
            cases.append(
                TestCase(
                    id=test,
                    name=name,
                    file=file,
                    outcome=Outcome.SKIPPED,
                    message=f"{NOT_RUN_PREFIX} [{', '.join(u.requires)}]",
                    details=u.reason or "",
                )
            )
    return ResultSet(run=replace(run, shard_id=NOT_RUN_SHARD), tests=tuple(cases))


def lost_results(
    acc: Accounting,
    run: RunInfo,
    *,
    why: Mapping[str, str] | None = None,
) -> ResultSet:
    """The lost tests as error cases of the shard ``lost``; ``why`` says per shard what
    happened to it (e.g. ``"its test command was killed by SIGKILL"``)."""
    why = why or {}
    silent = set(acc.silent_shards)
    cases: list[TestCase] = []
    for test, shard in acc.lost:
        name, file = _case_name(test)
        if shard in why:
            reason = why[shard]
        elif shard in silent:
            reason = "reported no results (its job died, was cancelled or never ran)"
        elif shard.startswith("queue:"):
            reason = "was leased but never completed by any runner"
        else:
            reason = "ended without a result for this test"
        where = (
            f"the {shard.removeprefix('queue:')} queue"
            if shard.startswith("queue:")
            else (f"shard {shard}")
        )
        cases.append(
            TestCase(
                id=test,
                name=name,
                file=file,
                outcome=Outcome.ERROR,
                message=f"{LOST_PREFIX} planned on {where}, which {reason}",
            )
        )
    return ResultSet(run=replace(run, shard_id=LOST_SHARD), tests=tuple(cases))


def accounted_sets(
    matrix: Matrix,
    sets: Sequence[ResultSet],
    run: RunInfo,
    *,
    why: Mapping[str, str] | None = None,
) -> tuple[Accounting, list[ResultSet]]:
    """``sets`` plus the synthetic not-run and lost shards (each once, replacing any copy)."""
    real = [rs for rs in sets if (rs.run.shard_id or "") not in SYNTHETIC_SHARDS]
    acc = account(matrix, real)
    out = list(real)
    if matrix.unsatisfied:
        out.append(not_run_results(matrix, run))
    if acc.lost:
        out.append(lost_results(acc, run, why=why))
    return acc, out
