"""Two report jobs of one PR running at once still leave exactly one sticky comment."""

from __future__ import annotations

import threading
import time
from typing import Any

from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.options.server import Settings
from ci_app.providers.base import CommentRef, Provider
from ci_app.store import Job, open_store
from ci_app.web.context import AppContext
from ci_app.web.handlers import handle_report
from ci_app.web.metrics import Metrics

from .conftest import FakeForge


class RacyForge(FakeForge):
    """Looks the comment up, then (slowly) creates it: the window two jobs can race in."""

    def upsert_comment(self, number: int, body: str, *, kind: str = "tests") -> CommentRef:
        found = (number, kind) in self.comments
        time.sleep(0.2)
        if found:
            self.edited += 1
            self.comments[(number, kind)] = body
            return CommentRef(id=str(number), url=None, created=False)
        self.created += 1
        self.comments[(number, kind)] = body
        return CommentRef(id=str(number), url=None, created=True)


def test_concurrent_report_jobs_post_one_comment() -> None:
    forge = RacyForge()
    with open_store(":memory:") as store:
        for shard in ("a", "b"):
            store.ingest(
                ResultSet(
                    run=RunInfo(
                        run_id="r1",
                        shard_id=shard,
                        repo="o/r",
                        provider="fake",
                        commit="c" * 40,
                        branch="feature",
                        pr=5,
                    ),
                    tests=(TestCase(id=f"t::{shard}", name=shard, outcome=Outcome.PASSED),),
                )
            )

        def providers(name: str, scope: str | None, **_: Any) -> Provider:
            return Provider(name="fake", forge=forge, ci=None, runners=None)

        ctx = AppContext(settings=Settings(), store=store, providers=providers, metrics=Metrics())
        jobs = [
            Job(
                id=i,
                kind="report",
                payload={"run_id": "r1"},
                state="leased",
                attempts=1,
                lease_until=None,
                last_error=None,
                run_after=0.0,
                idempotency_key=None,
            )
            for i in (1, 2)
        ]
        threads = [threading.Thread(target=handle_report, args=(ctx, j)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert forge.created == 1 and forge.edited == 1
    assert list(forge.comments) == [(5, "tests")]
