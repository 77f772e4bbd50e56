"""The pool against Debian's Chromium: warm contexts, fresh pages, recovery, sharded work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ci_app.browser import health
from ci_app.browser.config import PoolConfig
from ci_app.browser.coordinator import Buffer, ComputeJob, Coordinator, matmul, split_rows
from ci_app.browser.errors import BrowserHungError, InfraError
from ci_app.browser.pool import (
    BrowserPool,
    BrowserUnavailableError,
    PageScriptError,
    bounded_evaluate,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def config(tmp: Path, **kw: object) -> PoolConfig:
    base = PoolConfig(
        size=2,
        mode="software",
        timeout_s=20,
        health_timeout_s=2,
        health_path=tmp / "health.jsonl",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserPool]:
    with BrowserPool(config(tmp_path_factory.mktemp("pool"))) as p:
        yield p


def test_a_fresh_page_in_a_warm_context(pool: BrowserPool) -> None:
    first = pool.lease()
    page = first.page
    assert page.url == pool.url and pool.url.startswith("http://127.0.0.1:")
    info = bounded_evaluate(
        page,
        """async () => {
          const a = await navigator.gpu.requestAdapter();
          localStorage.setItem('k', 'v'); sessionStorage.setItem('s', 'v');
          document.cookie = 'c=1; path=/'; window.leftover = 1;
          return {secure: isSecureContext, vendor: a.info.vendor, cookie: document.cookie};
        }""",
        timeout_s=10,
    )
    assert info == {"secure": True, "vendor": "google", "cookie": "c=1"}
    caps = first.caps
    assert caps is not None and caps.adapter_class == "google-swiftshader-fallback"
    assert caps.browser_version and caps.browser_version.split(".")[0].isdigit()
    assert caps.limits["maxComputeInvocationsPerWorkgroup"] >= 256
    pool.release(first)

    second = pool.lease()
    assert second.browser is first.browser and second.slot is first.slot  # warm context
    assert second.page is not page and page.is_closed()  # but a new page
    assert second.context_ms < 5000
    state = second.page.evaluate(
        "() => [localStorage.length, sessionStorage.length, document.cookie, "
        "typeof window.leftover]"
    )
    assert state == [0, 0, "", "undefined"]
    pool.release(second)


def test_a_test_that_leaves_the_origin_gets_a_new_context(pool: BrowserPool) -> None:
    lease = pool.lease()
    slot = lease.slot
    lease.page.goto("about:blank")
    pool.release(lease)
    again = pool.lease()
    assert again.slot is not slot
    pool.release(again)
    fresh = pool.lease(fresh_context=True)
    assert fresh.slot is not again.slot and fresh.slot.served == 1
    pool.release(fresh)


def test_script_errors_and_genuine_failures_are_not_infrastructure(pool: BrowserPool) -> None:
    lease = pool.lease()
    with pytest.raises(PageScriptError, match="boom"):
        bounded_evaluate(lease.page, "() => { throw new Error('boom'); }", timeout_s=5)
    assert pool.diagnose([lease], AssertionError("2 != 3")) is None
    assert lease.browser.alive
    pool.release(lease)


def test_a_killed_renderer_is_diagnosed_and_the_next_lease_recovers(pool: BrowserPool) -> None:
    lease = pool.lease()
    pids = pool.kill_renderer(lease.page)
    assert pids
    with pytest.raises(Exception, match=r"(?i)crash") as exc:
        lease.page.evaluate("() => 1")
    event = pool.diagnose([lease], exc.value)
    assert event is not None and event.kind == "renderer-crash"
    assert event.message == "infra: renderer-crash: the page's renderer process crashed"
    assert not lease.browser.alive  # retired: the retry gets a fresh browser
    pool.release(lease)
    before = len(pool.recovery_ms)
    fresh = pool.lease()
    assert fresh.browser is not lease.browser
    assert fresh.page.evaluate("() => 1 + 1") == 2
    assert len(pool.recovery_ms) == before + 1 and pool.recovery_ms[-1] > 0
    assert pool.config.health_path is not None
    assert [e["kind"] for e in health.read_events(pool.config.health_path)][-1] == (
        "renderer-crash"
    )
    pool.release(fresh)


def test_a_killed_gpu_process_is_a_lost_device(pool: BrowserPool) -> None:
    lease = pool.lease()
    assert bounded_evaluate(
        lease.page,
        "async () => { const a = await navigator.gpu.requestAdapter(); "
        "window.dev = await a.requestDevice(); return true; }",
        timeout_s=10,
    )
    assert pool.kill_gpu_process(lease.page)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not lease.page.evaluate(
        "() => window.__ciFanout.deviceLost"
    ):
        time.sleep(0.1)
    event = pool.diagnose([lease], PageScriptError("AbortError: mapAsync failed"))
    assert event is not None and event.kind == "gpu-lost"
    assert "WebGPU device lost" in event.detail
    pool.release(lease)


def test_a_hung_page_is_bounded_and_diagnosed(pool: BrowserPool) -> None:
    lease = pool.lease()
    lease.page.evaluate("() => { setTimeout(() => { for (;;) {} }, 0); }")
    time.sleep(0.3)
    with pytest.raises(BrowserHungError, match="did not answer within 1 s"):
        bounded_evaluate(lease.page, "() => 1", timeout_s=1)
    event = pool.diagnose([lease], InfraError("hung", "x"))
    assert event is not None and event.kind == "hung"
    assert not lease.browser.alive
    pool.release(lease)


def test_work_split_over_two_contexts_matches_numpy(pool: BrowserPool) -> None:
    pool.prewarm(2)
    leases = [pool.lease(spread=True), pool.lease(spread=True)]
    assert leases[0].browser is not leases[1].browser  # two warm browsers: one each
    compiled: list[float] = []
    co = Coordinator(leases, timeout_s=30, on_compile=compiled.append)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((37, 19), dtype=np.float32)
    b = rng.standard_normal((19, 23), dtype=np.float32)
    result = matmul(co, a, b)
    assert result.blocks == [(0, 19), (19, 37)]
    np.testing.assert_allclose(result.c, a @ b, rtol=1e-4, atol=1e-4)
    assert len(compiled) == 2 and result.gflops(37, 19, 23) > 0
    assert co.map("(x) => x * 2", [21]) == [42]  # fewer pieces than contexts
    with pytest.raises(ValueError, match="3 pieces of work for 2 contexts"):
        co.map("(x) => x", [1, 2, 3])
    with pytest.raises(PageScriptError, match=r"(?i)wgsl|shader|error"):
        co.run(
            [
                ComputeJob(
                    code="this is not WGSL",
                    buffers=[Buffer(size=16, kind="storage", output=True)],
                    workgroups=(1, 1, 1),
                )
            ]
        )
    for lease in leases:
        pool.release(lease)
    with pytest.raises(ValueError, match="cannot multiply"):
        matmul(co, a, a)


def test_split_rows() -> None:
    assert split_rows(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_rows(2, 5) == [(0, 1), (1, 2)]
    assert split_rows(0, 2) == []
    for rows in range(40):
        for parts in range(1, 9):
            blocks = split_rows(rows, parts)
            assert sum(b - a for a, b in blocks) == rows
            sizes = [b - a for a, b in blocks]
            assert not sizes or max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        split_rows(3, 0)


def test_no_hardware_adapter_falls_back_to_the_software_flags(tmp_path: Path) -> None:
    """On a machine with a GPU device node the hardware flag set is tried first; here it
    gives no adapter, so the pool settles on the software (SwiftShader) set."""
    from runner_probe.browser import SOFTWARE_FLAGS

    cfg = config(tmp_path, mode="auto", size=1)
    with BrowserPool(cfg, hardware_nodes=lambda: True) as p:
        lease = p.lease()
        assert lease.caps is not None and lease.caps.adapter_class.endswith("-fallback")
        assert p.describe()["flags"] == list(SOFTWARE_FLAGS)
        assert p._launches == 2 and len(p.alive()) == 1  # one tried, one kept
        assert lease.launch_ms == pytest.approx(sum(p.launch_ms))  # both: the cold start
        assert p.rss_bytes() > 10_000_000
        p.release(lease)


def test_missing_and_broken_browsers(tmp_path: Path) -> None:
    with pytest.raises(BrowserUnavailableError, match="no browser at"):
        BrowserPool(config(tmp_path, executable=str(tmp_path / "nope"))).start()
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with BrowserPool(config(tmp_path, executable=str(fake), launch_timeout_s=10)) as p:
        with pytest.raises(InfraError, match=r"^infra: launch: ") as exc:
            p.lease()
        assert exc.value.retryable


def test_a_browser_that_cannot_open_a_page_is_infrastructure(pool: BrowserPool) -> None:
    pool.prewarm(2)
    lease = pool.lease()
    browser = lease.browser
    pool.release(lease)
    for slot in list(browser.slots):  # no warm context left: the next lease opens one
        pool._drop_slot(slot)
    browser.kill()  # not yet noticed: no Playwright call has run since
    others = [b for b in pool.alive() if b is not browser]
    with pytest.raises(InfraError, match=r"^infra: (launch|browser-exit): could not open"):
        pool.lease(avoid=others)
    assert not browser.alive
    again = pool.lease()
    assert again.browser is not browser and again.page.evaluate("() => 3") == 3
    pool.release(again)
