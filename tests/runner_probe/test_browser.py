"""Browser probe: missing and hanging browsers are bounded; real Chromium reports SwiftShader."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from ci_app.model.labels import derive_labels
from ci_app.model.profile import Status
from runner_probe import browser as browser_module
from runner_probe.browser import (
    SOFTWARE_FLAGS,
    PassResult,
    is_hardware_adapter,
    probe_browser,
    serve_probe_page,
    summarize_passes,
)
from tests.runner_probe.conftest import ProfileFactory

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_missing_browser_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absent is decided before anything starts: no page server, no browser launch."""

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the probe started something for a missing browser")

    monkeypatch.setattr(browser_module, "serve_probe_page", must_not_run)
    monkeypatch.setattr(browser_module, "_run_passes", must_not_run)
    browser, timings = probe_browser(str(tmp_path / "no-such-chromium"))
    assert browser.status is Status.ABSENT
    assert "no browser" in (browser.error or "")
    assert timings == {}


@pytest.mark.timeout(60)  # a hang guard only: the bound asserted is the timeout passed on
def test_hanging_browser_is_a_bounded_error(tmp_path: Path) -> None:
    """A browser that never opens its DevTools pipe costs the timeout, then status error:
    the launch waits at most the probe's ``timeout_s`` (not Playwright's 30 s default) and
    the browser process is killed."""
    fake = tmp_path / "chromium"
    pid_file = tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    fake.chmod(0o755)
    browser, _ = probe_browser(str(fake), timeout_s=2.0, hardware_pass=False)
    assert browser.status is Status.ERROR
    waited = re.search(r"Timeout ([0-9.]+)ms exceeded", browser.error or "")
    assert waited is not None, browser.error
    assert 0 < float(waited.group(1)) <= 2000.0
    pid = int(pid_file.read_text())
    for _ in range(100):  # the driver reaps it as it exits; allow a moment for that
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid), "the hung browser was left running"


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
    browser, timings = probe_browser(str(CHROMIUM), timeout_s=30)
    print(f"browser probe timings (ms): {timings}")  # measured here, asserted nowhere
    assert browser.status is Status.OK, browser.error
    assert {"browser_software", "browser_hardware"} & timings.keys(), timings
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


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_real_chromium_hanging_page_is_bounded() -> None:
    """A detection script that never resolves (a hung GPU process) ends as an error: the
    probe's deadline fires (a TimeoutError inside the probe, not the test's hang guard)."""
    browser, _ = probe_browser(
        str(CHROMIUM), timeout_s=3.0, detect_js="() => new Promise(() => {})", hardware_pass=False
    )
    assert browser.status is Status.ERROR
    assert (browser.error or "").startswith("TimeoutError"), browser.error
