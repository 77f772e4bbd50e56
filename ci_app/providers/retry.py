"""Bounded retries for provider calls, and SDK errors -> one :class:`ProviderError`.

Each adapter disables its SDK's own retry/sleep logic (PyGithub ``retry=None``, python-gitlab
``obey_rate_limit=False``, msrest/urllib3 retries off) and wraps every operation in :func:`call`,
so all providers behave alike: ``Retry-After`` and ``X-RateLimit-Reset`` / ``RateLimit-Reset``
are honoured, secondary rate limits wait at least a minute, 5xx and timeouts back off
exponentially, and a wait longer than the policy allows is not attempted: the error surfaces at
once with the reset time in its hint. A whole operation is retried (e.g. *find the sticky
comment, then create or edit it*), so a retried create re-checks first instead of posting twice.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from ci_app.errors import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: GitHub asks clients to wait at least one minute after a secondary rate limit without headers.
SECONDARY_LIMIT_WAIT_S = 60.0
RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # total tries, first one included
    base_delay: float = 1.0  # backoff: base * 2**retry
    max_delay: float = 90.0  # a single wait longer than this is not attempted
    max_total: float = 180.0  # sum of waits for one operation
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """What an SDK exception says, reduced to what retry and hints need."""

    status: int | None
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: bool = False
    connection: bool = False

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None

    @property
    def secondary(self) -> bool:
        return "secondary rate limit" in self.message.lower()

    @property
    def rate_limited(self) -> bool:
        if self.status == 429:
            return True
        if self.status != 403:
            return False
        return (
            self.header("X-RateLimit-Remaining") == "0"
            or self.header("Retry-After") is not None
            or "rate limit" in self.message.lower()
        )


Classifier = Callable[[BaseException], Failure | None]


class ResponseRecorder:
    """Remembers the headers of the last HTTP response per thread (a ``requests`` hook), for SDK
    exceptions that drop them (python-gitlab, jenkinsapi, msrest)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def install(self, session: requests.Session) -> None:
        session.hooks.setdefault("response", []).append(self._hook)

    def _hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.headers = dict(response.headers)
        self._local.status = response.status_code

    def last(self, status: int | None) -> dict[str, str]:
        if status is not None and getattr(self._local, "status", None) != status:
            return {}
        headers: dict[str, str] = getattr(self._local, "headers", {})
        return headers

    def last_response(self) -> tuple[int | None, dict[str, str]]:
        """Status and headers of the last response seen on this thread."""
        return getattr(self._local, "status", None), dict(getattr(self._local, "headers", {}))

    def clear(self) -> None:
        self._local.headers = {}
        self._local.status = None


def classify_transport(exc: BaseException) -> Failure | None:
    """``requests`` timeouts and connection errors (any SDK built on requests)."""
    if isinstance(exc, requests.Timeout):
        return Failure(status=None, message=f"timed out: {exc}", timeout=True)
    if isinstance(exc, requests.ConnectionError):
        return Failure(status=None, message=f"connection failed: {exc}", connection=True)
    if isinstance(exc, TimeoutError):
        return Failure(status=None, message=f"timed out: {exc}", timeout=True)
    return None


def _parse_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))  # delta-seconds
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _reset_wait(value: str, now: float) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    # GitHub: epoch seconds; GitLab's RateLimit-Reset is epoch too, but tolerate "seconds from now".
    return max(0.0, number - now) + 1.0 if number > 1e9 else max(0.0, number)


def delay_for(failure: Failure, retry_index: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before the next try, or ``None`` if this failure is not retryable."""
    now = policy.clock()
    backoff = policy.base_delay * 2.0**retry_index
    if failure.timeout or failure.connection:
        return backoff
    if failure.rate_limited:
        retry_after = failure.header("Retry-After")
        if retry_after is not None:
            parsed = _parse_retry_after(retry_after, now)
            if parsed is not None:
                return parsed
        if failure.secondary:
            return max(SECONDARY_LIMIT_WAIT_S, backoff)
        for name in ("X-RateLimit-Reset", "RateLimit-Reset"):
            reset = failure.header(name)
            if reset is not None:
                wait = _reset_wait(reset, now)
                if wait is not None:
                    return wait
        return backoff
    if failure.status in RETRYABLE_STATUS:
        return backoff
    return None


def hint_for(failure: Failure, provider: str, *, waited_for: float | None = None) -> str:
    status = failure.status
    if failure.rate_limited:
        reset = failure.header("X-RateLimit-Reset") or failure.header("RateLimit-Reset")
        if failure.secondary:
            return "secondary rate limit (too many writes in a burst): wait a minute and retry"
        if reset is not None:
            try:
                when = datetime.fromtimestamp(float(reset), tz=UTC).strftime("%H:%M:%S UTC")
            except (ValueError, OverflowError, OSError):
                when = reset
            return f"rate limited; the limit resets at {when} — retry then or use another token"
        if waited_for is not None:
            return f"rate limited; the server asks to wait {waited_for:.0f} s — retry later"
        return "rate limited — retry later"
    if failure.timeout:
        return "no answer in time: check the base URL and network, or raise the timeout"
    if failure.connection:
        return "cannot connect: check the base URL and that the server is reachable"
    if status == 401:
        return f"credentials rejected: check the {provider} token / app key and its expiry"
    if status == 403:
        return "permission denied: the token or app lacks the permission for this operation"
    if status == 404:
        return "not found: check the repository/project, number or id, and the token's access"
    if status in (400, 409, 422):
        return "the provider rejected the request as invalid (see the message)"
    if status is not None and status >= 500:
        return f"{provider} had a server error; retried within bounds — try again later"
    return ""


def call(
    fn: Callable[[], T],
    *,
    provider: str,
    operation: str,
    classify: Classifier,
    policy: RetryPolicy = DEFAULT_POLICY,
    recorder: ResponseRecorder | None = None,
) -> T:
    """Run ``fn`` with bounded retries; SDK failures become :class:`ProviderError`."""
    waited = 0.0
    for attempt in range(1, policy.attempts + 1):
        if recorder is not None:
            recorder.clear()
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            failure = classify(exc) or classify_transport(exc)
            if failure is None:
                raise
            if recorder is not None and not failure.headers:
                failure = Failure(
                    status=failure.status,
                    message=failure.message,
                    headers=recorder.last(failure.status),
                    timeout=failure.timeout,
                    connection=failure.connection,
                )
            delay = delay_for(failure, attempt - 1, policy)
            give_up = (
                delay is None
                or attempt == policy.attempts
                or delay > policy.max_delay
                or waited + delay > policy.max_total
            )
            if give_up:
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise ProviderError(
                    f"{failure.message}{tries}",
                    provider=provider,
                    operation=operation,
                    status=failure.status,
                    hint=hint_for(failure, provider, waited_for=delay),
                ) from exc
            assert delay is not None
            log.warning(
                "%s %s failed (%s); retry %d/%d in %.1f s",
                provider,
                operation,
                failure.status or failure.message,
                attempt,
                policy.attempts - 1,
                delay,
            )
            policy.sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # pragma: no cover
