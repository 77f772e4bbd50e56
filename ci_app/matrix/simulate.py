"""Replay a plan against actual durations: the makespan a static plan or the queue would reach.

Used by ``ci-app plan --simulate`` and ``bench/sharding.py``. The queue replay drives the real
:class:`~ci_app.matrix.queue.InMemoryQueue` with an event loop (simulated time, passed in), so
what is measured is the code that runs in production, batch sizing and ordering included.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ci_app.matrix.queue import (
    Done,
    InMemoryQueue,
    Lease,
    PoolSpec,
    QueueConfig,
    QueueItem,
    TestResult,
    Wait,
)
from ci_app.matrix.sharding import lower_bound

__all__ = ["SimResult", "add_noise", "simulate_queue", "simulate_static"]


@dataclass(frozen=True, slots=True)
class SimResult:
    makespan_s: float
    lower_bound_s: float
    pulls: int = 0

    @property
    def ratio(self) -> float:
        return self.makespan_s / self.lower_bound_s if self.lower_bound_s > 0 else 1.0

    def to_dict(self) -> dict[str, float]:
        return {
            "makespan_s": round(self.makespan_s, 6),
            "lower_bound_s": round(self.lower_bound_s, 6),
            "ratio": round(self.ratio, 6),
        }


def add_noise(durations: Mapping[str, float], sigma: float, seed: int) -> dict[str, float]:
    """Lognormal per-test noise: ``d * exp(N(0, sigma))``, reproducible from ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible simulation, not cryptography
    return {k: v * math.exp(rng.gauss(0.0, sigma)) for k, v in durations.items()}


def simulate_static(shards: Sequence[Sequence[str]], actual: Mapping[str, float]) -> SimResult:
    """Makespan of fixed slices when each test takes its ``actual`` time.

    Tests of the actual run that no shard holds are not run; the bound covers every actual test,
    so a plan that drops tests cannot look better than it is.
    """
    loads = [sum(actual.get(t, 0.0) for t in s) for s in shards]
    k = max(1, len(shards))
    return SimResult(max(loads, default=0.0), lower_bound(actual.values(), k))


def simulate_queue(
    items: Sequence[QueueItem],
    actual: Mapping[str, float],
    workers: int,
    config: QueueConfig | None = None,
    *,
    pull_overhead_s: float | None = None,
) -> SimResult:
    """``workers`` runners pull from one queue from t=0 until it is empty.

    Each pull costs ``pull_overhead_s`` (default ``config.pull_overhead_s``) of the runner's
    time before the batch starts; a batch takes the sum of its tests' actual durations.
    """
    cfg = config or QueueConfig()
    # Simulated runners never die; real ones heartbeat well inside the timeout. Without this a
    # test longer than the lease timeout would be re-queued and run twice.
    cfg = replace(cfg, lease_timeout_s=math.inf)
    overhead = cfg.pull_overhead_s if pull_overhead_s is None else pull_overhead_s
    q = InMemoryQueue()
    q.create_run("sim", {"pool": PoolSpec(tuple(items), workers)}, cfg, 0.0)
    # (time runner is free, runner index, lease being finished or None)
    events: list[tuple[float, int, Lease | None]] = [(0.0, i, None) for i in range(workers)]
    heapq.heapify(events)
    makespan = 0.0
    pulls = 0
    while events:
        now, r, lease = heapq.heappop(events)
        if lease is not None:
            q.complete(
                "sim",
                lease.lease_id,
                [TestResult(t, "passed", actual.get(t, 0.0)) for t in lease.tests],
                now,
            )
            makespan = max(makespan, now)
        got = q.lease("sim", "pool", f"r{r}", now)
        pulls += 1
        if isinstance(got, Lease):
            run_s = sum(actual.get(t, 0.0) for t in got.tests)
            heapq.heappush(events, (now + overhead + run_s, r, got))
        elif isinstance(got, Wait):
            # only leases of other runners remain; without failures they will all complete
            continue
        else:
            assert isinstance(got, Done)
    return SimResult(makespan, lower_bound(actual.values(), workers), pulls)
