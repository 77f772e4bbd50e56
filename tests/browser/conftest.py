"""Browser-pool tests. Those marked ``browser`` need Debian's Chromium: in CI (``CI`` set) a
missing browser fails them, elsewhere they skip with the reason. No test writes the real
crash log (``CI_FANOUT_BROWSER_HEALTH`` points into the test's tmp dir)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner_probe.conftest import profile_for  # noqa: F401 - a fixture used here too

CHROMIUM = Path("/usr/bin/chromium")


def chromium_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'ci-fanout[browser]')"
    return None


@pytest.fixture(autouse=True)
def _browser_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("CI_FANOUT_BROWSER_") or name in ("CI_FANOUT_LABELS",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CI_FANOUT_BROWSER_HEALTH", str(tmp_path / "browser-health.jsonl"))
    if request.node.get_closest_marker("browser") is not None:
        why = chromium_missing()
        if why is not None:
            if os.environ.get("CI", "").lower() not in ("", "0", "false"):
                pytest.fail(f"{why}: browser tests must run in CI")
            pytest.skip(why)
    yield
