"""Settings of the app server: ONE frozen keyword-only dataclass, defaults declared once.

Cascade (later wins, :mod:`ci_app.options.engine`): the defaults below → a TOML file
(``--config F`` or ``CI_FANOUT_SERVE_CONFIG``) → environment variables ``CI_FANOUT_<NAME>`` →
command-line flags. Each option has one external name, kebab-case (``github-webhook-secret``);
the TOML key is that name, the environment variable is ``CI_FANOUT_`` + the name upper-cased
with ``_``. The settings file has its own variable: ``CI_FANOUT_CONFIG`` names the CI steps'
``ci-fanout.toml`` (:mod:`ci_app.options.ci`); the server still accepts it, with a warning, when
``CI_FANOUT_SERVE_CONFIG`` is not set.

The environment is passed in as a ``Mapping`` (never read at import time). Unknown TOML keys
and unknown flags fail with "Perhaps you meant …"; unknown ``CI_FANOUT_*`` variables are
ignored because other ci-fanout tools (the pytest plugin, ``ci-app shard``) read their own.

Secrets (``secret=True``) never appear in ``repr`` or in rendered docs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ci_app.errors import ConfigError
from ci_app.model.allow import DEFAULT_ALLOW, parse_patterns
from ci_app.options.engine import (
    Layer,
    build,
    env_layer,
    env_name,
    flag_layer,
    opt,
    read_toml,
    specs,
    suggest,
)

#: the settings file of ``ci-app serve``
CONFIG_ENV: Final = "CI_FANOUT_SERVE_CONFIG"
#: its old name, shared with the CI steps' ``ci-fanout.toml``; read only when CONFIG_ENV is unset
LEGACY_CONFIG_ENV: Final = "CI_FANOUT_CONFIG"
_SIZE_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Every option of ``ci-app serve`` (see ``docs/options.md``, generated from this class)."""

    # -- serving ---------------------------------------------------------------------------
    db: str = opt(
        "ci-fanout.duckdb",
        "DuckDB file (the app is its only writer; `ci-app runners` and `make demo` read "
        "this variable too)",
    )
    db_wal_autocheckpoint: str = opt(
        "16MB", "DuckDB checkpoints when its write-ahead log reaches this size (e.g. 16MB)"
    )
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(8080, "TCP port (0 picks a free one)")
    workers: int = opt(1, "gunicorn worker processes; must be 1 (DuckDB allows one writer process)")
    threads: int = opt(8, "request threads in the web worker")
    job_workers: int = opt(2, "job-worker threads (in the same process as the web worker)")
    log_level: str = opt("info", "debug, info, warning or error")
    public_url: str = opt("", "external base URL of the app (links in comments)")
    proxy_hops: int = opt(
        0,
        "reverse proxies in front of the app whose X-Forwarded-For is trusted "
        "(the client address rate limits key on)",
    )
    # -- webhooks --------------------------------------------------------------------------
    github_webhook_secret: str = opt("", "GitHub App webhook secret", secret=True)
    github_webhook_secret_previous: str = opt(
        "", "previous GitHub webhook secret, accepted during rotation", secret=True
    )
    gitlab_webhook_token: str = opt("", "GitLab webhook secret token (X-Gitlab-Token)", secret=True)
    gitlab_signing_token: str = opt(
        "", "GitLab signing token (Standard Webhooks signature; optional)", secret=True
    )
    jenkins_webhook_secret: str = opt(
        "", "Jenkins notifier shared secret (X-CI-Fanout-Token or basic-auth password)", secret=True
    )
    azure_webhook_secret: str = opt(
        "", "Azure DevOps service hook shared secret (header or basic-auth password)", secret=True
    )
    max_webhook_bytes: int = opt(25 * 1024 * 1024, "largest webhook body accepted (413 above)")
    delivery_retention_days: float = opt(7.0, "keep raw deliveries this long (dedupe window)")
    # -- APIs --------------------------------------------------------------------------------
    api_token: str = opt(
        "", "admin bearer token: create queues, post results, manage runners", secret=True
    )
    max_api_bytes: int = opt(64 * 1024 * 1024, "largest API request body (results.json)")
    rate_limit_per_minute: int = opt(1200, "API requests per token per minute (429 above)")
    rate_limit_burst: int = opt(200, "API requests a token may send at once")
    rate_limit_failures_per_minute: int = opt(
        30,
        "API requests without a valid token and webhooks with a bad signature, per client "
        "address per minute (429 above)",
    )
    rate_limit_failures_burst: int = opt(20, "failed attempts a client address may make at once")
    run_token_ttl_s: float = opt(
        86400.0, "lifetime of a run token unless its request asks for less (ttl_s)"
    )
    run_token_max_ttl_s: float = opt(7 * 86400.0, "longest ttl_s a run token may ask for")
    queue_lease_timeout_s: float = opt(
        30.0, "test-queue lease lifetime after the runner's last heartbeat (clients beat every 5 s)"
    )
    # -- jobs --------------------------------------------------------------------------------
    job_lease_s: float = opt(120.0, "a job not finished within this is redone by another worker")
    job_max_attempts: int = opt(5, "failures before a job is parked")
    job_backoff_s: float = opt(5.0, "first retry delay; doubles each attempt")
    job_backoff_max_s: float = opt(600.0, "longest retry delay")
    job_poll_s: float = opt(
        0.2, "idle job worker polling interval, doubling to 1 s while idle (a new job wakes it)"
    )
    # -- runners -------------------------------------------------------------------------------
    runner_offline_after_s: float = opt(300.0, "mark a runner offline after this without heartbeat")
    label_sync: bool = opt(True, "sync runner labels to the provider")
    label_sync_interval_s: float = opt(
        300.0, "re-check a runner's labels at most this often (0: every heartbeat)"
    )
    label_min_misses: int = opt(3, "consecutive misses before an owned label is removed")
    runner_provider: str = opt("github", "provider of runners whose token names none")
    runner_allow_labels: str = opt(
        " ".join(DEFAULT_ALLOW),
        "labels (or globs) a runner may be granted when neither its token nor a pool "
        "allow-list names any; GPU, accelerator, WebGPU and WebNN labels need an explicit allow",
    )
    heartbeat_history: int = opt(500, "heartbeats kept per runner; older ones are pruned")
    # -- providers --------------------------------------------------------------------------
    github_api_url: str = opt("https://api.github.com", "GitHub REST API base URL")
    github_app_id: str = opt("", "GitHub App id")
    github_private_key_path: str = opt("", "GitHub App private key (PEM file)")
    github_token: str = opt("", "GitHub token (instead of the App)", secret=True)
    github_throttle: str = opt(
        "", "GitHub request pacing: empty = PyGithub's (1 s between writes), 0 = off (GHES, fakes)"
    )
    github_runner_scope: str = opt(
        "", "where runners are registered: 'org:NAME' or 'repo:OWNER/NAME'"
    )
    gitlab_url: str = opt("https://gitlab.com", "GitLab base URL")
    gitlab_token: str = opt("", "GitLab API token", secret=True)
    jenkins_url: str = opt("", "Jenkins base URL (collect jobs of Jenkins builds)")
    jenkins_username: str = opt("", "Jenkins user the API token belongs to")
    jenkins_token: str = opt("", "Jenkins API token", secret=True)
    jenkins_forge: str = opt(
        "", "where results of Jenkins builds are posted: github, gitlab (empty: stored only)"
    )
    azure_org_url: str = opt("", "Azure DevOps organisation URL, e.g. https://dev.azure.com/ORG")
    azure_project: str = opt("", "Azure DevOps project")
    azure_token: str = opt(
        "", "Azure DevOps personal access token (Build read, Code status)", secret=True
    )
    local_out_dir: str = opt(
        "",
        "folder the local provider writes comments and statuses to for results of provider "
        "'local' (empty: such runs are only stored; the server writes no files)",
    )
    local_runners: str = opt(
        "", "names of the local provider's runners, space-separated (empty: one, 'local')"
    )
    dispatch_workflow: str = opt(
        "", "workflow/pipeline to dispatch on a PR (empty: CI-native fan-out only)"
    )
    report_on_results: bool = opt(True, "post/update the sticky comment when results arrive")
    # -- dashboard ---------------------------------------------------------------------------
    dashboard_password: str = opt(
        "", "require HTTP basic auth (any user) for the dashboard when set", secret=True
    )
    chart_renders_per_minute: int = opt(
        30, "chart PNGs rendered per client address per minute (cached charts are free)"
    )

    @classmethod
    def option_names(cls) -> list[str]:
        return [o.name for o in specs(cls)]

    def public_dict(self) -> dict[str, Any]:
        """All options with secrets masked (for logs and the dashboard)."""
        out: dict[str, Any] = {}
        for o in specs(Settings):
            value = getattr(self, o.attr)
            out[o.name] = ("***" if value else "") if o.secret else value
        return out


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file: top-level kebab-case keys (or a ``[ci-fanout]`` table)."""
    doc = read_toml(Path(path))
    table = doc.get("ci-fanout", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [ci-fanout] must be a table")
    return {str(k).replace("_", "-"): v for k, v in table.items()}


def settings_file(env: Mapping[str, str]) -> str | None:
    """The settings file named by the environment (``CI_FANOUT_SERVE_CONFIG``, else the
    deprecated ``CI_FANOUT_CONFIG``), or None."""
    path = env.get(CONFIG_ENV) or None
    if path is None and env.get(LEGACY_CONFIG_ENV):
        path = env[LEGACY_CONFIG_ENV]
        _log.warning(
            "%s names the settings file of ci-app serve: rename it to %s (%s is the CI "
            "steps' ci-fanout.toml)",
            LEGACY_CONFIG_ENV,
            CONFIG_ENV,
            LEGACY_CONFIG_ENV,
        )
    return path


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the cascade defaults → TOML → env → ``overrides`` (flags; ``None`` values skipped).

    ``config_file`` defaults to the file named by the environment (:func:`settings_file`)."""
    env = env or {}
    layers: list[Layer] = []
    path = config_file or settings_file(env)
    if path:
        layers.append(Layer(str(path), read_settings_file(path)))
    layers.append(env_layer(specs(Settings), env, empty_is_unset=False))
    layers.append(flag_layer(overrides or {}))
    settings, _ = build(Settings, layers)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-option checks that a type conversion cannot express."""
    if settings.workers != 1:
        raise ConfigError(
            f"workers = {settings.workers}: DuckDB allows one writer process, so the app runs "
            "one gunicorn worker with threads; raise --threads instead"
        )
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port {settings.port} is out of range 0-65535")
    at_least_one = {
        "threads": settings.threads,
        "job-workers": settings.job_workers,
        "job-max-attempts": settings.job_max_attempts,
        "label-min-misses": settings.label_min_misses,
        "rate-limit-failures-burst": settings.rate_limit_failures_burst,
        "heartbeat-history": settings.heartbeat_history,
    }
    for name, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.proxy_hops < 0:
        raise ConfigError("proxy-hops must be 0 or more")
    if not 0 < settings.run_token_ttl_s <= settings.run_token_max_ttl_s:
        raise ConfigError(
            "run-token-ttl-s must be positive and at most run-token-max-ttl-s "
            f"({settings.run_token_ttl_s} > {settings.run_token_max_ttl_s})"
        )
    try:
        parse_patterns(settings.runner_allow_labels)
    except ValueError as exc:
        raise ConfigError(f"runner-allow-labels: {exc}") from None
    if not _SIZE_RE.match(settings.db_wal_autocheckpoint.strip()):
        raise ConfigError(
            f"db-wal-autocheckpoint {settings.db_wal_autocheckpoint!r}: use a size such as "
            "16MB, 512KB or 1GiB"
        )
    if settings.jenkins_forge not in ("", "github", "gitlab"):
        raise ConfigError(
            f"jenkins-forge {settings.jenkins_forge!r}: use github, gitlab or leave it empty."
            + suggest(settings.jenkins_forge, ["github", "gitlab"])
        )
    levels = ["debug", "info", "warning", "error"]
    if settings.log_level.lower() not in levels:
        raise ConfigError(
            f"log-level {settings.log_level!r}: use debug, info, warning or error."
            + suggest(settings.log_level.lower(), levels)
        )


def render_options_table() -> str:
    """Markdown reference of every option (``docs/options.md`` is this text)."""
    lines = [
        "# ci-app serve options",
        "",
        "Generated from `ci_app/options/server.py` by `make docs`; a test keeps this file current.",
        "",
        f"Cascade, later wins: defaults → TOML file (`--config F` or `{CONFIG_ENV}`; top-level"
        " keys or a `[ci-fanout]` table) → environment → command-line flags."
        " Unknown keys are rejected with a suggestion."
        f" `{LEGACY_CONFIG_ENV}` (the CI steps' `ci-fanout.toml`) is still read when"
        f" `{CONFIG_ENV}` is unset, with a warning.",
        "",
        "| option (TOML key) | environment variable | default | description |",
        "|---|---|---|---|",
    ]
    for o in specs(Settings):
        if o.secret:
            shown = "*(secret)*"
        elif o.default == "":
            shown = "*(empty)*"
        else:
            shown = f"`{o.default_text}`"
        lines.append(f"| `{o.name}` | `{o.env}` | {shown} | {o.description} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "CONFIG_ENV",
    "LEGACY_CONFIG_ENV",
    "Settings",
    "env_name",
    "load_settings",
    "read_settings_file",
    "render_options_table",
    "settings_file",
    "validate",
]
