"""The HTTP client of the ci-fanout app server (``/api/v1``), stdlib only.

One URL check, one auth header, one error type (:class:`~ci_app.errors.ProviderError` with the
HTTP status). It stays free of third-party imports: the CI steps, the shard runner and the
pytest plugin load it inside the interpreter that runs the tests.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

from ci_app.errors import ConfigError, ProviderError

HTTP_TIMEOUT_S: Final = 15.0
PROVIDER: Final = "ci-fanout app"


def check_url(url: str, *, what: str = "server-url") -> str:
    """``url`` without a trailing ``/``; a clear error unless it is ``http(s)://host...``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


class AppClient:
    """JSON requests to one app server with one bearer token."""

    def __init__(self, base_url: str, token: str = "", *, timeout_s: float = HTTP_TIMEOUT_S):
        self.base_url = check_url(base_url)
        self.token = token
        self.timeout_s = timeout_s

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with a JSON ``body``; the decoded JSON answer (``{}`` when empty)."""
        url = self.url(path)
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            with contextlib.suppress(OSError):
                detail = exc.read()[:300].decode("utf-8", "replace")
            raise ProviderError(
                (detail or str(exc.reason)).strip() or "request failed",
                provider=PROVIDER,
                operation=f"{method} {url}",
                status=exc.code,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ProviderError(str(exc), provider=PROVIDER, operation=f"{method} {url}") from exc
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ProviderError(
                f"not JSON: {raw[:200]!r}", provider=PROVIDER, operation=f"{method} {url}"
            ) from exc

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)
