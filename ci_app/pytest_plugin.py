"""pytest plugin ``ci_fanout`` (entry point ``pytest11``): inventory, shard selection, queue mode.

Inert unless one of its options is given; it always registers the ``hw`` marker.

* ``pytest --collect-only -q --fanout-inventory inv.json`` writes the inventory
  (``ci-fanout/inventory/v1``): every test id with its ``@pytest.mark.hw(...)`` requirements,
  its ``xdist_group`` name and its ``pytest.mark.dependency(depends=[...])`` links.
* ``pytest --fanout-matrix m.json --fanout-shard ID`` runs only that shard's tests, in the
  planned order (dependencies first).
* ``pytest --fanout-queue URL [--fanout-matrix m.json --fanout-shard ID]`` pulls batches from
  the run's queue inside this one session (no per-batch start-up), reports each batch's
  results, and heartbeats its lease. If the queue is unreachable it runs the static slice of
  ``--fanout-shard`` instead and says so.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_app.commands.shard import (
    Heartbeat,
    QueueClient,
    QueueUnavailableError,
    default_labels,
    default_runner_name,
    static_slice,
)
from ci_app.credentials import take_token
from ci_app.errors import CiFanoutError
from ci_app.matrix.inventory import Inventory, TestSpec

HW_MARKER = (
    "hw(*requirements): hardware the test needs, e.g. hw('gpu-nvidia', 'gpu-mem>=24g'); "
    "ci-fanout routes it to runners with matching labels"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("ci-fanout", "ci-fanout sharding")
    g.addoption("--fanout-inventory", metavar="F", help="write the test inventory JSON to F")
    g.addoption("--fanout-matrix", metavar="F", help="matrix JSON from `ci-app plan`")
    g.addoption("--fanout-shard", metavar="ID", help="run this shard of --fanout-matrix")
    g.addoption("--fanout-queue", metavar="URL", help="pull test batches from this run's queue")
    g.addoption("--fanout-runner", metavar="NAME", help="runner name reported to the queue")
    g.addoption("--fanout-heartbeat", type=float, default=60.0, metavar="S", help="lease heartbeat")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", HW_MARKER)
    opt = config.option
    if opt.fanout_inventory:
        config.pluginmanager.register(_InventoryWriter(Path(opt.fanout_inventory)), "ci-fanout-inv")
    if opt.fanout_queue:
        config.pluginmanager.register(_QueueRunner(config), "ci-fanout-queue")
    elif opt.fanout_matrix or opt.fanout_shard:
        if not (opt.fanout_matrix and opt.fanout_shard):
            raise pytest.UsageError("--fanout-matrix and --fanout-shard go together")
        config.pluginmanager.register(_StaticSelector(config), "ci-fanout-static")


# ---------------------------------------------------------------------------------------------
# inventory


def _spec(item: pytest.Item) -> TestSpec:
    reqs: list[str] = []
    for m in item.iter_markers("hw"):
        reqs.extend(str(a) for a in m.args)
    group = None
    for m in item.iter_markers("xdist_group"):
        group = str(m.args[0]) if m.args else str(m.kwargs.get("name", "default"))
        break
    deps: list[str] = []
    for m in item.iter_markers("dependency"):
        scope = m.kwargs.get("scope", "module")
        for d in m.kwargs.get("depends") or ():
            d = str(d)
            if scope == "module" and "::" not in d:
                d = f"{item.nodeid.split('::', 1)[0]}::{d}"
            elif scope == "class" and "::" in item.nodeid:
                d = f"{item.nodeid.rsplit('::', 1)[0]}::{d}"
            deps.append(d)
    return TestSpec(item.nodeid, tuple(dict.fromkeys(reqs)), group, tuple(deps))


class _InventoryWriter:
    def __init__(self, path: Path) -> None:
        self.path = path

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        inv = Inventory(tuple(_spec(i) for i in items))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(inv.to_dict(), indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# static selection


def _select(
    config: pytest.Config, items: list[pytest.Item], wanted: Sequence[str]
) -> list[pytest.Item]:
    """Keep ``wanted`` (in that order), deselect the rest; returns the kept items."""
    by_id = {i.nodeid: i for i in items}
    keep = [by_id[t] for t in wanted if t in by_id]
    missing = len(wanted) - len(keep)
    kept_ids = {i.nodeid for i in keep}
    dropped = [i for i in items if i.nodeid not in kept_ids]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    if missing:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"ci-fanout: {missing} planned test(s) were not collected here")
    return keep


class _StaticSelector:
    def __init__(self, config: pytest.Config) -> None:
        try:
            _pool, self.tests = static_slice(
                config.option.fanout_matrix, config.option.fanout_shard
            )
        except CiFanoutError as exc:
            raise pytest.UsageError(str(exc)) from exc

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        _select(config, items, self.tests)


# ---------------------------------------------------------------------------------------------
# queue mode


@dataclass(slots=True)
class _Batch:
    lease_id: str | None  # None: the static fallback slice
    items: list[pytest.Item]


class _QueueRunner:
    """Replaces the run loop: lease a batch, run it, report it, repeat."""

    def __init__(self, config: pytest.Config) -> None:
        opt = config.option
        self.config = config
        try:
            self.pool, self.fallback = static_slice(opt.fanout_matrix, opt.fanout_shard)
        except CiFanoutError as exc:
            raise pytest.UsageError(str(exc)) from exc
        env = os.environ
        self.client = QueueClient(
            opt.fanout_queue,
            runner=opt.fanout_runner or default_runner_name(env),
            labels=default_labels(env),
            pool=self.pool,
            token=take_token(env),
        )
        self.heartbeat_s = float(opt.fanout_heartbeat)
        self._reports: dict[str, dict[str, Any]] = {}
        self._ran: set[str] = set()
        self._fell_back = False
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"ci-fanout: {text}")

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        with self._lock:
            r = self._reports.setdefault(report.nodeid, {"outcome": "passed", "duration_s": 0.0})
            r["duration_s"] += report.duration
            if report.failed:
                r["outcome"] = "error" if report.when != "call" else "failed"
            elif report.skipped and r["outcome"] == "passed":
                r["outcome"] = "skipped"

    def _next(self, by_id: dict[str, pytest.Item]) -> _Batch | float | None:
        """The next batch; a float = seconds to wait before asking again; None = done.

        On an unreachable queue: the rest of the static slice, once, then done.
        """
        if self._fell_back:
            return None
        try:
            got = self.client.lease()
        except QueueUnavailableError as exc:
            self._fell_back = True
            rest = [t for t in self.fallback if t not in self._ran]
            if self.fallback:
                self._say(f"{exc}; running the static slice instead ({len(rest)} test(s))")
            else:
                self._say(f"{exc}; no --fanout-shard slice to fall back to, running nothing")
            return _Batch(None, [by_id[t] for t in rest if t in by_id])
        if got.get("done") is True:
            return None
        if "lease_id" not in got:
            return float(got.get("retry_after", 5.0))
        tests = [str(t) for t in got.get("tests") or ()]
        self._ran.update(tests)
        missing = [t for t in tests if t not in by_id]
        if missing:
            self._say(f"{len(missing)} leased test(s) not collected in this session")
        return _Batch(str(got["lease_id"]), [by_id[t] for t in tests if t in by_id])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        if session.config.option.collectonly:
            return True
        by_id = {i.nodeid: i for i in session.items}
        with Heartbeat(self.client, self.heartbeat_s) as hb:
            current = self._next(by_id)
            while current is not None:
                if isinstance(current, float):
                    time.sleep(current)  # our own leases are all complete here: no deadlock
                    current = self._next(by_id)
                    continue
                hb.track(current.lease_id)
                prefetched: _Batch | float | None = None
                fetched = False
                items = current.items
                for i, item in enumerate(items):
                    nextitem: pytest.Item | None = None
                    if i + 1 < len(items):
                        nextitem = items[i + 1]
                    else:
                        # Ask for the next batch before the last test so that module and
                        # session fixtures are torn down only when really no longer needed.
                        prefetched, fetched = self._next(by_id), True
                        if isinstance(prefetched, _Batch) and prefetched.items:
                            nextitem = prefetched.items[0]
                    item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                    if session.shouldfail:
                        raise session.Failed(session.shouldfail)
                    if session.shouldstop:
                        raise session.Interrupted(session.shouldstop)
                if current.lease_id is not None:
                    self._complete(current.lease_id, items)
                hb.track(None)
                current = prefetched if fetched else self._next(by_id)
        return True

    def _complete(self, lease_id: str, items: list[pytest.Item]) -> None:
        with self._lock:
            results = [
                {"id": i.nodeid, **self._reports.get(i.nodeid, {"outcome": "missing"})}
                for i in items
            ]
        try:
            self.client.complete(lease_id, results)
        except CiFanoutError as exc:
            self._say(f"could not report lease {lease_id}: {exc}")
