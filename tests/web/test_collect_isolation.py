"""The collect job: one bad results.json member never costs the good shard beside it."""

from __future__ import annotations

from ci_app.providers.base import Provider
from ci_app.settings import Settings
from ci_app.store import Job, open_store
from ci_app.web.context import AppContext
from ci_app.web.handlers import handle_collect
from ci_app.web.metrics import Metrics
from tests.artifacts.hostile import damaged_zip, results_json

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
        rows = store.cases(["run-7"], details=False)
    assert sorted(zip(rows.shard_id, rows.test_id, strict=True)) == [
        ("s1", "t.py::a"),
        ("s1", "t.py::b"),
    ]
