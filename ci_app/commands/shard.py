"""``ci-app shard run``: pull test batches from a queue and run a command on each.

``ci-app shard run --queue URL [--matrix m.json --shard ID] -- <command with {tests}>``

Each leased batch replaces ``{tests}`` in the command (an argument that is exactly ``{tests}``
becomes one argument per test id; inside a longer argument the ids are joined by spaces) and
runs it; the batch is reported complete with the command's outcome. When the queue is
unreachable, the shard runs its static slice from the matrix instead and says so.

Also home of :class:`QueueClient`, the stdlib HTTP client for the queue contract
(``docs/planner.md``), shared with the pytest plugin.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ci_app.credentials import scrub, take_token
from ci_app.errors import CiFanoutError, ConfigError, InputError
from ci_app.matrix.planner import Matrix

log = logging.getLogger(__name__)


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
        self.token = token
        self.timeout_s = timeout_s
        self.retries = retries

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                f"{self.url}/{path}", data=data, headers=headers, method="POST"
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

    def lease(self) -> dict[str, Any]:
        body: dict[str, Any] = {"runner": self.runner, "labels": self.labels}
        if self.pool:
            body["pool"] = self.pool
        return self._post("lease", body)

    def complete(
        self, lease_id: str, results: Sequence[Mapping[str, Any]], *, final: bool = True
    ) -> dict[str, Any]:
        return self._post(
            "complete", {"lease_id": lease_id, "results": list(results), "final": final}
        )

    def heartbeat(self, lease_id: str) -> dict[str, Any]:
        return self._post("heartbeat", {"lease_id": lease_id})


class Heartbeat:
    """Background thread that heartbeats the current lease every ``interval_s``."""

    def __init__(self, client: QueueClient, interval_s: float = 60.0) -> None:
        self.client = client
        self.interval_s = interval_s
        self.lease_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ci-fanout-heartbeat", daemon=True)

    def track(self, lease_id: str | None) -> None:
        self.lease_id = lease_id

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            lease_id = self.lease_id
            if lease_id is None:
                continue
            try:
                self.client.heartbeat(lease_id)
            except CiFanoutError as exc:  # the lease may just have completed; keep going
                log.debug("heartbeat for %s failed: %s", lease_id, exc)


def pull_batches(
    client: QueueClient,
    run_batch: Callable[[list[str]], list[dict[str, Any]]],
    *,
    on_lease: Callable[[str | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Lease, run, complete until the queue says done. Returns the tests this runner ran.

    ``on_lease`` is told the current lease id (None between leases), e.g. for heartbeats.
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
        if on_lease is not None:
            on_lease(lease_id)
        tests = [str(t) for t in got.get("tests") or ()]
        results = run_batch(tests)
        ran.extend(tests)
        client.complete(lease_id, results)
        if on_lease is not None:
            on_lease(None)


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


def static_slice(matrix_path: str | None, shard_id: str | None) -> tuple[str | None, list[str]]:
    """``(pool, tests)`` of a shard in a matrix file; ``(None, [])`` when not given."""
    if not matrix_path or not shard_id:
        return None, []
    try:
        doc = json.loads(Path(matrix_path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read matrix {matrix_path}: {exc}") from exc
    shard = Matrix.from_dict(doc).shard(shard_id)
    return shard.pool, list(shard.tests)


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
            token=take_token(env),
        )
        try:
            with Heartbeat(client, args.heartbeat) as hb:
                pull_batches(client, run_batch, on_lease=hb.track)
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
    r.add_argument("--heartbeat", type=float, default=60.0, metavar="S", help="heartbeat period")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- command with {tests}")
    r.set_defaults(func=cmd_run)
