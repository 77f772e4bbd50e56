"""Publishing a rendered report to a forge: the sticky comment (+ check run, + charts).

Used by ``ci-app report --publish github --repo OWNER/NAME --pr N`` and
``ci-app report --publish gitlab --project ID --mr IID``. Base URLs and tokens come from the
environment (``CI_FANOUT_GITHUB_API_URL`` / ``GITHUB_TOKEN``, ``CI_FANOUT_GITLAB_URL`` /
``GITLAB_TOKEN``) so the same command works against github.com, GHES, gitlab.com, a
self-managed GitLab or any fake that speaks their APIs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ci_app.errors import ConfigError
from ci_app.providers.base import (
    DEFAULT_KIND,
    Annotation,
    CheckRunPayload,
    CheckRunRef,
    CommentRef,
    Forge,
    ImageRef,
    get_provider,
)

GITHUB_API_ENV = "CI_FANOUT_GITHUB_API_URL"
GITLAB_URL_ENV = "CI_FANOUT_GITLAB_URL"
GITHUB_THROTTLE_ENV = "CI_FANOUT_GITHUB_THROTTLE"  # seconds between writes; 0 = off
#: login our GitHub comments are written by, only needed for an installation token of an App
#: other than GitHub Actions (``GET /user`` cannot tell): e.g. ``my-app[bot]``
GITHUB_COMMENT_AUTHOR_ENV = "CI_FANOUT_GITHUB_COMMENT_AUTHOR"
PUBLISHERS = ("github", "gitlab")


@dataclass(frozen=True, kw_only=True, slots=True)
class PublishResult:
    provider: str
    comment: CommentRef
    check_run: CheckRunRef | None = None
    images: list[ImageRef] = field(default_factory=list)


def forge_settings(
    provider: str,
    *,
    env: Mapping[str, str],
    repo: str | None = None,
    project: str | None = None,
    dashboard_url: str | None = None,
) -> dict[str, str]:
    """Settings for :func:`ci_app.providers.base.get_provider` from flags + environment."""
    settings: dict[str, str] = {}
    if dashboard_url:
        settings["dashboard_url"] = dashboard_url
    if provider == "github":
        if not repo:
            raise ConfigError("--publish github needs --repo OWNER/NAME")
        token = env.get("GITHUB_TOKEN", "")
        if not token:
            raise ConfigError("--publish github needs GITHUB_TOKEN in the environment")
        settings.update(repo=repo, token=token)
        api = env.get(GITHUB_API_ENV) or env.get("GITHUB_API_URL")
        if api:
            settings["api_url"] = api
        if env.get(GITHUB_THROTTLE_ENV):
            settings["throttle"] = env[GITHUB_THROTTLE_ENV]
        if env.get(GITHUB_COMMENT_AUTHOR_ENV):
            settings["comment_author"] = env[GITHUB_COMMENT_AUTHOR_ENV]
        return settings
    if provider == "gitlab":
        if not project:
            raise ConfigError("--publish gitlab needs --project ID (or group/project path)")
        token = env.get("GITLAB_TOKEN", "")
        if not token:
            raise ConfigError("--publish gitlab needs GITLAB_TOKEN in the environment")
        settings.update(project=project, token=token)
        url = env.get(GITLAB_URL_ENV) or env.get("CI_SERVER_URL")
        if url:
            settings["url"] = url
        return settings
    raise ConfigError(f"cannot publish to {provider!r}; choose one of {', '.join(PUBLISHERS)}")


def check_run_payload(
    data: Mapping[str, Any], *, head_sha: str, name: str = "ci-fanout"
) -> CheckRunPayload:
    """A :class:`CheckRunPayload` from the reporting layer's ``render_check_run`` dict."""
    annotations = [
        Annotation(
            path=str(a["path"]),
            start_line=int(a.get("start_line") or 1),
            end_line=int(a["end_line"]) if a.get("end_line") else None,
            level=str(a.get("annotation_level") or a.get("level") or "failure"),
            message=str(a.get("message") or ""),
            title=a.get("title"),
            raw_details=a.get("raw_details"),
        )
        for a in data.get("annotations") or ()
    ]
    return CheckRunPayload(
        name=str(data.get("name") or name),
        head_sha=head_sha,
        title=str(data.get("title") or name),
        summary=str(data.get("summary") or ""),
        text=data.get("text"),
        conclusion=data.get("conclusion"),
        annotations=annotations,
        details_url=data.get("details_url"),
    )


def publish_report(
    provider: str,
    *,
    number: int,
    comment: str,
    repo: str | None = None,
    project: str | None = None,
    check_run: CheckRunPayload | None = None,
    images: Mapping[str, bytes] | None = None,
    env: Mapping[str, str] | None = None,
    dashboard_url: str | None = None,
    kind: str = DEFAULT_KIND,
    forge: Forge | None = None,
) -> PublishResult:
    """Upload charts where the forge can (GitLab), append them to the comment, upsert the sticky
    comment on PR/MR ``number``, then publish the check run (GitHub) / its status equivalent."""
    if forge is None:
        settings = forge_settings(
            provider,
            env=os.environ if env is None else env,
            repo=repo,
            project=project,
            dashboard_url=dashboard_url,
        )
        forge = get_provider(provider, settings).forge
        if forge is None:
            raise ConfigError(f"{provider} offers no forge to publish to")
    uploaded: list[ImageRef] = []
    for filename, data in (images or {}).items():
        image = forge.upload_image(filename, data)
        if image is not None:
            uploaded.append(image)
    body = comment
    if uploaded:
        body = body.rstrip("\n") + "\n\n" + "\n".join(i.markdown for i in uploaded) + "\n"
    comment_ref = forge.upsert_comment(number, body, kind=kind)
    check_ref = forge.publish_check_run(check_run) if check_run is not None else None
    return PublishResult(
        provider=provider, comment=comment_ref, check_run=check_ref, images=uploaded
    )


# -- command line (wired into ``ci-app report``) ---------------------------------------------
def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "publishing",
        f"post the report as the sticky PR/MR comment; base URLs from {GITHUB_API_ENV} / "
        f"{GITLAB_URL_ENV}, tokens from GITHUB_TOKEN / GITLAB_TOKEN",
    )
    group.add_argument("--publish", choices=PUBLISHERS, help="forge to post the comment to")
    group.add_argument("--repo", help="GitHub repository OWNER/NAME")
    group.add_argument("--pr", type=int, help="GitHub pull request number")
    group.add_argument("--project", help="GitLab project id or group/project path")
    group.add_argument("--mr", type=int, help="GitLab merge request IID")
    group.add_argument(
        "--head-sha", help="also publish a check run (GitHub) / commit status (GitLab) on this SHA"
    )


def publish_from_args(
    args: argparse.Namespace,
    comment: str,
    *,
    check_run: Mapping[str, Any] | None = None,
    images: Mapping[str, bytes] | None = None,
    env: Mapping[str, str] | None = None,
) -> PublishResult | None:
    """Publish if ``--publish`` was given; validates the flag combination."""
    provider = getattr(args, "publish", None)
    if not provider:
        return None
    number = args.pr if provider == "github" else args.mr
    flag = "--pr" if provider == "github" else "--mr"
    if number is None:
        raise ConfigError(f"--publish {provider} needs {flag} N")
    payload = (
        check_run_payload(check_run, head_sha=args.head_sha)
        if check_run is not None and getattr(args, "head_sha", None)
        else None
    )
    return publish_report(
        provider,
        number=number,
        comment=comment,
        repo=args.repo,
        project=args.project,
        check_run=payload,
        images=images,
        env=env,
        dashboard_url=getattr(args, "dashboard_url", None),
    )


def describe(result: PublishResult) -> str:
    verb = "created" if result.comment.created else "updated"
    parts: Sequence[str] = [f"{result.provider}: comment {result.comment.id} {verb}"]
    if result.check_run is not None:
        parts = [*parts, f"check run {result.check_run.id}"]
    if result.images:
        parts = [*parts, f"{len(result.images)} image(s) uploaded"]
    return ", ".join(parts)
