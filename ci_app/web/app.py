"""Flask application factory: ``create_app(settings)``.

One app owns one :class:`~ci_app.store.Store` (the DuckDB file) and, unless told otherwise,
starts the job worker threads in the same process (see :mod:`ci_app.web.worker` for why).
Tests pass an in-memory store, a fake provider factory and ``start_worker=False``.

When the store fails for good (DuckDB's ``FatalException``, e.g. after a checkpoint hit a
full disk, every later call fails until the database is reopened) the app answers 503 to
everything, ``/healthz`` included, and calls ``on_fatal``: ``ci-app serve`` exits the worker
process then, and gunicorn starts a fresh one that reopens the file (replaying its WAL, so
nothing acknowledged is lost).
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ci_app import __version__
from ci_app.options.server import Settings
from ci_app.store import Store, open_store
from ci_app.web.batcher import DeliveryBatcher
from ci_app.web.charts import ChartCache
from ci_app.web.context import AppContext, ProviderFactory, SettingsProviders
from ci_app.web.metrics import Metrics
from ci_app.web.security import RateLimiter
from ci_app.web.worker import JobWorker

log = logging.getLogger(__name__)

__all__ = ["create_app"]


class AppState(AppContext):
    """:class:`AppContext` plus what only the web layer needs (limiter, worker)."""

    limiter: RateLimiter
    failures: RateLimiter
    charts: ChartCache
    worker: JobWorker
    batcher: DeliveryBatcher


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    providers: ProviderFactory | None = None,
    clock: Callable[[], float] = time.time,
    start_worker: bool = True,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> Flask:
    app = Flask(__name__, static_folder=None)
    if settings.proxy_hops:  # the client address (rate limits) from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_webhook_bytes, settings.max_api_bytes)
    app.config["JSON_SORT_KEYS"] = False
    owned = store is None
    the_store = store if store is not None else open_store(settings.db)
    if owned:
        the_store.db.set_wal_autocheckpoint(settings.db_wal_autocheckpoint)
    metrics = Metrics()
    ctx = AppState(
        settings=settings,
        store=the_store,
        providers=providers or SettingsProviders(settings, the_store),
        metrics=metrics,
        clock=clock,
        on_fatal=on_fatal,
    )
    ctx.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    ctx.failures = RateLimiter(
        settings.rate_limit_failures_per_minute, settings.rate_limit_failures_burst
    )
    ctx.charts = ChartCache(
        RateLimiter(settings.chart_renders_per_minute, max(1, settings.chart_renders_per_minute))
    )
    ctx.worker = JobWorker(ctx)
    ctx.batcher = DeliveryBatcher(the_store, clock)
    metrics.bind_store(the_store, lambda: ctx.queue, clock)
    app.extensions["ci_fanout"] = ctx

    from ci_app.web import api, dashboard, explorer, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(explorer.bp)

    @app.before_request
    def refuse_when_failed() -> tuple[Response, int] | None:
        if ctx.fatal is None:
            return None
        return jsonify(
            {"status": "error", "error": "the store failed; the server is restarting"}
        ), 503

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            counts = the_store.jobs.counts()
        except Exception as exc:  # the store is what can break
            ctx.check_fatal(exc)
            log.exception("health check failed")
            return jsonify({"status": "error", "error": type(exc).__name__}), 503
        worker_ok = ctx.worker.running or not start_worker
        body: dict[str, Any] = {
            "status": "ok" if worker_ok else "degraded",
            "version": __version__,
            "worker": ctx.worker.running,
            "jobs": counts,
        }
        return jsonify(body), 200 if worker_ok else 503

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        if ctx.check_fatal(exc):
            return jsonify({"error": "the store failed; the server is restarting"}), 503
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return jsonify({"error": "internal error"}), 500

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith(("/api/", "/webhooks/")) or exc.code == 413:
            resp = jsonify({"error": exc.description or exc.name})
            resp.status_code = exc.code or 500
            return resp
        return exc

    @app.after_request
    def security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self' data:; style-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'",
        )
        return resp

    if start_worker:
        ctx.worker.start()

        def _shutdown() -> None:
            ctx.worker.stop(timeout=5.0)
            if owned:
                the_store.close()

        atexit.register(_shutdown)
    return app
