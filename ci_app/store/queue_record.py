"""A queue-mode run's record merged into its stored results: what the queue accepted that no
uploaded shard holds, and the shards whose runners vanished (infrastructure errors)."""

from __future__ import annotations

from collections.abc import Mapping

from ci_app.matrix.record import RECOVERED_SHARD, dead_runners, recovered_results
from ci_app.model.results import ResultSet, RunInfo
from ci_app.store.queue import DuckQueue
from ci_app.store.results import Results

__all__ = ["mark_interrupted", "merge_record"]


def mark_interrupted(
    results: Results,
    run_id: str,
    *,
    shards: Mapping[str, str] | None = None,
    runners: Mapping[str, str] | None = None,
) -> int:
    """Record infrastructure errors on a run's shards: ``shards`` maps a shard id, ``runners``
    a runner name (its queue leases expired) to why. A runner without a stored shard gets an
    empty shard ``runner:<name>`` so that the report still names it. Returns shards marked."""
    meta = results.run(run_id)
    if meta is None:
        return 0
    n = 0
    for shard, why in (shards or {}).items():
        if not results.mark_interrupted(run_id, shard, why):
            results.ingest(ResultSet(run=RunInfo.of(meta, shard_id=shard)))
            results.mark_interrupted(run_id, shard, why)
        n += 1
    by_runner: dict[str, list[str]] = {}
    for s in results.shards([run_id]):
        if s.runner_name:
            by_runner.setdefault(s.runner_name, []).append(s.shard_id)
    for runner, why in (runners or {}).items():
        ids = [s for s in by_runner.get(runner, []) if s not in (shards or {})]
        if not ids and runner not in by_runner:
            ids = [f"runner:{runner}"[:200]]
            run = RunInfo.of(meta, shard_id=ids[0], runner_name=runner)
            results.ingest(ResultSet(run=run))
        for shard in ids:
            n += results.mark_interrupted(run_id, shard, why)
    return n


def merge_record(results: Results, queue: DuckQueue, run_id: str) -> tuple[int, int]:
    """Store the queue's results no uploaded shard holds (shard ``queue-recovered``) and mark
    the shards of runners whose leases expired; idempotent. Returns (rows stored, shards
    marked); (0, 0) for a run without a queue or not stored yet."""
    meta = results.run(run_id)
    if meta is None or not queue.has_run(run_id):
        return 0, 0
    have = set(results.cases([run_id], details=False).test_id)
    todo = {t: r for t, r in queue.results(run_id).items() if t not in have}
    inserted = 0
    recovered = recovered_results(todo, (), RunInfo.of(meta, shard_id=RECOVERED_SHARD))
    if recovered is not None:
        inserted = results.ingest(recovered)
    shards, runners = dead_runners(queue.expired_leases(run_id))
    marked = mark_interrupted(results, run_id, shards=shards, runners=runners)
    return inserted, marked
