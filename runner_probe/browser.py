"""Browser probe: WebGPU adapter and WebNN contexts, through Playwright driving a system Chromium.

Measured facts this follows (see docs/probe.md):

- the page must be a secure context: ``about:blank``, ``set_content()`` and ``data:`` URLs
  expose no ``navigator.gpu``; a page served from ``http://127.0.0.1:<ephemeral>`` does;
- ``navigator.gpu`` existing proves nothing: headless Chromium without flags returns a null
  adapter, and with ``--enable-unsafe-webgpu`` alone it returns the SwiftShader CPU adapter
  (``isFallbackAdapter: true``) — that earns ``webgpu-sw``, never ``webgpu``;
- two passes: the "real GPU" flag set (Vulkan through ANGLE, SwiftShader forbidden) first; only
  a non-fallback adapter whose type is not ``CPU`` counts as hardware. Otherwise a software
  pass reports the fallback adapter;
- WebNN counts only after ``navigator.ml.createContext({deviceType})`` succeeds;
- Playwright's downloaded browsers are never used (``executable_path`` only), and every step is
  time-limited: a missing browser is ``absent``, one that hangs is ``error``, never a failed
  probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import importlib.util
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_app.model.profile import Browser, Status, WebGpu, WebGpuAdapter, WebNn

DEFAULT_EXECUTABLE = "/usr/bin/chromium"
DEFAULT_TIMEOUT_S = 15.0

# Closed-network hygiene; Playwright already passes most of these, repeating them is harmless.
COMMON_FLAGS: tuple[str, ...] = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
HARDWARE_FLAGS: tuple[str, ...] = (
    "--enable-unsafe-webgpu",
    "--enable-webgpu-developer-features",
    "--use-angle=vulkan",
    "--enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan,WebMachineLearningNeuralNetwork",
    "--disable-vulkan-surface",
    "--ignore-gpu-blocklist",
    "--enable-gpu",
)
SOFTWARE_FLAGS: tuple[str, ...] = (
    "--enable-unsafe-webgpu",
    "--enable-webgpu-developer-features",
    "--enable-features=Vulkan,WebMachineLearningNeuralNetwork",
)

# Limits worth keeping (the full list is long and says little about routing).
_LIMIT_KEYS = (
    "maxBufferSize",
    "maxStorageBufferBindingSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxTextureDimension2D",
    "maxBindGroups",
)

DETECT_JS = """async (limitKeys) => {
  const o = {secure: isSecureContext, webgpu: {api: 'gpu' in navigator, adapter: null,
             features: [], limits: {}}, webnn: {api: 'ml' in navigator}};
  if (o.webgpu.api) {
    try {
      const a = await navigator.gpu.requestAdapter({powerPreference: 'high-performance'});
      if (a) {
        let i = a.info;
        if (!i && a.requestAdapterInfo) i = await a.requestAdapterInfo();
        i = i || {};
        const fb = ('isFallbackAdapter' in i) ? i.isFallbackAdapter : !!a.isFallbackAdapter;
        o.webgpu.adapter = {vendor: i.vendor || null, architecture: i.architecture || null,
          device: i.device || null, description: i.description || null, type: i.type || null,
          backend: i.backend || null, fallback: !!fb};
        o.webgpu.features = [...a.features].sort();
        for (const k of limitKeys) if (a.limits && typeof a.limits[k] === 'number')
          o.webgpu.limits[k] = a.limits[k];
      }
    } catch (e) { o.webgpu.error = e.name + ': ' + e.message; }
  }
  if (o.webnn.api) for (const d of ['cpu', 'gpu', 'npu']) {
    try { await navigator.ml.createContext({deviceType: d}); o.webnn[d] = true; }
    catch (e) { o.webnn[d] = false; o.webnn.error = e.name + ': ' + e.message; }
  }
  return o;
}"""

_PAGE = b"<!doctype html><meta charset=utf-8><title>runner-probe</title><p>runner-probe</p>"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve_probe_page() -> Iterator[str]:
    """Serve the probe page on ``http://127.0.0.1:<ephemeral>/`` (a secure context)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="probe-page", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@dataclass(frozen=True)
class PassResult:
    name: str
    flags: tuple[str, ...]
    raw: Mapping[str, Any]
    duration_ms: float


def _adapter(raw: Mapping[str, Any] | None) -> WebGpuAdapter | None:
    if not raw:
        return None

    def s(key: str) -> str | None:
        value = raw.get(key)
        return str(value) if value not in (None, "") else None

    return WebGpuAdapter(
        vendor=s("vendor"),
        architecture=s("architecture"),
        device=s("device"),
        description=s("description"),
        type=s("type"),
        backend=s("backend"),
        fallback=bool(raw.get("fallback", False)),
    )


def is_hardware_adapter(adapter: WebGpuAdapter | None) -> bool:
    """A hardware adapter: present, not a fallback, and not of type ``CPU``."""
    return (
        adapter is not None
        and not adapter.fallback
        and (adapter.type or "").strip().lower() != "cpu"
    )


def _webgpu(raw: Mapping[str, Any]) -> WebGpu:
    gpu = raw.get("webgpu") or {}
    limits = {
        str(k): int(v) for k, v in (gpu.get("limits") or {}).items() if isinstance(v, int | float)
    }
    return WebGpu(
        api=bool(gpu.get("api")),
        adapter=_adapter(gpu.get("adapter")),
        features=tuple(str(f) for f in gpu.get("features") or ()),
        limits=limits,
    )


def _webnn(passes: Sequence[PassResult]) -> WebNn:
    api = False
    devices: dict[str, bool | None] = {"cpu": None, "gpu": None, "npu": None}
    error: str | None = None
    for p in passes:
        nn = p.raw.get("webnn") or {}
        api = api or bool(nn.get("api"))
        for d, seen in devices.items():
            if d in nn:
                devices[d] = bool(seen) or bool(nn[d])
        if nn.get("error") and error is None:
            error = str(nn["error"])
    return WebNn(api=api, cpu=devices["cpu"], gpu=devices["gpu"], npu=devices["npu"], error=error)


def summarize_passes(
    passes: Sequence[PassResult], *, version: str | None, executable: str
) -> Browser:
    """Fold the passes into the profile's browser section (hardware pass wins if it found one)."""
    chosen = passes[-1]
    for p in passes:
        if is_hardware_adapter(_webgpu(p.raw).adapter):
            chosen = p
            break
    return Browser(
        status=Status.OK,
        engine="chromium",
        version=version,
        executable=executable,
        flags=chosen.flags,
        webgpu=_webgpu(chosen.raw),
        webnn=_webnn(passes),
    )


def gpu_device_nodes(dev: Path = Path("/dev")) -> bool:
    """True if a GPU device node exists (``/dev/dri/renderD*``, ``/dev/nvidia0``…).

    Without one Chromium cannot get a hardware Vulkan adapter, so the hardware pass is skipped.
    """
    try:
        return any((dev / "dri").glob("renderD*")) or any(dev.glob("nvidia[0-9]*"))
    except OSError:
        return True  # unknown: try the hardware pass


async def _run_passes(
    executable: str,
    url: str,
    timeout_s: float,
    detect_js: str,
    passes: Sequence[tuple[str, tuple[str, ...]]],
) -> tuple[list[PassResult], str | None]:
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    def left() -> float:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"browser probe exceeded {timeout_s:g} s")
        return remaining

    results: list[PassResult] = []
    version: str | None = None
    async with async_playwright() as pw:
        for name, flags in passes:
            args = [*COMMON_FLAGS, *flags]
            t0 = time.perf_counter()
            browser = await pw.chromium.launch(
                executable_path=executable, headless=True, args=args, timeout=left() * 1000
            )
            try:
                version = browser.version
                page = await browser.new_page()
                await page.goto(url, timeout=left() * 1000)
                raw = await asyncio.wait_for(page.evaluate(detect_js, list(_LIMIT_KEYS)), left())
            finally:
                # a close that hangs is left to the driver's exit, which kills the browser
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), 5)
            results.append(
                PassResult(name, tuple(flags), raw, round((time.perf_counter() - t0) * 1000, 1))
            )
            if is_hardware_adapter(_webgpu(raw).adapter):
                break
    return results, version


def probe_browser(
    executable: str | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    detect_js: str = DETECT_JS,
    hardware_pass: bool | None = None,
) -> tuple[Browser, dict[str, float]]:
    """Run the browser probe; returns the section and per-pass timings (ms). Never raises.

    ``hardware_pass``: try the real-GPU flag set first (None: only when a GPU device node
    exists, see :func:`gpu_device_nodes`).
    """
    if hardware_pass is None:
        hardware_pass = gpu_device_nodes()
    passes: list[tuple[str, tuple[str, ...]]] = [("software", SOFTWARE_FLAGS)]
    if hardware_pass:
        passes.insert(0, ("hardware", HARDWARE_FLAGS))
    exe = executable or DEFAULT_EXECUTABLE
    resolved = shutil.which(exe) if not Path(exe).is_absolute() else exe
    if not resolved or not Path(resolved).exists():
        return Browser(status=Status.ABSENT, error=f"no browser at {exe}", executable=exe), {}
    if importlib.util.find_spec("playwright") is None:
        return Browser(
            status=Status.ABSENT,
            error="playwright is not installed (pip install 'ci-fanout[browser]')",
            executable=resolved,
        ), {}
    t0 = time.perf_counter()
    try:
        with serve_probe_page() as url:
            results, version = asyncio.run(
                asyncio.wait_for(
                    _run_passes(resolved, url, timeout_s, detect_js, passes), timeout_s + 5
                )
            )
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Browser(
            status=Status.ERROR,
            engine="chromium",
            executable=resolved,
            error=f"{type(exc).__name__}: {message}"[:500],
        ), {"browser": round((time.perf_counter() - t0) * 1000, 1)}
    timings = {f"browser_{r.name}": r.duration_ms for r in results}
    timings["browser"] = round((time.perf_counter() - t0) * 1000, 1)
    if not results:
        return Browser(status=Status.ERROR, error="no pass completed", executable=resolved), timings
    return summarize_passes(results, version=version, executable=resolved), timings
