"""Queue mode with real pytest workers: a worker SIGKILLed at its first, a middle or its last
batch leaves every planned test reported exactly once; a long last test never gets its runner's
prefetched batch handed to someone else (issue 13, items 1, 2 and 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ci_app.artifacts.ingest import ingest_paths
from ci_app.ci.journal import merge_journal
from ci_app.cli import main
from ci_app.matrix import queue_api
from ci_app.matrix.accounting import accounted_sets
from ci_app.matrix.planner import Matrix
from ci_app.matrix.queue import QueueConfig, queue_order
from ci_app.matrix.record import recovered_results
from ci_app.model.results import ResultSet, RunInfo
from ci_app.reporting.report import build_report
from ci_app.store import open_store
from ci_app.store.queue_record import mark_interrupted

from .conftest import QueueServer

N = 24
SUITE = f"""
import os, signal, time
from pathlib import Path

import pytest


@pytest.mark.parametrize("i", range({N}))
def test_t(i, request):
    with open(os.environ["RUN_LOG"], "a") as f:
        f.write(f"{{os.getpid()}} {{request.node.nodeid}}\\n")
    if request.node.nodeid == os.environ.get("KILL_ID"):
        try:  # the first worker to get here dies (SIGKILL: no report, no teardown)
            fd = os.open(os.environ["RUN_LOG"] + ".killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("SLEEP", "0.01")))
    if request.node.nodeid == os.environ.get("LONG_ID"):
        time.sleep(float(os.environ["LONG_S"]))
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_q.py").write_text(textwrap.dedent(SUITE))
    return tmp_path


def _plan(suite: Path, durations: dict[str, float], shards: int = 2) -> Matrix:
    ids = [f"test_q.py::test_t[{i}]" for i in range(N)]
    (suite / "tests.txt").write_text("\n".join(ids) + "\n")
    (suite / "durations.json").write_text(json.dumps(durations))
    argv = ["plan", "--tests", str(suite / "tests.txt"), "--durations", str(suite / "d.json")]
    (suite / "d.json").write_text(json.dumps(durations))
    argv += ["--shards", str(shards), "--mode", "queue", "--output", str(suite / "m.json")]
    assert main(argv) == 0
    return Matrix.from_dict(json.loads((suite / "m.json").read_text()))


def _worker(
    suite: Path, url: str, runner: str, shard: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "test_q.py",
            "--fanout-queue",
            url,
            "--fanout-runner",
            runner,
            "--fanout-matrix",
            "m.json",
            "--fanout-shard",
            shard,
            "--fanout-heartbeat",
            "0.2",
            "--fanout-journal",
            f"{runner}.journal",
            f"--junitxml={runner}.xml",
        ],
        cwd=suite,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUN_LOG": str(suite / "run.log"), **env},
    )


def _runs(suite: Path) -> list[tuple[int, str]]:
    return [
        (int(pid), test)
        for pid, test in (line.split() for line in (suite / "run.log").read_text().splitlines())
    ]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_sigkilled_worker_leaves_every_test_reported_once(
    suite: Path, queue_server: QueueServer, tmp_path: Path, where: str
) -> None:
    durations = {f"test_q.py::test_t[{i}]": 0.1 for i in range(N)}
    matrix = _plan(suite, durations)
    order = [
        t for it in queue_order([it for p in matrix.pools for it in p.queue]) for t in it.tests
    ]
    kill_id = {"first": order[0], "middle": order[N // 2], "last": order[-1]}[where]
    queue_api.handle_create(
        queue_server.state,
        "run",
        matrix.to_dict(),
        time.time(),
        QueueConfig(lease_timeout_s=1.0, pull_overhead_s=0.01),
    )
    url = queue_server.url("run")
    shards = [s.id for s in matrix.shards]
    # the victim works alone through the queue in order until it reaches the killer test
    victim = _worker(suite, url, "victim", shards[0], {"KILL_ID": kill_id})
    out = victim.communicate(timeout=60)[0]
    assert victim.returncode == -9, out
    survivor = _worker(suite, url, "survivor", shards[1], {"KILL_ID": kill_id})
    out = survivor.communicate(timeout=60)[0]
    assert survivor.returncode == 0, out
    assert queue_api.handle_progress(queue_server.state, "run")["done"] is True

    # the report step's view: the victim's journal (its command died), the survivor's JUnit,
    # the queue's record, then the accounting against the plan
    run = RunInfo(run_id="run", repo="o/r", commit="c1", branch="main")
    victim_rs, recovered = merge_journal(
        ResultSet(run=RunInfo(run_id="run", shard_id=shards[0], runner_name="victim")),
        suite / "victim.journal",
        why="the test command was killed by signal 9 (SIGKILL)",
    )
    survivor_rs = ingest_paths([suite / "survivor.xml"]).with_run(
        RunInfo(run_id="run", shard_id=shards[1], runner_name="survivor")
    )
    sets = [victim_rs, survivor_rs]
    from_queue = recovered_results(queue_server.state.results("run"), sets, run)
    if from_queue is not None:
        sets.append(from_queue)
    acc, sets = accounted_sets(matrix, sets, run)
    assert acc.lost == () and acc.ran == N and acc.unplanned == ()

    # the victim lost at most the test it was running: everything it finished is reported
    runs = _runs(suite)
    victim_pid = runs[0][0]
    finished_by_victim = [t for pid, t in runs if pid == victim_pid and t != kill_id]
    assert recovered == len(finished_by_victim)
    assert {t.id for t in victim_rs.tests} == set(finished_by_victim)
    ran = Counter(t for _, t in runs)
    assert set(ran) == set(order)  # every test ran ...
    twice = {t for t, n in ran.items() if n > 1}
    assert kill_id in twice or where == "first"  # ... the killed one again, elsewhere
    # the others that ran twice: finished by the victim after its last flush to the queue
    # (so the queue re-leased them), all in its journal; counted once below
    record = queue_server.state.results("run")
    assert twice - {kill_id} <= set(finished_by_victim)
    assert not any(record[t].runner == "victim" for t in twice)

    # stored and reported: each planned test exactly once, all passed, the dead shard named
    with open_store(":memory:") as store:
        store.results.ingest_many([rs.with_run(replace_run(rs.run, run)) for rs in sets])
        mark_interrupted(
            store.results,
            "run",
            shards={shards[0]: "its test command was killed by signal 9 (SIGKILL)"},
            runners={"victim": "its queue leases expired"},
        )
        report = build_report(store.results, "run")
    assert (report.head.tests, report.head.passed, report.head.lost) == (N, N, 0)
    assert [s.shard_id for s in report.comparison.infra_shards] == [shards[0]]
    assert report.comparison.new_failures == () and not report.ok  # red for infra only


def replace_run(mine: RunInfo, run: RunInfo) -> RunInfo:
    from dataclasses import replace

    return replace(run, shard_id=mine.shard_id, runner_name=mine.runner_name)


def test_a_long_last_test_keeps_its_prefetched_batch(
    suite: Path, queue_server: QueueServer
) -> None:
    """The worker leases its next batch before its last test; that test outlives the lease
    timeout several times over. Heartbeats cover both leases, so the other worker is never
    handed the prefetched batch: every test runs exactly once."""
    durations: dict[str, Any] = {f"test_q.py::test_t[{i}]": 0.1 for i in range(N)}
    long_id = "test_q.py::test_t[0]"
    durations[long_id] = 5.0  # first in the queue, alone in its batch
    matrix = _plan(suite, durations)
    queue_api.handle_create(
        queue_server.state,
        "run",
        matrix.to_dict(),
        time.time(),
        QueueConfig(lease_timeout_s=1.0, pull_overhead_s=0.01, wait_s=0.2),
    )
    url = queue_server.url("run")
    env = {"LONG_ID": long_id, "LONG_S": "3", "SLEEP": "0.05"}
    first = _worker(suite, url, "w1", matrix.shards[0].id, env)
    time.sleep(0.5)  # w1 takes the long test
    second = _worker(suite, url, "w2", matrix.shards[1].id, env)
    outs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    ran = Counter(t for _, t in _runs(suite))
    assert sorted(ran) == sorted(f"test_q.py::test_t[{i}]" for i in range(N))
    assert set(ran.values()) == {1}, {t: n for t, n in ran.items() if n > 1}
    p = queue_api.handle_progress(queue_server.state, "run")
    assert p["done"] and p["expired"] == 0
