"""Provider roles (one small Protocol each), the data that crosses the boundary, and the registry.

SDK objects (PyGithub, python-gitlab, jenkinsapi, azure-devops) never leave their adapter
module: adapters take and return the plain dataclasses below. A provider name maps to a factory
in :data:`REGISTRY`; factories import their SDK lazily, so importing this module is cheap.
"""

from __future__ import annotations

import abc
import enum
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ConfigError

if TYPE_CHECKING:
    from ci_app.providers.retry import Failure, ResponseRecorder, RetryPolicy

#: the kind of sticky comment (its marker line, :mod:`ci_app.reporting.marker`, names it)
DEFAULT_KIND = "tests"


class JobState(enum.StrEnum):
    """Provider-neutral state of one CI job (a shard)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"

    @property
    def done(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING, JobState.UNKNOWN)


class StatusState(enum.StrEnum):
    """Commit status states (GitHub's names; adapters map them to their provider)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True, slots=True)
class Annotation:
    """One line-level finding for a check run (GitHub) or equivalent."""

    path: str
    start_line: int
    end_line: int | None = None
    level: str = "failure"  # notice | warning | failure
    message: str
    title: str | None = None
    raw_details: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckRunPayload:
    """What the reporting layer hands to ``Forge.publish_check_run``; adapters enforce limits."""

    name: str
    head_sha: str
    title: str
    summary: str
    text: str | None = None
    status: str = "completed"  # queued | in_progress | completed
    conclusion: str | None = None  # success | failure | neutral | cancelled | ... (completed only)
    annotations: Sequence[Annotation] = ()
    details_url: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitStatus:
    sha: str
    state: StatusState
    context: str
    description: str = ""
    target_url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Author:
    """Who wrote a comment, as the forge reports it; also who *we* are on that forge.

    The sticky comment is ours only if it carries our marker *and* we wrote it: anyone can
    start a comment with the marker, and editing theirs would put our report under their name
    (or let them plant text the app then keeps "updating"). Ids are compared when both sides
    have one (they survive renames); otherwise logins, case-insensitively (GitHub bot logins
    such as ``github-actions[bot]`` contain ``[`` so no user can register them).
    """

    id: str | None = None
    login: str | None = None

    def same(self, other: Author) -> bool:
        if self.id is not None and other.id is not None:
            return self.id == other.id
        if self.login and other.login:
            return self.login.casefold() == other.login.casefold()
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class CommentRef:
    id: str
    url: str | None
    created: bool  # False when an existing sticky comment was edited in place
    truncated: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckRunRef:
    id: str
    url: str | None
    requests: int  # create + follow-up updates sent
    annotations_sent: int
    truncated: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageRef:
    url: str
    markdown: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DispatchRequest:
    """Start one shard. ``target`` is the workflow file (GitHub), the Jenkins job, the Azure
    pipeline id; GitLab ignores it. ``event_type`` switches GitHub to ``repository_dispatch``."""

    shard_id: str
    ref: str
    target: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    event_type: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DispatchResult:
    run_id: str | None  # None when the provider does not say (plain workflow_dispatch)
    url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class JobInfo:
    id: str
    name: str
    state: JobState
    url: str | None = None
    runner: str | None = None
    labels: tuple[str, ...] = ()
    pipeline_id: str | None = None  # GitLab: the (child) pipeline this job belongs to


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerInfo:
    id: str
    name: str
    labels: frozenset[str]
    online: bool = True
    busy: bool = False


class Forge(Protocol):
    """Where users read results: the sticky comment, check run / commit status, images."""

    name: str

    def upsert_comment(self, number: int, body: str, *, kind: str = DEFAULT_KIND) -> CommentRef:
        """Create the sticky comment of ``kind`` on PR/MR ``number`` or edit it in place."""
        ...

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef: ...

    def set_commit_status(self, status: CommitStatus) -> None: ...

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        """Upload a chart; ``None`` where the provider has no upload API (GitHub)."""
        ...


class CIServer(Protocol):
    """Where shards run."""

    name: str

    def dispatch(self, request: DispatchRequest) -> DispatchResult: ...

    def list_jobs(self, run_id: str) -> list[JobInfo]: ...

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]: ...

    def cancel(self, run_id: str) -> None: ...


class RunnerAdmin(Protocol):
    """Self-hosted runners and their labels; labels are added/removed one by one so that labels
    an admin set by hand are never overwritten."""

    name: str

    def list_runners(self) -> list[RunnerInfo]: ...

    def add_label(self, runner_id: str, label: str) -> None: ...

    def remove_label(self, runner_id: str, label: str) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Provider:
    """The roles one configured provider offers (``None`` where it has no such role)."""

    name: str
    forge: Forge | None = None
    ci: CIServer | None = None
    runners: RunnerAdmin | None = None


class SdkAdapter(abc.ABC):
    """What every SDK adapter shares: one wrapper around each provider operation.

    :meth:`_call` runs an operation under :func:`ci_app.providers.retry.call` (bounded
    retries, SDK errors -> :class:`~ci_app.errors.ProviderError`) with the adapter's name,
    error classifier, retry policy and response recorder; :meth:`_download` streams one
    artifact to a file within its size cap the same way. The retry module imports
    ``requests``, so it is imported here only when an adapter calls.
    """

    name: str
    policy: RetryPolicy
    #: headers of the last response, for SDK exceptions that drop them (None: not needed)
    _recorder: ResponseRecorder | None = None

    @abc.abstractmethod
    def _classify(self, exc: BaseException) -> Failure | None:
        """What an SDK exception says (None: not a provider failure; it propagates)."""

    def _call(self, operation: str, fn: Callable[..., Any]) -> Any:
        from ci_app.providers.retry import call

        return call(
            fn,
            provider=self.name,
            operation=operation,
            classify=self._classify,
            policy=self.policy,
            recorder=self._recorder,
        )

    def _download(
        self, operation: str, chunks: Callable[[], Iterable[bytes]], path: Path, cap: int
    ) -> None:
        """Write ``chunks()`` to ``path``, at most ``cap`` bytes; retried as one operation."""
        from ci_app.providers.download import write_capped

        def download() -> None:
            write_capped(chunks(), path, cap, provider=self.name, operation="download artifact")

        self._call(operation, download)


ProviderFactory = Callable[[Mapping[str, str]], Provider]


def _lazy(module: str) -> ProviderFactory:
    def factory(settings: Mapping[str, str]) -> Provider:
        mod = importlib.import_module(f"ci_app.providers.{module}")
        made: Provider = mod.from_settings(settings)
        return made

    factory.__name__ = f"{module}_factory"
    return factory


#: name -> factory(settings) ; settings are plain strings (from config / env / CLI flags).
REGISTRY: dict[str, ProviderFactory] = {
    "github": _lazy("github"),
    "gitlab": _lazy("gitlab"),
    "jenkins": _lazy("jenkins"),
    "azure": _lazy("azure"),
    "local": _lazy("local"),
}


def get_provider(name: str, settings: Mapping[str, str]) -> Provider:
    """Build the provider ``name`` from ``settings``; unknown names fail with a suggestion."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Perhaps you meant {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown provider {name!r}; known: {', '.join(sorted(REGISTRY))}.{hint}"
        ) from None
    return factory(settings)


def require(settings: Mapping[str, str], key: str, provider: str, env: str = "") -> str:
    value = settings.get(key, "").strip()
    if not value:
        where = f" (or set {env})" if env else ""
        raise ConfigError(f"{provider}: setting {key!r} is required{where}")
    return value
