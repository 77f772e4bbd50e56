"""Browser probe: missing and hanging browsers are bounded; real Chromium reports SwiftShader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ci_app.model.labels import derive_labels
from ci_app.model.profile import Status
from runner_probe.browser import (
    SOFTWARE_FLAGS,
    PassResult,
    is_hardware_adapter,
    probe_browser,
    serve_probe_page,
    summarize_passes,
)
from tests.probe.conftest import ProfileFactory

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def test_missing_browser_is_absent(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    browser, timings = probe_browser(str(tmp_path / "no-such-chromium"))
    assert browser.status is Status.ABSENT
    assert "no browser" in (browser.error or "")
    assert timings == {}
    assert time.perf_counter() - t0 < 0.5


def test_hanging_browser_is_a_bounded_error(tmp_path: Path) -> None:
    """A browser that never opens its DevTools pipe costs the timeout, then status error."""
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    t0 = time.perf_counter()
    browser, _ = probe_browser(str(fake), timeout_s=2.0, hardware_pass=False)
    elapsed = time.perf_counter() - t0
    assert browser.status is Status.ERROR
    assert "Timeout" in (browser.error or "") or "timeout" in (browser.error or "").lower()
    assert elapsed < 2.0 + 5.0


def test_probe_page_is_served_on_loopback() -> None:
    import urllib.request

    with serve_probe_page() as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert b"runner-probe" in resp.read()


def test_summarize_prefers_hardware_pass_and_merges_webnn() -> None:
    sw = PassResult(
        "software",
        SOFTWARE_FLAGS,
        {
            "webgpu": {
                "api": True,
                "adapter": {"vendor": "google", "type": "CPU", "fallback": True},
            },
            "webnn": {"api": True, "cpu": True, "gpu": False},
        },
        10.0,
    )
    hw = PassResult(
        "hardware",
        ("--enable-gpu",),
        {
            "webgpu": {
                "api": True,
                "adapter": {"vendor": "nvidia", "type": "discrete GPU", "fallback": False},
            },
            "webnn": {"api": True, "cpu": False, "gpu": True, "error": "x"},
        },
        10.0,
    )
    b = summarize_passes([hw, sw], version="1", executable="/x")
    assert b.flags == ("--enable-gpu",)
    assert b.webgpu is not None and is_hardware_adapter(b.webgpu.adapter)
    assert b.webnn is not None and (b.webnn.cpu, b.webnn.gpu, b.webnn.npu) == (True, True, None)
    only_sw = summarize_passes([sw], version="1", executable="/x")
    assert only_sw.webgpu is not None and not is_hardware_adapter(only_sw.webgpu.adapter)


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_real_chromium_reports_swiftshader_fallback(profile_for: ProfileFactory) -> None:
    """As measured in docs/probe.md: SwiftShader fallback adapter, WebNN not supported."""
    t0 = time.perf_counter()
    browser, timings = probe_browser(str(CHROMIUM), timeout_s=30)
    elapsed = time.perf_counter() - t0
    print(f"browser probe: {elapsed:.2f} s, timings {timings}")
    assert browser.status is Status.OK, browser.error
    assert browser.engine == "chromium" and browser.version
    assert browser.webgpu is not None and browser.webgpu.api
    adapter = browser.webgpu.adapter
    if adapter is not None and is_hardware_adapter(adapter):  # pragma: no cover - GPU hosts
        pytest.skip(f"this host has a hardware WebGPU adapter: {adapter}")
    assert adapter is not None, "with --enable-unsafe-webgpu a fallback adapter is expected"
    assert adapter.fallback is True
    assert adapter.architecture == "swiftshader"
    assert browser.webnn is not None and browser.webnn.api
    assert browser.webnn.cpu is False and browser.webnn.gpu is False
    assert "NotSupportedError" in (browser.webnn.error or "")
    labels = set(derive_labels(profile_for(browser=browser)))
    assert "webgpu-sw" in labels
    assert not {"webgpu", "webnn", "webnn-cpu", "webnn-gpu", "webnn-npu"} & labels
    assert elapsed < 15


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_real_chromium_hanging_page_is_bounded() -> None:
    """A detection script that never resolves (a hung GPU process) ends as an error in time."""
    t0 = time.perf_counter()
    browser, _ = probe_browser(
        str(CHROMIUM), timeout_s=3.0, detect_js="() => new Promise(() => {})", hardware_pass=False
    )
    elapsed = time.perf_counter() - t0
    assert browser.status is Status.ERROR
    assert elapsed < 3.0 + 5.0
