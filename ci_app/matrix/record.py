"""The queue's record is the truth of a queue-mode run.

The queue keeps every result it accepted, as runners report them (with each heartbeat, and at
the end of each batch), and the leases whose runner stopped answering. A runner that is killed
after finishing batches never uploads its report, but the queue holds those results: every
report path (the CI report step, the app's collect and report jobs, ``ci-app report``,
``make demo``) merges them before accounting, so a killed runner loses at most the tests it was
running, and those were re-run elsewhere.

Pure: callers fetch the record (HTTP or the app's store) and store what this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from ci_app.matrix.queue import ExpiredLease, TestResult
from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase

__all__ = ["RECOVERED_MESSAGE", "RECOVERED_SHARD", "dead_runners", "recovered_results"]

#: the shard id of results only the queue holds
RECOVERED_SHARD: Final = "queue-recovered"
RECOVERED_MESSAGE: Final = (
    "recovered from the test queue: the runner that ran it stopped before uploading its report"
)
_OUTCOMES: Final = {o.value: o for o in Outcome}


def recovered_results(
    record: Mapping[str, TestResult], sets: Iterable[ResultSet], run: RunInfo
) -> ResultSet | None:
    """The queue's results for tests no result set holds, as the shard ``queue-recovered``
    (None when every accepted result was uploaded). ``missing`` results (leased, never
    reported by a runner that did finish its batch) are left to the accounting: lost."""
    reported: set[str] = set()
    for rs in sets:
        reported.update(t.id for t in rs.tests)
    cases = []
    for test_id, r in sorted(record.items()):
        outcome = _OUTCOMES.get(r.outcome)
        if test_id in reported or outcome is None:
            continue
        details = f"{RECOVERED_MESSAGE} (runner {r.runner})" if r.runner else RECOVERED_MESSAGE
        cases.append(
            TestCase(
                id=test_id,
                name=test_id.rsplit("::", 1)[-1],
                file=test_id.split("::", 1)[0] if "::" in test_id else None,
                outcome=outcome,
                duration_s=r.duration_s,
                message=r.message,
                details=details,
            )
        )
    if not cases:
        return None
    return ResultSet(run=replace(run, shard_id=RECOVERED_SHARD), tests=tuple(cases))


def dead_runners(expired: Sequence[ExpiredLease]) -> tuple[dict[str, str], dict[str, str]]:
    """Who died, and why: their leases expired (no heartbeat for a lease's life). Returns
    (shard id → why) for leases that named their CI job, (runner → why) for the others."""
    by_shard: dict[str, list[ExpiredLease]] = {}
    by_runner: dict[str, list[ExpiredLease]] = {}
    for e in expired:
        if e.shard:
            by_shard.setdefault(e.shard, []).append(e)
        elif e.runner:
            by_runner.setdefault(e.runner, []).append(e)

    def why(leases: list[ExpiredLease]) -> str:
        return (
            f"runner {leases[0].runner} stopped answering: {len(leases)} lease(s) expired "
            f"without a heartbeat, {sum(e.tests for e in leases)} unfinished test(s) re-queued"
        )

    return (
        {shard: why(leases) for shard, leases in by_shard.items()},
        {runner: why(leases) for runner, leases in by_runner.items()},
    )
