"""GitHub adapter (PyGithub): sticky PR comment, check runs, statuses, dispatch, runs, runners.

Auth: a token (``GITHUB_TOKEN``, PAT) or a GitHub App (JWT -> installation token; PyGithub
re-fetches the installation token when fewer than 20 s remain before ``expires_at``). Works with
GitHub Enterprise Server base URLs (``https://ghe.example.com/api/v3``). PyGithub's own retry is
off: every operation goes through :func:`ci_app.providers.retry.call`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from github import Auth, Github, GithubException, GithubIntegration
from github.Repository import Repository

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ConfigError, ProviderError
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
    require,
)
from ci_app.providers.download import keep_if_valid_zip, safe_name
from ci_app.providers.retry import DEFAULT_POLICY, Failure, RetryPolicy

log = logging.getLogger(__name__)

NAME = "github"
DEFAULT_API_URL = "https://api.github.com"
#: Author of comments made with a workflow's ``GITHUB_TOKEN`` (an installation token of the
#: GitHub Actions app, for which ``GET /user`` answers 403).
GITHUB_ACTIONS_BOT = "github-actions[bot]"


@dataclass(frozen=True, kw_only=True, slots=True)
class GitHubAuth:
    """Either ``token`` or (``app_id`` + ``private_key`` [+ ``installation_id``])."""

    token: str | None = None
    app_id: str | None = None
    private_key: str | None = None
    installation_id: int | None = None

    def __post_init__(self) -> None:
        if not self.token and not (self.app_id and self.private_key):
            raise ConfigError(
                "github: no credentials: set GITHUB_TOKEN, or a GitHub App id and private key"
            )

    def __repr__(self) -> str:  # never print secrets
        kind = "token" if self.token else f"app {self.app_id}"
        return f"GitHubAuth({kind})"


def classify(exc: BaseException) -> Failure | None:
    if not isinstance(exc, GithubException):
        return None
    data = exc.data
    message = ""
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
            message = f"{message}: {'; '.join(details)}" if message else "; ".join(details)
    elif data:
        message = str(data)
    return Failure(
        status=exc.status,
        message=message or exc.__class__.__name__,
        headers=dict(exc.headers or {}),
    )


_QUEUED = {"queued", "waiting", "pending", "requested"}
_CONCLUSIONS = {
    "success": JobState.SUCCESS,
    "failure": JobState.FAILURE,
    "timed_out": JobState.FAILURE,
    "startup_failure": JobState.FAILURE,
    "action_required": JobState.FAILURE,
    "cancelled": JobState.CANCELLED,
    "skipped": JobState.SKIPPED,
    "neutral": JobState.SKIPPED,
}


def job_state(status: str | None, conclusion: str | None) -> JobState:
    if status in _QUEUED:
        return JobState.QUEUED
    if status == "in_progress":
        return JobState.RUNNING
    if status == "completed":
        return _CONCLUSIONS.get(conclusion or "", JobState.UNKNOWN)
    return JobState.UNKNOWN


def _annotation(a: Any) -> dict[str, Any]:
    level = a.level if a.level in ("notice", "warning", "failure") else "failure"
    out: dict[str, Any] = {
        "path": a.path,
        "start_line": max(1, a.start_line),
        "end_line": max(1, a.end_line if a.end_line is not None else a.start_line),
        "annotation_level": level,
        "message": budget.clip(a.message or "(no message)", budget.GITHUB_ANNOTATION_MESSAGE_MAX),
    }
    if a.title:
        out["title"] = budget.clip(a.title, budget.GITHUB_ANNOTATION_TITLE_MAX)
    if a.raw_details:
        out["raw_details"] = budget.clip(a.raw_details, budget.GITHUB_ANNOTATION_MESSAGE_MAX)
    return out


class GitHubAdapter(SdkAdapter):
    """Forge + CI server + runner admin for one repository (runners: repo or org scope)."""

    name = NAME

    def __init__(
        self,
        *,
        repo: str,
        auth: GitHubAuth,
        api_url: str = DEFAULT_API_URL,
        org_runners: str | None = None,
        timeout: int = 15,
        policy: RetryPolicy = DEFAULT_POLICY,
        seconds_between_requests: float | None = 0.25,
        seconds_between_writes: float | None = 1.0,
        dashboard_url: str | None = None,
        comment_author: str | None = None,
    ) -> None:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ConfigError(f"github: repository must be OWNER/NAME, got {repo!r}")
        self.repo_name = repo
        self.api_url = api_url.rstrip("/")
        self.org_runners = org_runners
        self.policy = policy
        self.dashboard_url = dashboard_url
        #: login that writes our comments, when it cannot be looked up (an installation token
        #: of another App passed as the token: ``<slug>[bot]``)
        self.comment_author = comment_author or None
        self._author: Author | None = None
        self._auth = auth
        self._kwargs: dict[str, Any] = {
            "base_url": self.api_url,
            "timeout": timeout,
            "retry": None,
            "seconds_between_requests": seconds_between_requests,
            "seconds_between_writes": seconds_between_writes,
            "lazy": True,
            "per_page": 100,
        }
        self._gh: Github | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _classify(self, exc: BaseException) -> Failure | None:
        return classify(exc)

    def _client(self) -> Github:
        if self._gh is not None:
            return self._gh
        if self._auth.token:
            self._gh = Github(auth=Auth.Token(self._auth.token), **self._kwargs)
            return self._gh
        assert self._auth.app_id and self._auth.private_key
        app_auth = Auth.AppAuth(self._auth.app_id, self._auth.private_key)
        installation_id = self._auth.installation_id
        if installation_id is None:
            owner, name = self.repo_name.split("/")
            integration = GithubIntegration(auth=app_auth, **self._kwargs)
            installation = self._call(
                "find app installation", lambda: integration.get_repo_installation(owner, name)
            )
            installation_id = int(installation.id)
        self._gh = Github(auth=app_auth.get_installation_auth(installation_id), **self._kwargs)
        return self._gh

    def _repo(self) -> Repository:
        return self._client().get_repo(self.repo_name)

    def _request(self, verb: str, url: str, body: dict[str, Any] | None = None) -> Any:
        _headers, data = self._client().requester.requestJsonAndCheck(verb, url, input=body)
        return data

    # -- Forge -------------------------------------------------------------------------------
    def whoami(self) -> Author:
        """Who our comments are written by: the App's ``<slug>[bot]`` (``GET /app``), the
        token's user (``GET /user``), or ``github-actions[bot]`` for an installation token
        such as ``GITHUB_TOKEN`` (``GET /user`` answers 403 for those). Looked up once."""
        if self._author is not None:
            return self._author
        if self.comment_author:
            self._author = Author(login=self.comment_author)
        elif not self._auth.token:
            assert self._auth.app_id and self._auth.private_key
            integration = GithubIntegration(
                auth=Auth.AppAuth(self._auth.app_id, self._auth.private_key), **self._kwargs
            )
            slug = self._call("look up the App", lambda: integration.get_app().slug)
            self._author = Author(login=f"{slug}[bot]")
        else:
            self._author = self._call("look up the token's user", self._token_user)
        return self._author

    def _token_user(self) -> Author:
        try:
            data = self._request("GET", "/user")
        except GithubException as exc:
            failure = classify(exc)
            if exc.status == 403 and failure and "not accessible by integration" in failure.message:
                return Author(login=GITHUB_ACTIONS_BOT)
            raise
        return Author(id=str(data["id"]), login=str(data["login"]))

    def upsert_comment(self, number: int, body: str, *, kind: str = DEFAULT_KIND) -> CommentRef:
        """Edit the sticky comment of ``kind`` if *we* wrote one (marker and author), else
        create it; a comment by anyone else that starts with our marker is left alone."""
        fitted = budget.fit_markdown(
            budget.ensure_marker(body, kind),
            budget.GITHUB_COMMENT_MAX,
            dashboard_url=self.dashboard_url,
        )
        me = self.whoami()

        def op() -> CommentRef:
            issue = self._repo().get_issue(number)
            for comment in issue.get_comments():
                if budget.marker_matches(comment.body or "", kind) and me.same(_author(comment)):
                    if comment.body != fitted.body:
                        comment.edit(fitted.body)
                    return CommentRef(
                        id=str(comment.id),
                        url=comment.html_url,
                        created=False,
                        truncated=fitted.truncated,
                    )
            created = issue.create_comment(fitted.body)
            return CommentRef(
                id=str(created.id), url=created.html_url, created=True, truncated=fitted.truncated
            )

        ref: CommentRef = self._call("upsert PR comment", op)
        return ref

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef:
        summary = budget.fit_markdown(
            payload.summary, budget.GITHUB_CHECK_TEXT_MAX, dashboard_url=self.dashboard_url
        )
        text = (
            budget.fit_markdown(
                payload.text, budget.GITHUB_CHECK_TEXT_MAX, dashboard_url=self.dashboard_url
            )
            if payload.text
            else None
        )
        title = budget.clip(payload.title, budget.GITHUB_CHECK_TITLE_MAX)
        annotations = [_annotation(a) for a in payload.annotations]
        chunks = list(budget.batches(annotations, budget.GITHUB_ANNOTATIONS_PER_REQUEST)) or [[]]
        completed = payload.status == "completed"
        conclusion = payload.conclusion or ("neutral" if completed else None)
        several = len(chunks) > 1

        def output(chunk: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"title": title, "summary": summary.body}
            if text is not None:
                out["text"] = text.body
            if chunk:
                out["annotations"] = list(chunk)
            return out

        create: dict[str, Any] = {
            "name": payload.name,
            "head_sha": payload.head_sha,
            "status": "in_progress" if (completed and several) else payload.status,
            "output": output(chunks[0]),
        }
        if completed and not several:
            create["conclusion"] = conclusion
        if payload.details_url:
            create["details_url"] = payload.details_url
        if payload.external_id:
            create["external_id"] = payload.external_id
        check = self._call("create check run", lambda: self._repo().create_check_run(**create))
        sent = len(chunks[0])
        for index, chunk in enumerate(chunks[1:], start=2):
            update: dict[str, Any] = {"output": output(chunk)}
            if completed and index == len(chunks):
                update["status"] = "completed"
                update["conclusion"] = conclusion
            self._call(f"update check run (batch {index})", lambda u=update: check.edit(**u))
            sent += len(chunk)
        return CheckRunRef(
            id=str(check.id),
            url=check.html_url,
            requests=len(chunks),
            annotations_sent=sent,
            truncated=summary.truncated or bool(text and text.truncated),
        )

    def set_commit_status(self, status: CommitStatus) -> None:
        body: dict[str, Any] = {
            "state": status.state.value,
            "context": status.context,
            "description": budget.clip(status.description, budget.GITHUB_STATUS_DESCRIPTION_MAX),
        }
        if status.target_url:
            body["target_url"] = status.target_url
        self._call(
            "set commit status",
            lambda: self._request("POST", f"{self._repo().url}/statuses/{status.sha}", body),
        )

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        """GitHub has no image upload API (and strips ``data:`` images): charts go inline as
        Mermaid by the reporting layer, PNGs to the dashboard and artifacts."""
        return None

    # -- CI server ---------------------------------------------------------------------------
    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        inputs = {str(k): str(v) for k, v in request.inputs.items()}
        if request.event_type:
            payload = {"shard_id": request.shard_id, "ref": request.ref, "inputs": inputs}
            body = {"event_type": request.event_type[:100], "client_payload": payload}
            self._call(
                "repository_dispatch",
                lambda: self._request("POST", f"{self._repo().url}/dispatches", body),
            )
            return DispatchResult(run_id=None)
        if not request.target:
            raise ConfigError("github: workflow_dispatch needs the workflow file name (target)")
        if len(inputs) > budget.GITHUB_WORKFLOW_INPUTS_MAX:
            raise ProviderError(
                f"{len(inputs)} workflow inputs, GitHub accepts at most "
                f"{budget.GITHUB_WORKFLOW_INPUTS_MAX}",
                provider=NAME,
                operation="workflow_dispatch",
                hint="pass the shard as one JSON input (e.g. inputs.shard) instead",
            )

        def op() -> DispatchResult:
            workflow = self._repo().get_workflow(request.target)
            run: Any = workflow.create_dispatch(
                request.ref, inputs, throw=True, return_run_details=True
            )
            if isinstance(run, bool):  # server without run details (204)
                return DispatchResult(run_id=None)
            return DispatchResult(run_id=str(run.id), url=run.html_url)

        result: DispatchResult = self._call("workflow_dispatch", op)
        return result

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        def op() -> list[JobInfo]:
            run = self._repo().get_workflow_run(int(run_id))
            return [
                JobInfo(
                    id=str(job.id),
                    name=job.name,
                    state=job_state(job.status, job.conclusion),
                    url=job.html_url,
                    runner=job.runner_name,
                    labels=tuple(job.labels or ()),
                )
                for job in run.jobs("latest")
            ]

        jobs: list[JobInfo] = self._call("list run jobs", op)
        return jobs

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        """Download each unexpired artifact zip of the run (following the 302 to the blob
        store) into ``dest/<name>.zip``; zips breaking the artifact limits are dropped."""

        def listing() -> list[tuple[str, str, int]]:
            run = self._repo().get_workflow_run(int(run_id))
            return [
                (a.name, a.archive_download_url, a.size_in_bytes)
                for a in run.get_artifacts()
                if not a.expired
            ]

        saved: list[Path] = []
        for name, url, size in self._call("list run artifacts", listing):
            if size > limits.max_zip_total_bytes:
                log.warning("artifact %s skipped: %s bytes over the cap", name, size)
                continue
            path = dest / f"{safe_name(name)}.zip"

            def chunks(url: str = url) -> Iterator[bytes]:
                _status, _headers, stream = self._client().requester.getStream(
                    url, chunk_size=64 * 1024
                )
                return _iter(stream)

            self._download(f"download artifact {name}", chunks, path, limits.max_zip_total_bytes)
            if keep_if_valid_zip(path, limits):
                saved.append(path)
        return saved

    def cancel(self, run_id: str) -> None:
        self._call(
            "cancel run",
            lambda: self._request("POST", f"{self._repo().url}/actions/runs/{int(run_id)}/cancel"),
        )

    # -- runner admin ------------------------------------------------------------------------
    def _runners_base(self) -> str:
        if self.org_runners:
            return f"{self.api_url}/orgs/{quote(self.org_runners, safe='')}/actions/runners"
        return f"{self._repo().url}/actions/runners"

    def list_runners(self) -> list[RunnerInfo]:
        def op() -> list[RunnerInfo]:
            gh = self._client()
            if self.org_runners:
                runners = gh.get_organization(self.org_runners).get_self_hosted_runners()
            else:
                runners = self._repo().get_self_hosted_runners()
            return [
                RunnerInfo(
                    id=str(r.id),
                    name=r.name,
                    labels=frozenset(str(label["name"]) for label in r.labels),
                    online=r.status == "online",
                    busy=bool(r.busy),
                )
                for r in runners
            ]

        runners: list[RunnerInfo] = self._call("list runners", op)
        return runners

    def add_label(self, runner_id: str, label: str) -> None:
        """``POST …/labels`` adds one custom label; never ``PUT`` (that replaces admin labels)."""
        self._call(
            "add runner label",
            lambda: self._request(
                "POST", f"{self._runners_base()}/{int(runner_id)}/labels", {"labels": [label]}
            ),
        )

    def remove_label(self, runner_id: str, label: str) -> None:
        self._call(
            "remove runner label",
            lambda: self._request(
                "DELETE", f"{self._runners_base()}/{int(runner_id)}/labels/{quote(label, safe='')}"
            ),
        )


def _author(comment: Any) -> Author:
    user = comment.user
    if user is None:  # a deleted account ("ghost")
        return Author()
    return Author(id=str(user.id) if user.id is not None else None, login=user.login)


def _iter(chunks: Any) -> Iterator[bytes]:
    for chunk in chunks:
        yield bytes(chunk)


def from_settings(settings: Mapping[str, str]) -> Provider:
    """Settings: ``repo``, ``api_url``, ``token`` or ``app_id`` + ``private_key`` /
    ``private_key_path`` [+ ``installation_id``], optional ``org_runners``, ``timeout``,
    ``dashboard_url``, ``comment_author`` (the login our comments are written by, needed only
    for an installation token of an App other than GitHub Actions)."""
    repo = require(settings, "repo", NAME)
    key = settings.get("private_key") or None
    key_path = settings.get("private_key_path")
    if not key and key_path:
        try:
            key = Path(key_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"github: cannot read the App private key {key_path}: {exc}") from exc
    installation = settings.get("installation_id")
    auth = GitHubAuth(
        token=settings.get("token") or None,
        app_id=settings.get("app_id") or None,
        private_key=key,
        installation_id=int(installation) if installation else None,
    )
    between_requests, between_writes = _throttle(settings.get("throttle"))
    adapter = GitHubAdapter(
        repo=repo,
        auth=auth,
        api_url=settings.get("api_url") or DEFAULT_API_URL,
        org_runners=settings.get("org_runners") or None,
        timeout=int(settings.get("timeout") or 15),
        dashboard_url=settings.get("dashboard_url") or None,
        comment_author=settings.get("comment_author") or None,
        seconds_between_requests=between_requests,
        seconds_between_writes=between_writes,
    )
    return Provider(name=NAME, forge=adapter, ci=adapter, runners=adapter)


def _throttle(value: str | None) -> tuple[float, float]:
    """``throttle=0`` turns PyGithub's pacing off (fakes, GHES without secondary limits);
    the default keeps PyGithub's 0.25 s between requests and 1 s between writes."""
    if value is None or value == "":
        return 0.25, 1.0
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"github: throttle must be seconds, got {value!r}") from None
    return seconds / 4, seconds
