"""The test explorer: a run page with the comment's sections first, a page per test, runner
pages, search and filters. Server-rendered and read-only: every filter is a GET parameter
checked here and bound as a parameter in :mod:`ci_app.store.explorer`; pages need no script.

Everything shown came from a test run or a probe and is hostile: Jinja autoescapes it, links
are built here (``url_for``) or pass :func:`ci_app.web.validate.http_url`, and a test id only
ever travels as its base64url key (:mod:`ci_app.reporting.links`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for

from ci_app.errors import StoreError
from ci_app.matrix.queue import LeaseError
from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD, SYNTHETIC_SHARDS
from ci_app.reporting.classes import class_labels, class_names, readable_class
from ci_app.reporting.links import page_key, page_test_id
from ci_app.reporting.report import Report
from ci_app.store import activity
from ci_app.store import explorer as q
from ci_app.store.runners import RunnerRow
from ci_app.web.charts import RenderLimitedError
from ci_app.web.dashboard import page_headers, require_dashboard_auth

bp = Blueprint("explorer", __name__, template_folder="templates")
bp.before_request(require_dashboard_auth)
bp.after_request(page_headers)

PAGE_SIZE = 200
MAX_PAGE = 10_000
MAX_QUERY = 300
#: a runner whose last heartbeat is older than this share of ``runner-offline-after-s`` is stale
STALE_SHARE = 0.5


def _ctx() -> Any:
    return current_app.extensions["ci_fanout"]


bp.add_app_template_global(readable_class, "readable_class")


@bp.app_template_global("test_url")
def _test_url(test_id: str, **params: Any) -> str:
    return url_for("explorer.test_page", key=page_key(test_id), **params)


def page_names(classes: Iterable[str]) -> dict[str, str]:
    """Readable names told apart from every runner class the store knows (so that a class
    reads the same on every page), for the classes of this page."""
    wanted = set(classes)
    return {
        c: n
        for c, n in class_names(wanted | set(q.runner_classes(_ctx().store.db))).items()
        if c in wanted
    }


# ---------------------------------------------------------------------------------- input
def query_arg(
    name: str, *, choices: Iterable[str] | None = None, limit: int = MAX_QUERY
) -> str | None:
    """A GET parameter, or None when absent or empty; 400 with the reason when it is bad."""
    value = request.args.get(name, "")
    if not value:
        return None
    if len(value) > limit:
        abort(400, description=f"'{name}' is longer than {limit} characters")
    if any(ord(ch) < 32 for ch in value):
        abort(400, description=f"'{name}' contains control characters")
    if choices is not None and value not in choices:
        abort(400, description=f"unknown {name} {value!r}; one of: {', '.join(choices)}")
    return value


def _page() -> int:
    raw = request.args.get("page", "1") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        abort(400, description=f"'page' must be a number from 1 to {MAX_PAGE}")
    return int(raw)


# ---------------------------------------------------------------------------------- caches
class _Lru:
    """A small bounded cache of built reports (a run page and its charts share one; a
    100k-test report holds ~10 MB, so few are kept)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def _reports() -> _Lru:
    cache: _Lru = current_app.extensions.setdefault("ci_fanout_reports", _Lru())
    return cache


def _run_state(run_id: str) -> tuple[Any, ...]:
    """Changes whenever a shard of the run is stored (what the cached report depends on)."""
    ctx = _ctx()
    shards = ctx.store.results.shards([run_id])
    latest = ctx.store.results.runs(limit=1)
    return (
        tuple((s.shard_id, s.tests, s.failed, s.errors) for s in shards),
        latest[0].seq if latest else 0,
    )


def _report(run_id: str) -> Report | None:
    from ci_app.reporting.report import build_report

    ctx = _ctx()
    state = _run_state(run_id)
    if not state[0]:
        return None

    def make() -> Report | None:
        try:
            return build_report(ctx.store.results, run_id)
        except StoreError:
            return None

    report: Report | None = _reports().get(("report", run_id, state), make)
    return report


def _png(key: Hashable, make: Callable[[], bytes]) -> Response:
    ctx = _ctx()
    try:
        png, etag = ctx.charts.render(key, f"ip:{request.remote_addr}", make)
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


# ---------------------------------------------------------------------------------- run page
def missing_labels(why: str) -> list[str]:
    """The labels a not-run test needed, from ``not run: no runner with [a, b]``."""
    head, sep, rest = why.removeprefix("not run: ").partition("[")
    if head.strip() != "no runner with" or not sep or not rest.endswith("]"):
        return []
    return [x.strip() for x in rest[:-1].split(",") if x.strip()][:20]


def _report_classes(report: Report | None, shards: Iterable[Any]) -> set[str]:
    from ci_app.reporting.render import report_names

    found = {s.runner_class for s in shards if s.shard_id not in SYNTHETIC_SHARDS}
    if report is not None:
        found |= set(report_names(report).classes)
    return found


@bp.get("/runs/<path:run_id>")
def run_detail(run_id: str) -> str:
    ctx = _ctx()
    meta = ctx.store.results.run(run_id)
    has_queue = ctx.queue.has_run(run_id)
    if meta is None and not has_queue:
        abort(404)
    status = query_arg("status", choices=q.RUN_STATUSES)
    shard = query_arg("shard")
    rclass = query_arg("class", limit=5000)
    query = query_arg("q")
    page = _page()
    shards = ctx.store.results.shards([run_id]) if meta else []
    report = _report(run_id) if meta else None
    pools: list[tuple[str, list[str], Any]] = []
    timeline: list[activity.LeaseRow] = []
    if has_queue:
        try:
            for pool, labels in sorted(ctx.queue.pools(run_id).items()):
                pools.append((pool, sorted(labels), ctx.queue.progress(run_id, pool)))
        except LeaseError:
            pools = []
        timeline = activity.queue_timeline(ctx.store.db, run_id)
    cases, matched = (
        q.run_cases(
            ctx.store.db,
            run_id,
            status=status,
            shard=shard,
            runner_class=rclass,
            query=query,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        if meta
        else ([], 0)
    )
    classes = q.run_classes(ctx.store.db, run_id) if meta else []
    names = page_names(_report_classes(report, shards) | set(classes))
    return render_template(
        "run.html",
        run_id=run_id,
        meta=meta,
        report=report,
        headline=_headline(report),
        regressions=_regression_charts(report),
        shards=[s for s in shards if s.shard_id not in SYNTHETIC_SHARDS],
        synthetic={s.shard_id: s for s in shards if s.shard_id in SYNTHETIC_SHARDS},
        pools=pools,
        timeline=_timeline_by_pool(timeline),
        names=names,
        cases=cases,
        matched=matched,
        page=page,
        pages=max(1, math.ceil(matched / PAGE_SIZE)),
        filters={"status": status, "shard": shard, "class": rclass, "q": query},
        statuses=q.RUN_STATUSES,
        classes=classes,
        shard_ids=[s.shard_id for s in shards],
        missing_labels=missing_labels,
        lost_shard=LOST_SHARD,
        not_run_shard=NOT_RUN_SHARD,
    )


def _headline(report: Report | None) -> str:
    """The comment's headline without its emoji (a server may have no emoji font)."""
    from ci_app.reporting.render import headline

    if report is None:
        return ""
    return headline(report).split(" ", 1)[-1].removeprefix("ci-fanout: ")


def _regression_charts(report: Report | None) -> list[tuple[Any, str | None]]:
    """Each regression with the chart of the series it was found in."""
    if report is None:
        return []
    out: list[tuple[Any, str | None]] = []
    shown: set[str] = set()
    run_id = report.run.run_id
    for r in report.regressions:
        chart: str | None = None
        if r.kind == "suite_duration":
            chart = url_for("explorer.run_chart", kind="trend", run=run_id)
        elif r.kind == "metric" and r.runner_class is not None:
            params: dict[str, Any] = {"run": run_id, "name": r.what, "class": r.runner_class}
            chart = url_for("explorer.run_chart", kind="metric", **params)
        elif r.kind == "test_duration":
            chart = url_for(
                "explorer.test_duration",
                key=page_key(r.what),
                branch=report.base_branch,
                run=run_id,
            )
        out.append((r, chart if chart not in shown else None))  # each series once
        if chart is not None:
            shown.add(chart)
    return out


@dataclass(frozen=True, slots=True)
class PoolTimeline:
    pool: str
    runners: tuple[tuple[str, tuple[activity.LeaseRow, ...]], ...]  # per runner, leases in order
    first_at: float


def _timeline_by_pool(rows: list[activity.LeaseRow]) -> list[PoolTimeline]:
    pools: dict[str, dict[str, list[activity.LeaseRow]]] = {}
    for r in rows:
        pools.setdefault(r.pool, {}).setdefault(r.runner or "?", []).append(r)
    out = []
    for pool, runners in sorted(pools.items()):
        first = min((lease.active_at for leases in runners.values() for lease in leases), default=0)
        out.append(
            PoolTimeline(
                pool=pool,
                runners=tuple((name, tuple(leases)) for name, leases in sorted(runners.items())),
                first_at=first,
            )
        )
    return out


RUN_CHARTS = ("trend", "slowest", "runner-classes", "metric")


@bp.get("/run-charts/<kind>.png")
def run_chart(kind: str) -> Response:
    """A chart of one run's report (trend, slowest, per class, a metric's series)."""
    from ci_app.reporting import charts

    if kind not in RUN_CHARTS:
        abort(404)
    run_id = query_arg("run") or ""
    report = _report(run_id) if run_id else None
    if report is None:
        abort(404)
    if kind == "metric":
        name, rclass = query_arg("name") or "", query_arg("class", limit=5000) or ""
        trend = next(
            (m for m in report.metric_trends if m.name == name and m.runner_class == rclass), None
        )
        if trend is None or len(trend.points) < 2:
            abort(404)

        def metric() -> bytes:
            return charts.metric_chart(trend)

        return _png(("run-metric", run_id, name, rclass, _run_state(run_id)), metric)
    makers = {
        "trend": charts.trend_chart,
        "slowest": charts.slowest_chart,
        "runner-classes": charts.runner_class_chart,
    }

    def make() -> bytes:
        return makers[kind](report)

    return _png(("run", kind, run_id, _run_state(run_id)), make)


# ---------------------------------------------------------------------------------- tests
def _test_id(key: str) -> str:
    test_id = page_test_id(key)
    if test_id is None:
        abort(404)
    return test_id


@bp.get("/tests/<key>")
def test_page(key: str) -> str:
    from ci_app.reporting.explorer import summarise_test

    ctx = _ctx()
    test_id = _test_id(key)
    branch = query_arg("branch")
    rows = q.rows_of_test(ctx.store.db, test_id)
    if not len(rows):
        abort(404)
    summary = summarise_test(test_id, rows, duration_branch=branch)
    names = page_names(summary.runner_classes)
    return render_template(
        "test.html",
        key=key,
        summary=summary,
        names=names,
        strips_by_branch=_strips_by_branch(summary.strips),
    )


def _strips_by_branch(strips: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    out: dict[str, list[Any]] = {}
    for s in strips:
        out.setdefault(s.branch, []).append(s)
    return list(out.items())


@bp.get("/tests/<key>/duration.png")
def test_duration(key: str) -> Response:
    from ci_app.reporting import charts
    from ci_app.reporting.explorer import summarise_test

    ctx = _ctx()
    test_id = _test_id(key)
    branch = query_arg("branch")
    run = query_arg("run")
    latest = ctx.store.results.runs(limit=1)
    state = latest[0].seq if latest else 0

    def make() -> bytes:
        rows = q.rows_of_test(ctx.store.db, test_id)
        summary = summarise_test(test_id, rows, duration_branch=branch, run=run)
        title = f"Duration per run on {summary.duration_branch or '?'} (dotted: change points)"
        return charts.test_duration_chart(summary.durations, title=title)

    return _png(("test-duration", test_id, branch, run, state), make)


@bp.get("/tests")
def tests() -> str:
    ctx = _ctx()
    query = query_arg("q")
    status = query_arg("status", choices=q.TEST_STATUSES)
    repo = query_arg("repo")
    branch = query_arg("branch")
    rclass = query_arg("class", limit=5000)
    page = _page()
    size = 100
    matches, total = q.search_tests(
        ctx.store.db,
        query=query,
        status=status,
        repo=repo,
        branch=branch,
        runner_class=rclass,
        limit=size,
        offset=(page - 1) * size,
    )
    classes = q.runner_classes(ctx.store.db)
    return render_template(
        "tests.html",
        matches=matches,
        total=total,
        page=page,
        pages=max(1, math.ceil(total / size)),
        filters={"q": query, "status": status, "repo": repo, "branch": branch, "class": rclass},
        statuses=q.TEST_STATUSES,
        branches=q.branches(ctx.store.db, repo),
        repos=sorted({r.repo for r in ctx.store.results.runs(limit=500) if r.repo}),
        classes=classes,
        names=page_names(classes),
    )


# ---------------------------------------------------------------------------------- runners
def runner_status(row: RunnerRow, profile: Any, *, now: float, offline_after_s: float) -> str:
    """online, stale (no heartbeat for half the offline delay), offline, degraded (a probe
    source failed, labels were refused or could not be synced) or registered (token only)."""
    if row.last_seen is None:
        return "registered" if row.status == "registered" else "offline"
    if row.status == "offline" or now - row.last_seen >= offline_after_s:
        return "offline"
    if now - row.last_seen >= offline_after_s * STALE_SHARE:
        return "stale"
    health = (row.load or {}).get("health") if isinstance(row.load, dict) else None
    browser_degraded = isinstance(health, dict) and health.get("status") == "degraded"
    if probe_errors(profile) or row.refused_labels or row.sync_error or browser_degraded:
        return "degraded"
    return "online"


def probe_errors(profile: Any) -> list[str]:
    """``source: error`` for each probe source that failed (from a stored profile dict)."""
    if not isinstance(profile, dict):
        return []
    out = []
    probe = profile.get("probe")
    if isinstance(probe, dict):
        for e in probe.get("errors") or ():
            if isinstance(e, dict):
                out.append(f"{e.get('source', '?')}: {e.get('error', '')}")
    for section in ("host", "cpu", "memory", "disk", "nvidia", "accelerators", "browser"):
        part = profile.get(section)
        if isinstance(part, dict) and part.get("status") == "error":
            line = f"{section}: {part.get('error') or 'failed'}"
            if not any(x.startswith(f"{section}:") for x in out):
                out.append(line)
    return out


def runner_statuses(rows: Iterable[RunnerRow]) -> dict[str, str]:
    """Each runner's status (see :func:`runner_status`), profiles read in one query."""
    ctx = _ctx()
    now = ctx.clock()
    after = ctx.settings.runner_offline_after_s
    profiles = {r.name: r.profile for r in ctx.store.runners.list_runners()}
    return {
        r.name: runner_status(r, profiles.get(r.name), now=now, offline_after_s=after) for r in rows
    }


#: statuses of runners that take jobs
LIVE = ("online", "degraded")


def fleet(rows: list[RunnerRow]) -> dict[str, Any]:
    """The overview's numbers: runners online (busy, known) and how many per status."""
    statuses = runner_statuses(rows)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return {
        "online": sum(counts.get(s, 0) for s in LIVE),
        "busy": sum(1 for r in rows if r.busy and statuses.get(r.name) in LIVE),
        "known": len(statuses),
        "counts": counts,
    }


def pool_rows(rows: list[RunnerRow], statuses: dict[str, str]) -> list[dict[str, Any]]:
    """Queue pools with tests pending or leased: labels, depth, runners that can serve them."""
    ctx = _ctx()
    depths = ctx.queue.pool_depths()
    out = []
    for pool, labels in sorted(ctx.queue.active_pools().items()):
        able = [r.name for r in rows if labels <= set(r.labels) and statuses.get(r.name) in LIVE]
        out.append(
            {"pool": pool, "labels": sorted(labels), "depth": depths.get(pool, 0), "runners": able}
        )
    return out


@bp.get("/runners/<path:name>")
def runner_page(name: str) -> str:
    from ci_app.web.dashboard import load_text

    ctx = _ctx()
    rows = {r.name: r for r in ctx.store.runners.runner_rows()}
    row = rows.get(name)
    if row is None:
        abort(404)
    runner = ctx.store.runners.runner(name)
    profile = runner.profile if runner else None
    shards = activity.runner_shards(ctx.store.db, name)
    status = runner_status(
        row, profile, now=ctx.clock(), offline_after_s=ctx.settings.runner_offline_after_s
    )
    leases = activity.runner_leases(ctx.store.db, name)
    classes = {s.runner_class for s in shards}
    return render_template(
        "runner.html",
        r=row,
        status=status,
        profile=profile,
        facts=profile_facts(profile),
        errors=probe_errors(profile),
        shards=shards,
        leases=leases,
        heartbeats=activity.recent_heartbeats(ctx.store.db, name, limit=10),
        names=page_names(classes),
        load_text=load_text,
        class_labels=class_labels,
    )


def profile_facts(profile: Any) -> list[tuple[str, str]]:
    """The probe's profile as a few readable lines (the full JSON is on the page too)."""
    if not isinstance(profile, dict):
        return []
    facts: list[tuple[str, str]] = []

    def part(name: str) -> dict[str, Any]:
        value = profile.get(name)
        return value if isinstance(value, dict) else {}

    host, cpu, mem = part("host"), part("cpu"), part("memory")
    if host:
        facts.append(("host", f"{host.get('hostname', '?')} · {host.get('os_release') or ''}"))
    if cpu:
        facts.append(
            (
                "cpu",
                f"{cpu.get('model') or cpu.get('arch') or '?'} · {cpu.get('effective', '?')} "
                f"effective CPU(s) · x86-64-v{cpu.get('x86_64_level') or '?'}",
            )
        )
    eff = mem.get("effective_bytes")
    if isinstance(eff, (int, float)):
        facts.append(("memory", f"{eff / 1e9:.1f} GB effective"))
    gpus = profile.get("gpus")
    if isinstance(gpus, list) and gpus:
        for g in gpus[:16]:
            if isinstance(g, dict):
                size = g.get("memory_bytes")
                gb = f" · {size / 1e9:.0f} GB" if isinstance(size, (int, float)) else ""
                facts.append(("gpu", f"{g.get('name') or g.get('vendor') or '?'}{gb}"))
    else:
        facts.append(("gpu", "none"))
    browser = part("browser")
    if browser.get("status") == "ok":
        facts.append(("browser", f"{browser.get('name', '?')} {browser.get('version', '')}"))
    return facts
