"""A per-shard pool of warm Chromium processes and contexts (Playwright, system Chromium).

Shape, and why:

* **Browsers** are launched lazily, at most ``config.size`` alive (sized from the runner's
  effective CPUs and memory), with the flags the probe found to give a real adapter: the
  hardware set first when the machine has a GPU device node, and the software (SwiftShader)
  set when that yields no hardware adapter (docs/probe.md). Each browser's adapter, features,
  limits and WebNN devices are detected once, on its first page.
* **Contexts** are kept warm. Starting a renderer process is most of a fresh browser's cost
  (measured here: ~0.17 s for a new context's first page against ~0.04 s for a navigation), so
  a test gets a *fresh page* in a warm context: a new ``Page`` object opened from the previous
  one (same renderer process, new document, new JS realm, new WebGPU device), after the
  origin's storage, cookies and permissions were cleared. A context is replaced by a new one
  after ``recycle_after`` tests, after a crash, when a test navigated away from the pool's
  origin or closed its page, and whenever a test asks for ``fresh_context``.
* Pages are served from a loopback origin (:mod:`ci_app.browser.origin`): a secure context.
* **Recovery**: :meth:`BrowserPool.diagnose` tells an infrastructure fault (renderer crash,
  browser exit, lost GPU device, hang) from the test's own failure, retires the browser (its
  process tree is killed) and logs the crash for the heartbeat; the next lease comes from
  another warm browser or a fresh one, and the time until it is ready is the recovery time.

Everything runs on the thread that started the pool (Playwright's sync API).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_app.browser import health
from ci_app.browser.capability import Capabilities, capabilities_from_detect
from ci_app.browser.config import PoolConfig
from ci_app.browser.errors import BrowserHungError, InfraError
from ci_app.browser.origin import Origin

if TYPE_CHECKING:
    import psutil
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

log = logging.getLogger(__name__)

#: limits worth reading (tests may ask for them with ``browser(limits={...})``)
LIMIT_KEYS = (
    "maxBufferSize",
    "maxStorageBufferBindingSize",
    "maxStorageBuffersPerShaderStage",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupsPerDimension",
    "maxTextureDimension2D",
    "maxBindGroups",
)
_CRASH_WORDS = ("target crashed", "page crashed", "renderer crashed")


class _Driver:
    """Playwright's driver, shared by every pool of this thread: the sync API allows only one
    running instance per thread (a second ``start()`` fails), and one driver serves them all."""

    _instance: Playwright | None = None
    _users = 0

    @classmethod
    def acquire(cls) -> Playwright:
        if cls._instance is None:
            from playwright.sync_api import sync_playwright

            cls._instance = sync_playwright().start()
        cls._users += 1
        return cls._instance

    @classmethod
    def release(cls) -> None:
        cls._users -= 1
        if cls._users <= 0 and cls._instance is not None:
            instance, cls._instance, cls._users = cls._instance, None, 0
            with contextlib.suppress(Exception):
                instance.stop()


def playwright_driver() -> Playwright:
    """The shared driver (released with :func:`release_driver`), for code that launches
    browsers beside a pool (the benchmark's browser-per-test anchor)."""
    return _Driver.acquire()


def release_driver() -> None:
    _Driver.release()


class BrowserUnavailableError(Exception):
    """No browser can be started here: the executable or Playwright is missing."""


class PageScriptError(Exception):
    """The page's script threw: the test's problem, not the infrastructure's."""


@dataclass(frozen=True, slots=True)
class InfraEvent:
    kind: str
    detail: str

    @property
    def message(self) -> str:
        return str(InfraError(self.kind, self.detail))


_JOBS = "(window.__ciJobs = window.__ciJobs || {})"
_START = (
    "const f = (0, eval)('(' + src + ')'); jobs[key] = null; "
    "Promise.resolve().then(() => f(arg)).then("
    "(v) => { jobs[key] = {ok: true, v: v === undefined ? null : v}; }, "
    "(e) => { jobs[key] = {ok: false, e: String((e && e.stack) || e)}; });"
)
_TAKE = "const r = jobs[key]; if (r) delete jobs[key]; return r;"


def _bounded(page: Page, expression: str, arg: Any, timeout_s: float) -> Any:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(
            expression, arg=arg, timeout=max(1.0, timeout_s * 1000), polling=5
        )
    except PlaywrightTimeout:
        raise BrowserHungError(f"the page did not answer within {timeout_s:g} s") from None
    value = handle.json_value()
    handle.dispose()
    return value


def _outcome(result: Any) -> Any:
    if not isinstance(result, dict) or not result.get("ok"):
        error = result.get("e") if isinstance(result, dict) else result
        raise PageScriptError(str(error)[:4000])
    return result.get("v")


def start_job(page: Page, function: str, arg: Any = None, *, timeout_s: float) -> str:
    """Start the (async) JS ``function`` with ``arg`` in ``page`` without waiting for it;
    returns the key for :func:`wait_job`. Starting is bounded too (a busy page hangs)."""
    key = uuid.uuid4().hex[:16]
    expression = f"([src, arg, key]) => {{ const jobs = {_JOBS}; {_START} return true; }}"
    _bounded(page, expression, [function, arg, key], timeout_s)
    return key


def wait_job(page: Page, key: str, *, timeout_s: float) -> Any:
    """The value of a job :func:`start_job` started; raises :class:`BrowserHungError` after
    ``timeout_s`` and :class:`PageScriptError` when the script threw."""
    expression = f"(key) => {{ const jobs = {_JOBS}; {_TAKE} }}"
    return _outcome(_bounded(page, expression, key, timeout_s))


def bounded_evaluate(page: Page, function: str, arg: Any = None, *, timeout_s: float) -> Any:
    """Run the (async) JS ``function`` with ``arg`` in ``page``; give up after ``timeout_s``.

    A plain ``page.evaluate`` waits for ever on a hung GPU or a busy page. Here one
    ``wait_for_function`` (which Playwright bounds) starts the job on its first poll and
    returns its outcome once settled. Raises :class:`BrowserHungError` on timeout,
    :class:`PageScriptError` if the script threw, and Playwright's errors (a crashed target)
    as they are.
    """
    key = uuid.uuid4().hex[:16]
    expression = (
        f"([src, arg, key]) => {{ const jobs = {_JOBS}; if (!(key in jobs)) {{ {_START} }} "
        f"{_TAKE} }}"
    )
    return _outcome(_bounded(page, expression, [function, arg, key], timeout_s))


@dataclass(eq=False)
class PooledBrowser:
    """One launched browser, its warm contexts and what it can do."""

    index: int
    browser: Browser
    tag: str  # a switch on its command line that finds its process tree
    flags: tuple[str, ...]
    launch_ms: float = 0.0
    caps: Capabilities | None = None
    dead: str | None = None  # why it is out of service
    slots: list[Slot] = field(default_factory=list)
    served: int = 0
    _pid: int | None = None

    @property
    def alive(self) -> bool:
        return self.dead is None

    def process(self) -> psutil.Process | None:
        """The browser's top process (found by :attr:`tag` among our descendants)."""
        import psutil

        if self._pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self._pid)
                if proc.is_running():
                    return proc
        tagged: dict[int, psutil.Process] = {}
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if self.tag in proc.cmdline():
                    tagged[proc.pid] = proc
        for proc in tagged.values():  # the top one: its parent carries no tag
            with contextlib.suppress(psutil.Error):
                if proc.ppid() not in tagged:
                    self._pid = proc.pid
                    return proc
        return None

    def child_pids(self, kind: str) -> list[int]:
        """Pids of this browser's ``--type=<kind>`` processes (``renderer``, ``gpu-process``)."""
        import psutil

        top = self.process()
        if top is None:
            return []
        out = []
        with contextlib.suppress(psutil.Error):
            for proc in top.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if f"--type={kind}" in proc.cmdline():
                        out.append(proc.pid)
        return out

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        import psutil

        top = self.process()
        if top is None:
            return 0
        total = 0
        with contextlib.suppress(psutil.Error):
            for proc in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += int(proc.memory_info().rss)
        return total

    def kill(self) -> None:
        """SIGKILL the whole tree (a hung browser does not answer ``close()``)."""
        import psutil

        top = self.process()
        if top is None:
            return
        procs: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            procs = [*top.children(recursive=True), top]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)


@dataclass(eq=False)
class Slot:
    """A warm context of one browser and its current page."""

    owner: PooledBrowser
    context: BrowserContext
    page: Page
    served: int = 0
    busy: bool = False


@dataclass(eq=False)
class Lease:
    """A page handed to one test; ``crashed`` is set by the page's ``crash`` event."""

    slot: Slot
    page: Page
    context_ms: float  # fresh page or new context, without launching
    launch_ms: float = 0.0  # launching a browser for this lease (a cold start), else 0
    crashed: bool = False
    released: bool = False

    @property
    def browser(self) -> PooledBrowser:
        return self.slot.owner

    @property
    def caps(self) -> Capabilities | None:
        return self.slot.owner.caps


class BrowserPool:
    """Warm browsers and contexts for one pytest process (see the module docstring)."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        clock: Callable[[], float] = time.perf_counter,
        hardware_nodes: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._hardware_nodes = hardware_nodes
        self._pw: Playwright | None = None
        self.origin = Origin()
        self.browsers: list[PooledBrowser] = []
        self._mode_flags: tuple[str, ...] | None = None
        self._id = uuid.uuid4().hex[:10]
        self._launches = 0
        self._leases: dict[int, Lease] = {}
        self._recovery_from: float | None = None
        self._closing = False
        self._warm_target = 0
        #: timings (ms) of every launch and recovery; events as diagnosed
        self.launch_ms: list[float] = []
        self.recovery_ms: list[float] = []
        self.events: list[InfraEvent] = []

    # -- life cycle ------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._pw is not None

    @property
    def url(self) -> str:
        return self.origin.url

    def start(self) -> BrowserPool:
        """Start Playwright's driver and the origin; no browser yet. Raises
        :class:`BrowserUnavailableError` when the executable or Playwright is missing."""
        if self._pw is not None:
            return self
        exe = Path(self.config.executable)
        if not exe.is_file():
            raise BrowserUnavailableError(
                f"no browser at {exe}: install Debian's chromium (apt-get install chromium) "
                "or set CI_FANOUT_BROWSER_EXECUTABLE"
            )
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            raise BrowserUnavailableError(
                "playwright is not installed: pip install 'ci-fanout[browser]'"
            ) from None
        self.origin.start()
        self._pw = _Driver.acquire()
        return self

    def close(self) -> None:
        self._closing = True
        for pb in list(self.browsers):
            self._retire(pb, "closed", kill=False)
        self.browsers.clear()
        if self._pw is not None:
            _Driver.release()
            self._pw = None
        self.origin.stop()
        self._closing = False

    def __enter__(self) -> BrowserPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> list[PooledBrowser]:
        return [b for b in self.browsers if b.alive]

    def prewarm(self, browsers: int) -> None:
        """Keep ``browsers`` (at most ``size``) launched: a spare makes recovery a context
        switch instead of a launch. Launches the missing ones now."""
        self._warm_target = max(0, min(browsers, self.config.size))
        while len(self.alive()) < self._warm_target:
            self._launch()

    # -- launching ---------------------------------------------------------------------------
    def _flag_sets(self) -> list[tuple[str, tuple[str, ...]]]:
        from runner_probe.browser import HARDWARE_FLAGS, SOFTWARE_FLAGS, gpu_device_nodes

        mode = self.config.mode
        if mode == "hardware":
            return [("hardware", HARDWARE_FLAGS)]
        if mode == "software":
            return [("software", SOFTWARE_FLAGS)]
        nodes = self._hardware_nodes() if self._hardware_nodes else gpu_device_nodes()
        sets = [("software", SOFTWARE_FLAGS)]
        if nodes:
            sets.insert(0, ("hardware", HARDWARE_FLAGS))
        return sets

    def _launch(self) -> PooledBrowser:
        """Launch one more browser; the first launch settles the flag set (hardware if it
        gives a hardware adapter, else software)."""
        if self._mode_flags is not None:
            return self._launch_with(self._mode_flags)
        sets = self._flag_sets()
        for i, (name, flags) in enumerate(sets):
            pb = self._launch_with(flags)
            if name == "hardware" and i + 1 < len(sets) and not (pb.caps and pb.caps.hardware):
                log.info("no hardware WebGPU adapter with the hardware flag set; using software")
                self._retire(pb, "no hardware adapter", kill=False)
                self.browsers.remove(pb)
                continue
            self._mode_flags = flags
            return pb
        raise AssertionError("unreachable: the last flag set always returns")

    def _launch_with(self, flags: tuple[str, ...]) -> PooledBrowser:
        from runner_probe.browser import COMMON_FLAGS, DETECT_JS

        if self._pw is None:
            self.start()
        assert self._pw is not None
        self._launches += 1
        tag = f"--ci-fanout-pool={self._id}.{self._launches}"
        args = [*COMMON_FLAGS, *flags, *self.config.extra_flags, tag]
        t0 = self.clock()
        try:
            browser = self._pw.chromium.launch(
                executable_path=self.config.executable,
                headless=True,
                args=args,
                timeout=self.config.launch_timeout_s * 1000,
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InfraError("launch", f"{self.config.executable}: {first}") from exc
        pb = PooledBrowser(index=self._launches, browser=browser, tag=tag, flags=tuple(flags))
        browser.on("disconnected", lambda _b: self._on_disconnect(pb))
        self.browsers.append(pb)
        try:
            slot = self._new_slot(pb)
            raw = bounded_evaluate(
                slot.page, DETECT_JS, list(LIMIT_KEYS), timeout_s=self.config.timeout_s
            )
        except Exception as exc:
            self._retire(pb, "launch failed")
            self.browsers.remove(pb)
            if isinstance(exc, InfraError):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InfraError("launch", f"first page of the new browser: {first}") from exc
        pb.caps = capabilities_from_detect(raw if isinstance(raw, dict) else {}, browser.version)
        pb.launch_ms = (self.clock() - t0) * 1000
        self.launch_ms.append(pb.launch_ms)
        return pb

    def _on_disconnect(self, pb: PooledBrowser) -> None:
        if pb.dead is None and not self._closing:
            pb.dead = "browser-exit"

    # -- contexts and pages -------------------------------------------------------------------
    def _new_slot(self, pb: PooledBrowser) -> Slot:
        context = pb.browser.new_context()
        context.set_default_timeout(self.config.timeout_s * 1000)
        page = context.new_page()
        page.goto(self.url, wait_until="load")
        slot = Slot(owner=pb, context=context, page=page)
        pb.slots.append(slot)
        return slot

    def _drop_slot(self, slot: Slot) -> None:
        if slot in slot.owner.slots:
            slot.owner.slots.remove(slot)
        if slot.owner.alive:
            with contextlib.suppress(Exception):
                slot.context.close()

    def _fresh_page(self, slot: Slot) -> None:
        """A new page (new document) in the slot's warm context, opened from the old one so
        that it reuses the renderer process; storage, cookies and permissions cleared.

        The web storage is cleared before the open (a new tab copies its opener's
        ``sessionStorage``); the asynchronous stores (IndexedDB, caches, service workers)
        while the new page loads, which no test can see before it has the page."""
        old = slot.page
        slot.context.clear_cookies()
        slot.context.clear_permissions()
        with slot.context.expect_page(timeout=self.config.timeout_s * 1000) as info:
            bounded_evaluate(
                old,
                "async (u) => { try { sessionStorage.clear(); localStorage.clear(); } "
                "catch (e) { /* opaque origin */ } window.open(u, '_blank'); "
                "await window.__ciFanout.resetStorage(); }",
                self.url,
                timeout_s=self.config.health_timeout_s,
            )
        page = info.value
        page.wait_for_load_state("load")
        old.close()
        slot.page = page

    def _pick(self, *, spread: bool, avoid: Iterable[PooledBrowser]) -> PooledBrowser:
        avoided = set(map(id, avoid))
        alive = [b for b in self.alive() if id(b) not in avoided]

        def busy(b: PooledBrowser) -> int:
            return sum(s.busy for s in b.slots)

        room = len(self.alive()) < self.config.size
        if spread:  # another warm browser if one is idle; never a launch just to spread
            idle = [b for b in alive if busy(b) == 0]
            if idle:
                return idle[0]
            if not alive:
                return self._launch()
            return min(alive, key=busy)
        ready = [b for b in alive if any(not s.busy for s in b.slots)]
        if ready:
            return min(ready, key=busy)
        if room or not alive:
            return self._launch()
        return min(alive, key=busy)

    def lease(
        self,
        *,
        fresh_context: bool = False,
        spread: bool = False,
        avoid: Sequence[PooledBrowser] = (),
    ) -> Lease:
        """A page for one test. ``spread``: prefer a warm browser none of whose contexts is in
        use (sharded workloads; several contexts share a browser rather than wait for a
        launch); ``fresh_context``: a brand-new context, not a warm one."""
        t0 = self.clock()
        launches = len(self.launch_ms)
        pb = self._pick(spread=spread, avoid=avoid)
        launch_ms = sum(self.launch_ms[launches:])
        slot = next((s for s in pb.slots if not s.busy), None)
        if slot is not None and (fresh_context or slot.served >= self.config.recycle_after):
            self._drop_slot(slot)
            slot = None
        if slot is not None and slot.served > 0:
            try:
                self._fresh_page(slot)
            except Exception as exc:  # the warm context is unusable: replace it
                log.info("warm context of browser %d not reusable (%s)", pb.index, exc)
                self._drop_slot(slot)
                slot = None
        if slot is None:
            try:
                slot = self._new_slot(pb)
            except Exception as exc:  # a browser that cannot open a page is broken
                kind = "launch" if _connected(pb) else "browser-exit"
                self._retire(pb, kind)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InfraError(kind, f"could not open a page: {first}") from exc
        slot.busy = True
        slot.served += 1
        pb.served += 1
        total_ms = (self.clock() - t0) * 1000
        lease = Lease(
            slot=slot,
            page=slot.page,
            context_ms=max(0.0, total_ms - launch_ms),
            launch_ms=launch_ms,
        )
        slot.page.on("crash", lambda _p: setattr(lease, "crashed", True))
        self._leases[id(slot.page)] = lease
        if self._recovery_from is not None:
            self.recovery_ms.append((self.clock() - self._recovery_from) * 1000)
            self._recovery_from = None
        return lease

    def release(self, lease: Lease) -> None:
        """Give a page back; its context stays warm unless something happened to it."""
        if lease.released:
            return
        lease.released = True
        self._leases.pop(id(lease.page), None)
        slot = lease.slot
        slot.busy = False
        if slot not in slot.owner.slots:
            return
        keep = slot.owner.alive and not lease.crashed and slot.page is lease.page
        if keep:
            try:
                keep = not lease.page.is_closed() and lease.page.url.startswith(self.url)
            except Exception:
                keep = False
        if not keep:
            self._drop_slot(slot)
        if len(self.alive()) < self._warm_target:  # replace a retired spare, outside any test
            try:
                self._launch()
            except InfraError as exc:
                log.warning("could not replace a retired browser: %s", exc)

    def lease_of(self, page: Page) -> Lease | None:
        return self._leases.get(id(page))

    # -- faults ----------------------------------------------------------------------------------
    def _retire(self, pb: PooledBrowser, why: str, *, kill: bool = True) -> None:
        if pb.dead is None:
            pb.dead = why
        if kill:
            pb.kill()
        for slot in list(pb.slots):
            with contextlib.suppress(Exception):
                slot.context.close()
        pb.slots.clear()
        with contextlib.suppress(Exception):
            pb.browser.close()

    def _responsive(self, page: Page) -> bool:
        try:
            page.wait_for_function("() => true", timeout=self.config.health_timeout_s * 1000)
        except Exception:
            return False
        return True

    def diagnose(self, leases: Iterable[Lease], exc: BaseException | None) -> InfraEvent | None:
        """Was this failure the infrastructure's? If so, the browser is retired (killed), the
        crash logged for the heartbeat, and the event returned; None when the test failed on
        its own (its browser stays warm)."""
        texts = _exception_texts(exc)
        for lease in leases:
            pb = lease.browser
            event: InfraEvent | None = None
            if pb.dead == "browser-exit" or not _connected(pb):
                event = InfraEvent("browser-exit", "the browser process went away during the test")
            elif lease.crashed or any(w in t for t in texts for w in _CRASH_WORDS):
                event = InfraEvent("renderer-crash", "the page's renderer process crashed")
            elif _has(exc, BrowserHungError) or not self._responsive(lease.page):
                event = InfraEvent(
                    "hung", f"the page did not answer within {self.config.health_timeout_s:g} s"
                )
            else:
                lost = _device_lost(lease.page)
                if lost is not None:
                    event = InfraEvent("gpu-lost", f"WebGPU device lost ({lost})")
            if event is not None:
                self.events.append(event)
                if self.config.health_path is not None:
                    health.record_event(self.config.health_path, event.kind, event.detail)
                self._retire(pb, event.kind)
                self._recovery_from = self.clock()
                return event
        return None

    def kill_renderer(self, page: Page) -> list[int]:
        """SIGKILL the renderer processes of the browser serving ``page`` (chaos for tests and
        the benchmark; a real crash looks the same). Returns the pids killed."""
        return self._kill_children(page, "renderer")

    def kill_gpu_process(self, page: Page) -> list[int]:
        """SIGKILL the GPU process of the browser serving ``page``."""
        return self._kill_children(page, "gpu-process")

    def _kill_children(self, page: Page, kind: str) -> list[int]:
        import psutil

        lease = self.lease_of(page)
        if lease is None:
            raise ValueError("this page is not leased from the pool")
        pids = lease.browser.child_pids(kind)
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).send_signal(signal.SIGKILL)
        return pids

    # -- figures -----------------------------------------------------------------------------
    def rss_bytes(self) -> int:
        return sum(b.rss_bytes() for b in self.alive())

    def describe(self) -> dict[str, Any]:
        """Pool figures for the record: size, launches, mean launch and recovery times."""
        first = next((b for b in self.browsers if b.caps is not None), None)
        return {
            "size": self.config.size,
            "launched": self._launches,
            "launch_ms": [round(x, 1) for x in self.launch_ms],
            "recovery_ms": [round(x, 1) for x in self.recovery_ms],
            "flags": list(self._mode_flags or ()),
            "capabilities": None if first is None or first.caps is None else first.caps.to_dict(),
        }


def _connected(pb: PooledBrowser) -> bool:
    try:
        return bool(pb.browser.is_connected())
    except Exception:
        return False


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and len(out) < 10 and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _exception_texts(exc: BaseException | None) -> list[str]:
    return [str(e).lower()[:2000] for e in _chain(exc)]


def _has(exc: BaseException | None, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in _chain(exc))


def _device_lost(page: Page) -> str | None:
    try:
        lost = page.evaluate("() => window.__ciFanout ? window.__ciFanout.deviceLost : null")
    except Exception:
        return None
    if isinstance(lost, dict):
        return f"{lost.get('reason')}: {str(lost.get('message') or '')[:200]}".strip(": ")
    return None


__all__ = [
    "LIMIT_KEYS",
    "BrowserPool",
    "BrowserUnavailableError",
    "InfraEvent",
    "Lease",
    "PageScriptError",
    "PooledBrowser",
    "Slot",
    "bounded_evaluate",
    "playwright_driver",
    "release_driver",
    "start_job",
    "wait_job",
]
