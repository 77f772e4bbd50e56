"""Server-rendered dashboard: overview, runners, pipeline runs, per-repo trends and flaky tests
(matplotlib PNG routes), parked jobs; the run, test and runner pages and search live in
:mod:`ci_app.web.explorer`. Read-only (GET forms only, no CSRF surface); protected by HTTP
basic auth when ``dashboard-password`` is set."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request

from ci_app.store import explorer as q
from ci_app.web.charts import RenderLimitedError
from ci_app.web.security import basic_auth_password, tokens_equal
from ci_app.web.validate import http_url

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


def _ctx() -> Any:
    return current_app.extensions["ci_fanout"]


#: page CSP: the app's, but the filter forms may submit (GET) to this origin
PAGE_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def page_headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    return resp


@bp.before_request
def require_dashboard_auth() -> Response | None:
    password = _ctx().settings.dashboard_password
    if not password:
        return None
    given = basic_auth_password(request.headers)
    if given is not None and tokens_equal(given, password):
        return None
    return Response(
        "authentication required\n",
        401,
        {"WWW-Authenticate": 'Basic realm="ci-fanout dashboard"', "Content-Type": "text/plain"},
    )


bp.after_request(page_headers)


@bp.app_template_filter("ago")
def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    delta = max(0.0, _ctx().clock() - float(ts))
    if delta < 90:
        return f"{delta:.0f} s ago"
    if delta < 5400:
        return f"{delta / 60:.0f} min ago"
    if delta < 172800:
        return f"{delta / 3600:.0f} h ago"
    return f"{delta / 86400:.0f} days ago"


@bp.app_template_filter("http_url")
def _http_url(url: Any) -> str | None:
    """Link targets from stored (client-sent) data: http(s) only, never ``javascript:``."""
    return http_url(url)


@bp.app_template_filter("utc")
def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_text(load: Any) -> str:
    if not isinstance(load, dict):
        return "-"
    parts = []
    cpu = load.get("cpu_percent")
    if isinstance(cpu, (int, float)):
        parts.append(f"cpu {cpu:.0f}%")
    used, total = load.get("memory_used_bytes"), load.get("memory_total_bytes")
    if isinstance(used, (int, float)) and isinstance(total, (int, float)) and total:
        parts.append(f"mem {100 * used / total:.0f}%")
    gpus = load.get("gpus")
    if isinstance(gpus, list) and gpus:
        utils = [g.get("utilization_percent") for g in gpus if isinstance(g, dict)]
        utils = [u for u in utils if isinstance(u, (int, float))]
        if utils:
            parts.append("gpu " + "/".join(f"{u:.0f}%" for u in utils))
    return ", ".join(parts) or "-"


@bp.get("/")
def index() -> str:
    from ci_app.web.explorer import fleet

    ctx = _ctx()
    rows = ctx.store.runners.runner_rows()
    runs = ctx.store.results.runs(limit=10)
    totals = {t.run_id: t for t in ctx.store.results.run_totals([r.run_id for r in runs])}
    runners = fleet(rows)
    return render_template(
        "index.html",
        runners_online=runners["online"],
        runners_busy=runners["busy"],
        runners_total=runners["known"],
        runner_counts=runners["counts"],
        jobs=ctx.store.jobs.counts(),
        ages=ctx.store.jobs.age_stats(now=ctx.clock()),
        deliveries=ctx.store.jobs.delivery_count(),
        runs=runs,
        totals=totals,
        repos=sorted({r.repo for r in ctx.store.results.runs(limit=500) if r.repo}),
    )


def _class_names(classes: set[str]) -> dict[str, str]:
    from ci_app.web.explorer import page_names

    return page_names(classes)


def _statuses_of(rows: Any) -> dict[str, str]:
    from ci_app.web.explorer import runner_statuses

    return runner_statuses(rows)


@bp.get("/runners")
def runners() -> str:
    from ci_app.web.explorer import pool_rows

    rows = _ctx().store.runners.runner_rows()
    statuses = _statuses_of(rows)
    return render_template(
        "runners.html",
        runners=rows,
        statuses=statuses,
        pools=pool_rows(rows, statuses),
        load_text=load_text,
    )


@bp.get("/runs")
def runs() -> str:
    from ci_app.web.explorer import query_arg

    ctx = _ctx()
    repo = query_arg("repo")
    branch = query_arg("branch")
    query = query_arg("q")
    pr_text = query_arg("pr")
    if pr_text is not None and not pr_text.isdigit():
        abort(400, description="'pr' must be a pull request number")
    pr = int(pr_text) if pr_text else None
    runs = q.search_runs(ctx.store.db, repo=repo, branch=branch, query=query, pr=pr, limit=100)
    totals = {t.run_id: t for t in ctx.store.results.run_totals([r.run_id for r in runs])}
    shards: dict[str, int] = {}
    for s in ctx.store.results.shards([r.run_id for r in runs]):
        shards[s.run_id] = shards.get(s.run_id, 0) + 1
    queues = []
    for run, qrepo, created in ctx.queue.runs(limit=30):
        queues.append((run, qrepo, created, ctx.queue.progress(run)))
    return render_template(
        "runs.html",
        runs=runs,
        totals=totals,
        shards=shards,
        queues=queues,
        repo=repo,
        filters={"repo": repo, "branch": branch, "q": query, "pr": pr_text},
        repos=sorted({r.repo for r in ctx.store.results.runs(limit=500) if r.repo}),
        branches=q.branches(ctx.store.db, repo),
    )


@bp.get("/repo")
def repo() -> str:
    from ci_app.reporting.flaky import classify_history, flaky_tests

    ctx = _ctx()
    name = request.args.get("name") or ""
    if not name:
        abort(404)
    runs = ctx.store.results.runs(repo=name, limit=50)
    if not runs:
        abort(404)
    verdicts = classify_history(ctx.store.results.history(repo=name, max_runs=300))
    flaky = flaky_tests(verdicts)
    totals = ctx.store.results.run_totals([r.run_id for r in runs])
    names = _class_names({e.runner_class for v in flaky for e in v.evidence[:5]})
    return render_template(
        "repo.html",
        name=name,
        runs=runs,
        flaky=flaky,
        totals=list(reversed(totals)),
        names=names,
    )


CHART_KINDS = ("trend", "slowest", "runner-classes")


@bp.get("/charts/<kind>.png")
def chart(kind: str) -> Response:
    """A chart of a repository's latest run: rendered once per state of that run (a cheap
    query decides), then served from memory; renders are rate limited per address."""
    from ci_app.reporting import charts
    from ci_app.reporting.report import build_report

    if kind not in CHART_KINDS:
        abort(404)
    ctx = _ctx()
    repo = request.args.get("repo") or ""
    latest = ctx.store.results.runs(repo=repo, limit=1) if 0 < len(repo) <= 300 else []
    if not latest:
        abort(404)
    run = latest[0]
    totals = ctx.store.results.run_totals([run.run_id])
    state = (totals[0].tests, totals[0].failed, totals[0].duration_s) if totals else None
    makers = {
        "trend": charts.trend_chart,
        "slowest": charts.slowest_chart,
        "runner-classes": charts.runner_class_chart,
    }

    def make() -> bytes:
        png: bytes = makers[kind](build_report(ctx.store.results, run.run_id))
        return png

    try:
        png, etag = ctx.charts.render(
            (kind, repo, run.run_id, run.seq, state), f"ip:{request.remote_addr}", make
        )
    except RenderLimitedError as exc:
        return Response(
            "chart render rate limit exceeded\n",
            429,
            {"Retry-After": str(max(1, math.ceil(exc.retry_after))), "Content-Type": "text/plain"},
        )
    headers = {"Cache-Control": "max-age=60", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status=304, headers=headers)
    return Response(png, mimetype="image/png", headers=headers)


@bp.get("/jobs")
def jobs() -> str:
    ctx = _ctx()
    return render_template(
        "jobs.html",
        counts=ctx.store.jobs.counts(),
        ages=ctx.store.jobs.age_stats(now=ctx.clock()),
        parked=ctx.store.jobs.list_jobs(state="parked", limit=200),
        recent=ctx.store.jobs.list_jobs(limit=30),
    )
