"""Group commit of webhook deliveries: exactly once under concurrency, duplicates in a batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ci_app.store import Store, open_store
from ci_app.store.jobs import DeliveryIn
from ci_app.web.batcher import DeliveryBatcher


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store(":memory:") as s:
        yield s


def test_batch_with_repeats_and_known_ids(store: Store) -> None:
    items = [
        DeliveryIn("github", "a", "push", "{}", [("push", {"n": 1})]),
        DeliveryIn("github", "b", "ping", "{}", []),
        DeliveryIn("github", "a", "push", "{}", [("push", {"n": 2})]),  # repeat in batch
        DeliveryIn("gitlab", "a", "push", "{}", [("push", {}), ("x", {})]),  # other provider
    ]
    out = store.jobs.accept_deliveries(items, now=1.0)
    assert [o.new for o in out] == [True, True, False, True]
    assert len(out[0].job_ids) == 1 and out[1].job_ids == () and len(out[3].job_ids) == 2
    again = store.jobs.accept_deliveries(items[:2], now=2.0)
    assert [o.new for o in again] == [False, False]
    assert store.jobs.delivery_count() == 3 and store.jobs.counts() == {"queued": 3}
    job = store.jobs.job(out[0].job_ids[0])
    assert job is not None and job.payload == {"n": 1}
    assert store.jobs.accept_deliveries([], now=3.0) == []


def test_concurrent_submitters_each_delivery_once(store: Store) -> None:
    batcher = DeliveryBatcher(store, lambda: 5.0)
    results: dict[str, list[bool]] = {}
    lock = threading.Lock()

    def send(worker: int) -> None:
        for i in range(60):
            did = f"d{(worker * 37 + i) % 150}"  # overlapping ids across threads
            out = batcher.submit(DeliveryIn("github", did, "push", "{}", [("push", {})]))
            with lock:
                results.setdefault(did, []).append(out.new)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(flags.count(True) == 1 for flags in results.values())
    assert store.jobs.delivery_count() == len(results)
    assert store.jobs.counts() == {"queued": len(results)}
    assert batcher.stored == 480 and batcher.batches < 480  # some batching happened


def test_store_failure_propagates_to_the_request(store: Store) -> None:
    batcher = DeliveryBatcher(store, lambda: 1.0)
    store.close()
    with pytest.raises(Exception, match=r"(?i)closed|connection"):
        batcher.submit(DeliveryIn("github", "z", "push", "{}", []), timeout=5)
