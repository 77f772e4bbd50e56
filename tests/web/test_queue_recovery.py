"""A shard killed after completing batches: its queue results are not dropped at collect."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from ci_app.matrix.queue import PoolSpec, QueueConfig, QueueItem, TestResult
from ci_app.matrix.record import RECOVERED_SHARD
from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.options.server import Settings
from ci_app.providers.base import Provider
from ci_app.store import Job, open_store
from ci_app.web.context import AppContext
from ci_app.web.handlers import handle_collect
from ci_app.web.metrics import Metrics

from .conftest import FakeCI, FakeForge


def _zip(rs: ResultSet) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("results.json", json.dumps(rs.to_dict()))
    return buf.getvalue()


def test_collect_recovers_results_only_the_queue_has() -> None:
    ci = FakeCI()
    tests = ("t.py::a", "t.py::b", "t.py::c")
    with open_store(":memory:") as store:
        ctx = AppContext(
            settings=Settings(),
            store=store,
            providers=lambda name, scope, **_: Provider(
                name="fake", forge=FakeForge(), ci=ci, runners=None
            ),
            metrics=Metrics(),
        )
        items = tuple(QueueItem(t, 1.0, (t,)) for t in tests)
        ctx.queue.create_run("run-1", {"cpu": PoolSpec(items, workers=2)}, QueueConfig(), 0.0)
        # The doomed shard completes a batch of two tests, then dies before uploading.
        lease: Any = ctx.queue.lease("run-1", "cpu", "doomed", 1.0)
        done = list(lease.tests)
        assert 0 < len(done) < len(tests)
        ctx.queue.complete(
            "run-1", lease.lease_id, [TestResult(t, "passed", 0.5) for t in done], 2.0
        )
        # The surviving shard uploads only what it ran itself.
        survivor = [t for t in tests if t not in done]
        info = RunInfo(run_id="run-1", shard_id="cpu-2", repo="o/r", provider="fake", pr=3)
        uploaded = ResultSet(
            run=info,
            tests=tuple(TestCase(id=t, name=t, outcome=Outcome.FAILED) for t in survivor),
        )
        ci.artifacts["99"] = [("cpu-2", _zip(uploaded))]
        job = Job(
            id=1,
            kind="collect",
            payload={"provider": "fake", "repo": "o/r", "run_id": "99"},
            state="leased",
            attempts=1,
            lease_until=None,
            last_error=None,
            run_after=0.0,
            idempotency_key=None,
        )
        handle_collect(ctx, job)
        handle_collect(ctx, job)  # redone after a crash: nothing stored twice
        rows = store.results.cases(["run-1"])
    by_id = dict(zip(rows.test_id, zip(rows.shard_id, rows.outcome, strict=True), strict=True))
    assert sorted(by_id) == sorted(tests)
    assert len(rows.test_id) == len(tests)
    for t in done:
        assert by_id[t] == (RECOVERED_SHARD, "passed")
    for t in survivor:
        assert by_id[t] == ("cpu-2", "failed")
