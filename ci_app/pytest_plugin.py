"""pytest plugin ``ci_fanout`` (entry point ``pytest11``): inventory, shard selection, queue mode.

Inert unless one of its options is given; it always registers the ``hw`` marker.

* ``pytest --collect-only -q --fanout-inventory inv.json`` writes the inventory
  (``ci-fanout/inventory/v1``): every test id with its ``@pytest.mark.hw(...)`` requirements,
  its ``xdist_group`` name and its ``pytest.mark.dependency(depends=[...])`` links.
* ``pytest --fanout-matrix m.json --fanout-shard ID`` runs only that shard's tests, in the
  planned order (dependencies first).
* ``pytest --fanout-queue URL [--fanout-matrix m.json --fanout-shard ID]`` pulls batches from
  the run's queue inside this one session (no per-batch start-up). A background thread sends
  each finished test's result with the next heartbeat (every ``--fanout-heartbeat`` seconds,
  for every lease this runner holds); the next batch is leased together with the results of
  the current one, before its last test, and the batch's final completion is sent without
  waiting. If the queue is unreachable it runs the rest of the static slice of
  ``--fanout-shard`` instead and says so.
* ``--fanout-journal F`` appends each test's result to ``F`` (JSON lines) the moment it is
  known, so that a process killed mid-run leaves the results of every test it finished
  (``ci-app ci shard`` merges them into ``results.json``).
* With ``--fanout-matrix``, a collected test the plan did not list anywhere (it was collected
  differently at plan time) is not deselected: exactly one shard runs it
  (:func:`~ci_app.shard_runner.unplanned_home`), and says so.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from ci_app.client import AppRejectedError, AppUnavailableError, QueueClient
from ci_app.credentials import take_token
from ci_app.errors import CiFanoutError
from ci_app.matrix.inventory import Inventory, TestSpec
from ci_app.matrix.planner import Matrix
from ci_app.model.labels import RequirementError, compile_requirements
from ci_app.shard_runner import (
    HEARTBEAT_S,
    Reporter,
    default_labels,
    default_runner_name,
    planned_anywhere,
    read_matrix,
    unplanned_home,
)

#: a result's message: the first lines of the failure, not its whole log
MESSAGE_LIMIT = 2000

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
    g.addoption(
        "--fanout-heartbeat",
        type=float,
        default=HEARTBEAT_S,
        metavar="S",
        help="seconds between heartbeats of the held leases",
    )
    g.addoption("--fanout-journal", metavar="F", help="append each test's result to F (JSON lines)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", HW_MARKER)
    opt = config.option
    if opt.fanout_inventory:
        config.pluginmanager.register(_InventoryWriter(Path(opt.fanout_inventory)), "ci-fanout-inv")
    outcomes: _Outcomes | None = None
    if opt.fanout_journal or opt.fanout_queue:
        outcomes = _Outcomes(Path(opt.fanout_journal) if opt.fanout_journal else None)
        config.pluginmanager.register(outcomes, "ci-fanout-outcomes")
    if opt.fanout_queue:
        assert outcomes is not None
        config.pluginmanager.register(_QueueRunner(config, outcomes), "ci-fanout-queue")
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
# each test's result, as soon as it is known


def _message(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
        return str(longrepr[2])[:MESSAGE_LIMIT]
    crash = getattr(longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or report.longreprtext
    return str(text)[:MESSAGE_LIMIT] if text else None


class _Outcomes:
    """Folds each test's reports (setup, call, teardown, reruns) into one result and hands it
    on when the test is finished: a line in the journal, and the queue runner's callback."""

    def __init__(self, journal: Path | None) -> None:
        self._partial: dict[str, dict[str, Any]] = {}
        self.on_finish: Callable[[dict[str, Any]], None] | None = None
        self._journal: IO[str] | None = None
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._journal = journal.open("a", encoding="utf-8")

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        r = self._partial.setdefault(
            report.nodeid,
            {"id": report.nodeid, "outcome": "passed", "duration_s": 0.0, "retries": 0},
        )
        r["duration_s"] += report.duration
        outcome: str = report.outcome
        if outcome == "rerun":  # pytest-rerunfailures: a failed attempt, run again
            r["retries"] += report.when in {"call", "setup"}
            r["outcome"], r["message"] = "passed", None
            return
        if report.failed:
            r["outcome"] = "error" if report.when != "call" else "failed"
            r["message"] = _message(report)
        elif report.skipped and r["outcome"] == "passed":
            r["outcome"] = "skipped"
            r["message"] = _message(report)

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        r = self._partial.pop(nodeid, None)
        if r is None:
            return
        r["duration_s"] = round(r["duration_s"], 6)
        r["flaky"] = bool(r["retries"]) and r["outcome"] == "passed"
        if location and location[0]:
            r["file"] = location[0]
            if location[1] is not None:
                r["line"] = location[1] + 1  # pytest's lines are 0-based
        if self._journal is not None:
            self._journal.write(json.dumps(r, ensure_ascii=False) + "\n")
            self._journal.flush()  # in the kernel: survives a SIGKILL of this process
        if self.on_finish is not None:
            self.on_finish(r)

    @pytest.hookimpl
    def pytest_unconfigure(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


# ---------------------------------------------------------------------------------------------
# static selection, and tests the plan did not list


def _needs(item: pytest.Item) -> frozenset[str]:
    reqs = [str(a) for m in item.iter_markers("hw") for a in m.args]
    try:
        return compile_requirements(reqs)
    except RequirementError:
        return frozenset({"?unknown-requirement"})  # no shard has it: not run here


def unplanned_here(
    matrix: Matrix, shard_id: str, items: Sequence[pytest.Item]
) -> list[pytest.Item]:
    """Collected tests the plan did not list anywhere that this shard runs."""
    planned = planned_anywhere(matrix)
    return [
        i
        for i in items
        if i.nodeid not in planned and unplanned_home(matrix, i.nodeid, _needs(i)) == shard_id
    ]


def _say_unplanned(config: pytest.Config, n: int, shard_id: str) -> None:
    if not n:
        return
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(
            f"ci-fanout: {n} collected test(s) were not in the plan (collected differently at "
            f"plan time?); shard {shard_id} runs them"
        )


def _select(
    config: pytest.Config,
    items: list[pytest.Item],
    wanted: Sequence[str],
    extra: Sequence[pytest.Item] = (),
) -> list[pytest.Item]:
    """Keep ``wanted`` (in that order) then ``extra``, deselect the rest; returns the kept."""
    by_id = {i.nodeid: i for i in items}
    keep = [by_id[t] for t in wanted if t in by_id]
    missing = len(wanted) - len(keep)
    kept_ids = {i.nodeid for i in keep}
    keep.extend(i for i in extra if i.nodeid not in kept_ids)
    kept_ids.update(i.nodeid for i in extra)
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
        self.shard_id = str(config.option.fanout_shard)
        try:
            self.matrix = read_matrix(config.option.fanout_matrix)
            self.tests = list(self.matrix.shard(self.shard_id).tests)
        except CiFanoutError as exc:
            raise pytest.UsageError(str(exc)) from exc

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        extra = unplanned_here(self.matrix, self.shard_id, items)
        _select(config, items, self.tests, extra)
        _say_unplanned(config, len(extra), self.shard_id)


# ---------------------------------------------------------------------------------------------
# queue mode


#: the first wait of a runner that finds nothing pending but other runners' leases open
_FIRST_WAIT_S = 0.05
#: ask for the next batch this much estimated work before the current one ends (the round
#: trip to the queue then overlaps the last tests instead of adding to the run)
_LEAD_S = 0.25


@dataclass(slots=True)
class _Batch:
    lease_id: str | None  # None: the static fallback slice, or unplanned tests
    items: list[pytest.Item]
    estimate_s: float = 0.0

    def prefetch_at(self) -> int:
        """Index of the test before which to ask for the next batch: about ``_LEAD_S`` of
        estimated work before the end, so that the answer is there when the last test ends
        (never earlier: a batch held is a batch no other runner can take)."""
        n = len(self.items)
        if n <= 1 or self.estimate_s <= 0:
            return max(0, n - 1)
        per_test = self.estimate_s / n
        # estimates miss pytest's own per-test cost: never more than a tenth of the batch early
        lead = min(int(_LEAD_S / per_test), max(1, n // 10))
        return max(0, n - 1 - lead)


class _Prefetch:
    """The next lease, asked for on a thread while the current batch's last tests run."""

    def __init__(self, ask: Callable[[], _Batch | float | None]) -> None:
        self._ask = ask
        self._answer: _Batch | float | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ci-fanout-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._answer = self._ask()
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc

    def result(self) -> _Batch | float | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._answer


class _QueueRunner:
    """Replaces the run loop: lease a batch, run it, report it, repeat."""

    def __init__(self, config: pytest.Config, outcomes: _Outcomes) -> None:
        opt = config.option
        self.config = config
        self.shard_id: str | None = opt.fanout_shard
        self.matrix: Matrix | None = None
        self.pool: str | None = None
        self.fallback: list[str] = []
        if opt.fanout_matrix and opt.fanout_shard:
            try:
                self.matrix = read_matrix(opt.fanout_matrix)
                shard = self.matrix.shard(opt.fanout_shard)
            except CiFanoutError as exc:
                raise pytest.UsageError(str(exc)) from exc
            self.pool, self.fallback = shard.pool, list(shard.tests)
        elif opt.fanout_matrix or opt.fanout_shard:
            raise pytest.UsageError("--fanout-matrix and --fanout-shard go together")
        env = os.environ
        self.client = QueueClient(
            opt.fanout_queue,
            runner=opt.fanout_runner or default_runner_name(env),
            labels=default_labels(env),
            pool=self.pool,
            shard=self.shard_id,
            token=take_token(env),
        )
        self.reporter = Reporter(self.client, float(opt.fanout_heartbeat))
        self._lease_of: dict[str, str] = {}  # test id -> the lease it runs under
        self._ran: set[str] = set()
        self._fell_back = False
        self._backoff = _FIRST_WAIT_S
        self._later: list[str] = []
        self._position: dict[pytest.Item, int] = {}
        outcomes.on_finish = self._finished

    def _say(self, text: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._later.append(text)  # the prefetch thread: said by the main thread
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            for line in [*self._later, text]:
                tr.write_line(f"ci-fanout: {line}")
        self._later.clear()

    def _finished(self, result: dict[str, Any]) -> None:
        lease_id = self._lease_of.get(result["id"])
        if lease_id is not None:
            self.reporter.add(
                lease_id,
                {k: result[k] for k in ("id", "outcome", "duration_s") if k in result}
                | ({"message": result["message"]} if result.get("message") else {}),
            )

    def _answer(self, got: dict[str, Any], by_id: dict[str, pytest.Item]) -> _Batch | float | None:
        if got.get("done") is True:
            return None
        if "lease_id" not in got:
            # nothing pending, leases outstanding: ask again soon, then less and less often
            # (the other runners' last batches usually end within moments)
            wait = min(float(got.get("retry_after", 5.0)), self._backoff)
            self._backoff = min(self._backoff * 2, 5.0)
            return wait
        self._backoff = _FIRST_WAIT_S
        lease_id = str(got["lease_id"])
        tests = [str(t) for t in got.get("tests") or ()]
        self._ran.update(tests)
        missing = [t for t in tests if t not in by_id]
        if missing:
            self._say(f"{len(missing)} leased test(s) not collected in this session")
        # the queue chose the batch (longest first); run it in collection order, so that
        # module and class set-up happens once per module, as in a static slice
        items = sorted((by_id[t] for t in tests if t in by_id), key=self._position.__getitem__)
        for i in items:
            self._lease_of[i.nodeid] = lease_id
        self.reporter.hold(lease_id)
        return _Batch(lease_id, items, float(got.get("estimate_s") or 0.0))

    def _next(
        self, by_id: dict[str, pytest.Item], finishing: str | None = None
    ) -> _Batch | float | None:
        """The next batch; a float = seconds to wait before asking again; None = done.

        ``finishing``: the lease now running its last test; its results so far go with the
        request. On an unreachable queue: the rest of the static slice, once, then done.
        """
        if self._fell_back:
            return None
        try:
            if finishing is not None:
                try:
                    return self._answer(self.reporter.complete_and_lease(finishing), by_id)
                except AppRejectedError as exc:  # e.g. that lease expired: lease plainly
                    self._say(f"{exc}")
            return self._answer(self.client.lease(), by_id)
        except AppUnavailableError as exc:
            self._fell_back = True
            rest = [t for t in self.fallback if t not in self._ran]
            if self.fallback:
                self._say(f"{exc}; running the static slice instead ({len(rest)} test(s))")
            else:
                self._say(f"{exc}; no --fanout-shard slice to fall back to, running nothing")
            return _Batch(None, [by_id[t] for t in rest if t in by_id])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        if session.config.option.collectonly:
            return True
        by_id = {i.nodeid: i for i in session.items}
        self._position = {item: n for n, item in enumerate(session.items)}
        unplanned: list[pytest.Item] = []
        if self.matrix is not None and self.shard_id:
            unplanned = unplanned_here(self.matrix, self.shard_id, session.items)
            _say_unplanned(session.config, len(unplanned), self.shard_id)
        try:
            with self.reporter:
                self._loop(session, by_id, unplanned)
        finally:
            for error in self.reporter.errors:
                self._say(error)
        return True

    def _loop(
        self, session: pytest.Session, by_id: dict[str, pytest.Item], unplanned: list[pytest.Item]
    ) -> None:
        current = self._next(by_id)
        while current is not None or unplanned:
            if current is None:  # the queue is done: the tests no plan listed, once
                current, unplanned = _Batch(None, unplanned), []
            if isinstance(current, float):
                time.sleep(current)  # our own leases are all complete here: no deadlock
                current = self._next(by_id)
                continue
            prefetched: _Batch | float | None = None
            pending: _Prefetch | None = None
            fetched = False
            items = current.items
            at = current.prefetch_at()
            for i, item in enumerate(items):
                if i == at and current.lease_id is not None:
                    # Ask for the next batch (with this one's results so far) shortly before
                    # the last test, on a thread, so that the answer is there when it is
                    # needed: module and session fixtures are torn down only when really no
                    # longer needed. The reporter heartbeats both leases meanwhile.
                    pending = _Prefetch(functools.partial(self._next, by_id, current.lease_id))
                nextitem: pytest.Item | None = None
                if i + 1 < len(items):
                    nextitem = items[i + 1]
                elif pending is not None:
                    prefetched, fetched = pending.result(), True
                    if self._later:
                        self._say(self._later.pop())
                    if isinstance(prefetched, _Batch) and prefetched.items:
                        nextitem = prefetched.items[0]
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                if session.shouldfail:
                    raise session.Failed(session.shouldfail)
                if session.shouldstop:
                    raise session.Interrupted(session.shouldstop)
            if current.lease_id is not None:
                self.reporter.finish(current.lease_id)
            current = prefetched if fetched else self._next(by_id)
