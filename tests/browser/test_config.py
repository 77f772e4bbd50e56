"""Pool settings from the environment: sized from effective resources, bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_app.browser.config import (
    MAX_POOL_SIZE,
    PER_BROWSER_BYTES,
    config_from_env,
    default_health_path,
    pool_size,
)
from ci_app.errors import ConfigError

GB = 10**9


def test_pool_size_follows_effective_cpus_and_memory() -> None:
    assert pool_size(2, 25 * GB) == 2
    assert pool_size(1, 64 * GB) == 1
    assert pool_size(64, 512 * GB) == MAX_POOL_SIZE
    # a 1 GB cgroup: half of it holds no browser at the budget, but one is always allowed
    assert pool_size(8, 1 * GB) == 1
    assert pool_size(8, 4 * PER_BROWSER_BYTES) == 2
    assert pool_size(0, None) == 1


def test_config_from_env() -> None:
    env = {
        "CI_FANOUT_BROWSER_POOL_SIZE": "3",
        "CI_FANOUT_BROWSER_MODE": "Software",
        "CI_FANOUT_BROWSER_FLAGS": "--foo --bar='a b'",
        "CI_FANOUT_BROWSER_TIMEOUT": "12.5",
        "CI_FANOUT_BROWSER_RECYCLE": "7",
        "CI_FANOUT_BROWSER_HEALTH": "/tmp/h.jsonl",
        "CI_FANOUT_LABELS": "WebGPU, x64,,",
        "GITLAB_CI": "true",
    }
    cfg = config_from_env(env, resources=(1, 1))
    assert cfg.size == 3 and cfg.mode == "software"
    assert cfg.extra_flags == ("--foo", "--bar=a b")
    assert cfg.timeout_s == 12.5 and cfg.recycle_after == 7
    assert cfg.health_path == Path("/tmp/h.jsonl")
    assert cfg.promised == frozenset({"webgpu", "x64"})
    assert cfg.ci
    plain = config_from_env({"HOME": "/home/u", "CI": "false"}, resources=(2, 25 * GB))
    assert plain.size == 2 and not plain.ci and plain.mode == "auto"
    assert plain.health_path == Path("/home/u/.local/state/ci-fanout/browser-health.jsonl")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CI_FANOUT_BROWSER_POOLSIZE": "2"}, "Perhaps you meant 'CI_FANOUT_BROWSER_POOL_SIZE'"),
        ({"CI_FANOUT_BROWSER_POOL_SIZE": "two"}, "is not a valid integer"),
        ({"CI_FANOUT_BROWSER_POOL_SIZE": "0"}, "must be at least 1"),
        ({"CI_FANOUT_BROWSER_TIMEOUT": "nan"}, "must be at least 1"),
        ({"CI_FANOUT_BROWSER_MODE": "gpu"}, "choose one of auto, hardware, software"),
        ({"CI_FANOUT_BROWSER_FLAGS": "--a 'unclosed"}, "FLAGS"),
        ({"CI_FANOUT_BROWSER_FLAGS": "--a rm"}, "is not a --switch"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_env(env, resources=(2, 8 * GB))


def test_health_path_prefers_xdg_state() -> None:
    assert default_health_path({"XDG_STATE_HOME": "/s"}) == Path(
        "/s/ci-fanout/browser-health.jsonl"
    )


def test_docs_list_every_setting() -> None:
    """docs/browser.md's configuration table names exactly the settings the pool reads."""
    import re

    from ci_app.options.browser import OPTIONS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "browser.md").read_text()
    table = docs.split("## Configuration", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\| `(CI_FANOUT_BROWSER_[A-Z_]+)` \|", table, re.MULTILINE))
    assert documented == {o.env for o in OPTIONS}
