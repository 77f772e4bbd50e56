"""The queue's HTTP contract as pure functions: JSON body in, JSON body out.

The web app mounts these under ``/api/v1/queue/<run>``; the tests' loopback server does the same
over an :class:`~ci_app.matrix.queue.InMemoryQueue`. Clients (the pytest plugin, ``ci-app shard
run``) only know the URL ``{url}`` of one run's queue:

* ``POST {url}/lease`` ``{"runner", "labels": [...], "pool"?, "shard"?}`` →
  ``{"lease_id", "pool", "tests": [...], "expires_at"}``, or ``{"done": true}``, or
  ``{"done": false, "retry_after": seconds}`` (nothing pending, other leases outstanding);
* ``POST {url}/complete`` ``{"lease_id", "results": [{"id", "outcome", "duration_s",
  "message"?}], "final"?: true, "next"?: {lease body}}`` → ``{"accepted", "duplicates",
  "foreign", "missing"}``, plus ``"next"`` (the answer to a lease with that body) when asked: a
  runner reports what it finished and gets its next batch in one round trip;
* ``POST {url}/heartbeat`` ``{"lease_id"}`` → ``{"expires_at"}``: extends every lease the
  runner holds (a partial ``complete`` does the same);
* ``GET {url}/progress`` → counts;
* ``GET {url}/results`` → the queue's record: every accepted result with the runner that
  reported it, and the leases that expired (their runner stopped answering).

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
    ExpiredLease,
    Lease,
    QueueConfig,
    QueueState,
    TestResult,
    Wait,
)

__all__ = [
    "OUTCOMES",
    "handle_complete",
    "handle_create",
    "handle_heartbeat",
    "handle_lease",
    "handle_progress",
    "handle_results",
    "parse_record",
    "pools_for_runner",
]

#: outcomes a runner may report; ``missing`` = leased, never reported (final completion)
OUTCOMES = frozenset({"passed", "failed", "error", "skipped", "missing"})


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
    shard = body.get("shard")
    if shard is not None and (not isinstance(shard, str) or len(shard) > 200):
        raise InputError("'shard' must be the CI job's shard id (a string)")
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
        got = state.lease(run, p, runner, now, shard=shard)
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


def _duration(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"'duration_s' must be a number of seconds, got {value!r:.40}")
    d = float(value)
    if not math.isfinite(d) or d < 0:
        raise InputError(f"'duration_s' must be finite and >= 0, got {value!r:.40}")
    return d


def _result(r: Any) -> TestResult:
    if not isinstance(r, Mapping) or not isinstance(r.get("id"), str) or not r["id"]:
        raise InputError("each result needs a non-empty string 'id'")
    outcome = r.get("outcome", "passed")
    if outcome not in OUTCOMES:
        raise InputError(f"result {r['id']!r:.200}: outcome must be one of {sorted(OUTCOMES)}")
    message = r.get("message")
    if message is not None and not isinstance(message, str):
        raise InputError(f"result {r['id']!r:.200}: 'message' must be a string")
    return TestResult(r["id"], outcome, _duration(r.get("duration_s")), message)


def handle_complete(
    state: QueueState, run: str, body: Mapping[str, Any], now: float
) -> dict[str, Any]:
    lease_id = _str(body, "lease_id")
    raw = body.get("results") or []
    if not isinstance(raw, list):
        raise InputError("'results' must be a list of {id, outcome, duration_s}")
    results = [_result(r) for r in raw]
    final = body.get("final", True)
    if not isinstance(final, bool):
        raise InputError("'final' must be true or false")
    nxt = body.get("next")
    if nxt is not None and not isinstance(nxt, Mapping):
        raise InputError("'next' must be a lease request {runner, labels, pool?}")
    res = state.complete(run, lease_id, results, now, final=final)
    out: dict[str, Any] = {
        "accepted": len(res.accepted),
        "duplicates": list(res.duplicates),
        "foreign": list(res.foreign),
        "missing": list(res.missing),
    }
    if nxt is not None:
        out["next"] = handle_lease(state, run, nxt, now)
    return out


def handle_heartbeat(
    state: QueueState, run: str, body: Mapping[str, Any], now: float
) -> dict[str, Any]:
    return {"expires_at": state.heartbeat(run, _str(body, "lease_id"), now)}


def handle_results(state: QueueState, run: str) -> dict[str, Any]:
    """The queue's record of a run (``GET {url}/results``); :func:`parse_record` reads it."""
    results = state.results(run)
    return {
        "run": run,
        "results": [
            {
                "id": r.id,
                "outcome": r.outcome,
                "duration_s": r.duration_s,
                "message": r.message,
                "runner": r.runner,
            }
            for _, r in sorted(results.items())
        ],
        "expired": [
            {
                "lease_id": e.lease_id,
                "pool": e.pool,
                "runner": e.runner,
                "tests": e.tests,
                "shard": e.shard,
            }
            for e in state.expired_leases(run)
        ],
    }


def parse_record(doc: Any) -> tuple[list[TestResult], list[ExpiredLease]]:
    """Read a ``GET {url}/results`` answer (from a server: checked like any input)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("results"), list):
        raise InputError("not a queue record: expected {results: [...], expired: [...]}")
    results = []
    for r in doc["results"]:
        res = _result(r)
        runner = r.get("runner")
        results.append(
            TestResult(res.id, res.outcome, res.duration_s, res.message, str(runner or "") or None)
        )
    expired = []
    for e in doc.get("expired") or ():
        if not isinstance(e, Mapping):
            raise InputError("queue record: each expired lease must be an object")
        tests = e.get("tests") or 0
        if isinstance(tests, bool) or not isinstance(tests, int):
            raise InputError("queue record: an expired lease's 'tests' must be an integer")
        expired.append(
            ExpiredLease(
                str(e.get("lease_id") or ""),
                str(e.get("pool") or ""),
                str(e.get("runner") or ""),
                tests,
                str(e["shard"]) if e.get("shard") else None,
            )
        )
    return results, expired


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
