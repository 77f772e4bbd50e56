"""The collect job: one bad results.json member never costs the good shard beside it."""

from __future__ import annotations

from typing import Any

from ci_app.matrix.planner import Matrix, Shard, Unsatisfied
from ci_app.matrix.render import render_json
from ci_app.options.server import Settings
from ci_app.providers.base import Provider
from ci_app.store import Job, open_store
from ci_app.web.context import AppContext
from ci_app.web.handlers import handle_collect
from ci_app.web.metrics import Metrics
from tests.artifacts.hostile import damaged_zip, results_json, zip_bytes

from .conftest import FakeCI, FakeForge


def test_collect_stores_the_good_member_of_a_damaged_zip() -> None:
    ci = FakeCI()
    good = ("s1/results.json", results_json("run-7", "s1", ["t.py::a", "t.py::b"]))
    bad = ("s2/results.json", results_json("run-7", "s2", ["t.py::c"]))
    ci.artifacts["7"] = [
        ("both", damaged_zip("bad-crc", good, bad)),
        ("deep", damaged_zip("encrypted", good, bad)),
    ]
    with open_store(":memory:") as store:
        ctx = AppContext(
            settings=Settings(),
            store=store,
            providers=lambda name, scope, **_: Provider(
                name="fake", forge=FakeForge(), ci=ci, runners=None
            ),
            metrics=Metrics(),
        )
        job = Job(
            id=1,
            kind="collect",
            payload={"provider": "fake", "repo": "o/r", "run_id": "7"},
            state="leased",
            attempts=1,
            lease_until=None,
            last_error=None,
            run_after=0.0,
            idempotency_key=None,
        )
        handle_collect(ctx, job)  # no exception: the job is not parked
        rows = store.results.cases(["run-7"], details=False)
    assert sorted(zip(rows.shard_id, rows.test_id, strict=True)) == [
        ("s1", "t.py::a"),
        ("s1", "t.py::b"),
    ]


def _collect(ci: FakeCI, store: Any) -> None:
    ctx = AppContext(
        settings=Settings(),
        store=store,
        providers=lambda name, scope, **_: Provider(
            name="fake", forge=FakeForge(), ci=ci, runners=None
        ),
        metrics=Metrics(),
    )
    job = Job(
        id=2,
        kind="collect",
        payload={"provider": "fake", "repo": "o/r", "run_id": "8"},
        state="leased",
        attempts=1,
        lease_until=None,
        last_error=None,
        run_after=0.0,
        idempotency_key=None,
    )
    handle_collect(ctx, job)


def test_collect_accounts_for_every_planned_test() -> None:
    """The app path: the plan's record (matrix.json in the plan artifact) against what the
    shards uploaded; a shard that uploaded nothing leaves its tests lost, never dropped, and
    the tests no runner could take are listed as not run."""
    matrix = Matrix(
        mode="static",
        shards=(
            Shard("s1", "cpu", ("x64",), ("t.py::a", "t.py::b"), 1.0),
            Shard("s2", "cpu", ("x64",), ("t.py::c", "t.py::d"), 1.0),
        ),
        pools=(),
        unsatisfied=(Unsatisfied(("gpu-nvidia",), ("t.py::gpu",), "no gpu runner"),),
    )
    ci = FakeCI()
    ci.artifacts["8"] = [
        ("ci-fanout-matrix", zip_bytes([("matrix.json", render_json(matrix).encode())])),
        ("ci-fanout-results-s1", zip_bytes([("results.json", results_json("run-8", "s1", ["t.py::a", "t.py::b"]))])),
    ]  # fmt: skip
    with open_store(":memory:") as store:
        _collect(ci, store)
        _collect(ci, store)  # a redone job stores nothing twice
        rows = store.results.cases(["run-8"], details=True)
    by_shard = sorted(zip(rows.shard_id, rows.test_id, rows.outcome, strict=True))
    assert by_shard == [
        ("lost", "t.py::c", "error"),
        ("lost", "t.py::d", "error"),
        ("s1", "t.py::a", "passed"),
        ("s1", "t.py::b", "passed"),
        ("unsatisfied", "t.py::gpu", "skipped"),
    ]
    lost = [m for s, m in zip(rows.shard_id, rows.message, strict=True) if s == "lost"]
    assert all(m and m.startswith("lost: planned on shard s2") for m in lost), lost
