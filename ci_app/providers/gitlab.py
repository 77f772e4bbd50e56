"""GitLab adapter (python-gitlab): sticky MR note, commit statuses, uploads, pipelines, runners.

Projects are given as numeric ids or ``group/sub/project`` paths (python-gitlab percent-encodes
them). GitLab has no check-run API: :meth:`GitLabAdapter.publish_check_run` sets a commit status
named after the check (annotations are not sent; the JUnit report feeds GitLab's own test widget).
python-gitlab's own 429 sleeping is turned off; :mod:`ci_app.providers.retry` decides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ConfigError
from ci_app.providers import budget
from ci_app.providers.base import (
    DEFAULT_KIND,
    Author,
    CheckRunPayload,
    CheckRunRef,
    CommentRef,
    CommitStatus,
    DispatchRequest,
    DispatchResult,
    ImageRef,
    JobInfo,
    JobState,
    Provider,
    RunnerInfo,
    SdkAdapter,
    StatusState,
    require,
)
from ci_app.providers.download import keep_if_valid_zip, safe_name
from ci_app.providers.retry import DEFAULT_POLICY, Failure, ResponseRecorder, RetryPolicy

log = logging.getLogger(__name__)

NAME = "gitlab"
DEFAULT_URL = "https://gitlab.com"
MAX_CHILD_DEPTH = 3

_STATES = {
    "created": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "preparing": JobState.QUEUED,
    "waiting_for_resource": JobState.QUEUED,
    "scheduled": JobState.QUEUED,
    "manual": JobState.QUEUED,
    "running": JobState.RUNNING,
    "success": JobState.SUCCESS,
    "failed": JobState.FAILURE,
    "canceled": JobState.CANCELLED,
    "canceling": JobState.CANCELLED,
    "skipped": JobState.SKIPPED,
}
_STATUS = {
    StatusState.PENDING: "pending",
    StatusState.SUCCESS: "success",
    StatusState.FAILURE: "failed",
    StatusState.ERROR: "failed",
}
_CONCLUSION = {
    "success": "success",
    "neutral": "success",
    "skipped": "success",
    "failure": "failed",
    "timed_out": "failed",
    "action_required": "failed",
    "cancelled": "canceled",
}


class _Gitlab(gitlab.Gitlab):
    """python-gitlab with its own 429/5xx retry loop disabled (ours honours the same headers
    but bounds the total wait)."""

    def http_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["obey_rate_limit"] = False
        kwargs["retry_transient_errors"] = False
        return super().http_request(*args, **kwargs)


def classify(exc: BaseException) -> Failure | None:
    if isinstance(exc, gitlab.exceptions.GitlabError):
        return Failure(status=exc.response_code, message=str(exc.error_message or exc))
    return None


def job_state(status: str | None) -> JobState:
    return _STATES.get(status or "", JobState.UNKNOWN)


class GitLabAdapter(SdkAdapter):
    """Forge + CI server + runner admin for one project."""

    name = NAME
    _recorder: ResponseRecorder

    def __init__(
        self,
        *,
        project: str,
        token: str | None,
        url: str = DEFAULT_URL,
        trigger_token: str | None = None,
        runner_scope: str = "all",  # "all" = runners the token owns, "project" = project runners
        timeout: float = 15.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        dashboard_url: str | None = None,
    ) -> None:
        project = project.strip()
        if not project:
            raise ConfigError("gitlab: project id or path is required")
        self.project_ref: int | str = int(project) if project.isdigit() else project
        self.url = url.rstrip("/")
        self.trigger_token = trigger_token
        self.runner_scope = runner_scope
        self.policy = policy
        self.dashboard_url = dashboard_url
        self._author: Author | None = None
        self._recorder = ResponseRecorder()
        self._gl = _Gitlab(
            self.url, private_token=token, timeout=timeout, retry_transient_errors=False
        )
        self._recorder.install(self._gl.session)

    def _classify(self, exc: BaseException) -> Failure | None:
        return classify(exc)

    def _project(self) -> Any:
        """A lazy project by numeric id. A ``group/project`` path is resolved to its id once:
        python-gitlab 8.6 double-encodes lazy path ids in some calls (``upload``,
        ``trigger_pipeline`` send ``grp%252Fproj``), which GitLab answers with 404."""
        if isinstance(self.project_ref, str):
            self.project_ref = int(self._gl.projects.get(self.project_ref).id)
        return self._gl.projects.get(self.project_ref, lazy=True)

    # -- Forge -------------------------------------------------------------------------------
    def whoami(self) -> Author:
        """The token's user (``GET /user``; a project/group access token's bot user too),
        looked up once."""
        if self._author is None:

            def op() -> Author:
                user = self._gl.http_get("/user")
                if not isinstance(user, dict) or user.get("id") is None:
                    raise ConfigError("gitlab: GET /user did not name the token's user")
                return Author(id=str(user["id"]), login=str(user.get("username") or ""))

            self._author = self._call("look up the token's user", op)
        return self._author

    def upsert_comment(self, number: int, body: str, *, kind: str = DEFAULT_KIND) -> CommentRef:
        """Edit the sticky note of ``kind`` if *we* wrote one (marker and author), else create
        it; a note by anyone else that starts with our marker is left alone."""
        fitted = budget.fit_markdown(
            budget.ensure_marker(body, kind),
            budget.GITLAB_NOTE_MAX,
            dashboard_url=self.dashboard_url,
        )
        me = self.whoami()

        def op() -> CommentRef:
            mr = self._project().mergerequests.get(number, lazy=True)
            for note in mr.notes.list(iterator=True, per_page=100):
                if getattr(note, "system", False):
                    continue
                if budget.marker_matches(note.body or "", kind) and me.same(_author(note)):
                    if note.body != fitted.body:
                        note.body = fitted.body
                        note.save()
                    return CommentRef(
                        id=str(note.id), url=None, created=False, truncated=fitted.truncated
                    )
            created = mr.notes.create({"body": fitted.body})
            return CommentRef(
                id=str(created.id), url=None, created=True, truncated=fitted.truncated
            )

        ref: CommentRef = self._call("upsert MR note", op)
        return ref

    def _status(self, sha: str, state: str, name: str, description: str, url: str | None) -> str:
        data: dict[str, Any] = {
            "state": state,
            "name": name,
            "description": budget.clip(description, budget.GITLAB_STATUS_DESCRIPTION_MAX),
        }
        if url:
            data["target_url"] = url

        def op() -> str:
            commit = self._project().commits.get(sha, lazy=True)
            created = commit.statuses.create(data)
            return str(getattr(created, "id", ""))

        status_id: str = self._call("set commit status", op)
        return status_id

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef:
        if payload.status == "completed":
            state = _CONCLUSION.get(payload.conclusion or "neutral", "success")
        else:
            state = "running" if payload.status == "in_progress" else "pending"
        status_id = self._status(
            payload.head_sha, state, payload.name, payload.title, payload.details_url
        )
        return CheckRunRef(id=status_id, url=payload.details_url, requests=1, annotations_sent=0)

    def set_commit_status(self, status: CommitStatus) -> None:
        self._status(
            status.sha, _STATUS[status.state], status.context, status.description, status.target_url
        )

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        """``POST /projects/:id/uploads``; the returned markdown renders in MR notes."""

        def op() -> ImageRef:
            result = self._project().upload(safe_name(filename, "chart.png"), filedata=data)
            full_path = result.get("full_path")
            url = f"{self.url}{full_path}" if full_path else str(result.get("url", ""))
            return ImageRef(url=url, markdown=str(result.get("markdown", f"![chart]({url})")))

        ref: ImageRef = self._call("upload image", op)
        return ref

    # -- CI server ---------------------------------------------------------------------------
    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        variables = {str(k): str(v) for k, v in request.inputs.items()}
        variables.setdefault("CI_FANOUT_SHARD", request.shard_id)

        def op() -> DispatchResult:
            project = self._project()
            if self.trigger_token:
                pipeline = project.trigger_pipeline(
                    request.ref, self.trigger_token, variables=variables
                )
            else:
                pipeline = project.pipelines.create(
                    {
                        "ref": request.ref,
                        "variables": [{"key": k, "value": v} for k, v in variables.items()],
                    }
                )
            return DispatchResult(run_id=str(pipeline.id), url=getattr(pipeline, "web_url", None))

        result: DispatchResult = self._call("create pipeline", op)
        return result

    def _pipeline_jobs(self, pipeline_id: int, depth: int = 0) -> Iterator[tuple[str, Any]]:
        """Jobs of the pipeline and, through its bridge jobs, of its child pipelines."""
        pipeline = self._project().pipelines.get(pipeline_id, lazy=True)
        for job in pipeline.jobs.list(iterator=True, per_page=100):
            yield str(pipeline_id), job
        if depth >= MAX_CHILD_DEPTH:
            return
        for bridge in pipeline.bridges.list(iterator=True, per_page=100):
            downstream = getattr(bridge, "downstream_pipeline", None)
            if isinstance(downstream, dict) and downstream.get("id"):
                yield from self._pipeline_jobs(int(downstream["id"]), depth + 1)

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        def op() -> list[JobInfo]:
            out = []
            for pipeline_id, job in self._pipeline_jobs(int(run_id)):
                runner = getattr(job, "runner", None) or {}
                out.append(
                    JobInfo(
                        id=str(job.id),
                        name=job.name,
                        state=job_state(job.status),
                        url=getattr(job, "web_url", None),
                        runner=(runner.get("description") or runner.get("name"))
                        if runner
                        else None,
                        labels=tuple(getattr(job, "tag_list", []) or ()),
                        pipeline_id=pipeline_id,
                    )
                )
            return out

        jobs: list[JobInfo] = self._call("list pipeline jobs", op)
        return jobs

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        def listing() -> list[tuple[int, str]]:
            found = []
            for _pipeline, job in self._pipeline_jobs(int(run_id)):
                archive = getattr(job, "artifacts_file", None)
                if archive and archive.get("size", 0) <= limits.max_zip_total_bytes:
                    found.append((int(job.id), str(job.name)))
                elif archive:
                    log.warning("artifacts of job %s skipped: over the size cap", job.name)
            return found

        saved: list[Path] = []
        for job_id, job_name in self._call("list job artifacts", listing):
            path = dest / f"{safe_name(job_name)}-{job_id}.zip"

            def chunks(job_id: int = job_id) -> Iterator[bytes]:
                job = self._project().jobs.get(job_id, lazy=True)
                stream: Iterator[bytes] = job.artifacts(streamed=True, iterator=True)
                return stream

            operation = f"download artifacts of job {job_id}"
            self._download(operation, chunks, path, limits.max_zip_total_bytes)
            if keep_if_valid_zip(path, limits):
                saved.append(path)
        return saved

    def cancel(self, run_id: str) -> None:
        self._call(
            "cancel pipeline",
            lambda: self._project().pipelines.get(int(run_id), lazy=True).cancel(),
        )

    # -- runner admin ------------------------------------------------------------------------
    def list_runners(self) -> list[RunnerInfo]:
        def op() -> list[RunnerInfo]:
            if self.runner_scope == "project":
                listed = self._project().runners.list(iterator=True, per_page=100)
            else:
                listed = self._gl.runners.list(iterator=True, per_page=100)
            out = []
            for item in listed:
                runner = self._gl.runners.get(item.id)  # the list omits tag_list
                out.append(
                    RunnerInfo(
                        id=str(runner.id),
                        name=str(runner.description or runner.name or runner.id),
                        labels=frozenset(runner.tag_list or ()),
                        online=bool(getattr(runner, "online", runner.status == "online")),
                        busy=runner.status == "running",
                    )
                )
            return out

        runners: list[RunnerInfo] = self._call("list runners", op)
        return runners

    def _edit_tags(self, runner_id: str, label: str, add: bool) -> None:
        """GitLab only sets the whole ``tag_list``: read it, change one tag, write it back, so
        tags set by an admin are kept."""

        def op() -> None:
            runner = self._gl.runners.get(int(runner_id))
            tags = list(runner.tag_list or ())
            if add and label not in tags:
                tags.append(label)
            elif not add and label in tags:
                tags.remove(label)
            else:
                return
            self._gl.runners.update(int(runner_id), {"tag_list": tags})

        self._call("add runner tag" if add else "remove runner tag", op)

    def add_label(self, runner_id: str, label: str) -> None:
        self._edit_tags(runner_id, label, add=True)

    def remove_label(self, runner_id: str, label: str) -> None:
        self._edit_tags(runner_id, label, add=False)


def _author(note: Any) -> Author:
    author = getattr(note, "author", None)
    if not isinstance(author, dict):
        return Author()
    found = author.get("id")
    return Author(id=str(found) if found is not None else None, login=author.get("username"))


def from_settings(settings: Mapping[str, str]) -> Provider:
    """Settings: ``project`` (id or path), ``url``, ``token``, optional ``trigger_token``,
    ``runner_scope`` (all|project), ``timeout``, ``dashboard_url``."""
    adapter = GitLabAdapter(
        project=require(settings, "project", NAME),
        token=settings.get("token") or None,
        url=settings.get("url") or DEFAULT_URL,
        trigger_token=settings.get("trigger_token") or None,
        runner_scope=settings.get("runner_scope") or "all",
        timeout=float(settings.get("timeout") or 15),
        dashboard_url=settings.get("dashboard_url") or None,
    )
    return Provider(name=NAME, forge=adapter, ci=adapter, runners=adapter)
