"""``ci-app shard run``: pull test batches from a queue and run a command on each.

``ci-app shard run --queue URL [--matrix m.json --shard ID] -- <command with {tests}>``

Each leased batch replaces ``{tests}`` in the command (an argument that is exactly ``{tests}``
becomes one argument per test id; inside a longer argument the ids are joined by spaces) and
runs it; the batch is reported complete with the command's outcome. When the queue is
unreachable, the shard runs its static slice from the matrix instead and says so.

The HTTP side is :class:`ci_app.client.QueueClient`; the lease keeper and the pull loop,
shared with the pytest plugin, are in :mod:`ci_app.shard_runner`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ci_app.client import AppUnavailableError, QueueClient
from ci_app.credentials import scrub, take_token
from ci_app.errors import ConfigError
from ci_app.shard_runner import (
    HEARTBEAT_S,
    Reporter,
    default_labels,
    default_runner_name,
    pull_batches,
    static_slice,
)


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
        except AppUnavailableError as exc:
            done = set(ran)
            remaining = [t for t in fallback if t not in done]
            if not args.shard:
                raise AppUnavailableError(
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
