"""Where a CI step runs: each CI system's predefined variables read into one :class:`CiContext`.

GitHub Actions (``GITHUB_*`` and the event payload at ``GITHUB_EVENT_PATH``), GitLab CI
(``CI_*``), and plain local runs. App-driven dispatch (the app triggers ``workflow_dispatch`` or a
GitLab pipeline with the variables ``pr`` and ``sha``) and the GitLab child pipeline (which sees
no merge-request variables; the plan job forwards ``CI_FANOUT_PR``) land in the same fields.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ci_app.model.results import RunInfo

#: set by the plan step for the shard jobs (GitLab child pipelines have their own pipeline id)
RUN_ID_ENV: Final = "CI_FANOUT_RUN_ID"
#: the MR/PR number handed to GitLab's child pipeline by the plan job
PR_ENV: Final = "CI_FANOUT_PR"


def _int(text: Any) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class CiContext:
    """Where this step runs, from the provider's predefined variables."""

    provider: str  # github | gitlab | local
    run_id: str
    root: Path
    repo: str | None = None
    project: str | None = None
    pipeline_id: str | None = None
    commit: str | None = None
    branch: str | None = None
    base_branch: str | None = None
    base_commit: str | None = None
    default_branch: str | None = None
    pr: int | None = None
    job_url: str | None = None
    runner_name: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: Path) -> CiContext:
        # gitlab-ci-local sets GITLAB_CI=false but keeps the other CI_* variables
        if env.get("GITHUB_ACTIONS") == "true":
            return _github_context(env, cwd)
        if env.get("GITLAB_CI") == "true" or (env.get("CI_PIPELINE_ID") and env.get("CI_JOB_ID")):
            return _gitlab_context(env, cwd)
        return cls(
            provider="local",
            run_id=env.get(RUN_ID_ENV) or time.strftime("local-%Y%m%dT%H%M%S"),
            root=cwd,
            runner_name=env.get("CI_FANOUT_RUNNER") or None,
        )

    @property
    def on_default_branch(self) -> bool:
        return bool(self.default_branch) and self.branch == self.default_branch and self.pr is None

    def run_info(self, shard_id: str | None = None, labels: Sequence[str] = ()) -> RunInfo:
        """This run's identity as results carry it (one builder for every step)."""
        return RunInfo.of(
            self,
            shard_id=shard_id,
            job_url=self.job_url,
            runner_name=self.runner_name,
            runner_labels=tuple(labels),
        )


def _root(declared: str | None, cwd: Path) -> Path:
    """The checkout: the CI's declared directory; where it does not exist (a container job
    run by a shell executor, e.g. gitlab-ci-local declares ``/builds/...``), the working
    directory the job runs in."""
    if declared and Path(declared).is_dir():
        return Path(declared)
    return cwd


def _github_context(env: Mapping[str, str], cwd: Path) -> CiContext:
    event: dict[str, Any] = {}
    path = env.get("GITHUB_EVENT_PATH")
    if path and Path(path).is_file():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            event = loaded if isinstance(loaded, dict) else {}
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    # app-driven dispatch (``dispatch-workflow``): workflow_dispatch inputs ``pr`` and ``sha``
    inputs: dict[str, Any] = event["inputs"] if isinstance(event.get("inputs"), dict) else {}
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    run_id = env.get(RUN_ID_ENV) or env.get("GITHUB_RUN_ID", "") or "local"
    if attempt not in ("", "1") and not env.get(RUN_ID_ENV):
        run_id = f"{run_id}-{attempt}"
    repo_info = event.get("repository") if isinstance(event.get("repository"), dict) else {}
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    head = (pr or {}).get("head") if isinstance((pr or {}).get("head"), dict) else {}
    base = (pr or {}).get("base") if isinstance((pr or {}).get("base"), dict) else {}
    return CiContext(
        provider="github",
        run_id=run_id,
        root=_root(env.get("GITHUB_WORKSPACE"), cwd),
        repo=env.get("GITHUB_REPOSITORY") or None,
        pipeline_id=env.get("GITHUB_RUN_ID") or None,
        commit=(head or {}).get("sha") or inputs.get("sha") or env.get("GITHUB_SHA") or None,
        branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None,
        base_branch=env.get("GITHUB_BASE_REF") or None,
        base_commit=(base or {}).get("sha") or None,
        default_branch=(repo_info or {}).get("default_branch") or None,
        pr=_int((pr or {}).get("number")) if pr else _int(inputs.get("pr")),
        job_url=(
            f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
            if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID")
            else None
        ),
        runner_name=env.get("RUNNER_NAME") or None,
    )


def _gitlab_context(env: Mapping[str, str], cwd: Path) -> CiContext:
    # app-driven dispatch (``dispatch-workflow``) creates a branch pipeline through the API with
    # the variables ``pr`` and ``sha`` (no CI_MERGE_REQUEST_* there); the plan job hands the MR
    # on to the shard child pipeline as CI_FANOUT_PR (child pipelines see no MR variables)
    return CiContext(
        provider="gitlab",
        run_id=env.get(RUN_ID_ENV) or env.get("CI_PIPELINE_ID", "") or "local",
        root=_root(env.get("CI_PROJECT_DIR"), cwd),
        repo=env.get("CI_PROJECT_PATH") or None,
        project=env.get("CI_PROJECT_ID") or None,
        pipeline_id=env.get("CI_PIPELINE_ID") or None,
        commit=env.get("CI_COMMIT_SHA") or env.get("sha") or None,
        branch=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
        base_branch=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None,
        base_commit=env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
        default_branch=env.get("CI_DEFAULT_BRANCH") or None,
        pr=_int(env.get("CI_MERGE_REQUEST_IID")) or _int(env.get(PR_ENV)) or _int(env.get("pr")),
        job_url=env.get("CI_JOB_URL") or None,
        runner_name=env.get("CI_RUNNER_DESCRIPTION") or None,
    )
