"""Jenkins adapter (jenkinsapi): build with parameters (CSRF crumb), queue item -> build, status,
artifacts, nodes and their labels. Jenkins is no forge: results go to the forge of the repository
that triggered the build (``forge`` settings: ``forge=github`` + ``forge.repo`` …)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from jenkinsapi.custom_exceptions import (
    JenkinsAPIException,
    NotBuiltYet,
    NotFound,
    UnknownJob,
    UnknownNode,
)
from jenkinsapi.jenkins import Jenkins

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ConfigError, ProviderError
from ci_app.providers.base import (
    DispatchRequest,
    DispatchResult,
    Forge,
    JobInfo,
    JobState,
    Provider,
    RunnerInfo,
    SdkAdapter,
    get_provider,
    require,
)
from ci_app.providers.download import safe_name
from ci_app.providers.retry import DEFAULT_POLICY, Failure, ResponseRecorder, RetryPolicy

log = logging.getLogger(__name__)

NAME = "jenkins"
_RESULTS = {
    "SUCCESS": JobState.SUCCESS,
    "UNSTABLE": JobState.FAILURE,
    "FAILURE": JobState.FAILURE,
    "ABORTED": JobState.CANCELLED,
    "NOT_BUILT": JobState.SKIPPED,
}
_STATUS_IN_MESSAGE = re.compile(r"status=(\d{3})")


def classify(exc: BaseException) -> Failure | None:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return Failure(
            status=exc.response.status_code,
            message=f"{exc.response.status_code} {exc.response.reason}",
            headers=dict(exc.response.headers),
        )
    if isinstance(exc, UnknownJob | UnknownNode | NotFound):
        return Failure(status=404, message=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, JenkinsAPIException):
        found = _STATUS_IN_MESSAGE.search(str(exc))
        return Failure(status=int(found.group(1)) if found else None, message=str(exc)[:300])
    return None


def build_state(building: bool, result: str | None) -> JobState:
    if building:
        return JobState.RUNNING
    return _RESULTS.get(result or "", JobState.UNKNOWN)


def split_run_id(run_id: str) -> tuple[str, int]:
    job, sep, number = run_id.rpartition("#")
    if not sep or not job or not number.isdigit():
        raise ConfigError(f"jenkins: run id must be JOB#NUMBER, got {run_id!r}")
    return job, int(number)


class JenkinsAdapter(SdkAdapter):
    """CI server + runner admin (nodes); ``forge`` is where results are posted."""

    name = NAME
    _recorder: ResponseRecorder

    def __init__(
        self,
        *,
        url: str,
        username: str = "",
        token: str = "",
        timeout: int = 15,
        policy: RetryPolicy = DEFAULT_POLICY,
        queue_polls: int = 60,
        poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = policy
        self.queue_polls = queue_polls
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._recorder = ResponseRecorder()
        self._args = {"username": username, "password": token, "timeout": timeout}
        self._jenkins: Jenkins | None = None

    def _classify(self, exc: BaseException) -> Failure | None:
        return classify(exc)

    def _j(self) -> Jenkins:
        if self._jenkins is None:
            jenkins = Jenkins(self.url, lazy=True, use_crumb=True, **self._args)
            self._recorder.install(jenkins.requester.session)
            self._jenkins = jenkins
        return self._jenkins

    # -- CI server ---------------------------------------------------------------------------
    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        """``buildWithParameters`` (crumb sent by jenkinsapi), then follow the queue item until it
        becomes a build (bounded: ``queue_polls`` x ``poll_interval``)."""
        if not request.target:
            raise ConfigError("jenkins: dispatch needs the job name (target)")
        params = {str(k): str(v) for k, v in request.inputs.items()}
        params.setdefault("CI_FANOUT_SHARD", request.shard_id)
        params.setdefault("CI_FANOUT_REF", request.ref)
        queue_item = self._call(
            "build with parameters",
            lambda: self._j().get_job(request.target).invoke(build_params=params),
        )

        def poll_number() -> int | None:
            queue_item.poll()
            try:
                return int(queue_item.get_build_number())
            except NotBuiltYet:
                return None

        for attempt in range(self.queue_polls):
            number = self._call("poll queue item", poll_number)
            if number is not None:
                return DispatchResult(
                    run_id=f"{request.target}#{number}",
                    url=f"{self.url}/job/{request.target}/{number}/",
                )
            if attempt + 1 < self.queue_polls:
                self._sleep(self.poll_interval)
        raise ProviderError(
            f"build of {request.target} still queued after {self.queue_polls} polls",
            provider=NAME,
            operation="dispatch",
            hint="no executor with matching labels is free; check the job's label expression",
        )

    def _build(self, run_id: str) -> Any:
        job, number = split_run_id(run_id)
        return self._j().get_job(job).get_build(number)

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        def op() -> list[JobInfo]:
            build = self._build(run_id)
            build.poll()
            return [
                JobInfo(
                    id=run_id,
                    name=run_id,
                    state=build_state(bool(build.is_running()), build.get_status()),
                    url=build.get_build_url(),
                    runner=build.get_slave() or None,
                )
            ]

        jobs: list[JobInfo] = self._call("get build", op)
        return jobs

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        """Jenkins archives plain files (not a zip): each lands under ``dest`` by its relative
        path, sanitised, capped at ``limits.max_file_bytes``."""
        listing = self._call(
            "list artifacts",
            lambda: [(a.relative_path, a.url) for a in self._build(run_id).get_artifacts()],
        )
        saved: list[Path] = []
        for relative, url in listing:
            parts = [safe_name(p) for p in str(relative).split("/") if p not in ("", ".", "..")]
            path = dest.joinpath(*parts) if parts else dest / "artifact"

            def chunks(url: str = url) -> Iterator[bytes]:
                response = self._j().requester.get_and_confirm_status(url, stream=True)
                stream: Iterator[bytes] = response.iter_content(chunk_size=64 * 1024)
                return stream

            self._download(f"download artifact {relative}", chunks, path, limits.max_file_bytes)
            saved.append(path)
        return saved

    def cancel(self, run_id: str) -> None:
        self._call("stop build", lambda: self._build(run_id).stop())

    # -- runner admin (nodes) ----------------------------------------------------------------
    def list_runners(self) -> list[RunnerInfo]:
        def op() -> list[RunnerInfo]:
            out = []
            for name, node in self._j().get_nodes().iteritems():
                try:
                    labels = (node.get_labels() or "").split()
                except JenkinsAPIException:  # the built-in node has no config.xml
                    labels = []
                out.append(
                    RunnerInfo(
                        id=name,
                        name=name,
                        labels=frozenset(labels),
                        online=bool(node.is_online()),
                        busy=not node.is_idle(),
                    )
                )
            return out

        runners: list[RunnerInfo] = self._call("list nodes", op)
        return runners

    def add_label(self, runner_id: str, label: str) -> None:
        """Labels live in the node's ``config.xml`` ``<label>``: jenkinsapi reads it, adds one
        label and posts it back, keeping the others."""
        self._call("add node label", lambda: self._j().get_node(runner_id).add_labels(label))

    def remove_label(self, runner_id: str, label: str) -> None:
        self._call("remove node label", lambda: self._j().get_node(runner_id).delete_labels(label))


def from_settings(settings: Mapping[str, str]) -> Provider:
    """Settings: ``url``, ``username``, ``token``, ``timeout``; the forge that receives results
    as ``forge`` (a provider name) plus its settings prefixed ``forge.`` (``forge.repo`` …)."""
    adapter = JenkinsAdapter(
        url=require(settings, "url", NAME),
        username=settings.get("username", ""),
        token=settings.get("token", ""),
        timeout=int(settings.get("timeout") or 15),
    )
    forge: Forge | None = None
    forge_name = settings.get("forge")
    if forge_name:
        if forge_name == NAME:
            raise ConfigError("jenkins: forge must be a repository host (github, gitlab, azure)")
        forge_settings = {
            k.removeprefix("forge."): v for k, v in settings.items() if k.startswith("forge.")
        }
        forge = get_provider(forge_name, forge_settings).forge
    return Provider(name=NAME, forge=forge, ci=adapter, runners=adapter)
