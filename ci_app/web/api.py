"""``/api/v1``: runner heartbeats and registry, run tokens, queue mode, results upload, admin.

JSON in, JSON out, bearer tokens only (no cookies, so no CSRF surface). Three kinds of token:

* the admin token (``api-token``): everything;
* a runner token (``ci-app runners token create NAME``, stored hashed): heartbeats of that
  runner only; the labels it is granted are limited by its allow-list;
* a run token (``POST /api/v1/runs`` or ``POST /api/v1/queue``, stored hashed), bound to one
  run identity (run, repo, provider, PR, commit): that run's queue, and results naming exactly
  that identity; it expires and is revoked when the run's final report is done.

The token is checked from the headers before any body is read (an unauthenticated upload
costs nothing). Requests are rate limited per valid token; requests without a valid token
per client address (``rate-limit-failures-*``), so a fresh bogus token per request does not
escape the limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from ci_app.errors import CiFanoutError, InputError
from ci_app.matrix import queue_api
from ci_app.matrix.queue import LeaseError, QueueConfig
from ci_app.model.allow import grant_labels, parse_patterns
from ci_app.model.labels import derive_labels
from ci_app.model.profile import HardwareProfile
from ci_app.model.results import ResultSet
from ci_app.providers.base import REGISTRY
from ci_app.store.identities import RunGrant, RunIdentity, RunIdentityError
from ci_app.web.handlers import LABELS, REPORT, allowed_patterns
from ci_app.web.security import bearer_token, hash_token, new_token, tokens_equal
from ci_app.web.validate import (
    check_resultset,
    parse_json,
    read_body,
    sanitize_health,
    sanitize_load,
)

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

RUN_TOKEN_PREFIX = "cfq"  # noqa: S105 - a prefix, not a secret
RUNNER_TOKEN_PREFIX = "cfr"  # noqa: S105


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request's bearer token is: ``admin``, a ``runner`` or a ``run``."""

    kind: str
    key: str  # rate-limit bucket
    runner: str | None = None
    grant: RunGrant | None = None


def _ctx() -> Any:
    return current_app.extensions["ci_fanout"]


def _json_body() -> dict[str, Any]:
    """The request body as a JSON object; call only after the token was checked."""
    data = read_body(request, _ctx().settings.max_api_bytes)  # over the cap: 413
    value = parse_json(data)  # InputError: 400
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    resp = jsonify({"error": str(exc), **exc.extra})
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="ci-fanout"'
    if exc.status == 429:
        resp.headers["Retry-After"] = str(max(1, math.ceil(exc.extra.get("retry_after", 1))))
    return resp, exc.status


@bp.errorhandler(LeaseError)
def _lease_error(exc: LeaseError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 409


@bp.errorhandler(InputError)
def _input_error(exc: InputError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 400


def _resolve(token: str) -> Principal | None:
    """The principal of a bearer token, from the headers alone (no body is read)."""
    ctx = _ctx()
    admin = ctx.settings.api_token
    if admin and tokens_equal(token, admin):
        return Principal("admin", "admin")
    hashed = hash_token(token)
    if token.startswith(RUN_TOKEN_PREFIX + "_"):
        grant = ctx.store.identities.run_grant(hashed, now=ctx.clock())
        return None if grant is None else Principal("run", hashed, grant=grant)
    if token.startswith(RUNNER_TOKEN_PREFIX + "_"):
        name = ctx.store.runners.runner_for_token(hashed)
        return None if name is None else Principal("runner", hashed, runner=name)
    return None


@bp.before_request
def _authenticate() -> None:
    ctx = _ctx()
    token = bearer_token(request.headers)
    principal = _resolve(token) if token else None
    g.token = token
    g.principal = principal
    now = time.monotonic()
    if principal is not None:
        allowed, wait = ctx.limiter.allow(principal.key, now)
    else:  # no valid token: this request will fail; count it against the client address
        allowed, wait = ctx.failures.allow(f"ip:{request.remote_addr}", now)
    if not allowed:
        raise ApiError(429, "rate limit exceeded", retry_after=wait)


@bp.after_request
def _count(resp: Response) -> Response:
    endpoint = (request.endpoint or "-").removeprefix("api.")
    _ctx().metrics.api.labels(endpoint, str(resp.status_code)).inc()
    return resp


def _principal() -> Principal:
    """The request's principal, or 401 (no token, or an unknown, expired or revoked one)."""
    p: Principal | None = g.get("principal")
    if p is None:
        if not g.get("token"):
            raise ApiError(401, "missing bearer token")
        raise ApiError(401, "unknown, expired or revoked token")
    return p


def _is_admin() -> bool:
    p: Principal | None = g.get("principal")
    return p is not None and p.kind == "admin"


def _require_admin() -> None:
    if _principal().kind != "admin":
        raise ApiError(403, "this needs the admin API token")


def _require_run(run: str) -> RunGrant | None:
    """Admin (returns None), or a live token of this run (returns its grant); else 401/403."""
    p = _principal()
    if p.kind == "admin":
        return None
    if p.kind == "run" and p.grant is not None and p.grant.identity.run == run:
        return p.grant
    raise ApiError(403, f"this token is not valid for run {run!r}")


# ---------------------------------------------------------------------------------- runners
@bp.post("/runners/heartbeat")
def heartbeat() -> Response:
    ctx = _ctx()
    p = _principal()
    if p.kind != "runner" or p.runner is None:
        raise ApiError(403, "heartbeats need a runner token (ci-app runners token create NAME)")
    name = p.runner
    body = _json_body()
    claimed = body.get("runner")
    if claimed is not None and claimed != name:
        raise ApiError(403, f"this token belongs to runner {name!r}, not {claimed!r}")
    now = ctx.clock()
    load = sanitize_load(body.get("load"))
    health = sanitize_health(body.get("health"))
    if health is not None:  # kept with the load sample: the latest heartbeat's word
        load = {**(load or {}), "health": health}
    phash = body.get("profile_hash")
    if phash is not None and (not isinstance(phash, str) or len(phash) > 200):
        raise ApiError(400, "'profile_hash' must be a string of at most 200 characters")
    raw_profile = body.get("profile")
    current = ctx.store.runners.runner(name)
    if raw_profile is not None:
        if not isinstance(raw_profile, dict):
            raise ApiError(400, "'profile' must be a HardwareProfile v1 object")
        try:
            profile = HardwareProfile.from_dict(raw_profile)
            derived = derive_labels(profile)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApiError(400, f"unreadable profile: {type(exc).__name__}: {exc}") from None
        granted, refused = grant_labels(derived, allowed_patterns(ctx, name))
        changed = current is None or current.profile_hash != phash or current.profile is None
        ctx.store.runners.upsert_runner(
            name,
            provider=current.provider if current else None,
            labels=granted,
            profile=raw_profile,
            profile_hash=phash,
            now=now,
        )
        ctx.store.runners.set_runner_labels(name, granted, refused, now=now)
        if refused:
            log.warning(
                "runner %s claims labels its allow-list does not grant (not synced): %s",
                name,
                " ".join(refused),
            )
        ctx.store.runners.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
        ctx.store.runners.set_runner_load(name, load, now=now)
        if changed and ctx.settings.label_sync:
            # one sync per probe observation: each sync may count a label miss
            ctx.store.jobs.enqueue(
                LABELS, {"runner": name}, now=now, idempotency_key=f"labels:{name}:{phash}"
            )
        else:
            _periodic_label_sync(name, now)
        reply: dict[str, Any] = {"ok": True, "need_profile": False, "labels": list(granted)}
        if refused:
            reply["refused"] = list(refused)
            reply["warning"] = (
                "labels not granted by this runner's allow-list (ask the lab admin): "
                + " ".join(refused)
            )
        return jsonify(reply)
    if current is None or current.profile is None or current.profile_hash != phash:
        # we do not hold the profile for this hash: the probe sends it at once; a known
        # runner is alive all the same
        if current is not None:
            ctx.store.runners.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
            ctx.store.runners.set_runner_load(name, load, now=now)
        return jsonify({"ok": False, "need_profile": True})
    ctx.store.runners.record_heartbeat(name, now=now, load=_cpu(load), payload=load)
    ctx.store.runners.set_runner_load(name, load, now=now)
    _periodic_label_sync(name, now)
    return jsonify({"ok": True, "need_profile": False})


#: labels of browser capability: withheld from the planner while a runner's pool is degraded
_BROWSER_LABELS = ("webgpu", "webnn-")


def routable_labels(labels: Sequence[str], load: Mapping[str, Any] | None) -> list[str]:
    """The labels the planner may route by: all of them, less the browser ones while the
    runner reports a degraded browser pool (repeated crashes), so no new browser work lands
    there until it recovers."""
    health = (load or {}).get("health")
    if isinstance(health, Mapping) and health.get("status") == "degraded":
        return [x for x in labels if not x.startswith(_BROWSER_LABELS)]
    return list(labels)


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
    _ctx().store.jobs.enqueue(
        LABELS, {"runner": name}, now=now, idempotency_key=f"labels:{name}:t{slot}"
    )


@bp.get("/runners")
def runners() -> Response:
    _require_admin()
    rows = _ctx().store.runners.runner_rows()
    return jsonify(
        {
            "runners": [
                {
                    "name": r.name,
                    "provider": r.provider,
                    "status": r.status,
                    "labels": routable_labels(r.labels, r.load),
                    "refused_labels": list(r.refused_labels),
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
    body = _json_body() if request.content_length or request.is_json else {}
    ctx = _ctx()
    provider = body.get("provider")
    if provider is not None and (not isinstance(provider, str) or provider not in REGISTRY):
        raise ApiError(400, f"'provider' must be one of {', '.join(sorted(REGISTRY))}")
    allow = _patterns(body.get("allow_labels"), "allow_labels")
    token = issue_runner_token(ctx, name, provider=provider, allow=allow)
    reply: dict[str, Any] = {"runner": name, "token": token}
    reply["allow_labels"] = list(allowed_patterns(ctx, name))
    return jsonify(reply), 201


def _patterns(raw: Any, field: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, str)):
        raise ApiError(400, f"'{field}' must be a list of labels or label globs")
    try:
        return parse_patterns(raw)
    except ValueError as exc:
        raise ApiError(400, f"'{field}': {exc}") from None


@bp.delete("/admin/runners/<name>/tokens")
def revoke_runner_token(name: str) -> Response:
    _require_admin()
    ctx = _ctx()
    return jsonify(
        {"runner": name, "revoked": ctx.store.runners.revoke_runner_tokens(name, now=ctx.clock())}
    )


@bp.get("/admin/pools")
def list_pools() -> Response:
    _require_admin()
    pools = _ctx().store.runners.label_pools()
    return jsonify({"pools": [{"pattern": p, "allow_labels": list(a)} for p, a in pools]})


@bp.put("/admin/pools/<path:pattern>")
def put_pool(pattern: str) -> Response:
    """Label allow-list for every runner whose name matches the glob ``pattern``."""
    _require_admin()
    ctx = _ctx()
    if not pattern or len(pattern) > 200 or not pattern.isprintable():
        raise ApiError(400, "a pool is a runner-name glob of 1-200 printable characters")
    allow = _patterns(_json_body().get("allow_labels"), "allow_labels")
    if allow is None:
        raise ApiError(400, "request needs 'allow_labels': a list of labels or label globs")
    ctx.store.runners.set_label_pool(pattern, allow, now=ctx.clock())
    return jsonify({"pattern": pattern, "allow_labels": list(allow)})


@bp.delete("/admin/pools/<path:pattern>")
def delete_pool(pattern: str) -> Response:
    _require_admin()
    return jsonify({"pattern": pattern, "removed": _ctx().store.runners.remove_label_pool(pattern)})


def issue_runner_token(
    ctx: Any,
    name: str,
    *,
    provider: str | None = None,
    allow: tuple[str, ...] | None = None,
) -> str:
    if not name or len(name) > 200 or not name.isprintable():
        raise ApiError(400, "runner name must be 1-200 printable characters")
    token = new_token(RUNNER_TOKEN_PREFIX)
    ctx.store.runners.add_runner_token(name, hash_token(token), now=ctx.clock(), allow=allow)
    if provider:
        ctx.store.runners.set_runner_provider(name, str(provider), now=ctx.clock())
    return token


# ---------------------------------------------------------------------------------- run tokens
_IDENTITY_KEYS = ("repo", "provider", "pr", "commit")


def _run_name(body: dict[str, Any]) -> str:
    run = body.get("run")
    if not isinstance(run, str) or not run or len(run) > 200 or not run.isprintable():
        raise ApiError(400, "'run' must be a non-empty printable string (at most 200 characters)")
    return run


def _identity(body: dict[str, Any], run: str, *, provider_required: bool) -> RunIdentity:
    repo, provider, pr, commit = (body.get(k) for k in _IDENTITY_KEYS)
    for key, value, limit in (("repo", repo, 300), ("commit", commit, 200)):
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > limit or not value.isprintable()
        ):
            raise ApiError(400, f"'{key}' must be null or a printable string of 1-{limit} chars")
    if provider is None and provider_required:
        raise ApiError(400, f"'provider' is required: one of {', '.join(sorted(REGISTRY))}")
    if provider is not None and (not isinstance(provider, str) or provider not in REGISTRY):
        raise ApiError(400, f"'provider' must be one of {', '.join(sorted(REGISTRY))}")
    if pr is not None and (isinstance(pr, bool) or not isinstance(pr, int) or not 0 < pr < 2**31):
        raise ApiError(400, "'pr' must be null or a positive integer")
    return RunIdentity(run, repo, provider, pr, commit)


def _expiry(body: dict[str, Any]) -> float:
    s = _ctx().settings
    ttl = body.get("ttl_s")
    if ttl is None:
        ttl = s.run_token_ttl_s
    elif isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise ApiError(400, "'ttl_s' must be null or a number of seconds")
    elif not 0 < ttl <= s.run_token_max_ttl_s:
        raise ApiError(400, f"'ttl_s' must be in (0, {s.run_token_max_ttl_s:g}]")
    return float(_ctx().clock() + ttl)


def _issue_run_token(identity: RunIdentity, expires_at: float) -> tuple[str, RunGrant]:
    ctx = _ctx()
    token = new_token(RUN_TOKEN_PREFIX)
    try:
        grant = ctx.store.identities.bind_run(
            identity, token_hash=hash_token(token), now=ctx.clock(), expires_at=expires_at
        )
    except RunIdentityError as exc:
        raise ApiError(409, str(exc)) from None
    return token, grant


@bp.post("/runs")
def create_run() -> tuple[Response, int]:
    """A run token bound to ``{"run", "repo", "provider", "pr", "commit"}`` (admin)."""
    _require_admin()
    body = _json_body()
    run = _run_name(body)
    identity = _identity(body, run, provider_required=True)
    token, grant = _issue_run_token(identity, _expiry(body))
    return jsonify(
        {"run": run, "token": token, "expires_at": grant.expires_at, **_identity_reply(grant)}
    ), 201


def _identity_reply(grant: RunGrant) -> dict[str, Any]:
    i = grant.identity
    return {"identity": {"repo": i.repo, "provider": i.provider, "pr": i.pr, "commit": i.commit}}


@bp.delete("/runs/<path:run>")
def revoke_run(run: str) -> Response:
    """Revoke every token of a run (admin, or one of the run's own tokens when done)."""
    _require_run(run)
    ctx = _ctx()
    return jsonify(
        {"run": run, "revoked": ctx.store.identities.revoke_run_tokens(run, now=ctx.clock())}
    )


# ---------------------------------------------------------------------------------- queue
@bp.post("/queue")
def create_queue() -> tuple[Response, int]:
    _require_admin()
    ctx = _ctx()
    body = _json_body()
    run = _run_name(body)
    matrix = body.get("matrix")
    if not isinstance(matrix, dict):
        raise ApiError(400, "'matrix' must be a queue-mode matrix (ci-app plan --mode queue)")
    from ci_app.matrix.planner import Matrix

    try:
        specs = Matrix.from_dict(matrix).queue_specs()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(400, f"unreadable matrix: {exc}") from None
    if not specs:
        raise ApiError(400, "matrix has no queue: plan it with --mode queue")
    # a run bound before (POST /runs), or holding results, keeps its identity: fields left
    # out here are its own
    bound = ctx.store.identities.run_identity(run, stored=True)
    if bound is not None:
        body = {**{k: getattr(bound, k) for k in _IDENTITY_KEYS}, **body}
    identity = _identity(body, run, provider_required=False)
    if ctx.queue.has_run(run):
        raise ApiError(409, f"queue run {run!r} already exists")
    expires_at = _expiry(body)
    token, grant = _issue_run_token(identity, expires_at)
    config = QueueConfig(lease_timeout_s=ctx.settings.queue_lease_timeout_s)
    try:
        ctx.queue.create_run(
            run, specs, config, ctx.clock(), token_hash=None, repo=grant.identity.repo
        )
    except Exception:
        ctx.store.identities.forget_run_token(hash_token(token))
        raise
    url = request.host_url.rstrip("/") + f"/api/v1/queue/{run}"
    return jsonify(
        {
            "run": run,
            "pools": sorted(specs),
            "token": token,
            "expires_at": grant.expires_at,
            "url": url,
            **_identity_reply(grant),
        }
    ), 201


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


@bp.get("/queue/<path:run>/results")
def queue_results(run: str) -> Response:
    """The queue's record of the run: what the CI report step merges before accounting."""
    return _queue_call(run, queue_api.handle_results, body=False)


# ---------------------------------------------------------------------------------- results
@bp.post("/results")
def results() -> tuple[Response, int]:
    ctx = _ctx()
    p = _principal()  # before the body: an unauthenticated upload is never read
    if p.kind not in ("admin", "run"):
        raise ApiError(403, "results need the run's token (or the admin token)")
    body = _json_body()
    try:
        rs = ResultSet.from_dict(body)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ApiError(
            400, f"not a ResultSet v1 results.json: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    check_resultset(rs)
    run_id = rs.run.run_id
    if not run_id:
        raise ApiError(400, "results.json needs run.run_id")
    grant = _require_run(run_id)
    if grant is not None and not rs.run.commit and grant.identity.commit:
        rs = rs.with_run(replace(rs.run, commit=grant.identity.commit))
    try:
        inserted = ctx.store.identities.ingest_checked(rs, grant)
    except RunIdentityError as exc:
        raise ApiError(403, str(exc)) from None
    except CiFanoutError as exc:
        raise ApiError(400, str(exc)) from None
    shard = rs.run.shard_id or "default"
    job_id = None
    if ctx.settings.report_on_results:
        job_id = ctx.store.jobs.enqueue(
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
    raw_limit = request.args.get("limit", "100")
    if not raw_limit.isdigit():
        raise ApiError(400, "'limit' must be a whole number")
    rows = ctx.store.jobs.list_jobs(state=state, limit=max(1, min(1000, int(raw_limit))))
    return jsonify(
        {
            "counts": ctx.store.jobs.counts(),
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
    job = ctx.store.jobs.job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    if job.state != "parked":
        raise ApiError(409, f"job {job_id} is {job.state}, not parked")
    ctx.store.jobs.requeue_parked(job_id, now=ctx.clock())
    return jsonify({"id": job_id, "state": "queued"})
