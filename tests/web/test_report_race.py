"""Two report jobs of one PR running at once still leave exactly one sticky comment."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.options.server import Settings
from ci_app.providers.base import CommentRef, Provider
from ci_app.store import Job, open_store
from ci_app.web import handlers
from ci_app.web.context import AppContext
from ci_app.web.handlers import handle_report
from ci_app.web.metrics import Metrics

from .conftest import FakeForge


@dataclass
class RacyForge(FakeForge):
    """Looks the comment up, then holds its window open until the other report job has come
    for it: either inside this window too (no lock: the race) or waiting at the report lock.
    ``overlapped`` records that the two jobs met, so the test cannot pass by running them one
    after the other."""

    overlapped: threading.Event = field(default_factory=threading.Event)
    inside: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def upsert_comment(self, number: int, body: str, *, kind: str = "tests") -> CommentRef:
        with self.guard:
            self.inside += 1
            if self.inside > 1:
                self.overlapped.set()
        try:
            found = (number, kind) in self.comments
            self.overlapped.wait(10)  # the first job waits here for the second one
            if found:
                self.edited += 1
                self.comments[(number, kind)] = body
                return CommentRef(id=str(number), url=None, created=False)
            self.created += 1
            self.comments[(number, kind)] = body
            return CommentRef(id=str(number), url=None, created=True)
        finally:
            with self.guard:
                self.inside -= 1


class WatchedLock:
    """The report lock, noting when a job finds it held (the other job is in the window)."""

    def __init__(self, lock: threading.Lock, contended: threading.Event) -> None:
        self.lock = lock
        self.contended = contended

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.contended.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_concurrent_report_jobs_post_one_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    forge = RacyForge()
    report_lock = handlers._report_lock
    monkeypatch.setattr(
        handlers, "_report_lock", lambda key: WatchedLock(report_lock(key), forge.overlapped)
    )
    with open_store(":memory:") as store:
        for shard in ("a", "b"):
            store.results.ingest(
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
    assert not any(t.is_alive() for t in threads)
    assert forge.overlapped.is_set(), "the two report jobs never overlapped: nothing was tested"
    assert forge.created == 1 and forge.edited == 1
    assert list(forge.comments) == [(5, "tests")]
