"""The pytest plugin in real pytest processes against Debian's Chromium: fixtures, capability
checks, crash recovery (with and without pytest-rerunfailures), and the record merged into
results.json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_app.artifacts.ingest import ingest_paths
from ci_app.browser import health
from ci_app.browser.record import merge_record_file, read_record, record_path_for
from ci_app.model.results import Outcome, ResultSet

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SW = "browser/google-swiftshader-fallback"
SUITE = """
import os
from pathlib import Path

import numpy as np
import pytest

from ci_app.browser.coordinator import matmul

STATE = Path(os.environ["SUITE_STATE"])


def first_time(name):
    marker = STATE / name
    if marker.exists():
        return False
    marker.write_text("1")
    return True


@pytest.mark.hw("webgpu-sw")
def test_metric(browser_page, record_metric):
    assert browser_page.evaluate("async () => !!(await navigator.gpu.requestAdapter())")
    record_metric("gflops", 2.5, unit="GFLOP/s", higher_is_better=True)


def test_crash_once(browser_page, browser_pool):
    if first_time("crash_once"):
        assert browser_pool.kill_renderer(browser_page)
    assert browser_page.evaluate("() => 6 * 7") == 42


def test_crash_always(browser_page, browser_pool):
    browser_pool.kill_renderer(browser_page)
    browser_page.evaluate("() => 1")


def test_genuine_failure(browser_page):
    assert browser_page.evaluate("() => 1 + 1") == 3


@pytest.mark.hw("webgpu")
def test_needs_hardware(browser_page):
    raise AssertionError("a hardware test must never run on SwiftShader")


@pytest.mark.hw("webgpu-sw")
@pytest.mark.browser(features=["shader-f16"])
def test_needs_f16(browser_page):
    raise AssertionError("never reached: SwiftShader has no shader-f16")


@pytest.mark.browser(contexts=2)
def test_workers(browser_workers, record_metric):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20, 8), dtype=np.float32)
    b = rng.standard_normal((8, 12), dtype=np.float32)
    result = matmul(browser_workers, a, b)
    np.testing.assert_allclose(result.c, a @ b, rtol=1e-4, atol=1e-4)
    record_metric("gflops", result.gflops(20, 8, 12), higher_is_better=True)


@pytest.mark.browser(colour="red")
def test_bad_marker(browser_page):
    pass


def test_plain_metric(record_metric):
    record_metric("rows_per_s", 1000.0, higher_is_better=True)
"""


def run_suite(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], ResultSet, Path]:
    project = tmp / "project"
    (project / "tests").mkdir(parents=True, exist_ok=True)
    (project / "tests" / "test_suite.py").write_text(SUITE)
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    junit = tmp / "out" / "native-junit.xml"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CI_FANOUT_", "PYTEST_")) and k not in ("CI", "GITHUB_ACTIONS")
    }
    clean.update(
        {
            "SUITE_STATE": str(state),
            "CI_FANOUT_LABELS": "webgpu,webgpu-sw,x64",
            "CI_FANOUT_BROWSER_HEALTH": str(tmp / "health.jsonl"),
            "CI_FANOUT_BROWSER_POOL_SIZE": "2",
            **(env or {}),
        }
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    proc = subprocess.run(
        [*argv, f"--junitxml={junit}", "tests", *args],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert junit.exists(), proc.stdout + proc.stderr
    results = merge_record_file(ingest_paths([junit]), record_path_for(junit))
    return proc, results, junit


def by_name(rs: ResultSet) -> dict[str, object]:
    return {t.name: t for t in rs.tests}


def test_the_pool_in_a_shard(tmp_path: Path) -> None:
    proc, rs, junit = run_suite(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    cases = {t.name: t for t in rs.tests}
    assert cases["test_metric"].outcome is Outcome.PASSED
    assert cases["test_workers"].outcome is Outcome.PASSED
    assert cases["test_plain_metric"].outcome is Outcome.PASSED
    # crashed once: retried on a fresh browser, passed, and not flaky
    once = cases["test_crash_once"]
    assert once.outcome is Outcome.PASSED and not once.flaky
    # crashed on the retry too: an infrastructure error, not a failure of the test
    always = cases["test_crash_always"]
    assert always.outcome is Outcome.ERROR
    assert always.message == (
        "infra: renderer-crash: the page's renderer process crashed "
        "(again on the retry on a fresh browser; 1 earlier)"
    )
    genuine = cases["test_genuine_failure"]
    assert genuine.outcome is Outcome.FAILED and "infra" not in (genuine.message or "")
    # the runner's label said webgpu, its browser has SwiftShader: the label lied
    lied = cases["test_needs_hardware"]
    assert lied.outcome is Outcome.ERROR
    assert (lied.message or "").startswith(
        "infra: label-mismatch: the runner's label webgpu promised a hardware WebGPU adapter, "
        "but its browser has google swiftshader (fallback, CPU)"
    )
    # a feature no label promises: skipped, saying why
    assert cases["test_needs_f16"].outcome is Outcome.SKIPPED
    assert "needs WebGPU feature(s) shader-f16; the adapter google swiftshader" in out
    bad = cases["test_bad_marker"]
    assert bad.outcome is Outcome.ERROR and "unknown @pytest.mark.browser option" in (
        bad.message or bad.details or ""
    )

    metrics = {m.name: m for m in rs.metrics}
    t = "tests/test_suite.py::"
    assert metrics[f"{SW}/gflops/{t}test_metric"].value == 2.5
    assert metrics[f"{SW}/gflops/{t}test_metric"].direction == "higher"
    assert metrics[f"{SW}/gflops/{t}test_workers"].value > 0
    assert metrics[f"{SW}/compile_ms/{t}test_workers"].value > 0
    assert f"{SW}/context_ms/{t}test_metric" in metrics
    assert metrics[f"{SW}/infra.renderer-crash/{t}test_crash_once"].value == 1
    assert metrics[f"{SW}/infra.renderer-crash/{t}test_crash_always"].value == 2
    assert metrics[f"{SW}/infra.label-mismatch/{t}test_needs_hardware"].value == 1
    assert metrics[f"test/rows_per_s/{t}test_plain_metric"].value == 1000.0
    assert metrics[f"{SW}/launch_ms/*"].value > 0
    assert metrics[f"{SW}/chromium/*"].value >= 100

    doc, _ = read_record(record_path_for(junit))
    assert doc is not None
    assert doc["tests"][f"{t}test_crash_once"]["attempts"] == 2
    assert doc["tests"][f"{t}test_genuine_failure"]["attempts"] == 1  # never retried
    assert doc["pool"]["recovery_ms"] and all(x > 0 for x in doc["pool"]["recovery_ms"])
    # three crashes in this shard: the heartbeat now reports the runner degraded
    h = health.assess(tmp_path / "health.jsonl")
    assert h.status == "degraded" and h.crashes == 3


def test_with_rerunfailures_the_rerun_is_the_retry(tmp_path: Path) -> None:
    proc, rs, _ = run_suite(tmp_path, "--reruns", "1", "-k", "crash or genuine")
    out = proc.stdout + proc.stderr
    assert "rerun" in out, out
    cases = {t.name: t for t in rs.tests}
    once = cases["test_crash_once"]
    assert once.outcome is Outcome.PASSED and once.retries == 1 and not once.flaky
    always = cases["test_crash_always"]
    assert always.outcome is Outcome.ERROR and not always.flaky
    assert (always.message or "").startswith("infra: renderer-crash: ")
    genuine = cases["test_genuine_failure"]
    assert genuine.outcome is Outcome.FAILED and not (genuine.message or "").startswith("infra")


def test_pool_settings_from_the_projects_ci_fanout_toml(tmp_path: Path) -> None:
    """``[browser]`` of the ci-fanout.toml where pytest runs is a layer of the cascade."""
    (tmp_path / "project").mkdir()
    missing = tmp_path / "from-toml"
    (tmp_path / "project" / "ci-fanout.toml").write_text(f'[browser]\nexecutable = "{missing}"\n')
    proc, rs, _ = run_suite(tmp_path, "-k", "test_metric")
    (case,) = [t for t in rs.tests if t.name == "test_metric"]
    assert case.outcome is Outcome.SKIPPED and f"no browser at {missing}" in proc.stdout


@pytest.mark.parametrize("ci", [False, True])
def test_missing_browser_skips_locally_and_fails_in_ci(tmp_path: Path, ci: bool) -> None:
    env = {"CI_FANOUT_BROWSER_EXECUTABLE": str(tmp_path / "no-chromium")}
    if ci:
        env["CI"] = "true"
    proc, rs, _ = run_suite(tmp_path, "-k", "test_metric", env=env)
    (case,) = [t for t in rs.tests if t.name == "test_metric"]
    if ci:
        assert proc.returncode == 1
        assert case.outcome is Outcome.ERROR
        assert (case.message or "").startswith("infra: launch: no browser at")
    else:
        assert proc.returncode == 0
        assert case.outcome is Outcome.SKIPPED
        assert "no browser at" in proc.stdout
