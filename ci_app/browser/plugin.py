"""pytest plugin ``ci_fanout_browser`` (entry point ``pytest11``): the browser pool in a shard.

Fixtures:

* ``browser_page`` — a Playwright ``Page`` on the pool's loopback origin: a fresh page (new
  document, cleared storage) in a warm context of a warm browser; with
  ``@pytest.mark.browser(fresh_context=True)`` a brand-new context;
* ``browser_workers`` — a :class:`~ci_app.browser.coordinator.Coordinator` over N contexts
  spread over the pool's browsers (``@pytest.mark.browser(contexts=N)``, default 2), to split a
  WebGPU workload (:func:`~ci_app.browser.coordinator.matmul`);
* ``browser_pool`` — the session's :class:`~ci_app.browser.pool.BrowserPool`;
* ``record_metric(name, value, unit="", higher_is_better=False)`` — a figure for the
  results, trends and the comment (any test, with or without a browser).

Before a test gets a page its browser's adapter is checked against the test's ``hw`` labels
(``webgpu``, ``webgpu-sw``, ``webnn-gpu``…) and ``browser(features=…, limits=…)``
(:mod:`ci_app.browser.capability`): run, skip with the reason, or — when the runner's label
promised what is missing — fail as infrastructure (``infra: label-mismatch: …``).

A test whose browser crashed, hung or lost its GPU device is run once more on a fresh browser
and the event recorded as an infrastructure retry; if it happens again the test ends as an
infrastructure error. When pytest-rerunfailures will rerun the test anyway, its rerun is the
retry (the pool has already retired the broken browser) and the record says it was the
infrastructure's. The record (adapters, timings, metrics, infrastructure events) is written
at the end of the session beside ``--junitxml`` as ``<name>.browser.json`` (or to
``--browser-record``); :func:`ci_app.browser.record.merge_record_file` merges it into
``results.json``.

Loading: an installed ci-fanout registers this plugin by its entry point. Where the tests'
interpreter does not have ci-fanout installed, load it with ``-p ci_fanout_browser`` from a
shim module of that name on ``PYTHONPATH`` (docs/browser.md). Playwright is imported only when
a test uses a browser fixture.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol

from ci_app.browser import health
from ci_app.browser.capability import decide, needs_from
from ci_app.browser.config import PoolConfig, config_from_env
from ci_app.browser.errors import InfraError
from ci_app.browser.record import RecordWriter, record_path_for
from ci_app.errors import ConfigError
from ci_app.options.browser import BrowserOptions
from ci_app.options.browser import resolve as resolve_options

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ci_app.browser.coordinator import Coordinator
    from ci_app.browser.pool import BrowserPool, Lease

BROWSER_MARKER = (
    "browser(contexts=2, features=(), limits={}, fresh_context=False, timeout=None): a test "
    "run in ci-fanout's browser pool; features/limits the WebGPU adapter must have, contexts "
    "for browser_workers, a brand-new context instead of a warm one, seconds per page call"
)
HW_MARKER = "hw(*requirements): hardware the test needs, e.g. hw('webgpu') or hw('webgpu-sw')"
BROWSER_FIXTURES = frozenset({"browser_page", "browser_workers"})
RECORD_FIXTURES = BROWSER_FIXTURES | {"record_metric"}
#: browser tests in a session from which a spare warm browser pays for itself
SPARE_FROM = 10
_KNOWN_OPTIONS = frozenset({"contexts", "features", "limits", "fresh_context", "timeout"})


@dataclass(frozen=True, kw_only=True)
class MarkerOptions:
    contexts: int = 2
    features: tuple[str, ...] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)
    fresh_context: bool = False
    timeout_s: float | None = None


def marker_options(item: pytest.Item) -> MarkerOptions:
    """The ``browser`` marker's options (closest marker wins); ``ValueError`` when malformed."""
    marker = item.get_closest_marker("browser")
    if marker is None:
        return MarkerOptions()
    if marker.args:
        raise ValueError("@pytest.mark.browser takes keyword arguments only")
    unknown = set(marker.kwargs) - _KNOWN_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown @pytest.mark.browser option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KNOWN_OPTIONS))}"
        )
    kw = marker.kwargs
    contexts = kw.get("contexts", 2)
    if isinstance(contexts, bool) or not isinstance(contexts, int) or not 1 <= contexts <= 16:
        raise ValueError(f"browser(contexts=…) must be an integer from 1 to 16, not {contexts!r}")
    features = kw.get("features", ())
    features = (features,) if isinstance(features, str) else tuple(str(f) for f in features)
    limits = kw.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise ValueError("browser(limits=…) must be a mapping of limit name to minimum")
    timeout = kw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValueError(f"browser(timeout=…) must be positive seconds, not {timeout!r}")
    return MarkerOptions(
        contexts=contexts,
        features=features,
        limits=dict(limits),
        fresh_context=bool(kw.get("fresh_context", False)),
        timeout_s=None if timeout is None else float(timeout),
    )


def hw_labels(item: pytest.Item) -> list[str]:
    return [str(a) for m in item.iter_markers("hw") for a in m.args]


def uses_browser(item: pytest.Item) -> bool:
    return bool(BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())))


def _records(item: pytest.Item) -> bool:
    return bool(RECORD_FIXTURES & set(getattr(item, "fixturenames", ())))


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str
    detail: str

    @property
    def retryable(self) -> bool:
        return InfraError(self.kind, self.detail).retryable


class BrowserSession:
    """Per pytest session: settings, the pool (started on first need), leases, the record."""

    def __init__(self, config: pytest.Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self._options: BrowserOptions | None = None
        self._settings: PoolConfig | None = None
        self._pool: BrowserPool | None = None
        self.record = RecordWriter(None)  # its path is an option: resolved when it is written
        self.leases: dict[str, list[Lease]] = {}
        self.events: dict[str, _Event] = {}  # this attempt's infrastructure event, per test
        self.browser_items = 0
        self.cold_start_s = 0.0  # starting the pool, not yet taken out of a test's duration

    @property
    def options(self) -> BrowserOptions:
        """The pool's options: ``[browser]`` of the ``ci-fanout.toml`` where pytest runs, the
        environment, ``--browser-record`` (resolved on first need: a session without browser
        tests never fails on them)."""
        if self._options is None:
            self._options = resolve_options(
                self.env,
                project_dir=self.config.invocation_params.dir,
                flags={"record": self.config.getoption("browser_record", None)},
            )
        return self._options

    def _record_path(self) -> Path | None:
        if self.options.record:
            return Path(self.options.record)
        junit = self.config.getoption("xmlpath", None)
        return record_path_for(junit) if junit else None

    @property
    def settings(self) -> PoolConfig:
        if self._settings is None:
            self._settings = config_from_env(self.env, options=self.options)
        return self._settings

    def pool(self) -> BrowserPool:
        from ci_app.browser.pool import BrowserPool

        if self._pool is None:
            t0 = time.perf_counter()
            pool = BrowserPool(self.settings)
            pool.start()
            self._pool = pool
            if self.browser_items >= SPARE_FROM and self.settings.size >= 2:
                pool.prewarm(2)
            self.cold_start_s += time.perf_counter() - t0
        return self._pool

    @property
    def pool_started(self) -> BrowserPool | None:
        return self._pool

    def lease(self, item: pytest.Item, count: int, *, spread: bool) -> list[Lease]:
        """``count`` pages for ``item`` after the capability check (skip / infra error)."""
        try:
            opts = marker_options(item)
            needs = needs_from(hw_labels(item), features=opts.features, limits=opts.limits)
        except ValueError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
        pool = self.pool()
        leases: list[Lease] = []
        try:
            for _ in range(count):
                leases.append(pool.lease(fresh_context=opts.fresh_context, spread=spread))
                self.leases.setdefault(item.nodeid, []).append(leases[-1])
        except BaseException:
            self.release(item)
            raise
        caps = leases[0].caps
        if caps is not None:
            self.record.set_adapter(item.nodeid, caps.to_dict())
        decision = decide(needs, caps, self.settings.promised)
        if decision.verdict == "skip":
            self.release(item)
            pytest.skip(decision.reason)
        if decision.verdict == "infra":
            self.release(item)
            raise InfraError("label-mismatch", decision.reason)
        self.record.timing(item.nodeid, "context_ms", sum(le.context_ms for le in leases))
        launched = sum(le.launch_ms for le in leases)
        if launched:
            self.record.timing(item.nodeid, "launch_ms", launched)
        return leases

    def release(self, item: pytest.Item) -> None:
        pool = self._pool
        for lease in self.leases.pop(item.nodeid, []):
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.release(lease)

    def timeout_for(self, item: pytest.Item) -> float:
        try:
            t = marker_options(item).timeout_s
        except ValueError:
            t = None
        return t or self.settings.timeout_s

    def on_failure(self, item: pytest.Item, when: str, exc: BaseException) -> None:
        """Tell an infrastructure fault from the test's own failure and record it."""
        event: _Event | None = None
        leases = self.leases.get(item.nodeid, [])
        if when == "call" and leases and self._pool is not None:
            found = self._pool.diagnose(leases, exc)
            if found is not None:
                event = _Event(found.kind, found.detail)
        if event is None and isinstance(exc, InfraError):
            event = _Event(exc.kind, exc.detail)
            if exc.kind in health.CRASH_KINDS and self.settings.health_path is not None:
                health.record_event(self.settings.health_path, exc.kind, exc.detail)
        if event is not None:
            self.events[item.nodeid] = event
            self.record.infra(item.nodeid, event.kind, event.detail)

    def finish(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self.record.pool = pool.describe()
            pool.close()
        if self.record.tests or self.record.pool:
            try:
                self.record.path = self._record_path()
                self.record.flush()
            except (OSError, ConfigError) as exc:
                tr = self.config.pluginmanager.get_plugin("terminalreporter")
                if tr is not None:
                    tr.write_line(f"ci-fanout: cannot write the browser record: {exc}")


_SESSION = pytest.StashKey[BrowserSession]()


def _session(config: pytest.Config) -> BrowserSession:
    return config.stash[_SESSION]


# -- hooks --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("ci-fanout-browser", "ci-fanout browser pool")
    g.addoption(
        "--browser-record",
        metavar="F",
        help="write the per-test record (adapters, timings, metrics, infrastructure retries) to "
        "F (default: beside --junitxml as <name>.browser.json)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", BROWSER_MARKER)
    config.addinivalue_line("markers", HW_MARKER)
    config.stash[_SESSION] = BrowserSession(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        session.finish()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _session(config).browser_items = sum(1 for i in items if uses_browser(i))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _records(item):
        session = _session(item.config)
        session.record.start_attempt(item.nodeid)
        session.events.pop(item.nodeid, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not _records(item):
        return report
    session = _session(item.config)
    if call.when == "setup":
        # the pool's cold start is the shard's cost, recorded as launch_ms: keep it out of the
        # test's duration (history, sharding estimates, duration regressions)
        launched = sum(le.launch_ms for le in session.leases.get(item.nodeid, ())) / 1000
        launched += session.cold_start_s
        session.cold_start_s = 0.0
        report.duration = max(0.0, report.duration - launched)
    if call.excinfo is not None and getattr(report, "failed", False):
        session.on_failure(item, call.when, call.excinfo.value)
    return report


def _rerunfailures_reruns(item: pytest.Item) -> bool:
    if not item.config.pluginmanager.hasplugin("rerunfailures"):
        return False
    try:
        from pytest_rerunfailures import get_reruns_count  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        return bool(get_reruns_count(item))
    except Exception:
        return False


def _forget_attempt(item: pytest.Item) -> None:
    """What pytest keeps of an attempt that must not leak into the retry."""
    if getattr(item, "_instance", None) is not None:  # a test class instance
        del item._instance  # type: ignore[attr-defined]
        item._obj = None  # type: ignore[attr-defined]
    stack = getattr(item.session, "_setupstate", None)
    if stack is not None and item in getattr(stack, "stack", {}):
        del stack.stack[item]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a browser test; once more on a fresh browser when the infrastructure failed it."""
    if not uses_browser(item) or _rerunfailures_reruns(item):
        return None
    session = _session(item.config)
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    first = session.events.get(item.nodeid)
    retried = False
    if first is not None and first.retryable and any(r.failed for r in reports):
        _forget_attempt(item)
        retried = True
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    final = session.events.get(item.nodeid)
    if final is not None:
        note = " (again on the retry on a fresh browser)" if retried else ""
        message = str(InfraError(final.kind, final.detail)) + note
        for r in reports:
            if r.failed:
                r.longrepr = f"{message}\n\n{r.longreprtext}".rstrip()
    for r in reports:
        ihook.pytest_runtest_logreport(report=r)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_pool(request: pytest.FixtureRequest) -> BrowserPool:
    """The session's pool; skips (fails as infrastructure in CI) when no browser can start."""
    from ci_app.browser.pool import BrowserUnavailableError

    session = _session(request.config)
    try:
        return session.pool()
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    except BrowserUnavailableError as exc:
        if session.settings.ci:
            raise InfraError("launch", str(exc)) from None
        pytest.skip(str(exc))


@pytest.fixture
def browser_page(request: pytest.FixtureRequest, browser_pool: BrowserPool) -> Iterator[Page]:
    """A fresh page on the pool's loopback origin (a secure context: ``navigator.gpu``)."""
    session = _session(request.config)
    item = request.node
    try:
        (lease,) = session.lease(item, 1, spread=False)
        yield lease.page
    finally:
        session.release(item)


@pytest.fixture
def browser_workers(
    request: pytest.FixtureRequest, browser_pool: BrowserPool
) -> Iterator[Coordinator]:
    """N contexts (``@pytest.mark.browser(contexts=N)``, default 2), spread over the pool's
    browsers, behind a coordinator that splits compute work over them."""
    from ci_app.browser.coordinator import Coordinator

    session = _session(request.config)
    item = request.node
    try:
        n = marker_options(item).contexts
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    try:
        leases = session.lease(item, n, spread=True)

        def compiled(ms: float) -> None:
            session.record.timing(item.nodeid, "compile_ms", ms, keep="max")

        yield Coordinator(leases, timeout_s=session.timeout_for(item), on_compile=compiled)
    finally:
        session.release(item)


@pytest.fixture
def record_metric(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_metric("gflops", 12.5, unit="GFLOP/s", higher_is_better=True)``: a figure for
    results.json, the trends and the comment. A bad name or value raises ``ValueError``."""
    session = _session(request.config)
    test_id = request.node.nodeid

    def record(name: str, value: float, *, unit: str = "", higher_is_better: bool = False) -> None:
        session.record.metric(test_id, name, value, unit=unit, higher=higher_is_better)

    return record


__all__ = [
    "BROWSER_MARKER",
    "BrowserSession",
    "MarkerOptions",
    "browser_page",
    "browser_pool",
    "browser_workers",
    "hw_labels",
    "marker_options",
    "record_metric",
    "uses_browser",
]
