"""Settings of the app server: ONE frozen keyword-only dataclass, defaults declared once.

Cascade (later wins): the defaults below → a TOML file (``--config F`` or
``CI_FANOUT_CONFIG``) → environment variables ``CI_FANOUT_<NAME>`` → command-line flags.
Each option has one external name, kebab-case (``github-webhook-secret``); the TOML key is
that name, the environment variable is ``CI_FANOUT_`` + the name upper-cased with ``_``.

The environment is passed in as a ``Mapping`` (never read at import time). Unknown TOML keys
and unknown flags fail with "Perhaps you meant …"; unknown ``CI_FANOUT_*`` variables are
ignored because other ci-fanout tools (the pytest plugin, ``ci-app shard``) read their own.

Secrets (``secret=True`` in the field metadata) never appear in ``repr`` or in rendered docs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, get_type_hints

from ci_app.errors import ConfigError
from ci_app.model.allow import DEFAULT_ALLOW, parse_patterns

ENV_PREFIX: Final = "CI_FANOUT_"
_SIZE_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)


def _opt(default: Any, help_: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"help": help_, "secret": secret})


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Every option of ``ci-app serve`` (see ``docs/options.md``, generated from this class)."""

    # -- serving ---------------------------------------------------------------------------
    db: str = _opt("ci-fanout.duckdb", "DuckDB file (the app is its only writer)")
    db_wal_autocheckpoint: str = _opt(
        "16MB", "DuckDB checkpoints when its write-ahead log reaches this size (e.g. 16MB)"
    )
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8080, "TCP port (0 picks a free one)")
    workers: int = _opt(
        1, "gunicorn worker processes; must be 1 (DuckDB allows one writer process)"
    )
    threads: int = _opt(8, "request threads in the web worker")
    job_workers: int = _opt(2, "job-worker threads (in the same process as the web worker)")
    log_level: str = _opt("info", "debug, info, warning or error")
    public_url: str = _opt("", "external base URL of the app (links in comments)")
    proxy_hops: int = _opt(
        0,
        "reverse proxies in front of the app whose X-Forwarded-For is trusted "
        "(the client address rate limits key on)",
    )
    # -- webhooks --------------------------------------------------------------------------
    github_webhook_secret: str = _opt("", "GitHub App webhook secret", secret=True)
    github_webhook_secret_previous: str = _opt(
        "", "previous GitHub webhook secret, accepted during rotation", secret=True
    )
    gitlab_webhook_token: str = _opt(
        "", "GitLab webhook secret token (X-Gitlab-Token)", secret=True
    )
    gitlab_signing_token: str = _opt(
        "", "GitLab signing token (Standard Webhooks signature; optional)", secret=True
    )
    jenkins_webhook_secret: str = _opt(
        "", "Jenkins notifier shared secret (X-CI-Fanout-Token or basic-auth password)", secret=True
    )
    azure_webhook_secret: str = _opt(
        "", "Azure DevOps service hook shared secret (header or basic-auth password)", secret=True
    )
    max_webhook_bytes: int = _opt(25 * 1024 * 1024, "largest webhook body accepted (413 above)")
    delivery_retention_days: float = _opt(7.0, "keep raw deliveries this long (dedupe window)")
    # -- APIs --------------------------------------------------------------------------------
    api_token: str = _opt(
        "", "admin bearer token: create queues, post results, manage runners", secret=True
    )
    max_api_bytes: int = _opt(64 * 1024 * 1024, "largest API request body (results.json)")
    rate_limit_per_minute: int = _opt(1200, "API requests per token per minute (429 above)")
    rate_limit_burst: int = _opt(200, "API requests a token may send at once")
    rate_limit_failures_per_minute: int = _opt(
        30,
        "API requests without a valid token and webhooks with a bad signature, per client "
        "address per minute (429 above)",
    )
    rate_limit_failures_burst: int = _opt(20, "failed attempts a client address may make at once")
    run_token_ttl_s: float = _opt(
        86400.0, "lifetime of a run token unless its request asks for less (ttl_s)"
    )
    run_token_max_ttl_s: float = _opt(7 * 86400.0, "longest ttl_s a run token may ask for")
    queue_lease_timeout_s: float = _opt(
        30.0, "test-queue lease lifetime after the runner's last heartbeat (clients beat every 5 s)"
    )
    # -- jobs --------------------------------------------------------------------------------
    job_lease_s: float = _opt(120.0, "a job not finished within this is redone by another worker")
    job_max_attempts: int = _opt(5, "failures before a job is parked")
    job_backoff_s: float = _opt(5.0, "first retry delay; doubles each attempt")
    job_backoff_max_s: float = _opt(600.0, "longest retry delay")
    job_poll_s: float = _opt(0.2, "idle job worker polling interval")
    # -- runners -------------------------------------------------------------------------------
    runner_offline_after_s: float = _opt(
        300.0, "mark a runner offline after this without heartbeat"
    )
    label_sync: bool = _opt(True, "sync runner labels to the provider")
    label_sync_interval_s: float = _opt(
        300.0, "re-check a runner's labels at most this often (0: every heartbeat)"
    )
    label_min_misses: int = _opt(3, "consecutive misses before an owned label is removed")
    runner_provider: str = _opt("github", "provider of runners whose token names none")
    runner_allow_labels: str = _opt(
        " ".join(DEFAULT_ALLOW),
        "labels (or globs) a runner may be granted when neither its token nor a pool "
        "allow-list names any; GPU, accelerator, WebGPU and WebNN labels need an explicit allow",
    )
    heartbeat_history: int = _opt(500, "heartbeats kept per runner; older ones are pruned")
    # -- providers --------------------------------------------------------------------------
    github_api_url: str = _opt("https://api.github.com", "GitHub REST API base URL")
    github_app_id: str = _opt("", "GitHub App id")
    github_private_key_path: str = _opt("", "GitHub App private key (PEM file)")
    github_token: str = _opt("", "GitHub token (instead of the App)", secret=True)
    github_throttle: str = _opt(
        "", "GitHub request pacing: empty = PyGithub's (1 s between writes), 0 = off (GHES, fakes)"
    )
    github_runner_scope: str = _opt(
        "", "where runners are registered: 'org:NAME' or 'repo:OWNER/NAME'"
    )
    gitlab_url: str = _opt("https://gitlab.com", "GitLab base URL")
    gitlab_token: str = _opt("", "GitLab API token", secret=True)
    jenkins_url: str = _opt("", "Jenkins base URL (collect jobs of Jenkins builds)")
    jenkins_username: str = _opt("", "Jenkins user the API token belongs to")
    jenkins_token: str = _opt("", "Jenkins API token", secret=True)
    jenkins_forge: str = _opt(
        "", "where results of Jenkins builds are posted: github, gitlab (empty: stored only)"
    )
    azure_org_url: str = _opt("", "Azure DevOps organisation URL, e.g. https://dev.azure.com/ORG")
    azure_project: str = _opt("", "Azure DevOps project")
    azure_token: str = _opt(
        "", "Azure DevOps personal access token (Build read, Code status)", secret=True
    )
    local_out_dir: str = _opt(
        "",
        "folder the local provider writes comments and statuses to for results of provider "
        "'local' (empty: such runs are only stored; the server writes no files)",
    )
    local_runners: str = _opt(
        "", "names of the local provider's runners, space-separated (empty: one, 'local')"
    )
    dispatch_workflow: str = _opt(
        "", "workflow/pipeline to dispatch on a PR (empty: CI-native fan-out only)"
    )
    report_on_results: bool = _opt(True, "post/update the sticky comment when results arrive")
    # -- dashboard ---------------------------------------------------------------------------
    dashboard_password: str = _opt(
        "", "require HTTP basic auth (any user) for the dashboard when set", secret=True
    )
    chart_renders_per_minute: int = _opt(
        30, "chart PNGs rendered per client address per minute (cached charts are free)"
    )

    @classmethod
    def option_names(cls) -> list[str]:
        return [_external(f.name) for f in dataclasses.fields(cls)]

    def public_dict(self) -> dict[str, Any]:
        """All options with secrets masked (for logs and the dashboard)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else ""
            out[_external(f.name)] = value
        return out


def _external(attr: str) -> str:
    return attr.replace("_", "-")


def env_name(option: str) -> str:
    """``github-webhook-secret`` → ``CI_FANOUT_GITHUB_WEBHOOK_SECRET``."""
    return ENV_PREFIX + option.replace("-", "_").upper()


_FIELDS: Final = {f.name: f for f in dataclasses.fields(Settings)}
_TYPES: Final = get_type_hints(Settings)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" Perhaps you meant {close[0]!r}?" if close else ""


def _convert(option: str, value: Any, source: str) -> Any:
    attr = option.replace("-", "_")
    tp = _TYPES[attr]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {option} = {value!r} is not a valid {tp.__name__}") from None


def _check_keys(keys: list[str], source: str) -> None:
    known = Settings.option_names()
    for key in keys:
        if key not in known:
            raise ConfigError(f"{source}: unknown option {key!r}.{_suggest(key, known)}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file: top-level kebab-case keys (or a ``[ci-fanout]`` table)."""
    try:
        with Path(path).open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = doc.get("ci-fanout", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [ci-fanout] must be a table")
    keys = [str(k).replace("_", "-") for k in table]
    _check_keys(keys, str(path))
    return {str(k).replace("_", "-"): v for k, v in table.items()}


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the cascade defaults → TOML → env → ``overrides`` (flags; ``None`` values skipped).

    ``config_file`` defaults to ``env["CI_FANOUT_CONFIG"]`` when set.
    """
    env = env or {}
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    if path:
        for key, raw in read_toml(path).items():
            values[key] = _convert(key, raw, str(path))
    for option in Settings.option_names():
        name = env_name(option)
        if name in env:
            values[option] = _convert(option, env[name], name)
    if overrides:
        given = {k.replace("_", "-"): v for k, v in overrides.items() if v is not None}
        _check_keys(list(given), "command line")
        for key, raw in given.items():
            values[key] = _convert(key, raw, f"--{key}")
    settings = Settings(**{k.replace("-", "_"): v for k, v in values.items()})
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
    for name in (
        "threads",
        "job_workers",
        "job_max_attempts",
        "label_min_misses",
        "rate_limit_failures_burst",
        "heartbeat_history",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{_external(name)} must be at least 1")
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
            f"jenkins-forge {settings.jenkins_forge!r}: use github, gitlab or leave it empty"
            + _suggest(settings.jenkins_forge, ["github", "gitlab"])
        )
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"log-level {settings.log_level!r}: use debug, info, warning or error"
            + _suggest(settings.log_level.lower(), ["debug", "info", "warning", "error"])
        )


def render_options_table() -> str:
    """Markdown reference of every option (``docs/options.md`` is this text)."""
    lines = [
        "# ci-app serve options",
        "",
        "Generated from `ci_app/settings.py` by `ci_app.settings.render_options_table()`;"
        " a test keeps this file current.",
        "",
        "Cascade, later wins: defaults → TOML file (`--config F` or `CI_FANOUT_CONFIG`; top-level"
        " keys or a `[ci-fanout]` table) → environment → command-line flags."
        " Unknown keys are rejected with a suggestion.",
        "",
        "| option (TOML key) | environment variable | default | description |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(Settings):
        option = _external(f.name)
        default = f.default
        if f.metadata.get("secret"):
            shown = "*(secret)*"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif default == "":
            shown = "*(empty)*"
        else:
            shown = f"`{default}`"
        lines.append(f"| `{option}` | `{env_name(option)}` | {shown} | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "ENV_PREFIX",
    "Settings",
    "env_name",
    "load_settings",
    "read_toml",
    "render_options_table",
    "validate",
]
