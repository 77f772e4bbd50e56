"""The browser pool's options: ``[browser]`` in ci-fanout.toml → ``CI_FANOUT_BROWSER_*`` → flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_app.browser.config import config_from_env
from ci_app.errors import ConfigError
from ci_app.options.browser import OPTIONS, BrowserOptions, render_docs, resolve

GB = 10**9


def test_names_and_variables_are_one_table() -> None:
    rows = {o.name: o for o in OPTIONS}
    assert rows["pool-size"].env == "CI_FANOUT_BROWSER_POOL_SIZE"
    assert rows["pool-size"].nullable and rows["mode"].choices == ("auto", "hardware", "software")
    doc = render_docs()
    for o in OPTIONS:
        assert f"| `{o.env}` |" in doc
    # the paths other processes read are not [browser] keys
    assert "| `CI_FANOUT_BROWSER_HEALTH` |  |" in doc and "| `pool-size` |" in doc


def test_cascade_file_then_environment_then_flag(tmp_path: Path) -> None:
    (tmp_path / "ci-fanout.toml").write_text(
        '[browser]\npool-size = 2\nmode = "software"\ntimeout = 12\nflags = "--a"\n'
    )
    env = {"CI_FANOUT_BROWSER_MODE": "Hardware", "CI_FANOUT_BROWSER_FLAGS": ""}
    opts = resolve(env, project_dir=tmp_path, flags={"record": "r.json"})
    assert opts == BrowserOptions(
        pool_size=2, mode="hardware", timeout=12.0, flags="--a", record="r.json"
    )
    cfg = config_from_env({"HOME": "/h"}, resources=(8, 64 * GB), options=opts)
    assert (cfg.size, cfg.mode, cfg.timeout_s, cfg.extra_flags) == (2, "hardware", 12.0, ("--a",))
    # without a project directory the file is not read
    assert resolve(env).pool_size is None
    # the file the CI steps read: CI_FANOUT_CONFIG names another one
    (tmp_path / "other.toml").write_text("[browser]\nrecycle = 3\n")
    assert resolve({"CI_FANOUT_CONFIG": "other.toml"}, project_dir=tmp_path).recycle == 3
    assert resolve({}, project_dir=tmp_path / "none").pool_size is None  # no file: defaults


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[browser]\npoolsize = 2\n",
            r"\[browser\]: unknown option 'poolsize'\. Perhaps .*pool-size",
        ),
        ('[browser]\nhealth = "/x"\n', r"unknown option 'health' \(set it in the environment\)"),
        ("browser = 3\n", r"\[browser\] must be a table"),
        ("[browser]\nrecycle = 0\n", r"ci-fanout.toml \[browser\]: recycle = 0 must be at least 1"),
        ('[browser]\nmode = "gpu"\n', "choose one of auto, hardware, software"),
    ],
)
def test_bad_file_values_name_the_file(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "ci-fanout.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        resolve({}, project_dir=tmp_path)
