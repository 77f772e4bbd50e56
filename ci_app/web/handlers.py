"""Job handlers: what the worker does for each job kind.

Every handler may run more than once for the same job (a worker killed mid-job, a lease that
expired): side effects are idempotent — the sticky comment is found by its marker and edited,
label changes are recomputed from the provider's current labels, ingest is idempotent per
(run, shard), commit statuses overwrite themselves. The one exception is app-driven dispatch
(``dispatch-workflow``), which providers do not deduplicate: a crash in the milliseconds
between the dispatch call and the job's completion can dispatch twice.

Handlers raise :class:`~ci_app.errors.ProviderError` (retried with backoff) or
:class:`PermanentJobError` / :class:`~ci_app.errors.InputError` (parked at once).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_app.errors import CiFanoutError, InputError
from ci_app.matrix.accounting import account_ids, lost_results, not_run_results
from ci_app.matrix.planner import Matrix
from ci_app.model.allow import grant_labels, parse_patterns, patterns_for_runner
from ci_app.model.labels import derive_labels
from ci_app.model.profile import HardwareProfile
from ci_app.model.reconcile import error_sources_of, reconcile
from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD, SYNTHETIC_SHARDS, ResultSet, RunInfo
from ci_app.providers.base import CommitStatus, DispatchRequest, StatusState
from ci_app.providers.download import read_results
from ci_app.store import Job
from ci_app.store.identities import RunIdentityError
from ci_app.store.queue_record import merge_record
from ci_app.web import events
from ci_app.web.context import AppContext, runner_scope
from ci_app.web.validate import check_resultset

log = logging.getLogger(__name__)

REPORT = "report"

# Report jobs of one PR may be leased by two job workers at once (two shards' results
# arrive together); finding and upserting the sticky comment must not interleave, or
# both would miss the comment and post one each. The app is one process (DuckDB has
# one writer), so a lock per PR is enough; a redone job after a crash finds the comment.
_report_locks: dict[str, threading.Lock] = {}
_report_locks_guard = threading.Lock()


def _report_lock(run_id: str) -> threading.Lock:
    with _report_locks_guard:
        lock = _report_locks.get(run_id)
        if lock is None:
            if len(_report_locks) > 10_000:
                _report_locks.clear()
            lock = _report_locks[run_id] = threading.Lock()
        return lock


LABELS = "runner.labels"
STATUS_CONTEXT = "ci-fanout"
#: labels the provider sets at registration and will not let us delete (GitHub) — never touched
READ_ONLY_LABELS = frozenset({"self-hosted", "linux", "windows", "macos", "x64", "arm64", "arm"})


class PermanentJobError(CiFanoutError):
    """A job that cannot succeed by retrying (bad payload, no handler): parked at once."""

    exit_code = 3


Handler = Callable[[AppContext, Job], None]


def _payload(job: Job) -> dict[str, Any]:
    if not isinstance(job.payload, dict):
        raise PermanentJobError(f"job {job.id} ({job.kind}) has no payload object")
    return job.payload


def _dashboard(ctx: AppContext, path: str) -> str | None:
    base = ctx.settings.public_url.rstrip("/")
    return f"{base}{path}" if base else None


# ---------------------------------------------------------------------------------- plan / rerun
def handle_plan(ctx: AppContext, job: Job) -> None:
    """A PR/MR was opened or updated: mark the commit pending and, for app-driven dispatch,
    start the plan workflow (CI-native repositories fan out from their own workflow)."""
    p = _payload(job)
    repo, sha = p.get("repo"), p.get("head_sha")
    if not repo or not sha:
        log.info("job %s: %s without repo/sha; nothing to do", job.id, job.kind)
        return
    prov = ctx.providers(p["provider"], repo, installation_id=p.get("installation_id"))
    if prov.forge is not None:
        prov.forge.set_commit_status(
            CommitStatus(
                sha=sha,
                state=StatusState.PENDING,
                context=STATUS_CONTEXT,
                description="planning hardware-aware shards",
                target_url=_dashboard(ctx, "/runs"),
            )
        )
    workflow = ctx.settings.dispatch_workflow
    ref = p.get("head_ref")
    if workflow and prov.ci is not None and ref:
        number = p.get("number") or (p.get("prs") or [None])[0]
        prov.ci.dispatch(
            DispatchRequest(
                shard_id="plan",
                ref=ref,
                target=workflow,
                inputs={"pr": str(number or ""), "sha": sha},
            )
        )


# ---------------------------------------------------------------------------------- collect
def _fill_run(rs: ResultSet, p: Mapping[str, Any], fallback_run: str) -> ResultSet:
    """The run identity of an artifact's results: where the signed webhook says something
    (repository, provider, PR), it wins over what the file claims — the file was written by
    the code under test and may name any repository."""
    run = rs.run
    prs = p.get("prs") or []
    return rs.with_run(
        replace(
            run,
            run_id=run.run_id or fallback_run,
            repo=p.get("repo") or run.repo,
            provider=p.get("provider") or run.provider,
            pipeline_id=run.pipeline_id or p.get("run_id"),
            commit=run.commit or p.get("head_sha"),
            branch=run.branch or p.get("head_branch"),
            pr=prs[0] if prs else run.pr,
        )
    )


def handle_collect(ctx: AppContext, job: Job) -> None:
    """A pipeline finished: download its artifacts, ingest every ``results.json``, report."""
    p = _payload(job)
    run_id = p.get("run_id")
    if not run_id:
        log.info("job %s: finished pipeline without an id; nothing to collect", job.id)
        return
    prov = ctx.providers(p["provider"], p.get("repo"), installation_id=p.get("installation_id"))
    if prov.ci is None:
        return
    ci_run = str(run_id)
    if p["provider"] == "azure" and p.get("pipeline_id"):
        ci_run = f"{p['pipeline_id']}/{run_id}"  # the Pipelines API names runs by both ids
    fallback = f"{p['provider']}:{p.get('repo') or '-'}:{run_id}"
    runs: set[str] = set()
    collected = 0
    with tempfile.TemporaryDirectory(prefix="ci-fanout-collect-") as tmp:
        paths = prov.ci.fetch_artifacts(ci_run, Path(tmp))
        # Streamed member by member: a bad member is skipped (and logged), the good ones
        # beside it in the same zip are stored; memory holds one batch. A result set that
        # names another run's identity costs only itself.
        plan = _plan_in(paths)
        for member in read_results(paths):
            assert member.head is not None  # read_results yields usable members only
            filled = _fill_run(member.head, p, fallback)
            try:
                check_resultset(filled)
                ctx.store.identities.check_identity(filled)
            except (InputError, RunIdentityError) as exc:
                shard = filled.run.shard_id
                log.warning("job %s: results of shard %r not stored: %s", job.id, shard, exc)
                continue
            ctx.store.results.ingest_stream(filled, member.batches())
            runs.add(filled.run.run_id or fallback)
            collected += 1
    for rid in sorted(runs):
        _recover_from_queue(ctx, rid)
        if plan is not None:
            _account(ctx, rid, plan)
        ctx.store.jobs.enqueue(
            REPORT,
            {"run_id": rid, "final": True},
            now=ctx.clock(),
            idempotency_key=f"report:{rid}:collect:{job.id}",
        )
    log.info(
        "job %s: collected %d result sets from %s run %s", job.id, collected, p["provider"], run_id
    )


_MAX_PLAN_BYTES = 64 * 1024 * 1024


def _plan_in(paths: list[Path]) -> Matrix | None:
    """The plan's record (``matrix.json`` of the plan step's artifact) among the artifacts."""
    for path in paths:
        if not zipfile.is_zipfile(path):
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if (
                        Path(info.filename).name != "matrix.json"
                        or info.file_size > _MAX_PLAN_BYTES
                    ):
                        continue
                    return Matrix.from_dict(json.loads(archive.read(info)))
        except (zipfile.BadZipFile, OSError, ValueError, RecursionError, CiFanoutError) as exc:
            log.warning("artifact %s: no usable plan record: %s", path.name, exc)
    return None


def _account(ctx: AppContext, run_id: str, plan: Matrix) -> None:
    """Every planned test ends reported once: store the tests no runner could take (if the
    plan step did not post them) and the planned tests no shard reported, as lost."""
    meta = ctx.store.results.run(run_id)
    if meta is None:
        return
    shards = {s.shard_id for s in ctx.store.results.shards([run_id])}
    reported = set(ctx.store.results.cases([run_id], details=False).test_id)
    acc = account_ids(plan, reported, shards - SYNTHETIC_SHARDS)
    run = RunInfo.of(meta)
    if plan.unsatisfied and NOT_RUN_SHARD not in shards:
        ctx.store.results.ingest(not_run_results(plan, run))
    if acc.lost and LOST_SHARD not in shards:
        ctx.store.results.ingest(lost_results(acc, run))
        log.warning(
            "run %s: %d planned test(s) lost (no shard reported them)", run_id, len(acc.lost)
        )


def _recover_from_queue(ctx: AppContext, run_id: str, *, only_if_done: bool = False) -> int:
    """Merge the queue's record into the stored run (``ci_app.matrix.record``): the results
    the queue accepted that no uploaded ``results.json`` holds are stored as shard
    ``queue-recovered``, and the shards of runners whose leases expired are marked as
    infrastructure errors. Idempotent. ``only_if_done``: only once every queued test has a
    result (a report job may run while shards are still uploading)."""
    try:
        if only_if_done and not ctx.queue.progress(run_id).done:
            return 0
    except CiFanoutError:
        return 0  # not a queue-mode run
    inserted, marked = merge_record(ctx.store.results, ctx.store.queue, run_id)
    if inserted or marked:
        log.warning(
            "run %s: %d test result(s) recovered from the queue, %d shard(s) marked as died",
            run_id,
            inserted,
            marked,
        )
    return inserted


# ---------------------------------------------------------------------------------- report
def handle_report(ctx: AppContext, job: Job) -> None:
    """Build the report of a stored run; update the sticky comment and the commit status.
    A final report (the pipeline finished) revokes the run's tokens once it is out."""
    p = _payload(job)
    run_id = p.get("run_id")
    if not isinstance(run_id, str) or ctx.store.results.run(run_id) is None:
        raise PermanentJobError(f"report: no stored run {run_id!r}")
    _recover_from_queue(ctx, run_id, only_if_done=True)
    _post_report(ctx, run_id)
    if p.get("final"):
        # the pipeline finished and its report is out: the run's tokens are done with
        revoked = ctx.store.identities.revoke_run_tokens(run_id, now=ctx.clock())
        if revoked:
            log.info("run %s: final report done, %d run token(s) revoked", run_id, revoked)


def _post_report(ctx: AppContext, run_id: str) -> None:
    from ci_app.reporting.render import render_comment
    from ci_app.reporting.report import build_report

    report = build_report(
        ctx.store.results, run_id, dashboard_url=_dashboard(ctx, f"/runs/{run_id}")
    )
    run = report.run
    if not run.provider or not run.repo:
        log.info("run %s has no provider/repo: report stored only", run_id)
        return
    prov = ctx.providers(run.provider, run.repo)
    if prov.forge is None:
        log.info("run %s: provider %s posts no report here: stored only", run_id, run.provider)
        return
    if run.pr is not None:
        with _report_lock(f"{run.provider}:{run.repo}:{run.pr}"):
            prov.forge.upsert_comment(int(run.pr), render_comment(report))
    if run.commit:
        h = report.head
        prov.forge.set_commit_status(
            CommitStatus(
                sha=run.commit,
                state=StatusState.SUCCESS if report.ok else StatusState.FAILURE,
                context=STATUS_CONTEXT,
                description=f"{h.passed} passed, {h.failed + h.errors} failed, "
                f"{len(report.new_failures)} new failures"[:140],
                target_url=_dashboard(ctx, f"/runs/{run_id}"),
            )
        )


# ---------------------------------------------------------------------------------- runners
def handle_runner_job(ctx: AppContext, job: Job) -> None:
    p = _payload(job)
    runner = p.get("runner")
    if not runner:
        return
    ctx.store.runners.set_runner_busy(
        str(runner), bool(p.get("busy")), p.get("job_id"), now=ctx.clock()
    )


def handle_labels(ctx: AppContext, job: Job) -> None:
    """Reconcile a runner's provider labels with its stored profile (probe's rules)."""
    p = _payload(job)
    name = str(p.get("runner") or "")
    runner = ctx.store.runners.runner(name)
    if runner is None or runner.profile is None:
        return
    try:
        profile = HardwareProfile.from_dict(runner.profile)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentJobError(f"runner {name}: stored profile unreadable: {exc}") from exc
    now = ctx.clock()
    # only what the runner's allow-list grants is kept and synced, whatever its profile claims
    # (recomputed here too, so that a changed allow-list applies without a new profile)
    granted, refused = grant_labels(derive_labels(profile), allowed_patterns(ctx, name))
    ctx.store.runners.set_runner_labels(name, granted, refused, now=now)
    provider = ctx.store.runners.runner_provider(name) or ctx.settings.runner_provider
    prov = ctx.providers(provider, runner_scope(ctx.settings, provider))
    admin = prov.runners
    if admin is None:
        return
    found = [r for r in admin.list_runners() if r.name.lower() == name.lower()]
    if not found:
        ctx.store.runners.store_label_sync(
            name,
            misses=ctx.store.runners.runner_sync_state(name)[0],
            labels=(),
            error=f"no runner named {name!r} is registered at {provider}",
            now=now,
        )
        return
    info = found[0]
    misses, _ = ctx.store.runners.runner_sync_state(name)
    plan = reconcile(
        granted,
        info.labels,
        misses=misses,
        error_sources=error_sources_of(profile),
        min_misses=ctx.settings.label_min_misses,
        read_only=READ_ONLY_LABELS,
    )
    for label in plan.add:
        admin.add_label(info.id, label)
    for label in plan.remove:
        admin.remove_label(info.id, label)
    removed = {x.lower() for x in plan.remove}
    labels = sorted({x for x in info.labels if x.lower() not in removed} | set(plan.add))
    ctx.store.runners.store_label_sync(name, misses=plan.misses, labels=labels, error=None, now=now)
    if plan.changed:
        log.info("runner %s labels: +%s -%s", name, list(plan.add), list(plan.remove))


def allowed_patterns(ctx: AppContext, name: str) -> tuple[str, ...]:
    """The label allow-list in force for runner ``name`` (its tokens', a pool's, the default)."""
    return patterns_for_runner(
        name,
        ctx.store.runners.runner_allow_list(name),
        ctx.store.runners.label_pools(),
        parse_patterns(ctx.settings.runner_allow_labels),
    )


# ---------------------------------------------------------------------------------- misc
def handle_push(ctx: AppContext, job: Job) -> None:
    """Pushes are kept as deliveries (branch history comes from ingested runs); nothing to do."""
    p = _payload(job)
    log.debug("push %s %s -> %s", p.get("repo"), p.get("ref"), p.get("after"))


def handle_installation(ctx: AppContext, job: Job) -> None:
    p = _payload(job)
    account, inst = p.get("account"), p.get("installation_id")
    if not account or inst is None:
        raise InputError("installation event without account or installation id")
    active = p.get("action") not in ("deleted", "suspend")
    ctx.store.jobs.record_installation(
        str(p["provider"]), str(account), str(inst), active=active, now=ctx.clock()
    )


HANDLERS: dict[str, Handler] = {
    events.PLAN: handle_plan,
    events.RERUN: handle_plan,
    events.COLLECT: handle_collect,
    events.RUNNER_JOB: handle_runner_job,
    events.PUSH: handle_push,
    events.INSTALLATION: handle_installation,
    REPORT: handle_report,
    LABELS: handle_labels,
}
