"""The queue's HTTP contract as pure functions: JSON body in, JSON body out.

The web app mounts these under ``/api/v1/queue/<run>``; the tests' loopback server does the same
over an :class:`~ci_app.matrix.queue.InMemoryQueue`. Clients (the pytest plugin, ``ci-app shard
run``) only know the URL ``{url}`` of one run's queue:

* ``POST {url}/lease`` ``{"runner", "labels": [...], "pool"?}`` →
  ``{"lease_id", "pool", "tests": [...], "expires_at"}``, or ``{"done": true}``, or
  ``{"done": false, "retry_after": seconds}`` (nothing pending, other leases outstanding);
* ``POST {url}/complete`` ``{"lease_id", "results": [{"id", "outcome", "duration_s"}],
  "final"?: true}`` → ``{"accepted", "duplicates", "missing"}``;
* ``POST {url}/heartbeat`` ``{"lease_id"}`` → ``{"expires_at"}``;
* ``GET {url}/progress`` → counts.

Errors raise :class:`~ci_app.matrix.queue.LeaseError` (HTTP 409) or
:class:`~ci_app.errors.InputError` (HTTP 400). Authentication (a bearer token,
``CI_FANOUT_QUEUE_TOKEN`` on the client) is the server's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ci_app.errors import InputError
from ci_app.matrix.planner import Matrix
from ci_app.matrix.queue import (
    Done,
    Lease,
    QueueConfig,
    QueueState,
    TestResult,
    Wait,
)

__all__ = [
    "handle_complete",
    "handle_create",
    "handle_heartbeat",
    "handle_lease",
    "handle_progress",
    "pools_for_runner",
]


def _str(body: Mapping[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise InputError(f"request needs a non-empty string {key!r}")
    return v


def handle_create(
    state: QueueState,
    run: str,
    matrix: Mapping[str, Any],
    now: float,
    config: QueueConfig | None = None,
) -> dict[str, Any]:
    """Create a run's queues from a queue-mode matrix (``ci-app plan --mode queue`` output)."""
    m = Matrix.from_dict(matrix)
    specs = m.queue_specs()
    if not specs:
        raise InputError("matrix has no queue: plan it with --mode queue")
    state.create_run(run, specs, config or QueueConfig(), now)
    return {"run": run, "pools": sorted(specs)}


def pools_for_runner(pools: Mapping[str, frozenset[str]], labels: frozenset[str]) -> list[str]:
    """Pools a runner with ``labels`` may serve, most specific (most labels) first."""
    fit = [k for k, need in pools.items() if need <= labels]
    return sorted(fit, key=lambda k: (-len(pools[k]), k))


def handle_lease(
    state: QueueState, run: str, body: Mapping[str, Any], now: float
) -> dict[str, Any]:
    runner = _str(body, "runner")
    pool = body.get("pool")
    if pool is not None:
        candidates = [_str(body, "pool")]
    else:
        raw_labels = body.get("labels") or []
        if not isinstance(raw_labels, list) or not all(isinstance(x, str) for x in raw_labels):
            raise InputError("'labels' must be a list of strings")
        labels = frozenset(raw_labels)
        candidates = pools_for_runner(state.pools(run), labels)
        if not candidates:
            return {"done": True, "reason": "no pool of this run matches the runner's labels"}
    wait: float | None = None
    for p in candidates:
        got = state.lease(run, p, runner, now)
        if isinstance(got, Lease):
            return {
                "lease_id": got.lease_id,
                "pool": got.pool,
                "tests": list(got.tests),
                "expires_at": got.expires_at,
                "estimate_s": round(got.estimate_s, 3),
            }
        if isinstance(got, Wait):
            wait = got.retry_after_s if wait is None else min(wait, got.retry_after_s)
        else:
            assert isinstance(got, Done)
    if wait is not None:
        return {"done": False, "retry_after": wait}
    return {"done": True}


def handle_complete(
    state: QueueState, run: str, body: Mapping[str, Any], now: float
) -> dict[str, Any]:
    lease_id = _str(body, "lease_id")
    raw = body.get("results") or []
    if not isinstance(raw, list):
        raise InputError("'results' must be a list of {id, outcome, duration_s}")
    results = []
    for r in raw:
        if not isinstance(r, Mapping) or not isinstance(r.get("id"), str):
            raise InputError("each result needs a string 'id'")
        outcome = r.get("outcome", "passed")
        duration = r.get("duration_s") or 0.0
        if not isinstance(outcome, str):
            raise InputError(f"result {r['id']!r}: 'outcome' must be a string")
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or not math.isfinite(duration)
            or duration < 0
        ):
            raise InputError(f"result {r['id']!r}: 'duration_s' must be a non-negative number")
        results.append(TestResult(r["id"], outcome, float(duration)))
    final = body.get("final", True)
    if not isinstance(final, bool):
        raise InputError("'final' must be true or false")
    res = state.complete(run, lease_id, results, now, final=final)
    return {
        "accepted": len(res.accepted),
        "duplicates": list(res.duplicates),
        "foreign": list(res.foreign),
        "missing": list(res.missing),
    }


def handle_heartbeat(
    state: QueueState, run: str, body: Mapping[str, Any], now: float
) -> dict[str, Any]:
    return {"expires_at": state.heartbeat(run, _str(body, "lease_id"), now)}


def handle_progress(state: QueueState, run: str) -> dict[str, Any]:
    p = state.progress(run)
    return {
        "total": p.total,
        "pending": p.pending,
        "leased": p.leased,
        "completed": p.completed,
        "requeued": p.requeued,
        "leases": p.leases,
        "expired": p.expired,
        "remaining_s": round(p.remaining_s, 3),
        "done": p.done,
        "outcomes": dict(p.outcomes),
    }
