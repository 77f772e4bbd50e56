"""The browser pool against a browser per test: 100 small WebGPU tests, side by side in one run.

Anchor: what a browser test does without the pool — launch Debian's Chromium (the flags that
give this machine its WebGPU adapter), open a page on a loopback origin, run the test, close
the browser. Pool: :class:`ci_app.browser.pool.BrowserPool` sized from this machine's
effective CPUs and memory, a fresh page in a warm context per test. Both share one Playwright
driver and run the same WebGPU test (adapter, device, a WGSL compute pass over 1,024 floats,
read back and checked). Printed beside the targets of issue 18:

* wall time and the speed-up (target: >= 5x);
* peak RSS of the browser processes (sampled every 50 ms; RSS counts shared pages once per
  process), and the pool's bound: its size times the largest single-browser tree seen;
* recovery after a killed renderer (SIGKILL mid-test until the next page answers): with a
  spare warm browser, and when a browser has to be launched.

    python bench/browser_pool.py [--tests 100] [--recoveries 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ci_app.browser.config import config_from_env  # noqa: E402
from ci_app.browser.origin import Origin  # noqa: E402
from ci_app.browser.pool import (  # noqa: E402
    BrowserPool,
    bounded_evaluate,
    playwright_driver,
    release_driver,
)
from runner_probe.browser import COMMON_FLAGS, SOFTWARE_FLAGS  # noqa: E402

TEST_JS = """async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const module = device.createShaderModule({code: `
    @group(0) @binding(0) var<storage, read_write> v: array<f32>;
    @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
      if (g.x < arrayLength(&v)) { v[g.x] = v[g.x] * 2.0; }
    }`});
  const pipeline = device.createComputePipeline({layout: 'auto',
    compute: {module, entryPoint: 'main'}});
  const n = 1024;
  const buf = device.createBuffer({size: n * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST});
  device.queue.writeBuffer(buf, 0, new Float32Array(n).fill(1.5));
  const out = device.createBuffer({size: n * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const bind = device.createBindGroup({layout: pipeline.getBindGroupLayout(0),
    entries: [{binding: 0, resource: {buffer: buf}}]});
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline); pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(n / 64); pass.end();
  enc.copyBufferToBuffer(buf, 0, out, 0, n * 4);
  device.queue.submit([enc.finish()]);
  await out.mapAsync(GPUMapMode.READ);
  const r = new Float32Array(out.getMappedRange());
  const ok = r.every((x) => x === 3.0);
  out.unmap(); device.destroy();
  return ok;
}"""


class RssSampler:
    """Peak summed RSS of this process's Chromium descendants, sampled in a thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        total = 0
        for proc in psutil.Process().children(recursive=True):
            try:
                if "chrom" in proc.name().lower():
                    total += int(proc.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass
class Phase:
    wall_s: float
    per_test_s: list[float]
    peak_rss: int


def timed(n: int, one: Callable[[], None], after: Callable[[], None] | None = None) -> Phase:
    """``n`` calls of ``one``; ``after`` (a measurement, not a test) runs between them and its
    time is left out of the wall time."""
    per: list[float] = []
    aside = 0.0
    with RssSampler() as rss:
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            one()
            per.append(time.perf_counter() - t)
            if after is not None:
                t = time.perf_counter()
                after()
                aside += time.perf_counter() - t
        wall = time.perf_counter() - t0 - aside
    return Phase(wall, per, rss.peak)


def fresh_browser_phase(n: int, url: str, executable: str) -> Phase:
    pw = playwright_driver()

    def one() -> None:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=[*COMMON_FLAGS, *SOFTWARE_FLAGS]
        )
        try:
            page = browser.new_page()
            page.goto(url)
            assert bounded_evaluate(page, TEST_JS, timeout_s=30) is True
        finally:
            browser.close()

    try:
        return timed(n, one)
    finally:
        release_driver()


def pool_phase(n: int, pool: BrowserPool) -> tuple[Phase, int]:
    """The tests through the pool; also the largest single-browser tree RSS seen."""
    largest = 0

    def one() -> None:
        lease = pool.lease()
        try:
            assert bounded_evaluate(lease.page, TEST_JS, timeout_s=30) is True
        finally:
            pool.release(lease)

    def measure() -> None:  # a process-tree walk (a few ms): not part of a test
        nonlocal largest
        largest = max([largest, *(b.rss_bytes() for b in pool.alive())])

    return timed(n, one, measure), largest


def recovery(pool: BrowserPool, trials: int, *, spare: bool) -> list[float]:
    """Seconds from SIGKILL of the renderer mid-test until a fresh page answers."""
    out: list[float] = []
    for _ in range(trials):
        if spare:
            pool.prewarm(2)
        lease = pool.lease()
        t0 = time.perf_counter()
        pool.kill_renderer(lease.page)
        try:
            bounded_evaluate(lease.page, TEST_JS, timeout_s=30)
            raise AssertionError("the killed renderer answered")
        except AssertionError:
            raise
        except Exception as exc:
            event = pool.diagnose([lease], exc)
            assert event is not None and event.kind == "renderer-crash", event
        pool.release(lease)
        retry = pool.lease()
        assert bounded_evaluate(retry.page, "() => true", timeout_s=30) is True
        out.append(time.perf_counter() - t0)
        pool.release(retry)
    return out


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=100)
    ap.add_argument("--recoveries", type=int, default=5)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CI_FANOUT_BROWSER_")}
    cfg = dataclasses.replace(config_from_env(env), mode="software", health_path=None)
    origin = Origin()
    url = origin.start()
    try:
        print(f"browser pool benchmark: {args.tests} small WebGPU tests, {os.cpu_count()} CPUs, "
              f"pool size {cfg.size} (from effective CPUs and memory)", flush=True)  # fmt: skip
        fresh = fresh_browser_phase(args.tests, url, cfg.executable)
        with BrowserPool(cfg) as pool:
            pooled, largest = pool_phase(args.tests, pool)
            version = pool.browsers[0].caps.browser_version if pool.browsers[0].caps else "?"
            adapter = pool.browsers[0].caps.describe() if pool.browsers[0].caps else "?"
            with_spare = recovery(pool, args.recoveries, spare=True) if cfg.size >= 2 else []
        with BrowserPool(dataclasses.replace(cfg, size=1)) as single:
            relaunch = recovery(single, args.recoveries, spare=False)
    finally:
        origin.stop()

    speedup = fresh.wall_s / pooled.wall_s
    bound = cfg.size * largest
    med = statistics.median
    print(f"Chromium {version}, adapter {adapter}\n")
    print(f"{'':34}{'browser per test':>18}{'pool':>14}{'ratio':>10}   target")
    print(f"{'wall time, ' + str(args.tests) + ' tests':34}{fresh.wall_s:>17.1f}s"
          f"{pooled.wall_s:>13.1f}s{speedup:>9.1f}x   >= 5x: "
          f"{'met' if speedup >= 5 else 'NOT met'}")  # fmt: skip
    print(f"{'per test, median':34}{med(fresh.per_test_s) * 1000:>16.0f}ms"
          f"{med(pooled.per_test_s) * 1000:>12.0f}ms"
          f"{med(fresh.per_test_s) / med(pooled.per_test_s):>9.1f}x")  # fmt: skip
    print(f"{'peak RSS, browser processes':34}{mb(fresh.peak_rss):>18}{mb(pooled.peak_rss):>14}"
          f"{pooled.peak_rss / max(1, fresh.peak_rss):>9.2f}x   <= pool size x one browser "
          f"({cfg.size} x {mb(largest)} = {mb(bound)}): "
          f"{'met' if pooled.peak_rss <= bound * 1.1 else 'NOT met'}")  # fmt: skip
    first = med(fresh.per_test_s)
    if with_spare:
        print(f"{'recovery, killed renderer (spare)':34}{'':>18}"
              f"{med(with_spare) * 1000:>12.0f}ms   median of {len(with_spare)}; a fresh "
              f"browser per test pays {first * 1000:.0f} ms every test")  # fmt: skip
    print(f"{'recovery, killed renderer (launch)':34}{'':>18}{med(relaunch) * 1000:>12.0f}ms"
          f"   median of {len(relaunch)}: detect, retire, launch, first page")  # fmt: skip
    return 0 if speedup >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
