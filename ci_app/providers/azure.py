"""Azure DevOps adapter (azure-devops 7.1.0b4): pipeline runs with template parameters, build
timeline and artifacts, sticky PR thread comment, commit statuses, agents and capabilities.

Discovery stays offline: clients are built directly on the organisation URL, so the SDK only
asks that server for its route table (``OPTIONS {org}/_apis``) and never looks up resource areas
(which falls back to ``app.vssps.visualstudio.com``). The SDK's on-disk cache goes under the app's
data dir: ``AZURE_DEVOPS_CACHE_DIR`` is set before ``azure.devops`` is first imported.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

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
from ci_app.providers.retry import (
    DEFAULT_POLICY,
    Failure,
    ResponseRecorder,
    RetryPolicy,
    classify_transport,
)

log = logging.getLogger(__name__)

NAME = "azure"
CACHE_ENV = "AZURE_DEVOPS_CACHE_DIR"

_STATUS = {
    StatusState.PENDING: "pending",
    StatusState.SUCCESS: "succeeded",
    StatusState.FAILURE: "failed",
    StatusState.ERROR: "error",
}
_CONCLUSION = {
    "success": "succeeded",
    "neutral": "notApplicable",
    "skipped": "notApplicable",
    "failure": "failed",
    "timed_out": "failed",
    "cancelled": "error",
}
_RESULTS = {
    "succeeded": JobState.SUCCESS,
    "succeededWithIssues": JobState.SUCCESS,
    "failed": JobState.FAILURE,
    "canceled": JobState.CANCELLED,
    "abandoned": JobState.CANCELLED,
    "skipped": JobState.SKIPPED,
}


def default_data_dir() -> Path:
    configured = os.environ.get("CI_FANOUT_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ci-fanout"


def prepare_sdk_cache(data_dir: Path) -> Path:
    """Point the SDK's cache into ``data_dir`` (it reads the variable once, at import)."""
    cache = Path(os.environ.get(CACHE_ENV) or data_dir / "azure-devops")
    if "azure.devops" not in sys.modules:
        cache.mkdir(parents=True, exist_ok=True)
        os.environ[CACHE_ENV] = str(cache)
    return cache


def record_state(state: str | None, result: str | None) -> JobState:
    if state == "pending":
        return JobState.QUEUED
    if state == "inProgress":
        return JobState.RUNNING
    if state == "completed":
        return _RESULTS.get(result or "", JobState.UNKNOWN)
    return JobState.UNKNOWN


class AzureAdapter(SdkAdapter):
    """Forge (PR threads, statuses) + CI server (pipelines/builds) + runner admin (one pool)."""

    name = NAME
    _recorder: ResponseRecorder

    def __init__(
        self,
        *,
        org_url: str,
        project: str,
        token: str,
        repository: str | None = None,
        pipeline_id: int | None = None,
        pool_id: int | None = None,
        data_dir: Path | None = None,
        timeout: float = 15.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        dashboard_url: str | None = None,
    ) -> None:
        self.org_url = org_url.rstrip("/")
        self.project = project
        self.repository = repository
        self.pipeline_id = pipeline_id
        self.pool_id = pool_id
        self.timeout = timeout
        self.policy = policy
        self.dashboard_url = dashboard_url
        self.cache_dir = prepare_sdk_cache(data_dir or default_data_dir())
        self._token = token
        self._author: Author | None = None
        self._recorder = ResponseRecorder()
        self._clients: dict[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def _client(self, kind: str) -> Any:
        if kind in self._clients:
            return self._clients[kind]
        from azure.devops.v7_1.build import BuildClient
        from azure.devops.v7_1.git import GitClient
        from azure.devops.v7_1.location import LocationClient
        from azure.devops.v7_1.pipelines import PipelinesClient
        from azure.devops.v7_1.task_agent import TaskAgentClient
        from msrest.authentication import BasicAuthentication

        classes = {
            "build": BuildClient,
            "git": GitClient,
            "location": LocationClient,
            "pipelines": PipelinesClient,
            "task_agent": TaskAgentClient,
        }
        client = classes[kind](base_url=self.org_url, creds=BasicAuthentication("", self._token))
        # No urllib3 retries at all (retry.call decides). The session adapter already holds
        # this Retry object, so change it in place: ``retries = 0`` alone would still turn a 5xx
        # into an opaque RetryError (msrest's status_forcelist) and sleep on Retry-After.
        urllib3_retry = client.config.retry_policy.policy
        urllib3_retry.total = False
        urllib3_retry.status_forcelist = frozenset()
        urllib3_retry.respect_retry_after_header = False
        urllib3_retry.raise_on_status = False
        client.config.connection.timeout = self.timeout
        client.config.hooks.append(self._recorder._hook)
        self._clients[kind] = client
        return client

    def _classify(self, exc: BaseException) -> Failure | None:
        from azure.devops.exceptions import (
            AzureDevOpsAuthenticationError,
            AzureDevOpsClientRequestError,
        )
        from msrest.exceptions import ClientRequestError

        if isinstance(exc, AzureDevOpsClientRequestError | AzureDevOpsAuthenticationError):
            status, headers = self._recorder.last_response()
            message = str(getattr(exc, "message", None) or exc)
            return Failure(status=status, message=message, headers=headers)
        if isinstance(exc, ClientRequestError):
            inner = getattr(exc, "inner_exception", None)
            found = classify_transport(inner) if isinstance(inner, BaseException) else None
            return found or Failure(status=None, message=str(exc), connection=True)
        return None

    def _repo(self) -> str:
        if not self.repository:
            raise ConfigError("azure: set the repository (name or id) for PR comments and statuses")
        return self.repository

    def _run_ids(self, run_id: str) -> tuple[int, int]:
        pipeline, sep, run = run_id.partition("/")
        if sep:
            return int(pipeline), int(run)
        if self.pipeline_id is None:
            raise ConfigError("azure: run id must be PIPELINE/RUN, or set pipeline_id")
        return self.pipeline_id, int(run_id)

    # -- Forge -------------------------------------------------------------------------------
    def whoami(self) -> Author:
        """The token's identity (``GET {org}/_apis/connectionData``: ``authenticatedUser``),
        looked up once."""
        if self._author is None:

            def op() -> Author:
                user = self._client("location").get_connection_data().authenticated_user
                if user is None or not user.id:
                    raise ConfigError("azure: the token has no identity (connectionData)")
                return Author(id=str(user.id), login=user.provider_display_name)

            self._author = self._call("look up the token's identity", op)
        return self._author

    def upsert_comment(self, number: int, body: str, *, kind: str = DEFAULT_KIND) -> CommentRef:
        """Edit the sticky PR thread of ``kind`` if *we* started it (marker and author), else
        create one; a thread anyone else started with our marker is left alone."""
        from azure.devops.v7_1.git.models import Comment, GitPullRequestCommentThread

        fitted = budget.fit_markdown(
            budget.ensure_marker(body, kind),
            budget.AZURE_COMMENT_MAX,
            dashboard_url=self.dashboard_url,
        )
        repo = self._repo()
        git = self._client("git")
        me = self.whoami()

        def op() -> CommentRef:
            for thread in git.get_threads(repo, number, project=self.project) or []:
                first = (thread.comments or [None])[0]
                if (
                    first is None
                    or first.is_deleted
                    or not budget.marker_matches(first.content or "", kind)
                    or not me.same(_author(first))
                ):
                    continue
                if first.content != fitted.body:
                    git.update_comment(
                        Comment(content=fitted.body),
                        repo,
                        number,
                        thread.id,
                        first.id,
                        project=self.project,
                    )
                return CommentRef(
                    id=f"{thread.id}/{first.id}",
                    url=None,
                    created=False,
                    truncated=fitted.truncated,
                )
            thread = git.create_thread(
                GitPullRequestCommentThread(
                    comments=[Comment(content=fitted.body, comment_type="text")], status="active"
                ),
                repo,
                number,
                project=self.project,
            )
            comment_id = thread.comments[0].id if thread.comments else 1
            return CommentRef(
                id=f"{thread.id}/{comment_id}", url=None, created=True, truncated=fitted.truncated
            )

        ref: CommentRef = self._call("upsert PR thread", op)
        return ref

    def _status(self, sha: str, state: str, name: str, description: str, url: str | None) -> None:
        from azure.devops.v7_1.git.models import GitStatus, GitStatusContext

        status = GitStatus(
            state=state,
            description=budget.clip(description, 4000),
            context=GitStatusContext(name=name, genre="ci-fanout"),
            target_url=url,
        )
        repo = self._repo()
        self._call(
            "set commit status",
            lambda: self._client("git").create_commit_status(
                status, sha, repo, project=self.project
            ),
        )

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef:
        state = (
            _CONCLUSION.get(payload.conclusion or "neutral", "notApplicable")
            if payload.status == "completed"
            else "pending"
        )
        self._status(payload.head_sha, state, payload.name, payload.title, payload.details_url)
        return CheckRunRef(id=payload.name, url=payload.details_url, requests=1, annotations_sent=0)

    def set_commit_status(self, status: CommitStatus) -> None:
        self._status(
            status.sha, _STATUS[status.state], status.context, status.description, status.target_url
        )

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        return None  # PR attachments need a thread-scoped upload; charts stay inline (Mermaid)

    # -- CI server ---------------------------------------------------------------------------
    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        from azure.devops.v7_1.pipelines.models import (
            RepositoryResourceParameters,
            RunPipelineParameters,
            RunResourcesParameters,
        )

        target = request.target or (str(self.pipeline_id) if self.pipeline_id else "")
        if not target.isdigit():
            raise ConfigError("azure: dispatch needs the numeric pipeline id (target/pipeline_id)")
        parameters = {str(k): str(v) for k, v in request.inputs.items()}
        parameters.setdefault("shard", request.shard_id)
        body = RunPipelineParameters(
            template_parameters=parameters,
            resources=RunResourcesParameters(
                repositories={"self": RepositoryResourceParameters(ref_name=request.ref)}
            ),
        )

        def op() -> DispatchResult:
            run = self._client("pipelines").run_pipeline(body, self.project, int(target))
            links = getattr(run, "_links", None)
            web = getattr(getattr(links, "additional_properties", None), "get", lambda *_: None)(
                "web"
            )
            return DispatchResult(run_id=f"{target}/{run.id}", url=web.get("href") if web else None)

        result: DispatchResult = self._call("run pipeline", op)
        return result

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        _pipeline, build_id = self._run_ids(run_id)

        def op() -> list[JobInfo]:
            timeline = self._client("build").get_build_timeline(self.project, build_id)
            records = (timeline.records or []) if timeline else []
            return [
                JobInfo(
                    id=str(r.id),
                    name=r.name or str(r.id),
                    state=record_state(r.state, r.result),
                    url=None,
                    runner=r.worker_name,
                )
                for r in records
                if (r.type or "").lower() == "job"
            ]

        jobs: list[JobInfo] = self._call("get build timeline", op)
        return jobs

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        """Names from the build's artifact list, then each artifact's signed zip URL from the
        Pipelines API (``$expand=signedContent``; needs no credentials, valid for a short time)."""
        pipeline_id, build_id = self._run_ids(run_id)
        names = self._call(
            "list artifacts",
            lambda: [
                a.name for a in self._client("build").get_artifacts(self.project, build_id) or []
            ],
        )
        saved: list[Path] = []
        for name in names:
            path = dest / f"{safe_name(name)}.zip"

            def chunks(name: str = name) -> Iterator[bytes]:
                artifact = self._client("pipelines").get_artifact(
                    self.project, pipeline_id, build_id, name, expand="signedContent"
                )
                url = artifact.signed_content.url
                with requests.get(url, stream=True, timeout=self.timeout) as response:
                    response.raise_for_status()
                    yield from response.iter_content(64 * 1024)

            self._download(f"download artifact {name}", chunks, path, limits.max_zip_total_bytes)
            if keep_if_valid_zip(path, limits):
                saved.append(path)
        return saved

    def cancel(self, run_id: str) -> None:
        from azure.devops.v7_1.build.models import Build

        _pipeline, build_id = self._run_ids(run_id)
        self._call(
            "cancel build",
            lambda: self._client("build").update_build(
                Build(status="cancelling"), self.project, build_id
            ),
        )

    # -- runner admin (agents of one pool) ---------------------------------------------------
    def _pool(self) -> int:
        if self.pool_id is None:
            raise ConfigError("azure: set pool_id (the agent pool whose agents carry the labels)")
        return self.pool_id

    def _agents(self) -> list[Any]:
        agents: list[Any] = (
            self._client("task_agent").get_agents(self._pool(), include_capabilities=True) or []
        )
        return agents

    def list_runners(self) -> list[RunnerInfo]:
        """Labels are the agent's *user* capabilities (what demands match); system capabilities
        (env vars of the agent host) are not labels."""

        def op() -> list[RunnerInfo]:
            return [
                RunnerInfo(
                    id=str(a.id),
                    name=a.name,
                    labels=frozenset((a.user_capabilities or {}).keys()),
                    online=a.status == "online",
                    busy=a.assigned_request is not None,
                )
                for a in self._agents()
            ]

        runners: list[RunnerInfo] = self._call("list agents", op)
        return runners

    def _edit(self, runner_id: str, label: str, add: bool) -> None:
        from azure.devops.v7_1.task_agent.models import TaskAgent

        def op() -> None:
            agent = next((a for a in self._agents() if str(a.id) == runner_id), None)
            if agent is None:
                raise ConfigError(f"azure: no agent {runner_id} in pool {self._pool()}")
            caps = dict(agent.user_capabilities or {})
            if add == (label in caps):
                return
            if add:
                caps[label] = "true"
            else:
                caps.pop(label)
            self._client("task_agent").update_agent(
                TaskAgent(id=agent.id, user_capabilities=caps), self._pool(), agent.id
            )

        self._call("add agent capability" if add else "remove agent capability", op)

    def add_label(self, runner_id: str, label: str) -> None:
        self._edit(runner_id, label, add=True)

    def remove_label(self, runner_id: str, label: str) -> None:
        self._edit(runner_id, label, add=False)


def _int(settings: Mapping[str, str], key: str) -> int | None:
    value = settings.get(key, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ConfigError(f"azure: {key} must be a number, got {value!r}")
    return int(value)


def _author(comment: Any) -> Author:
    author = getattr(comment, "author", None)
    found = getattr(author, "id", None)
    return Author(id=str(found) if found else None)


def from_settings(settings: Mapping[str, str]) -> Provider:
    """Settings: ``org_url``, ``project``, ``token`` (PAT), ``repository``, ``pipeline_id``,
    ``pool_id``, ``data_dir``, ``timeout``, ``dashboard_url``."""
    data_dir = settings.get("data_dir")
    adapter = AzureAdapter(
        org_url=require(settings, "org_url", NAME),
        project=require(settings, "project", NAME),
        token=require(settings, "token", NAME),
        repository=settings.get("repository") or None,
        pipeline_id=_int(settings, "pipeline_id"),
        pool_id=_int(settings, "pool_id"),
        data_dir=Path(data_dir) if data_dir else None,
        timeout=float(settings.get("timeout") or 15),
        dashboard_url=settings.get("dashboard_url") or None,
    )
    return Provider(name=NAME, forge=adapter, ci=adapter, runners=adapter)
