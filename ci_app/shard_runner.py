"""The runner side of a shard, shared by ``ci-app shard run`` and the pytest plugin.

:class:`Reporter` keeps a runner's leases alive and sends its results while its tests run;
:func:`pull_batches` is the lease-run-complete loop; the rest finds a shard's static slice and
which shard runs a test the plan did not list. The HTTP side is
:class:`ci_app.client.QueueClient`. Stdlib only: this runs in the test interpreter.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ci_app.client import QueueClient
from ci_app.errors import CiFanoutError, InputError
from ci_app.matrix.planner import Matrix

log = logging.getLogger(__name__)

#: how often a runner heartbeats its leases (the server's lease lasts about six beats)
HEARTBEAT_S = 5.0


def default_runner_name(env: Mapping[str, str]) -> str:
    for key in ("CI_FANOUT_RUNNER", "RUNNER_NAME", "CI_RUNNER_DESCRIPTION", "NODE_NAME"):
        if env.get(key):
            return env[key]
    return socket.gethostname()


def default_labels(env: Mapping[str, str]) -> list[str]:
    raw = env.get("CI_FANOUT_LABELS", "")
    return [x.strip() for x in raw.split(",") if x.strip()]


class Reporter:
    """A runner's link to the queue while it runs tests, on a background thread.

    * Every ``interval_s`` it shows a sign of life for **every** lease the runner holds (the
      batch running and a prefetched one): a heartbeat, or a partial completion with the
      results finished since the last one. Finished results do not wait for the beat: they go
      at most ``flush_s`` after they are known (one request per ``flush_s`` at most, however
      small the tests). A killed runner's queue record misses at most its last ``flush_s`` of
      results (its journal has them); a live runner's lease never expires, however long its
      test.
    * Final completions are queued (:meth:`finish`) and sent in order without holding up the
      tests; :meth:`close` waits for them.

    The main thread may also send a partial completion itself and get its next batch in the
    same round trip (:meth:`complete_and_lease`).
    """

    def __init__(
        self, client: QueueClient, interval_s: float = HEARTBEAT_S, flush_s: float = 1.0
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.flush_s = min(flush_s, interval_s)
        #: lease id -> results finished but not yet sent
        self._held: dict[str, list[dict[str, Any]]] = {}
        self._finals: deque[tuple[str, list[dict[str, Any]]]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="ci-fanout-reporter", daemon=True)

    # -- the main thread ----------------------------------------------------------------------
    def hold(self, lease_id: str) -> None:
        with self._cond:
            self._held.setdefault(lease_id, [])

    def add(self, lease_id: str, result: dict[str, Any]) -> None:
        with self._cond:
            buffered = self._held.setdefault(lease_id, [])
            buffered.append(result)
            if len(buffered) == 1:
                self._cond.notify_all()  # a flush may now be due before the next beat

    def release(self, lease_id: str) -> None:
        """Stop heartbeating a lease (its caller completes it itself)."""
        with self._cond:
            self._held.pop(lease_id, None)

    def finish(self, lease_id: str, results: Sequence[dict[str, Any]] = ()) -> None:
        """The lease is done: send what is left of it (plus ``results``) as its final
        completion, in the background."""
        with self._cond:
            rest = self._held.pop(lease_id, [])
            self._finals.append((lease_id, [*rest, *results]))
            self._cond.notify_all()

    def complete_and_lease(self, lease_id: str) -> dict[str, Any]:
        """Send the lease's finished results (partial) and lease the next batch, in one round
        trip; returns the lease answer. Raises what :meth:`QueueClient.complete` raises."""
        with self._cond:
            sent = self._held.get(lease_id, [])
            self._held[lease_id] = []
        try:
            answer = self.client.complete(lease_id, sent, final=False, next_lease=True)
        except CiFanoutError:
            with self._cond:  # not sent: keep them for the final completion
                self._held[lease_id] = [*sent, *self._held.get(lease_id, [])]
            raise
        nxt = answer.get("next")
        return nxt if isinstance(nxt, dict) else {"done": True}

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 60.0) -> None:
        """Send the queued final completions, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)

    # -- the thread ----------------------------------------------------------------------------
    def _due(self, last: float) -> float:
        """When the next sign of life is due: a flush when results wait, else a beat."""
        pending = any(self._held.values())
        return last + (self.flush_s if pending else self.interval_s)

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            with self._cond:
                while not self._finals and not self._stop:
                    wait = self._due(last) - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                final = self._finals.popleft() if self._finals else None
                if final is None and self._stop:
                    return
                if final is None:
                    partial = dict(self._held)
                    for lid in partial:
                        self._held[lid] = []
            if final is not None:
                self._send(final[0], final[1], final=True)
                continue
            last = time.monotonic()
            self._beat(partial)

    def _beat(self, partial: dict[str, list[dict[str, Any]]]) -> None:
        beaten = False
        for lid, results in partial.items():
            if results:
                beaten = self._send(lid, results, final=False) or beaten
        for lid in partial:
            if beaten:
                break  # one sign of life extends all of this runner's leases
            try:
                self.client.heartbeat(lid)
                beaten = True
            except CiFanoutError as exc:  # the lease may just have completed; try the next
                log.debug("heartbeat for %s failed: %s", lid, exc)

    def _send(self, lease_id: str, results: list[dict[str, Any]], *, final: bool) -> bool:
        try:
            self.client.complete(lease_id, results, final=final)
            return True
        except CiFanoutError as exc:
            if final:
                self.errors.append(f"could not report lease {lease_id}: {exc}")
            else:
                with self._cond:  # the final completion sends them again
                    if lease_id in self._held:
                        self._held[lease_id] = [*results, *self._held[lease_id]]
            log.debug("completion of %s failed: %s", lease_id, exc)
            return False


def pull_batches(
    client: QueueClient,
    run_batch: Callable[[list[str]], list[dict[str, Any]]],
    *,
    reporter: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Lease, run, complete until the queue says done. Returns the tests this runner ran.

    With a ``reporter`` the running lease is heartbeaten while its batch runs.
    """
    ran: list[str] = []
    while True:
        got = client.lease()
        if got.get("done") is True:
            return ran
        if "lease_id" not in got:
            sleep(float(got.get("retry_after", 5.0)))
            continue
        lease_id = str(got["lease_id"])
        if reporter is not None:
            reporter.hold(lease_id)
        tests = [str(t) for t in got.get("tests") or ()]
        try:
            results = run_batch(tests)
        finally:
            if reporter is not None:
                reporter.release(lease_id)
        ran.extend(tests)
        client.complete(lease_id, results)


def read_matrix(matrix_path: str) -> Matrix:
    try:
        doc = json.loads(Path(matrix_path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read matrix {matrix_path}: {exc}") from exc
    return Matrix.from_dict(doc)


def static_slice(matrix_path: str | None, shard_id: str | None) -> tuple[str | None, list[str]]:
    """``(pool, tests)`` of a shard in a matrix file; ``(None, [])`` when not given."""
    if not matrix_path or not shard_id:
        return None, []
    shard = read_matrix(matrix_path).shard(shard_id)
    return shard.pool, list(shard.tests)


def planned_anywhere(matrix: Matrix) -> frozenset[str]:
    """Every test the plan placed: on a shard, in a queue, or as not runnable here."""
    out: set[str] = set()
    for s in matrix.shards:
        out.update(s.tests)
    for p in matrix.pools:
        for item in p.queue:
            out.update(item.test_ids)
    for u in matrix.unsatisfied:
        out.update(u.tests)
    return frozenset(out)


def unplanned_home(matrix: Matrix, test_id: str, needs: frozenset[str]) -> str | None:
    """The one shard that runs a test the plan did not list (every shard collects it, so each
    must agree without talking): among the shards whose labels cover the test's compiled
    requirements ``needs``, the least specialised ones, picked by a stable hash of the id.
    None when no shard can take it."""
    fit = [s for s in matrix.shards if needs <= frozenset(s.runs_on)]
    if not fit:
        return None
    fewest = min(len(s.runs_on) for s in fit)
    ids = sorted(s.id for s in fit if len(s.runs_on) == fewest)
    return ids[zlib.crc32(test_id.encode("utf-8", "surrogatepass")) % len(ids)]
