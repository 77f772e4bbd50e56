"""Prometheus metrics: counters updated by the app, gauges read from the store at scrape time.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (no global state, so tests
can build many apps). The gauges are what an autoscaler (actions-runner-controller, KEDA's
Prometheus scaler) scales runners on: ``ci_fanout_test_queue_depth{pool}`` and
``ci_fanout_pool_runners{pool,state}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ci_app.store import Store
    from ci_app.store.queue import DuckQueue

log = logging.getLogger(__name__)

__all__ = ["Metrics"]


class _StoreCollector(Collector):
    def __init__(
        self, store: Store, queue: Callable[[], DuckQueue], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.queue = queue
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        jobs = GaugeMetricFamily("ci_fanout_jobs", "Durable jobs by state", labels=["state"])
        counts = self.store.jobs.counts()
        for state in sorted({"queued", "leased", "done", "parked", *counts}):
            jobs.add_metric([state], float(counts.get(state, 0)))
        yield jobs
        age = GaugeMetricFamily(
            "ci_fanout_job_oldest_age_seconds",
            "Age of the oldest unfinished job per state",
            labels=["state"],
        )
        ages = self.store.jobs.age_stats(now=now)
        for state in ("queued", "leased", "parked"):
            age.add_metric([state], ages.get(state, 0.0))
        yield age

        rows = self.store.runners.runner_rows()
        runners = GaugeMetricFamily("ci_fanout_runners", "Runners by status", labels=["status"])
        by_status: dict[str, int] = {"online": 0, "offline": 0}
        for r in rows:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        for status, n in sorted(by_status.items()):
            runners.add_metric([status], float(n))
        yield runners
        busy = GaugeMetricFamily("ci_fanout_runners_busy", "Online runners running a job")
        busy.add_metric([], float(sum(1 for r in rows if r.status == "online" and r.busy)))
        yield busy

        q = self.queue()
        depth = GaugeMetricFamily(
            "ci_fanout_test_queue_depth", "Tests waiting in queue mode, per pool", labels=["pool"]
        )
        for pool, n in sorted(q.pool_depths().items()):
            depth.add_metric([pool], float(n))
        yield depth
        pool_runners = GaugeMetricFamily(
            "ci_fanout_pool_runners",
            "Runners able to serve each active pool (labels a superset of the pool's)",
            labels=["pool", "state"],
        )
        online = [r for r in rows if r.status == "online"]
        for pool, need in sorted(q.active_pools().items()):
            fit = [r for r in online if need <= {x.lower() for x in r.labels}]
            pool_runners.add_metric([pool, "online"], float(len(fit)))
            pool_runners.add_metric([pool, "busy"], float(sum(1 for r in fit if r.busy)))
        yield pool_runners


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.deliveries = Counter(
            "ci_fanout_webhook_deliveries",
            "Webhook deliveries by provider, event and outcome",
            ["provider", "event", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "ci_fanout_webhook_ack_seconds",
            "Time to acknowledge a webhook delivery",
            ["provider"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
        self.jobs = Counter(
            "ci_fanout_jobs_processed",
            "Jobs run by the worker, by kind and outcome (done, retry, parked)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.api = Counter(
            "ci_fanout_api_requests",
            "API requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._collector: _StoreCollector | None = None

    def bind_store(
        self, store: Store, queue: Callable[[], DuckQueue], clock: Callable[[], float] = time.time
    ) -> None:
        if self._collector is None:
            self._collector = _StoreCollector(store, queue, clock)
            self.registry.register(self._collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
