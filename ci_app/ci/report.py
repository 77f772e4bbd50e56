"""``ci-app ci report``: every shard's results against the plan → history, comment, check run.

Collects the shards' ``results.json`` (downloaded artifacts; on GitLab through the API, since
``needs:`` cannot reach into a child pipeline), in queue mode merges the queue's record (the
results a killed shard had completed, :mod:`ci_app.matrix.record`), accounts for every planned
test against the plan's record (``matrix.json``: ran, not run for want of hardware, or lost),
stores them in the DuckDB history (a shard whose test command died, that reported nothing or
whose queue leases expired is marked as an infrastructure error), compares with the base
branch, writes the comment, charts, report.json, a merged JUnit file (GitLab's MR widget) and
the job summary, and posts the sticky comment + check run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ci_app.artifacts.base import ReportParseError
from ci_app.ci.context import CiContext
from ci_app.ci.shard import STATUS_FILE
from ci_app.ci.step import (
    DB_FILE,
    DURATIONS_FILE,
    MATRIX_FILE,
    RESULTS_FILE,
    Step,
    safe_id,
)
from ci_app.errors import CiFanoutError, ConfigError, InputError, ProviderError
from ci_app.matrix.planner import Matrix
from ci_app.model.results import Outcome, ResultSet

log = logging.getLogger(__name__)

_MAX_MEMBER: Final = 512 * 1024 * 1024
_KEEP: Final = (RESULTS_FILE, STATUS_FILE)
REPORT_JUNIT: Final = "junit.xml"


def _fetch_gitlab_results(step: Step, dest: Path) -> None:
    """GitLab: download the child pipeline's shard artifacts through the API."""
    from ci_app.providers.base import get_provider

    token = step.env.get("GITLAB_TOKEN", "")
    if not (token and step.ctx.project and step.ctx.pipeline_id):
        raise ConfigError(
            "the GitLab report job downloads the shard artifacts through the API: set the "
            "masked CI/CD variable GITLAB_TOKEN (a project access token with api scope)"
        )
    settings = {"project": step.ctx.project, "token": token}
    url = step.env.get("CI_FANOUT_GITLAB_URL") or step.env.get("CI_SERVER_URL")
    if url:
        settings["url"] = url
    ci = get_provider("gitlab", settings).ci
    if ci is None:  # pragma: no cover - the GitLab adapter has the role
        raise ConfigError("gitlab offers no CI role")
    zips = ci.fetch_artifacts(step.ctx.pipeline_id, dest / "zips")
    extract_results(zips, dest)


def extract_results(zips: Sequence[Path], dest: Path) -> list[Path]:
    """Copy the ``results.json`` (and ``status.json``) members of artifact zips to
    ``dest/<zip stem>/<dir>/``; returns the results files. A bad member is skipped with a
    warning, never the whole zip's good members."""
    out: list[Path] = []
    for z in zips:
        try:
            archive = zipfile.ZipFile(z)
        except (zipfile.BadZipFile, OSError) as exc:
            log.warning("artifact %s skipped: %s", z, exc)
            continue
        with archive:
            dirs: dict[str, int] = {}
            for m in archive.infolist():
                name = Path(m.filename).name
                if m.is_dir() or name not in _KEEP or m.file_size > _MAX_MEMBER:
                    continue
                index = dirs.setdefault(str(Path(m.filename).parent), len(dirs))
                target = dest / safe_id(z.stem) / str(index) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(m) as src, target.open("wb") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                    log.warning("artifact %s member %s skipped: %s", z, m.filename, exc)
                    target.unlink(missing_ok=True)
                    continue
                if name == RESULTS_FILE:
                    out.append(target)
    return out


def load_shard_results(paths: Sequence[Path], ctx: CiContext) -> list[ResultSet]:
    """Read each shard's results.json and stamp this run's identity on it (one run id for all
    shards, the PR head commit, branch, base) while keeping its shard id and runner."""
    from ci_app.artifacts.resultset import iter_result_members

    sets: list[ResultSet] = []
    seen: set[str] = set()
    for member in iter_result_members(paths):  # checked and streamed, depth bounded
        try:
            rs = member.resultset()
        except (OSError, ValueError, KeyError, TypeError, RecursionError, CiFanoutError) as exc:
            log.warning("%s skipped: not a ci-fanout results.json (%s)", member.path, exc)
            continue
        except ReportParseError as exc:
            log.warning("%s skipped: not a ci-fanout results.json (%s)", member.path, exc)
            continue
        shard = rs.run.shard_id or safe_id(Path(member.path).parent.name)
        if shard in seen:  # the same shard's artifact twice (re-run jobs): keep the first
            continue
        seen.add(shard)
        run = replace(
            rs.run,
            run_id=ctx.run_id,
            shard_id=shard,
            repo=ctx.repo or rs.run.repo,
            provider=ctx.provider if ctx.provider != "local" else rs.run.provider,
            commit=ctx.commit or rs.run.commit,
            branch=ctx.branch or rs.run.branch,
            base_commit=ctx.base_commit or rs.run.base_commit,
            pr=ctx.pr if ctx.pr is not None else rs.run.pr,
        )
        sets.append(rs.with_run(run))
    return sets


def shard_status(paths: Sequence[Path]) -> dict[str, str]:
    """Shard id → what happened to its test command, from the ``status.json`` beside each
    results file (only shards whose command did not end normally)."""
    why: dict[str, str] = {}
    for p in paths:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            st = json.loads((p.parent / STATUS_FILE).read_text(encoding="utf-8"))
            rc = int(st.get("exit_code", 0))
            if rc < 0 or rc not in (0, 1, 5):
                why[str(st["shard"])] = (
                    f"{str(st.get('exit') or f'exited {rc}')[:200]} after reporting "
                    f"{int(st.get('reported', 0))} of {int(st.get('planned', 0))} test(s)"
                )
    return why


def update_durations(path: Path, sets: Sequence[ResultSet], *, limit: int = 200_000) -> int:
    """Merge this run's per-test durations into the history's pytest-split style file."""
    data: dict[str, float] = {}
    if path.exists():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                data = {str(k): float(v) for k, v in loaded.items() if isinstance(v, int | float)}
    for rs in sets:
        for t in rs.tests:
            if t.outcome in (Outcome.PASSED, Outcome.FAILED):  # skipped: no real duration
                data.pop(t.id, None)
                data[t.id] = round(t.duration_s, 4)
    if len(data) > limit:  # keep the most recently seen
        data = dict(list(data.items())[-limit:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    return len(data)


def _publish_target(step: Step) -> str | None:
    choice = step.vals.publish
    if choice == "none":
        return None
    if choice == "auto":
        if step.ctx.provider == "github" and step.env.get("GITHUB_TOKEN"):
            return "github"
        if step.ctx.provider == "gitlab" and step.env.get("GITLAB_TOKEN"):
            return "gitlab"
        return None
    return choice


def _plan_record(step: Step) -> Matrix | None:
    path = step.output_dir / MATRIX_FILE
    if not path.exists():
        step.io.annotate(
            "warning",
            f"no plan record ({path}): tests of shards that died cannot be named; download the "
            "plan's matrix artifact before the report",
            title="ci-fanout report",
        )
        return None
    try:
        return Matrix.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, CiFanoutError) as exc:
        raise InputError(f"{path}: not a ci-fanout matrix ({exc})") from exc


def _results_paths(step: Step, results_dir: Path) -> list[Path]:
    if step.ctx.provider == "gitlab":
        # this pipeline's shards, through the API; never what an earlier pipeline left in a
        # reused build directory
        shutil.rmtree(results_dir, ignore_errors=True)
        with step.io.group("ci-fanout: download shard artifacts"):
            _fetch_gitlab_results(step, results_dir)
        return sorted(results_dir.rglob(RESULTS_FILE))
    paths = sorted(results_dir.rglob(RESULTS_FILE)) if results_dir.exists() else []
    if not paths:
        paths = sorted(step.output_dir.glob(f"shard-*/{RESULTS_FILE}"))
    return paths


def _queue_record(
    step: Step, matrix: Matrix | None
) -> tuple[dict[str, Any], tuple[dict[str, str], dict[str, str]]]:
    """The queue's accepted results (test id → TestResult) and who died (shard → why, runner
    → why), fetched from the app with the run token; empty outside queue mode or on error."""
    from ci_app.matrix.queue_api import parse_record
    from ci_app.matrix.record import dead_runners

    token = step.run_token
    if matrix is None or matrix.mode != "queue" or not step.server or not token:
        return {}, ({}, {})
    try:
        results, expired = parse_record(step.app(token).queue_record(step.ctx.run_id))
    except (ProviderError, InputError) as exc:
        step.io.annotate(
            "warning",
            f"the queue's record is unavailable ({exc}): results of a shard that died before "
            "uploading its report cannot be recovered",
            title="ci-fanout report",
        )
        return {}, ({}, {})
    return {r.id: r for r in results}, dead_runners(expired)


def step_report(step: Step) -> int:
    from ci_app.artifacts.export import write_junit
    from ci_app.matrix.accounting import accounted_sets
    from ci_app.matrix.record import recovered_results
    from ci_app.reporting.render import render_check_run, render_comment, render_job_summary
    from ci_app.reporting.report import build_report
    from ci_app.store import open_store
    from ci_app.store.queue_record import mark_interrupted

    vals, ctx, io = step.vals, step.ctx, step.io
    out = step.output_dir
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    matrix = _plan_record(step)
    paths = _results_paths(step, out / "results")
    sets = load_shard_results(paths, ctx)
    why = shard_status(paths)
    # the queue's record first: what a killed shard completed is not lost
    record, (dead_shards, dead) = _queue_record(step, matrix)
    recovered = recovered_results(record, sets, ctx.run_info())
    if recovered is not None:
        sets.append(recovered)
        io.info(
            f"ci-fanout: {len(recovered.tests)} test result(s) recovered from the queue's record "
            "(their shard stopped before uploading them)"
        )
    interrupted = {shard: f"its test command {text}" for shard, text in why.items()}
    for shard, text in dead_shards.items():
        interrupted.setdefault(shard, text)
    if matrix is not None:
        acc, sets = accounted_sets(matrix, sets, ctx.run_info(), why=why)
        io.info(
            f"ci-fanout: {acc.planned} test(s) planned: {acc.ran} ran, {acc.not_run} not run "
            f"(no runner has their hardware), {len(acc.lost)} lost"
            + (f"; {len(acc.silent_shards)} shard(s) reported nothing" if acc.silent_shards else "")
        )
        for shard in acc.silent_shards:
            interrupted.setdefault(
                shard, "reported no results (its job died, was cancelled or never ran)"
            )
            io.annotate(
                "error",
                f"shard {shard} reported no results (its job died, was cancelled or never ran)",
                title="ci-fanout: lost shard",
            )
        if acc.unplanned:
            io.annotate(
                "warning",
                f"{len(acc.unplanned)} test(s) ran that the plan did not list (collected "
                f"differently at plan time), e.g. {', '.join(acc.unplanned[:3])}: plan with the "
                "same pytest arguments as the shards",
                title="ci-fanout: unplanned tests",
            )
    if not sets:
        raise InputError(
            f"no shard results found under {out / 'results'} (download the "
            f"{vals.artifact_name}-results-* artifacts there first)"
        )
    step.history_dir.mkdir(parents=True, exist_ok=True)
    db = step.history_dir / DB_FILE
    with io.group(f"ci-fanout: store {len(sets)} shard(s) of run {ctx.run_id}"):
        with open_store(db) as store:
            rows = store.results.ingest_many(sets)
            if interrupted or dead:
                mark_interrupted(store.results, ctx.run_id, shards=interrupted, runners=dead)
        n = update_durations(step.history_dir / DURATIONS_FILE, sets)
        io.info(f"{rows} test rows stored in {db}; {n} test durations kept for planning")
    with open_store(db, read_only=True) as store:
        report = build_report(
            store.results,
            ctx.run_id,
            base_branch=vals.base_branch or ctx.base_branch or ctx.default_branch,
            dashboard_url=vals.dashboard_url or None,
        )
    comment = render_comment(report)
    (report_dir / "comment.md").write_text(comment, encoding="utf-8")
    report_json = report_dir / "report.json"
    report_json.write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    merged = ResultSet(run=ctx.run_info(), tests=tuple(t for rs in sets for t in rs.tests))
    with (report_dir / REPORT_JUNIT).open("wb") as fh:
        write_junit(merged, fh)
    charts: dict[str, bytes] = {}
    try:
        from ci_app.reporting.charts import render_charts

        charts = render_charts(report)
    except Exception as exc:  # charts are optional; the comment has Mermaid charts
        io.annotate("warning", f"charts not rendered: {exc}")
    for name, png in charts.items():
        (report_dir / name).write_bytes(png)
    check = render_check_run(report)
    conclusion = str(check.get("conclusion") or "neutral")
    io.append_summary(render_job_summary(report))
    comment_id = _publish(step, comment, check, charts)
    io.set_output("conclusion", conclusion)
    io.set_output("comment-id", comment_id)
    io.set_output("report-json", str(report_json))
    io.info(f"ci-fanout: report {conclusion}; comment, charts and report.json in {report_dir}")
    infra = bool(report.comparison.lost or report.comparison.infra_shards or report.empty)
    if conclusion == "failure" and (infra or vals.fail_on == "failures"):
        io.annotate("error", str(check.get("title") or "tests failed"), title="ci-fanout")
        return 1
    return 0


def _publish(
    step: Step, comment: str, check: Mapping[str, Any], charts: Mapping[str, bytes]
) -> str:
    """Post the sticky comment (+ check run); a forge error is a warning, never a lost report."""
    from ci_app.providers.base import get_provider
    from ci_app.providers.publish import check_run_payload, forge_settings, publish_report

    target = _publish_target(step)
    if target is None:
        step.io.info("ci-fanout: publish skipped (no forge or token for this run)")
        return ""
    ctx = step.ctx
    payload = (
        check_run_payload(check, head_sha=ctx.commit)
        if step.vals.check_run and ctx.commit
        else None
    )
    try:
        if ctx.pr is None:
            if payload is not None:
                settings = forge_settings(target, env=step.env, repo=ctx.repo, project=ctx.project)
                forge = get_provider(target, settings).forge
                if forge is not None:
                    forge.publish_check_run(payload)
            return ""
        result = publish_report(
            target,
            number=ctx.pr,
            comment=comment,
            repo=ctx.repo,
            project=ctx.project,
            check_run=payload,
            images=charts if target == "gitlab" else None,
            env=step.env,
            dashboard_url=step.vals.dashboard_url or None,
        )
    except (ProviderError, ConfigError) as exc:
        step.io.annotate("warning", f"could not publish to {target}: {exc}", title="ci-fanout")
        return ""
    step.io.info(f"ci-fanout: comment {result.comment.id} on {target} #{ctx.pr}")
    return str(result.comment.id)
