"""WebGPU tests run in ci-fanout's browser pool (a warm Chromium, SwiftShader on this machine).

``hw("webgpu-sw")``: a software adapter is fine, so the planner routes these tests to runners
labelled ``webgpu-sw`` by the browser probe. Collected only when ``CI_FANOUT_DEMO_BROWSER=1``
(``make demo`` sets it; see conftest.py).
"""

import os
from pathlib import Path

import numpy as np
import pytest

from ci_app.browser.coordinator import matmul

# one shard runs them all: one warm pool instead of a cold start in every shard
pytestmark = [pytest.mark.hw("webgpu-sw"), pytest.mark.xdist_group("webgpu")]

M, K, N = 96, 64, 80


@pytest.mark.browser(contexts=2)
def test_matmul_split_over_two_contexts(browser_workers, record_metric) -> None:  # type: ignore[no-untyped-def]
    """A WGSL matrix multiply, its rows split over 2 browser contexts, checked against numpy."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    runs = [matmul(browser_workers, a, b) for _ in range(3)]
    for result in runs:
        assert [stop - start for start, stop in result.blocks] == [M // 2, M // 2]
        np.testing.assert_allclose(result.c, a @ b, rtol=1e-4, atol=1e-4)
    best = max(r.gflops(M, K, N) for r in runs)
    record_metric("gflops", best, unit="GFLOP/s", higher_is_better=True)


def test_adapter_is_reported(browser_page) -> None:  # type: ignore[no-untyped-def]
    """The page is a secure context with a WebGPU adapter (SwiftShader here)."""
    info = browser_page.evaluate(
        """async () => {
          const a = await navigator.gpu.requestAdapter();
          return {secure: isSecureContext, vendor: a.info.vendor,
                  fallback: a.info.isFallbackAdapter};
        }"""
    )
    assert info["secure"] is True
    assert info["vendor"]


def test_survives_a_killed_renderer(browser_page, browser_pool, commit, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """At the pull request (commit 6) the renderer is killed mid-test on the first attempt:
    the pool re-runs the test on a fresh browser, and the comment reports an infrastructure
    retry, not a flaky test."""
    state = Path(os.environ.get("CI_FANOUT_DEMO_STATE", str(tmp_path_factory.getbasetemp())))
    marker = state / f"renderer-killed-{commit}"
    started = browser_page.evaluate("async () => !!(await navigator.gpu.requestAdapter())")
    assert started
    if commit == 6 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        assert browser_pool.kill_renderer(browser_page), "no renderer process to kill"
    total = browser_page.evaluate("() => [1, 2, 3, 4].reduce((x, y) => x + y, 0)")
    assert total == 10
