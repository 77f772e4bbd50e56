"""``/api/v1``: runner heartbeats and registry, queue mode, results upload, admin.

JSON in, JSON out, bearer tokens only (no cookies, so no CSRF surface). Three kinds of token:

* the admin token (``api-token``): everything;
* a runner token (``ci-app runners token create NAME``, stored hashed): heartbeats of that
  runner only;
* a run token (returned once by ``POST /api/v1/queue``, stored hashed): that run's queue and
  its results only — one repository's jobs cannot pull or complete another's tests.

Every request is rate limited per token (``rate-limit-per-minute``, ``rate-limit-burst``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from ci_app.errors import CiFanoutError, InputError
from ci_app.matrix import queue_api
from ci_app.matrix.queue import LeaseError, QueueConfig
from ci_app.model.labels import derive_labels
from ci_app.model.profile import HardwareProfile
from ci_app.model.results import ResultSet
from ci_app.store.web import (
    list_jobs,
    runner_rows,
    set_runner_load,
    set_runner_provider,
)
from ci_app.web.handlers import LABELS, REPORT
from ci_app.web.security import bearer_token, hash_token, new_token, tokens_equal

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _ctx() -> Any:
    return current_app.extensions["ci_fanout"]


def _json_body() -> dict[str, Any]:
    request.max_content_length = _ctx().settings.max_api_bytes
    data = request.get_json(silent=True, force=True)  # over the cap: 413 from get_data
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    resp = jsonify({"error": str(exc), **exc.extra})
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="ci-fanout"'
    if exc.status == 429:
        resp.headers["Retry-After"] = str(max(1, round(exc.extra.get("retry_after", 1))))
    return resp, exc.status


@bp.errorhandler(LeaseError)
def _lease_error(exc: LeaseError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 409


@bp.errorhandler(InputError)
def _input_error(exc: InputError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 400


@bp.before_request
def _rate_limit() -> None:
    ctx = _ctx()
    token = bearer_token(request.headers)
    g.token = token
    key = hash_token(token) if token else f"ip:{request.remote_addr}"
    allowed, wait = ctx.limiter.allow(key, time.monotonic())
    if not allowed:
        raise ApiError(429, "rate limit exceeded for this token", retry_after=wait)


@bp.after_request
def _count(resp: Response) -> Response:
    endpoint = (request.endpoint or "-").removeprefix("api.")
    _ctx().metrics.api.labels(endpoint, str(resp.status_code)).inc()
    return resp


def _is_admin() -> bool:
    admin = _ctx().settings.api_token
    token = g.get("token")
    return bool(admin and token and tokens_equal(token, admin))


def _require_admin() -> None:
    if not g.get("token"):
        raise ApiError(401, "missing bearer token")
    if not _is_admin():
        raise ApiError(403, "this needs the admin API token")


def _require_run(run: str) -> None:
    """Admin, or the bearer token created with this run's queue."""
    token = g.get("token")
    if not token:
        raise ApiError(401, "missing bearer token")
    if _is_admin():
        return
    ctx = _ctx()
    try:
        want = ctx.queue.token_hash(run)
    except LeaseError:
        want = None
    if want is None or not tokens_equal(hash_token(token), want):
        raise ApiError(403, f"this token is not valid for run {run!r}")


# ---------------------------------------------------------------------------------- runners
@bp.post("/runners/heartbeat")
def heartbeat() -> Response:
    ctx = _ctx()
    token = g.get("token")
    if not token:
        raise ApiError(401, "missing bearer token")
    name = ctx.store.runner_for_token(hash_token(token))
    if name is None:
        raise ApiError(401, "unknown or revoked runner token")
    body = _json_body()
    claimed = body.get("runner")
    if claimed is not None and claimed != name:
        raise ApiError(403, f"this token belongs to runner {name!r}, not {claimed!r}")
    now = ctx.clock()
    load = body.get("load") if isinstance(body.get("load"), dict) else None
    phash = body.get("profile_hash")
    raw_profile = body.get("profile")
    current = ctx.store.runner(name)
    if raw_profile is not None:
        if not isinstance(raw_profile, dict):
            raise ApiError(400, "'profile' must be a HardwareProfile v1 object")
        try:
            profile = HardwareProfile.from_dict(raw_profile)
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, f"unreadable profile: {exc}") from None
        labels = derive_labels(profile)
        changed = current is None or current.profile_hash != phash or current.profile is None
        ctx.store.upsert_runner(
            name,
            provider=current.provider if current else None,
            labels=labels,
            profile=raw_profile,
            profile_hash=str(phash) if phash else None,
            now=now,
        )
        ctx.store.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
        set_runner_load(ctx.store, name, load, now=now)
        if changed and ctx.settings.label_sync:
            # one sync per probe observation: each sync may count a label miss
            ctx.store.enqueue_job(
                LABELS, {"runner": name}, now=now, idempotency_key=f"labels:{name}:{phash}"
            )
        else:
            _periodic_label_sync(name, now)
        return jsonify({"ok": True, "need_profile": False, "labels": list(labels)})
    if current is None or current.profile is None or current.profile_hash != phash:
        # we do not hold the profile for this hash: the probe sends it at once; a known
        # runner is alive all the same
        if current is not None:
            ctx.store.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
            set_runner_load(ctx.store, name, load, now=now)
        return jsonify({"ok": False, "need_profile": True})
    ctx.store.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
    set_runner_load(ctx.store, name, load, now=now)
    _periodic_label_sync(name, now)
    return jsonify({"ok": True, "need_profile": False})


def _cpu(load: dict[str, Any] | None) -> float | None:
    v = (load or {}).get("cpu_percent")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _periodic_label_sync(name: str, now: float) -> None:
    """Re-check labels every ``label-sync-interval-s``: removals need consecutive misses."""
    s = _ctx().settings
    if not s.label_sync:
        return
    # interval 0: every heartbeat
    slot: float = int(now // s.label_sync_interval_s) if s.label_sync_interval_s > 0 else now
    _ctx().store.enqueue_job(
        LABELS, {"runner": name}, now=now, idempotency_key=f"labels:{name}:t{slot}"
    )


@bp.get("/runners")
def runners() -> Response:
    _require_admin()
    rows = runner_rows(_ctx().store)
    return jsonify(
        {
            "runners": [
                {
                    "name": r.name,
                    "provider": r.provider,
                    "status": r.status,
                    "labels": list(r.labels),
                    "last_seen": r.last_seen,
                    "busy": r.busy,
                    "load": r.load,
                    "profile_hash": r.profile_hash,
                    "synced_labels": list(r.synced_labels),
                    "sync_error": r.sync_error,
                }
                for r in rows
            ]
        }
    )


@bp.post("/admin/runners/<name>/tokens")
def create_runner_token(name: str) -> tuple[Response, int]:
    _require_admin()
    body = request.get_json(silent=True) or {}
    ctx = _ctx()
    token = issue_runner_token(ctx, name, provider=body.get("provider"))
    return jsonify({"runner": name, "token": token}), 201


@bp.delete("/admin/runners/<name>/tokens")
def revoke_runner_token(name: str) -> Response:
    _require_admin()
    ctx = _ctx()
    return jsonify(
        {"runner": name, "revoked": ctx.store.revoke_runner_tokens(name, now=ctx.clock())}
    )


def issue_runner_token(ctx: Any, name: str, *, provider: str | None = None) -> str:
    if not name or len(name) > 200 or not name.isprintable():
        raise ApiError(400, "runner name must be 1-200 printable characters")
    token = new_token("cfr")
    ctx.store.add_runner_token(name, hash_token(token), now=ctx.clock())
    if provider:
        set_runner_provider(ctx.store, name, str(provider), now=ctx.clock())
    return token


# ---------------------------------------------------------------------------------- queue
@bp.post("/queue")
def create_queue() -> tuple[Response, int]:
    _require_admin()
    ctx = _ctx()
    body = _json_body()
    run = body.get("run")
    if not isinstance(run, str) or not run or len(run) > 200:
        raise ApiError(400, "'run' must be a non-empty string (at most 200 characters)")
    matrix = body.get("matrix")
    if not isinstance(matrix, dict):
        raise ApiError(400, "'matrix' must be a queue-mode matrix (ci-app plan --mode queue)")
    from ci_app.matrix.planner import Matrix

    try:
        specs = Matrix.from_dict(matrix).queue_specs()
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(400, f"unreadable matrix: {exc}") from None
    if not specs:
        raise ApiError(400, "matrix has no queue: plan it with --mode queue")
    token = new_token("cfq")
    config = QueueConfig(lease_timeout_s=ctx.settings.queue_lease_timeout_s)
    ctx.queue.create_run(
        run,
        specs,
        config,
        ctx.clock(),
        token_hash=hash_token(token),
        repo=body.get("repo") if isinstance(body.get("repo"), str) else None,
    )
    url = request.host_url.rstrip("/") + f"/api/v1/queue/{run}"
    return jsonify({"run": run, "pools": sorted(specs), "token": token, "url": url}), 201


def _queue_call(run: str, fn: Callable[..., dict[str, Any]], *, body: bool = True) -> Response:
    _require_run(run)
    ctx = _ctx()
    if body:
        return jsonify(fn(ctx.queue, run, _json_body(), ctx.clock()))
    return jsonify(fn(ctx.queue, run))


@bp.post("/queue/<path:run>/lease")
def queue_lease(run: str) -> Response:
    return _queue_call(run, queue_api.handle_lease)


@bp.post("/queue/<path:run>/complete")
def queue_complete(run: str) -> Response:
    return _queue_call(run, queue_api.handle_complete)


@bp.post("/queue/<path:run>/heartbeat")
def queue_heartbeat(run: str) -> Response:
    return _queue_call(run, queue_api.handle_heartbeat)


@bp.post("/queue/<path:run>/cancel")
def queue_cancel(run: str) -> Response:
    _require_run(run)
    ctx = _ctx()
    body = _json_body()
    lease_id = body.get("lease_id")
    if not isinstance(lease_id, str) or not lease_id:
        raise ApiError(400, "request needs a non-empty string 'lease_id'")
    return jsonify({"requeued": ctx.queue.cancel(run, lease_id, ctx.clock())})


@bp.get("/queue/<path:run>/progress")
def queue_progress(run: str) -> Response:
    return _queue_call(run, queue_api.handle_progress, body=False)


# ---------------------------------------------------------------------------------- results
@bp.post("/results")
def results() -> tuple[Response, int]:
    ctx = _ctx()
    body = _json_body()
    try:
        rs = ResultSet.from_dict(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(
            400, f"not a ResultSet v1 results.json: {type(exc).__name__}: {exc}"
        ) from None
    run_id = rs.run.run_id
    if not run_id:
        raise ApiError(400, "results.json needs run.run_id")
    _require_run(run_id)
    try:
        inserted = ctx.store.ingest(rs)
    except CiFanoutError as exc:
        raise ApiError(400, str(exc)) from None
    shard = rs.run.shard_id or "default"
    job_id = None
    if ctx.settings.report_on_results:
        job_id = ctx.store.enqueue_job(
            REPORT,
            {"run_id": run_id},
            now=ctx.clock(),
            idempotency_key=f"report:{run_id}:{shard}",
        )
    status = 201 if inserted or rs.tests == () else 200
    return (
        jsonify(
            {
                "run_id": run_id,
                "shard_id": shard,
                "tests": inserted,
                "duplicate": not inserted and bool(rs.tests),
                "report_job": job_id,
            }
        ),
        status,
    )


# ---------------------------------------------------------------------------------- jobs
@bp.get("/jobs")
def jobs() -> Response:
    _require_admin()
    ctx = _ctx()
    state = request.args.get("state") or None
    rows = list_jobs(ctx.store, state=state, limit=min(1000, int(request.args.get("limit", 100))))
    return jsonify(
        {
            "counts": ctx.store.job_counts(),
            "jobs": [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "state": j.state,
                    "attempts": j.attempts,
                    "last_error": j.last_error,
                    "updated_at": j.updated_at,
                }
                for j in rows
            ],
        }
    )


@bp.post("/jobs/<int:job_id>/requeue")
def requeue(job_id: int) -> Response:
    _require_admin()
    ctx = _ctx()
    job = ctx.store.job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    if job.state != "parked":
        raise ApiError(409, f"job {job_id} is {job.state}, not parked")
    ctx.store.requeue_parked(job_id, now=ctx.clock())
    return jsonify({"id": job_id, "state": "queued"})
