"""``POST /webhooks/<provider>``: verify, dedupe, store, enqueue, answer 202 — in milliseconds.

Order matters: failed-attempt limit per client address (429, nothing read) → size cap,
chunked bodies included (413) → signature on the raw bytes (401, nothing stored; counts as a
failed attempt) → JSON, at most 64 levels deep (400) → routing (never rejects on schema
grounds) → one transaction storing the delivery and its jobs (a replayed delivery id is
acknowledged and not redone).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ci_app.errors import InputError
from ci_app.store.jobs import DeliveryIn
from ci_app.web.events import route
from ci_app.web.security import verify_github_signature, verify_gitlab, verify_shared_secret
from ci_app.web.validate import parse_json, read_body

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

PROVIDERS = ("github", "gitlab", "jenkins", "azure")


def _ctx() -> Any:
    return current_app.extensions["ci_fanout"]


def _reply(status: int, body: dict[str, Any]) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _verify(provider: str, body: bytes) -> bool:
    s = _ctx().settings
    headers = request.headers
    if provider == "github":
        return verify_github_signature(
            body,
            headers.get("X-Hub-Signature-256"),
            (s.github_webhook_secret, s.github_webhook_secret_previous),
        )
    if provider == "gitlab":
        return verify_gitlab(body, headers, s.gitlab_webhook_token, s.gitlab_signing_token)
    if provider == "jenkins":
        return verify_shared_secret(headers, s.jenkins_webhook_secret)
    return verify_shared_secret(headers, s.azure_webhook_secret)


def _delivery_id(provider: str, body: bytes, payload: Any) -> str | None:
    h = request.headers
    if provider == "github":
        return h.get("X-GitHub-Delivery") or None
    if provider == "gitlab":
        found = h.get("Idempotency-Key") or h.get("X-Gitlab-Event-UUID") or h.get("webhook-id")
    elif provider == "azure":
        found = h.get("X-CI-Fanout-Delivery") or (
            str(payload.get("id")) if isinstance(payload, dict) and payload.get("id") else None
        )
    else:
        found = h.get("X-CI-Fanout-Delivery")
    # without a delivery id, identical bodies are the same delivery
    return found or "sha256:" + hashlib.sha256(body).hexdigest()


def _event_name(provider: str) -> str:
    h = request.headers
    if provider == "github":
        return h.get("X-GitHub-Event", "")
    if provider == "gitlab":
        return h.get("X-Gitlab-Event", "")
    return provider


@bp.post("/<provider>")
def receive(provider: str) -> Response:
    started = time.perf_counter()
    ctx = _ctx()
    metrics = ctx.metrics
    if provider not in PROVIDERS:
        return _reply(404, {"error": f"no webhook endpoint for {provider!r}"})

    def done(status: int, outcome: str, event: str, body: dict[str, Any]) -> Response:
        metrics.deliveries.labels(provider, event or "-", outcome).inc()
        metrics.ack_seconds.labels(provider).observe(time.perf_counter() - started)
        return _reply(status, body)

    client = f"ip:{request.remote_addr}"
    if ctx.failures.exhausted(client, time.monotonic()):
        resp = done(429, "rate_limited", "-", {"error": "too many failed deliveries"})
        resp.headers["Retry-After"] = "60"
        return resp
    cap = ctx.settings.max_webhook_bytes
    try:
        body = read_body(request, cap)
    except RequestEntityTooLarge:
        return done(413, "too_large", "-", {"error": f"body over {cap} bytes"})
    if not _verify(provider, body):
        ctx.failures.allow(client, time.monotonic())
        log.warning("webhook %s: bad or missing signature from %s", provider, request.remote_addr)
        return done(401, "unauthorized", "-", {"error": "signature or token does not match"})
    event = _event_name(provider)
    if provider in ("github", "gitlab") and not event:
        return done(400, "bad_request", "-", {"error": "missing event header"})
    try:
        payload = parse_json(body)
    except InputError as exc:
        return done(400, "bad_request", event, {"error": str(exc)})
    text = body.decode("utf-8")
    if not isinstance(payload, dict):
        return done(400, "bad_request", event, {"error": "body must be a JSON object"})
    delivery = _delivery_id(provider, body, payload)
    if not delivery:
        return done(400, "bad_request", event, {"error": "missing X-GitHub-Delivery header"})
    if len(delivery) > 200:
        return done(400, "bad_request", event, {"error": "delivery id too long"})
    routed = route(provider, event, payload)
    try:
        outcome = ctx.batcher.submit(
            DeliveryIn(provider, delivery, routed.event, text, routed.jobs)
        )
    except Exception as exc:
        ctx.check_fatal(exc)
        log.exception("webhook %s delivery=%s could not be stored", provider, delivery)
        return done(503, "store_error", routed.event, {"error": "could not store the delivery"})
    if not outcome.new:
        log.info("webhook %s %s delivery=%s: duplicate, ignored", provider, routed.event, delivery)
        return done(202, "duplicate", routed.event, {"status": "duplicate", "delivery": delivery})
    if routed.ignored:
        log.info(
            "webhook %s %s delivery=%s: ignored (%s)",
            provider,
            routed.event,
            delivery,
            routed.ignored,
        )
        return done(
            202,
            "ignored",
            routed.event,
            {"status": "ignored", "reason": routed.ignored, "delivery": delivery},
        )
    log.info(
        "webhook %s %s delivery=%s repo=%s: %d job(s)",
        provider,
        routed.event,
        delivery,
        (routed.jobs[0][1].get("repo") if routed.jobs else None),
        len(outcome.job_ids),
    )
    return done(
        202,
        "queued" if routed.jobs else "stored",
        routed.event,
        {
            "status": "queued" if routed.jobs else "stored",
            "delivery": delivery,
            "jobs": list(outcome.job_ids),
        },
    )
