"""What the web app, its job handlers and the worker share: settings, store, providers, clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ci_app.providers.base import Provider, get_provider
from ci_app.settings import Settings
from ci_app.store import Store
from ci_app.store.queue import DuckQueue
from ci_app.store.web import installation_for
from ci_app.web.metrics import Metrics

__all__ = ["AppContext", "ProviderFactory", "SettingsProviders", "runner_scope"]


class ProviderFactory(Protocol):
    """``(provider name, scope)`` → :class:`Provider`; the scope is a repository / project
    (forge and CI roles) or a runner scope (``org:NAME`` / ``repo:OWNER/NAME``)."""

    def __call__(
        self, name: str, scope: str | None, *, installation_id: int | None = None
    ) -> Provider: ...


def runner_scope(settings: Settings, provider: str) -> str | None:
    if provider == "github":
        return settings.github_runner_scope or None
    return None


class SettingsProviders:
    """The production factory: provider settings from :class:`Settings`, adapters cached
    per (name, scope, installation) because building a GitHub App client costs a JWT."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._cache: dict[tuple[str, str | None, int | None], Provider] = {}
        self._lock = threading.Lock()

    def __call__(
        self, name: str, scope: str | None, *, installation_id: int | None = None
    ) -> Provider:
        key = (name, scope, installation_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        made = get_provider(name, self._settings_for(name, scope, installation_id))
        with self._lock:
            self._cache[key] = made
        return made

    def _settings_for(
        self, name: str, scope: str | None, installation_id: int | None
    ) -> dict[str, str]:
        s = self.settings
        dashboard = s.public_url.rstrip("/") if s.public_url else ""
        if name == "github":
            out = {
                "api_url": s.github_api_url,
                "token": s.github_token,
                "app_id": s.github_app_id,
                "private_key_path": s.github_private_key_path,
                "throttle": s.github_throttle,
                "dashboard_url": dashboard,
            }
            scope = scope or ""
            if scope.startswith("org:"):
                org = scope[len("org:") :]
                out["org_runners"] = org
                out["repo"] = f"{org}/-"
            else:
                out["repo"] = scope.removeprefix("repo:")
            owner = out["repo"].split("/", 1)[0]
            inst = installation_id
            if inst is None and s.github_app_id and owner:
                found = installation_for(self.store, "github", owner)
                inst = int(found) if found else None
            if inst is not None:
                out["installation_id"] = str(inst)
            return out
        if name == "gitlab":
            return {
                "project": scope or "",
                "url": s.gitlab_url,
                "token": s.gitlab_token,
                "dashboard_url": dashboard,
            }
        return {"dashboard_url": dashboard}


@dataclass(kw_only=True)
class AppContext:
    settings: Settings
    store: Store
    providers: ProviderFactory
    metrics: Metrics
    clock: Callable[[], float] = time.time
    queue: DuckQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = DuckQueue(self.store)
