"""``ci-app shard run``: pull test batches from a queue and run a command on each.

``ci-app shard run --queue URL [--matrix m.json --shard ID] -- <command with {tests}>``

Each leased batch replaces ``{tests}`` in the command (an argument that is exactly ``{tests}``
becomes one argument per test id; inside a longer argument the ids are joined by spaces) and
runs it; the batch is reported complete with the command's outcome. When the queue is
unreachable, the shard runs its static slice from the matrix instead and says so.

Also home of :class:`QueueClient`, the stdlib HTTP client for the queue contract
(``docs/planner.md``), and :class:`Reporter`, the thread that keeps a runner's leases alive and
sends its results; both are shared with the pytest plugin.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ci_app.credentials import scrub, take_token
from ci_app.errors import CiFanoutError, ConfigError, InputError
from ci_app.matrix.planner import Matrix

log = logging.getLogger(__name__)

#: how often a runner heartbeats its leases (the server's lease lasts about six beats)
HEARTBEAT_S = 5.0


class QueueUnavailableError(CiFanoutError):
    """The queue server could not be reached or answered with a server error."""

    exit_code = 6


class QueueRejectedError(CiFanoutError):
    """The queue server refused the request (unknown lease, expired, bad input)."""

    exit_code = 4


def default_runner_name(env: Mapping[str, str]) -> str:
    for key in ("CI_FANOUT_RUNNER", "RUNNER_NAME", "CI_RUNNER_DESCRIPTION", "NODE_NAME"):
        if env.get(key):
            return env[key]
    return socket.gethostname()


def default_labels(env: Mapping[str, str]) -> list[str]:
    raw = env.get("CI_FANOUT_LABELS", "")
    return [x.strip() for x in raw.split(",") if x.strip()]


class QueueClient:
    """Minimal JSON-over-HTTP client for one run's queue at ``url`` (stdlib ``urllib``)."""

    def __init__(
        self,
        url: str,
        *,
        runner: str,
        labels: Sequence[str] = (),
        pool: str | None = None,
        shard: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
    ) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"queue URL must be http(s)://host/..., got {url!r}")
        self.url = url.rstrip("/")
        self.runner = runner
        self.labels = list(labels)
        self.pool = pool
        self.shard = shard
        self.token = token
        self.timeout_s = timeout_s
        self.retries = retries

    def _post(self, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        """POST ``body`` as JSON (``None``: a GET); retries server errors and network failures."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                f"{self.url}/{path}",
                data=data,
                headers=headers,
                method="GET" if body is None else "POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                    out = json.loads(resp.read() or b"{}")
                    return out if isinstance(out, dict) else {}
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode("utf-8", "replace")
                if exc.code < 500:
                    raise QueueRejectedError(
                        f"queue {path}: HTTP {exc.code}: {detail or exc.reason}"
                    ) from exc
                last = exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = exc
            if attempt < self.retries:
                time.sleep(min(2.0, 0.2 * 2**attempt))
        raise QueueUnavailableError(f"queue {self.url} unreachable ({path}): {last}")

    def lease_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"runner": self.runner, "labels": self.labels}
        if self.pool:
            body["pool"] = self.pool
        if self.shard:
            body["shard"] = self.shard
        return body

    def lease(self) -> dict[str, Any]:
        return self._post("lease", self.lease_body())

    def complete(
        self,
        lease_id: str,
        results: Sequence[Mapping[str, Any]],
        *,
        final: bool = True,
        next_lease: bool = False,
    ) -> dict[str, Any]:
        """Report results; with ``next_lease`` the answer's ``"next"`` is the next batch (one
        round trip instead of two)."""
        body: dict[str, Any] = {"lease_id": lease_id, "results": list(results), "final": final}
        if next_lease:
            body["next"] = self.lease_body()
        return self._post("complete", body)

    def heartbeat(self, lease_id: str) -> dict[str, Any]:
        return self._post("heartbeat", {"lease_id": lease_id})

    def record(self) -> dict[str, Any]:
        """The queue's record of the run (``GET {url}/results``)."""
        return self._post("results", None)


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


def expand_command(command: Sequence[str], tests: Sequence[str]) -> list[str]:
    out: list[str] = []
    for arg in command:
        if arg == "{tests}":
            out.extend(tests)
        else:
            out.append(arg.replace("{tests}", " ".join(tests)))
    return out


def _run_command(
    command: Sequence[str], tests: list[str], failures: list[int]
) -> list[dict[str, Any]]:
    argv = expand_command(command, tests)
    start = time.monotonic()
    rc = subprocess.call(argv, env=scrub(os.environ))  # the tests never see a credential
    wall = time.monotonic() - start
    if rc != 0:
        failures.append(rc)
    outcome = "passed" if rc == 0 else "failed"
    per = wall / max(1, len(tests))
    return [{"id": t, "outcome": outcome, "duration_s": per} for t in tests]


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


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("give the command to run after --, with {tests} where the ids go")
    if not any("{tests}" in a for a in command):
        raise ConfigError("the command must contain {tests} (replaced by each batch's test ids)")
    env = os.environ
    pool, fallback = static_slice(args.matrix, args.shard)
    failures: list[int] = []
    ran: list[str] = []

    def run_batch(tests: list[str]) -> list[dict[str, Any]]:
        ran.extend(tests)
        return _run_command(command, tests, failures)

    if args.queue:
        client = QueueClient(
            args.queue,
            runner=args.runner or default_runner_name(env),
            labels=args.labels.split(",") if args.labels else default_labels(env),
            pool=pool,
            shard=args.shard,
            token=take_token(env),
        )
        try:
            with Reporter(client, args.heartbeat) as reporter:
                pull_batches(client, run_batch, reporter=reporter)
            print(f"ci-fanout: queue done; this runner ran {len(ran)} test(s)", file=sys.stderr)
            return 1 if failures else 0
        except QueueUnavailableError as exc:
            done = set(ran)
            remaining = [t for t in fallback if t not in done]
            if not args.shard:
                raise QueueUnavailableError(
                    f"{exc}; no static fallback (give --matrix and --shard)"
                ) from exc
            print(
                f"ci-fanout: {exc}; falling back to the static slice of shard {args.shard} "
                f"({len(remaining)} test(s))",
                file=sys.stderr,
            )
            fallback = remaining
    elif not args.shard:
        raise ConfigError("give --queue URL, or --matrix and --shard for a static slice")
    if fallback:
        run_batch(fallback)
    return 1 if failures else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "shard",
        help="run one shard: pull batches from a queue, or a static slice",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    ssub = p.add_subparsers(dest="shard_command", metavar="ACTION", required=True)
    r = ssub.add_parser("run", help="pull batches from --queue and run COMMAND on each")
    r.add_argument("--queue", metavar="URL", help="the run's queue URL")
    r.add_argument("--matrix", metavar="F", help="matrix JSON (static fallback slice)")
    r.add_argument("--shard", metavar="ID", help="this job's shard id in the matrix")
    r.add_argument("--runner", help="runner name (default: $CI_FANOUT_RUNNER, $RUNNER_NAME, …)")
    r.add_argument("--labels", help="comma-separated runner labels (default: $CI_FANOUT_LABELS)")
    r.add_argument(
        "--heartbeat", type=float, default=HEARTBEAT_S, metavar="S", help="heartbeat period"
    )
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- command with {tests}")
    r.set_defaults(func=cmd_run)
