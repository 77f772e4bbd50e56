"""Webhook payload → jobs: one small router per provider, pure functions over dicts.

Routers never reject a delivery for its shape: published examples often miss fields the
schemas call required, so every lookup is tolerant (``_get``) and a payload without what a
job needs is acknowledged and ignored with a reason. Job payloads are small and
self-contained (no raw delivery needed to run them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Routed",
    "route",
    "route_azure",
    "route_github",
    "route_gitlab",
    "route_jenkins",
]

# job kinds (handlers in ci_app.web.handlers)
PLAN = "pr.plan"
COLLECT = "ci.collect"
RERUN = "ci.rerun"
RUNNER_JOB = "runner.job"
PUSH = "push"
INSTALLATION = "installation"

JobSpec = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a delivery goes: ``event`` is ``name.action`` (for metrics and logs)."""

    event: str
    jobs: tuple[JobSpec, ...] = ()
    ignored: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _str(v: Any) -> str | None:
    return None if v is None or isinstance(v, (dict, list)) else str(v)


def _int(v: Any) -> int | None:
    try:
        return None if v is None or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None


def _pr_numbers(prs: Any) -> list[int]:
    if not isinstance(prs, list):
        return []
    return [n for n in (_int(_get(p, "number")) for p in prs) if n is not None]


# ------------------------------------------------------------------------------- GitHub
_PLAN_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})


def route_github(event: str, payload: Mapping[str, Any]) -> Routed:
    action = _str(payload.get("action"))
    name = f"{event}.{action}" if action else event
    repo = _str(_get(payload, "repository", "full_name"))
    installation = _int(_get(payload, "installation", "id"))
    base: dict[str, Any] = {"provider": "github", "repo": repo, "installation_id": installation}
    if event == "ping":
        return Routed(
            name, extra={"zen": _str(payload.get("zen")), "hook_id": payload.get("hook_id")}
        )
    if event == "pull_request":
        pr = payload.get("pull_request")
        if action not in _PLAN_ACTIONS:
            return Routed(name, ignored=f"pull_request action {action!r} needs no plan")
        if _get(pr, "draft") is True:
            return Routed(name, ignored="draft pull request (planned when ready for review)")
        job = {
            **base,
            "number": _int(_get(pr, "number")) or _int(payload.get("number")),
            "head_sha": _str(_get(pr, "head", "sha")),
            "head_ref": _str(_get(pr, "head", "ref")),
            "base_ref": _str(_get(pr, "base", "ref")),
        }
        return Routed(name, jobs=((PLAN, job),))
    if event == "workflow_run":
        run = payload.get("workflow_run")
        if action != "completed":
            return Routed(name, ignored=f"workflow_run {action!r}: results come on 'completed'")
        job = {
            **base,
            "run_id": _str(_get(run, "id")),
            "head_sha": _str(_get(run, "head_sha")),
            "head_branch": _str(_get(run, "head_branch")),
            "conclusion": _str(_get(run, "conclusion")),
            "workflow": _str(_get(run, "name")),
            "prs": _pr_numbers(_get(run, "pull_requests")),
        }
        return Routed(name, jobs=((COLLECT, job),))
    if event == "workflow_job":
        wj = payload.get("workflow_job")
        runner = _str(_get(wj, "runner_name"))
        if not runner:
            return Routed(name, ignored="workflow_job without a runner yet")
        labels = _get(wj, "labels")
        job = {
            **base,
            "runner": runner,
            "busy": action == "in_progress",
            "job_id": _str(_get(wj, "id")),
            "run_id": _str(_get(wj, "run_id")),
            "labels": [str(x) for x in labels] if isinstance(labels, list) else [],
        }
        return Routed(name, jobs=((RUNNER_JOB, job),))
    if event in ("check_suite", "check_run"):
        if action != "rerequested":
            return Routed(name, ignored=f"{event} {action!r} needs no action")
        obj = payload.get(event)
        suite = _get(obj, "check_suite") if event == "check_run" else obj
        job = {
            **base,
            "head_sha": _str(_get(obj, "head_sha")),
            "head_ref": _str(_get(suite, "head_branch")) or _str(_get(obj, "head_branch")),
            "prs": _pr_numbers(_get(obj, "pull_requests")),
        }
        return Routed(name, jobs=((RERUN, job),))
    if event == "push":
        job = {
            **base,
            "ref": _str(payload.get("ref")),
            "before": _str(payload.get("before")),
            "after": _str(payload.get("after")),
            "deleted": bool(payload.get("deleted")),
        }
        return Routed(name, jobs=((PUSH, job),))
    if event == "installation":
        job = {
            "provider": "github",
            "action": action,
            "installation_id": _int(_get(payload, "installation", "id")),
            "account": _str(_get(payload, "installation", "account", "login")),
        }
        return Routed(name, jobs=((INSTALLATION, job),))
    return Routed(name, ignored=f"event {event!r} is not used by ci-fanout")


# ------------------------------------------------------------------------------- GitLab
_GITLAB_DONE = frozenset({"success", "failed", "canceled", "skipped"})


def route_gitlab(event: str, payload: Mapping[str, Any]) -> Routed:
    kind = _str(payload.get("object_kind")) or event
    attrs = payload.get("object_attributes")
    project = payload.get("project")
    repo = _str(_get(project, "path_with_namespace"))
    base: dict[str, Any] = {
        "provider": "gitlab",
        "repo": repo,
        "project_id": _int(_get(project, "id")) or _int(payload.get("project_id")),
    }
    if event == "Merge Request Hook" or kind == "merge_request":
        action = _str(_get(attrs, "action"))
        name = f"merge_request.{action}"
        if action not in ("open", "reopen", "update"):
            return Routed(name, ignored=f"merge request action {action!r} needs no plan")
        if action == "update" and not _get(attrs, "oldrev"):
            return Routed(name, ignored="merge request update without new commits")
        if _get(attrs, "draft") is True or _get(attrs, "work_in_progress") is True:
            return Routed(name, ignored="draft merge request")
        job = {
            **base,
            "number": _int(_get(attrs, "iid")),
            "head_sha": _str(_get(attrs, "last_commit", "id")),
            "head_ref": _str(_get(attrs, "source_branch")),
            "base_ref": _str(_get(attrs, "target_branch")),
        }
        return Routed(name, jobs=((PLAN, job),))
    if event == "Pipeline Hook" or kind == "pipeline":
        status = _str(_get(attrs, "status"))
        name = f"pipeline.{status}"
        if status not in _GITLAB_DONE:
            return Routed(name, ignored=f"pipeline {status!r}: results come when it finishes")
        mr = _int(_get(payload, "merge_request", "iid"))
        job = {
            **base,
            "run_id": _str(_get(attrs, "id")),
            "head_sha": _str(_get(attrs, "sha")),
            "head_branch": _str(_get(attrs, "ref")),
            "conclusion": status,
            "prs": [mr] if mr is not None else [],
        }
        return Routed(name, jobs=((COLLECT, job),))
    if event == "Job Hook" or kind == "build":
        status = _str(payload.get("build_status"))
        name = f"job.{status}"
        runner = _str(_get(payload, "runner", "description"))
        if not runner:
            return Routed(name, ignored="job without a runner yet")
        tags = _get(payload, "runner", "tags")
        job = {
            **base,
            "runner": runner,
            "busy": status == "running",
            "job_id": _str(payload.get("build_id")),
            "run_id": _str(payload.get("pipeline_id")),
            "labels": [str(x) for x in tags] if isinstance(tags, list) else [],
        }
        return Routed(name, jobs=((RUNNER_JOB, job),))
    if event in ("Push Hook", "Tag Push Hook") or kind in ("push", "tag_push"):
        job = {
            **base,
            "ref": _str(payload.get("ref")),
            "before": _str(payload.get("before")),
            "after": _str(payload.get("after")),
            "deleted": _str(payload.get("after")) == "0" * 40,
        }
        return Routed(kind, jobs=((PUSH, job),))
    return Routed(kind or event or "unknown", ignored=f"GitLab event {event!r} is not used")


# ------------------------------------------------------------------------------- Jenkins
def route_jenkins(payload: Mapping[str, Any]) -> Routed:
    """Jenkins Notification plugin shape: ``{"name", "url", "build": {"number", "phase",
    "status", "full_url", "scm": {"commit", "branch"}, "parameters"}}``."""
    build = payload.get("build")
    phase = (_str(_get(build, "phase")) or "").upper()
    name = f"build.{phase.lower() or 'unknown'}"
    if phase not in ("COMPLETED", "FINALIZED"):
        return Routed(name, ignored=f"build phase {phase or None!r}: results come when it ends")
    job_name = _str(payload.get("name"))
    number = _str(_get(build, "number"))
    params = _get(build, "parameters")
    job: dict[str, Any] = {
        "provider": "jenkins",
        "repo": _str(_get(params, "CI_FANOUT_REPO")) or job_name,
        "run_id": f"{job_name}#{number}" if job_name and number else None,
        "head_sha": _str(_get(build, "scm", "commit")),
        "head_branch": _str(_get(build, "scm", "branch")),
        "conclusion": (_str(_get(build, "status")) or "").lower() or None,
        "prs": [n for n in [_int(_get(params, "CI_FANOUT_PR"))] if n is not None],
    }
    return Routed(name, jobs=((COLLECT, job),))


# ------------------------------------------------------------------------------- Azure
def route_azure(payload: Mapping[str, Any]) -> Routed:
    """Service hook "Web Hooks" consumer: ``build.complete`` and
    ``ms.vss-pipelines.run-state-changed-event`` (state ``completed``)."""
    event_type = _str(payload.get("eventType")) or "unknown"
    resource = payload.get("resource")
    if event_type == "build.complete":
        run_id = _str(_get(resource, "id"))
        result = _str(_get(resource, "result"))
        repo = _str(_get(resource, "repository", "name")) or _str(
            _get(resource, "repository", "id")
        )
        pipeline = _str(_get(resource, "definition", "id"))
        sha = _str(_get(resource, "sourceVersion"))
        branch = _str(_get(resource, "sourceBranch"))
    elif event_type == "ms.vss-pipelines.run-state-changed-event":
        if _str(_get(resource, "run", "state")) != "completed":
            return Routed(event_type, ignored="pipeline run not completed yet")
        run_id = _str(_get(resource, "run", "id"))
        result = _str(_get(resource, "run", "result"))
        repo = None
        pipeline = _str(_get(resource, "pipeline", "id"))
        sha = None
        branch = None
    else:
        return Routed(event_type, ignored=f"Azure DevOps event {event_type!r} is not used")
    job: dict[str, Any] = {
        "provider": "azure",
        "repo": repo,
        "run_id": run_id,
        "pipeline_id": pipeline,
        "head_sha": sha,
        "head_branch": branch,
        "conclusion": result,
        "prs": [],
    }
    return Routed(event_type, jobs=((COLLECT, job),))


def route(provider: str, event: str, payload: Mapping[str, Any]) -> Routed:
    if provider == "github":
        return route_github(event, payload)
    if provider == "gitlab":
        return route_gitlab(event, payload)
    if provider == "jenkins":
        return route_jenkins(payload)
    if provider == "azure":
        return route_azure(payload)
    raise ValueError(f"unknown webhook provider {provider!r}")
