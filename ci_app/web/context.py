"""What the web app, its job handlers and the worker share: settings, store, providers, clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ci_app.options.server import Settings
from ci_app.providers.base import Provider, get_provider
from ci_app.store import Store, is_fatal_error
from ci_app.store.queue import DuckQueue
from ci_app.web.metrics import Metrics

__all__ = ["AppContext", "ProviderFactory", "SettingsProviders", "runner_scope"]

log = logging.getLogger(__name__)


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
        if name == "local" and not self.settings.local_out_dir:
            # results of provider "local" never make the server write files into its working
            # directory: without local-out-dir such runs are stored, nothing is posted
            return Provider(name="local")
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
                found = self.store.jobs.installation_for("github", owner)
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
        if name == "jenkins":
            out = {
                "url": s.jenkins_url,
                "username": s.jenkins_username,
                "token": s.jenkins_token,
                "dashboard_url": dashboard,
            }
            if s.jenkins_forge and scope:  # Jenkins is no forge: results go to the repo's host
                out["forge"] = s.jenkins_forge
                for key, value in self._settings_for(s.jenkins_forge, scope, None).items():
                    out[f"forge.{key}"] = value
            return out
        if name == "azure":
            return {
                "org_url": s.azure_org_url,
                "project": s.azure_project,
                "token": s.azure_token,
                "repository": scope or "",
                "dashboard_url": dashboard,
                "data_dir": _data_dir(s),
            }
        if name == "local":  # only with local-out-dir set (see __call__)
            out_dir = Path(s.local_out_dir)
            return {
                "out_dir": str(out_dir),
                "work_dir": str(out_dir / "local"),
                "probe": "0",
                "runners": s.local_runners,
                "dashboard_url": dashboard,
            }
        return {"dashboard_url": dashboard}


def _data_dir(s: Settings) -> str:
    """Where provider SDK caches go: beside the database (the service's state directory)."""
    if s.db == ":memory:":
        return ""
    return str(Path(s.db).resolve().parent)


@dataclass(kw_only=True)
class AppContext:
    settings: Settings
    store: Store
    providers: ProviderFactory
    metrics: Metrics
    clock: Callable[[], float] = time.time
    #: called once when the store fails for good (``ci-app serve``: exit the worker process)
    on_fatal: Callable[[BaseException], None] | None = None
    queue: DuckQueue = field(init=False)
    fatal: BaseException | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.queue = self.store.queue
        self._fatal_lock = threading.Lock()

    def check_fatal(self, exc: BaseException) -> bool:
        """True when ``exc`` means the database must be reopened (DuckDB ``FatalException``,
        e.g. a checkpoint on a full disk). The first one marks the app failed (``/healthz``
        and every request answer 503) and calls :attr:`on_fatal`."""
        if not is_fatal_error(exc):
            return False
        with self._fatal_lock:
            first = self.fatal is None
            if first:
                self.fatal = exc
        if first:
            log.critical("the store failed and must be reopened: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
        return True
