"""Settings: one frozen object, cascade defaults → TOML → env → flags, helpful errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ci_app.errors import ConfigError
from ci_app.options.server import Settings, env_name, load_settings, render_options_table

DOCS = Path(__file__).parents[2] / "docs" / "options.md"


def test_defaults_and_frozen() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert s.port == 8080 and s.workers == 1 and s.label_sync is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings("x.duckdb")  # type: ignore[call-arg]  # keyword-only


def test_cascade_later_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('port = 9000\nthreads = 4\ndb = "from-toml.duckdb"\nlabel-sync = false\n')
    env = {"CI_FANOUT_PORT": "9100", "CI_FANOUT_THREADS": "6", "CI_FANOUT_OTHER_TOOL": "x"}
    s = load_settings(env=env, config_file=cfg, overrides={"port": 9200, "host": None})
    assert (s.port, s.threads, s.db, s.label_sync, s.host) == (
        9200,
        6,
        "from-toml.duckdb",
        False,
        "127.0.0.1",
    )
    # the file may also come from the environment, and may use a [ci-fanout] table
    cfg2 = tmp_path / "b.toml"
    cfg2.write_text("[ci-fanout]\njob_workers = 3\n")
    assert load_settings(env={"CI_FANOUT_SERVE_CONFIG": str(cfg2)}).job_workers == 3


def test_settings_file_has_its_own_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CI_FANOUT_CONFIG is the CI steps' ci-fanout.toml; the server's file is
    CI_FANOUT_SERVE_CONFIG. The old name still works for the server, with a warning, and
    never wins over the new one."""
    serve = tmp_path / "serve.toml"
    serve.write_text("threads = 3\n")
    old = tmp_path / "old.toml"
    old.write_text("threads = 5\n")
    both = {"CI_FANOUT_SERVE_CONFIG": str(serve), "CI_FANOUT_CONFIG": str(old)}
    with caplog.at_level("WARNING"):
        assert load_settings(env=both).threads == 3
    assert not caplog.records
    with caplog.at_level("WARNING"):
        assert load_settings(env={"CI_FANOUT_CONFIG": str(old)}).threads == 5
    assert "CI_FANOUT_SERVE_CONFIG" in caplog.text


def test_unknown_keys_suggest(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('github-webhook-secrte = "x"\n')
    with pytest.raises(ConfigError, match="Perhaps you meant 'github-webhook-secret'"):
        load_settings(env={}, config_file=cfg)
    with pytest.raises(ConfigError, match="Perhaps you meant 'threads'"):
        load_settings(env={}, overrides={"threds": 3})
    with pytest.raises(ConfigError, match="not a valid int"):
        load_settings(env={"CI_FANOUT_PORT": "eighty"})
    with pytest.raises(ConfigError, match="not a valid bool"):
        load_settings(env={"CI_FANOUT_LABEL_SYNC": "maybe"})
    with pytest.raises(ConfigError, match="one writer"):
        load_settings(env={"CI_FANOUT_WORKERS": "4"})
    with pytest.raises(ConfigError, match="log-level"):
        load_settings(env={"CI_FANOUT_LOG_LEVEL": "verbose"})
    bad = tmp_path / "d.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={}, config_file=bad)


def test_secrets_never_rendered() -> None:
    s = load_settings(
        env={
            "CI_FANOUT_GITHUB_WEBHOOK_SECRET": "hunter2-secret",
            "CI_FANOUT_API_TOKEN": "tok-123456",
        }
    )
    assert s.github_webhook_secret == "hunter2-secret"
    assert "hunter2" not in repr(s) and "tok-123456" not in repr(s)
    public = s.public_dict()
    assert public["github-webhook-secret"] == "***" and public["gitlab-webhook-token"] == ""
    assert "hunter2" not in render_options_table()


def test_env_names_follow_option_names() -> None:
    assert env_name("github-webhook-secret") == "CI_FANOUT_GITHUB_WEBHOOK_SECRET"
    assert env_name("gitlab-webhook-token") == "CI_FANOUT_GITLAB_WEBHOOK_TOKEN"
    table = render_options_table()
    for option in Settings.option_names():
        assert f"`{option}`" in table and f"`{env_name(option)}`" in table


def test_docs_options_md_is_current() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_options_table(), (
        "docs/options.md is stale: make docs"
    )
