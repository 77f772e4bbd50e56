"""The one HTTP client of the ci-fanout app server (``/api/v1``), stdlib only.

Every caller of the app goes through :class:`AppClient`: the CI steps (runners, results, run
tokens), ``ci-app runners --server`` (admin API), the shard runner and the pytest plugin (a
run's test queue, :class:`QueueClient`), and ``runner-probe`` (runner heartbeats). So there is
one URL check (:func:`check_url`), one auth header (``Authorization: Bearer``), one retry
policy (:class:`Retry`) and one error type: :class:`~ci_app.errors.ProviderError` with the
HTTP status, as :class:`AppRejectedError` (the server answered no: 4xx, never retried) or
:class:`AppUnavailableError` (no usable answer after the retries: network error, 5xx, 429).

It stays free of third-party imports: the shard runner and the pytest plugin load it inside the
interpreter that runs the tests, and ``runner-probe`` needs none of the app's extras.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ci_app.errors import ConfigError, ProviderError

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S: Final = 15.0
PROVIDER: Final = "ci-fanout app"
USER_AGENT: Final = "ci-fanout"
HEARTBEAT_PATH: Final = "/api/v1/runners/heartbeat"


class AppRejectedError(ProviderError):
    """The app answered with a client error (bad token, unknown or expired lease, bad input)."""


class AppUnavailableError(ProviderError):
    """No usable answer from the app after the retries (unreachable, 5xx, rate limited)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """Bounded retries with exponential backoff.

    Retried: connection errors and timeouts, 5xx, 429. A ``Retry-After`` the server sends is
    honoured; one longer than ``max_wait_s`` is not waited for (the error surfaces at once).
    Any other 4xx is an answer, never retried.
    """

    attempts: int = 3  # total tries, the first one included
    base_delay_s: float = 0.2  # backoff: base * 2**retry ...
    max_backoff_s: float = 2.0  # ... capped here
    max_wait_s: float = 30.0  # the longest single wait, Retry-After included
    sleep: Callable[[float], None] = time.sleep

    def delay(self, retry: int, status: int | None, retry_after: str | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based); None: do not retry."""
        if retry + 1 >= self.attempts or not retryable(status):
            return None
        wait = min(self.max_backoff_s, self.base_delay_s * 2.0**retry)
        if retry_after is not None:
            asked = parse_retry_after(retry_after, time.time())
            if asked is not None:
                wait = asked
        return wait if wait <= self.max_wait_s else None


def retryable(status: int | None) -> bool:
    """No answer (``None``), a server error or a rate limit: worth another try."""
    return status is None or status == 429 or status >= 500


DEFAULT_RETRY: Final = Retry()
#: one try only: for callers that loop with their own cadence (the runner heartbeat)
NO_RETRY: Final = Retry(attempts=1)


def parse_retry_after(value: str, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date."""
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def check_url(url: str, *, what: str = "server-url") -> str:
    """``url`` without a trailing ``/``; a clear error unless it is ``http(s)://host...``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer: its status and raw body."""

    status: int
    body: bytes

    def json(self, *, operation: str = "") -> Any:
        """The decoded JSON body (``{}`` when empty); :class:`ProviderError` when not JSON."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ProviderError(
                f"not JSON: {self.body[:200]!r}", provider=PROVIDER, operation=operation
            ) from exc


#: ``urllib.request.urlopen``'s shape, injectable so tests need no sockets
Opener = Callable[..., Any]


class AppClient:
    """JSON requests to one app server (or one path below it) with one bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout_s: float = HTTP_TIMEOUT_S,
        retry: Retry = DEFAULT_RETRY,
        what: str = "server-url",
        user_agent: str = USER_AGENT,
        opener: Opener = urllib.request.urlopen,
    ) -> None:
        self.base_url = check_url(base_url, what=what)
        self.token = token
        self.timeout_s = timeout_s
        self.retry = retry
        self.user_agent = user_agent
        self.opener = opener

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def exchange(self, method: str, path: str, body: Any = None) -> Reply:
        """``method path`` with a JSON ``body``, retried per :attr:`retry`; the 2xx answer."""
        url = self.url(path)
        operation = f"{method} {url}"
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        for retry in range(self.retry.attempts):
            status: int | None = None
            retry_after: str | None = None
            try:
                with self.opener(self._request(method, url, data), timeout=self.timeout_s) as resp:
                    return Reply(int(getattr(resp, "status", 200)), resp.read())
            except urllib.error.HTTPError as exc:
                status = exc.code
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                detail = _detail(exc)
                if not retryable(status):
                    raise AppRejectedError(
                        detail, provider=PROVIDER, operation=operation, status=status
                    ) from exc
                failure: Exception = exc
                message = detail
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
                failure = exc
                message = str(getattr(exc, "reason", exc)) or type(exc).__name__
            wait = self.retry.delay(retry, status, retry_after)
            if wait is None:
                tries = f" after {retry + 1} tries" if retry else ""
                raise AppUnavailableError(
                    f"{message}{tries}", provider=PROVIDER, operation=operation, status=status
                ) from failure
            log.debug("%s failed (%s); retry in %.1f s", operation, status or message, wait)
            self.retry.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - attempts >= 1

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with a JSON ``body``; the decoded JSON answer (``{}`` when empty)."""
        return self.exchange(method, path, body).json(operation=f"{method} {self.url(path)}")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- the endpoints -------------------------------------------------------------------------
    def runners(self) -> Any:
        """The runner registry (``GET /api/v1/runners``, admin token)."""
        return self.get("api/v1/runners")

    def send_results(self, results: Mapping[str, Any]) -> Any:
        """Upload a ``results.json`` document (run token)."""
        return self.post("api/v1/results", results)

    def create_run(self, identity: Mapping[str, Any]) -> str:
        """Register a run; its run-scoped token ('' when the app issued none; admin token)."""
        return str(self.post("api/v1/runs", identity).get("token") or "")

    def create_queue(self, identity: Mapping[str, Any], matrix: Mapping[str, Any]) -> str:
        """Create the run's test queue from a matrix; the run-scoped token (admin token)."""
        return str(self.post("api/v1/queue", {**identity, "matrix": matrix}).get("token") or "")

    def queue_url(self, run_id: str) -> str:
        """Where a run's queue lives (``POST /api/v1/queue`` creates it there)."""
        return self.url(f"api/v1/queue/{urllib.parse.quote(run_id, safe='-._~')}")

    def queue_record(self, run_id: str) -> Any:
        """The queue's record of a run: results and expired leases (run token)."""
        return self.get(f"api/v1/queue/{urllib.parse.quote(run_id, safe='-._~')}/results")

    def runner_heartbeat(self, body: Mapping[str, Any]) -> Reply:
        """One runner heartbeat (runner token); the raw reply, its status matters."""
        return self.exchange("POST", HEARTBEAT_PATH, body)

    def _request(self, method: str, url: str, data: bytes | None) -> urllib.request.Request:
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", self.user_agent)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        return req


def _detail(exc: urllib.error.HTTPError) -> str:
    detail = ""
    with contextlib.suppress(OSError):
        detail = exc.read()[:500].decode("utf-8", "replace")
    exc.close()
    return (detail or str(exc.reason)).strip() or "request failed"


class QueueClient:
    """One runner's side of one run's test queue at ``url`` (``{server}/api/v1/queue/{run}``;
    the contract is in ``docs/planner.md``)."""

    def __init__(
        self,
        url: str,
        *,
        runner: str,
        labels: Sequence[str] = (),
        pool: str | None = None,
        shard: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        self.app = AppClient(url, token or "", timeout_s=timeout_s, retry=retry, what="queue URL")
        self.runner = runner
        self.labels = list(labels)
        self.pool = pool
        self.shard = shard

    @property
    def url(self) -> str:
        return self.app.base_url

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        out = self.app.request(method, path, body)
        return out if isinstance(out, dict) else {}

    def lease_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"runner": self.runner, "labels": self.labels}
        if self.pool:
            body["pool"] = self.pool
        if self.shard:
            body["shard"] = self.shard
        return body

    def lease(self) -> dict[str, Any]:
        return self._call("POST", "lease", self.lease_body())

    def complete(
        self,
        lease_id: str,
        results: Sequence[Mapping[str, Any]],
        *,
        final: bool = True,
        next_lease: bool = False,
    ) -> dict[str, Any]:
        """Report results; with ``next_lease`` the answer's ``"next"`` is the next batch (one
        round trip instead of two)."""
        body: dict[str, Any] = {"lease_id": lease_id, "results": list(results), "final": final}
        if next_lease:
            body["next"] = self.lease_body()
        return self._call("POST", "complete", body)

    def heartbeat(self, lease_id: str) -> dict[str, Any]:
        """Extend the lease (and every other lease of this runner)."""
        return self._call("POST", "heartbeat", {"lease_id": lease_id})

    def record(self) -> dict[str, Any]:
        """The queue's record of the run (``GET {url}/results``)."""
        return self._call("GET", "results")
