"""Durable job worker: threads in the web process lease jobs from the store's ``jobs`` table.

Why threads in the web process: DuckDB allows one writer *process*. The single gunicorn
worker process owns the database file; its request threads and these job threads share one
connection (the store serialises calls). A crash or ``kill -9`` of that process loses no
job: a leased job whose lease runs out is leased again by the restarted process
(``Jobs.lease`` takes ``leased`` jobs whose ``lease_until`` passed).

Failures: provider and other unexpected errors are retried after ``job-backoff-s`` doubling
per attempt (capped at ``job-backoff-max-s``); after ``job-max-attempts`` the job is parked
(dashboard ``/jobs``, metric ``ci_fanout_jobs{state="parked"}``). Input errors and unknown
job kinds are parked at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from ci_app.errors import ConfigError, InputError
from ci_app.store import Job
from ci_app.web.context import AppContext
from ci_app.web.handlers import HANDLERS, Handler, PermanentJobError

log = logging.getLogger(__name__)

__all__ = ["JobWorker"]

MAINTENANCE_EVERY_S = 5.0
YIELD_MAX_S = 0.1
#: an idle worker polls every ``job-poll-s``, doubling up to this while nothing is due (a job
#: queued in this process wakes it at once; a retry's ``run_after`` waits at most this long)
IDLE_POLL_MAX_S = 1.0


class JobWorker:
    def __init__(
        self,
        ctx: AppContext,
        handlers: Mapping[str, Handler] | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.handlers = dict(HANDLERS if handlers is None else handlers)
        self.threads = threads if threads is not None else ctx.settings.job_workers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"ci-fanout-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        m = threading.Thread(target=self._maintain, name="ci-fanout-maintenance", daemon=True)
        m.start()
        self._threads.append(m)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.ctx.store.jobs.wakeup.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- work -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        poll = self.ctx.settings.job_poll_s
        wakeup = self.ctx.store.jobs.wakeup
        idle = poll
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except Exception as exc:  # a store hiccup must not kill the thread
                if self.ctx.check_fatal(exc):
                    return  # the store is gone: the process is restarting
                log.exception("job worker error")
                worked = False
            if worked:
                idle = poll
            elif wakeup.wait(idle):  # each empty poll costs a write transaction (~1 ms)
                wakeup.clear()
                idle = poll
            else:
                idle = min(idle * 2, max(poll, IDLE_POLL_MAX_S))

    def _yield_to_deliveries(self) -> None:
        """Webhook acks are latency-critical, jobs are not: while deliveries wait to be
        stored, hold back (at most ``YIELD_MAX_S`` per job, so jobs never starve)."""
        pending = getattr(self.ctx, "batcher", None)
        if pending is None:
            return
        waited = 0.0
        while pending.pending > 0 and waited < YIELD_MAX_S and not self._stop.is_set():
            time.sleep(0.002)
            waited += 0.002

    def run_one(self) -> bool:
        """Lease and run one job; False when none was due."""
        s = self.ctx.settings
        self._yield_to_deliveries()
        job = self.ctx.store.jobs.lease(self.ctx.clock(), s.job_lease_s)
        if job is None:
            return False
        self._run(job)
        return True

    def drain(self, max_jobs: int = 10_000) -> int:
        """Run due jobs in this thread until none is left (tests, ``ci-app`` one-shots)."""
        n = 0
        while n < max_jobs and self.run_one():
            n += 1
        return n

    def _run(self, job: Job) -> None:
        s = self.ctx.settings
        store = self.ctx.store
        metrics = self.ctx.metrics
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise PermanentJobError(f"no handler for job kind {job.kind!r}")
            handler(self.ctx, job)
        except (PermanentJobError, InputError, ConfigError) as exc:
            log.warning("job %s (%s) parked: %s", job.id, job.kind, exc)
            store.jobs.park(job.id, f"{type(exc).__name__}: {exc}", now=self.ctx.clock())
            metrics.jobs.labels(job.kind, "parked").inc()
        except Exception as exc:
            backoff = min(s.job_backoff_max_s, s.job_backoff_s * 2 ** max(0, job.attempts - 1))
            state = store.jobs.fail(
                job.id,
                f"{type(exc).__name__}: {exc}",
                now=self.ctx.clock(),
                backoff_s=backoff,
                max_attempts=s.job_max_attempts,
            )
            if state == "parked":
                log.error(
                    "job %s (%s) parked after %d attempts: %s", job.id, job.kind, job.attempts, exc
                )
            else:
                log.warning(
                    "job %s (%s) attempt %d failed, retry in %.0fs: %s",
                    job.id,
                    job.kind,
                    job.attempts,
                    backoff,
                    exc,
                )
            metrics.jobs.labels(job.kind, "parked" if state == "parked" else "retry").inc()
        else:
            store.jobs.complete(job.id, now=self.ctx.clock())
            metrics.jobs.labels(job.kind, "done").inc()

    # -- housekeeping ---------------------------------------------------------------------------
    def maintain(self) -> None:
        """Mark silent runners offline, re-queue expired test leases, prune old deliveries
        and heartbeats (each runner keeps its latest ``heartbeat-history``)."""
        s = self.ctx.settings
        now = self.ctx.clock()
        gone = self.ctx.store.runners.mark_stale_runners(
            now=now, offline_after_s=s.runner_offline_after_s
        )
        if gone:
            log.warning(
                "runners offline (no heartbeat for %.0fs): %s",
                s.runner_offline_after_s,
                ", ".join(gone),
            )
        self.ctx.queue.expire(now)
        if now - self._last_prune > 3600:
            self._last_prune = now
            self.ctx.store.jobs.prune_deliveries(now - s.delivery_retention_days * 86400)
            self.ctx.store.runners.prune_heartbeats(keep_per_runner=s.heartbeat_history)

    def _maintain(self) -> None:
        while not self._stop.wait(MAINTENANCE_EVERY_S):
            try:
                self.maintain()
            except Exception as exc:
                if self.ctx.check_fatal(exc):
                    return
                log.exception("maintenance failed")
