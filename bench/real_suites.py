"""Queue mode and the report on real suites nobody here wrote (issue 13, item 7).

Fetches the sdists of networkx, packaging and more-itertools from the package index into a
cache outside the repository, runs each suite the way its CI does (networkx with
``--doctest-modules``, packaging's ``tests``, more-itertools' unittest cases with subtests)
and prints, measured side by side in this one run:

1. pytest's own summary line next to ci-fanout's counts for the same run (its JUnit through
   ``ci-app ingest`` and the report), and why they differ;
2. static vs queue mode at 1, 2 and 4 workers (1: the same tests in one process, so the
   difference is the queue's cost alone; more: the queue also balances): wall time (start of
   the first worker to the end of the last) and the workers' CPU time, the app server's CPU
   apart, the runs interleaved (static, queue, static, queue ...) and the medians compared;
   the queue runs against the real app (``ci-app serve``: gunicorn, DuckDB), on this machine
   (it competes with the workers for the CPUs, as it would not in CI); "others' CPU" is what
   the machine spent on anything else meanwhile (a shared machine: the two modes compete
   with the same load only when those are about equal). Both modes run with one environment
   (``Env.environ``: the same BLAS/OpenMP thread settings, whatever the caller's are);
3. a queue run with one worker SIGKILLed mid-run (``--kill-at 0.02,0.4,0.9``: in its first,
   a middle and its last batch, one run each): every planned test reported exactly once
   after the report step's merge (the killed worker's journal, the queue's record, the
   accounting), and the tests run twice (finished by the killed worker after its last
   heartbeat).

Targets (issue 13): queue overhead <= 5 % on packaging, <= 2 % on networkx; no planned test
lost or counted twice.

Usage: ``.venv/bin/python bench/real_suites.py [--suites networkx,packaging,more-itertools]
[--workers 1,2,4] [--reps 2] [--cache ~/.cache/ci-fanout-bench]``. Not part of ``make test``.
The test environment is a venv in the cache: the suites' extra test dependencies are installed
there (pip, by name); what the project's ``.venv`` already has (pytest, numpy, scipy,
matplotlib) is shared with it through a ``.pth`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from ci_app.artifacts.ingest import ingest_paths
from ci_app.ci.journal import merge_journal
from ci_app.ci.testenv import PLUGIN_NAME, plugin_dir
from ci_app.client import NO_RETRY, AppClient
from ci_app.commands.plan import load_history
from ci_app.errors import ProviderError
from ci_app.matrix.accounting import accounted_sets
from ci_app.matrix.inventory import Inventory
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.matrix.queue_api import parse_record
from ci_app.matrix.record import dead_runners, recovered_results
from ci_app.model.results import ResultSet, RunInfo
from ci_app.reporting.report import Counts, build_report
from ci_app.store import open_store
from ci_app.store.queue_record import mark_interrupted

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "bench-admin-token"


@dataclass(frozen=True)
class Suite:
    name: str
    spec: str  # what pip downloads
    args: tuple[str, ...]  # pytest arguments, as the project's CI passes them
    how: str  # the CI command this mirrors
    install: bool = False  # src layout: the tests import the installed package
    deps: tuple[str, ...] = ()
    target: float = 0.05  # queue overhead allowed


SUITES = {
    "networkx": Suite(
        "networkx",
        "networkx==3.4.2",
        ("--doctest-modules", "networkx"),
        "pytest --doctest-modules --durations=10 --pyargs networkx",
        deps=("pandas",),
        target=0.02,
    ),
    "packaging": Suite(
        "packaging",
        "packaging==24.2",
        ("tests",),
        "nox -s tests: pytest tests",
        install=True,
        deps=("pretend",),
        target=0.05,
    ),
    "more-itertools": Suite(
        "more-itertools",
        "more-itertools==10.5.0",
        ("tests",),
        "python -m unittest (here: pytest, which runs unittest cases and their subtests)",
    ),
}


# ------------------------------------------------------------------------------ environment
@dataclass
class Env:
    cache: Path
    python: Path
    plugin: Path

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_FANOUT_", "PYTEST_"))}
        env["PYTHONPATH"] = str(self.plugin)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env


def _run(argv: Sequence[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=True, text=True, **kw)


def prepare(cache: Path, suites: Sequence[Suite], tmp: Path) -> tuple[Env, dict[str, Path]]:
    """The sdists (downloaded once), unpacked; the test venv with the suites' extra deps; the
    plugin of *this* checkout under ``tmp`` (a shared cache's link could name another
    checkout, or a removed one)."""
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    venv = cache / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", venv])
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
        ).stdout.strip()
    )
    # share what the project's venv has (pytest, numpy, scipy, matplotlib, lxml): this
    # checkout's, each time (the cache outlives the checkout that made it)
    (site / "zz-ci-fanout-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    deps = sorted({d for s in suites for d in s.deps})
    if deps:
        _run([python, "-m", "pip", "install", "--quiet", *deps], capture_output=True)
    sources: dict[str, Path] = {}
    for s in suites:
        name, version = s.spec.split("==")
        src = cache / "src" / f"{name}-{version}"
        if not src.exists():
            found = list(sdists.glob(f"{name.replace('-', '[-_]')}-{version}.tar.gz"))
            if not found:
                _run(
                    [
                        python,
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--no-binary",
                        ":all:",
                        s.spec,
                        "-d",
                        sdists,
                    ],
                    capture_output=True,
                )
                found = list(sdists.glob(f"{name.replace('-', '[-_]')}-{version}.tar.gz"))
            with tarfile.open(found[0]) as tf:
                tf.extractall(cache / "src", filter="data")
            unpacked = next(
                p
                for p in (cache / "src").iterdir()
                if p.name.lower() == src.name.replace("-", "_") or p.name.lower() == src.name
            )
            if unpacked != src:
                unpacked.rename(src)
        if s.install:
            _run([python, "-m", "pip", "install", "--quiet", "--no-deps", src], capture_output=True)
        sources[s.name] = src
    plugin = plugin_dir(tmp / "plugin")
    return Env(cache, python, plugin), sources


# ------------------------------------------------------------------------------ pytest runs
_SUMMARY = re.compile(r"^=*\s*(?P<body>(\d+ \w+(, )?)+.*) in (?P<secs>[\d.]+)s")


def pytest_summary(output: str) -> tuple[dict[str, int], float, str]:
    """Counts, seconds and the line of pytest's final summary."""
    for line in reversed(output.strip().splitlines()):
        m = _SUMMARY.match(line.strip().strip("= "))
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m.group("body"))}
            return counts, float(m.group("secs")), line.strip().strip("= ")
    return {}, 0.0, "(no summary line)"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: Path
    started: float
    ended: float = 0.0
    cpu_s: float = 0.0
    rc: int | None = None


def start(env: Env, cwd: Path, args: Sequence[str], name: str, log: Path, **extra: str) -> Proc:
    out = log.open("w")
    popen = subprocess.Popen(
        [
            str(env.python),
            "-m",
            "pytest",
            "-p",
            PLUGIN_NAME,
            "-p",
            "no:cacheprovider",
            "-q",
            *args,
        ],
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=env.environ(**extra),
    )
    out.close()
    return Proc(name, popen, log, time.monotonic())


def wait_all(procs: Sequence[Proc]) -> None:
    """Reap each process with its own resource usage (CPU seconds of that process tree)."""
    pending = {p.popen.pid: p for p in procs}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        p = pending.pop(pid, None)
        if p is None:
            continue
        p.ended = time.monotonic()
        p.cpu_s = usage.ru_utime + usage.ru_stime
        p.rc = os.waitstatus_to_exitcode(status)
        p.popen.returncode = p.rc


# ------------------------------------------------------------------------------ the app
class Server:
    """``ci-app serve`` (gunicorn + DuckDB) on a free port, the API's admin client."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "server.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CI_FANOUT_")},
            "CI_FANOUT_API_TOKEN": ADMIN,
            "CI_FANOUT_LOG_LEVEL": "warning",
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ci_app",
                    "serve",
                    "--port",
                    "0",
                    "--db",
                    str(tmp / "app.duckdb"),
                    "--log-level",
                    "info",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
            )
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url and time.monotonic() < deadline:
            m = re.search(r"listening at (http://[\d.]+:\d+)", self.log.read_text(errors="replace"))
            self.url = m.group(1) if m else ""
            time.sleep(0.1)
        if not self.url:
            raise RuntimeError(f"ci-app serve did not start:\n{self.log.read_text()}")
        health = AppClient(self.url, timeout_s=2, retry=NO_RETRY)
        for _ in range(300):
            try:
                health.exchange("GET", "healthz")
                break
            except ProviderError:
                time.sleep(0.1)

    def call(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> Any:
        # one try: a benchmark reports the server's failures instead of retrying them away
        app = AppClient(self.url, token, timeout_s=120, retry=NO_RETRY)
        return app.request(method, path, body)

    def cpu_s(self) -> float:
        total = 0.0
        with_children = psutil.Process(self.proc.pid)
        for p in [with_children, *with_children.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------------------ one suite
@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


def _counts_of(sets: Sequence[ResultSet], run: RunInfo) -> Counts:
    with open_store(":memory:") as store:
        store.results.ingest_many(
            [
                rs.with_run(
                    replace(
                        run,
                        shard_id=rs.run.shard_id,
                        started_at=rs.run.started_at,
                        finished_at=rs.run.finished_at,
                    )
                )
                for rs in sets
            ]
        )
        return build_report(store.results, run.run_id or "run").head


class Bench:
    def __init__(self, env: Env, suite: Suite, src: Path, tmp: Path, server: Server) -> None:
        self.env, self.suite, self.src, self.server = env, suite, src, server
        self.tmp = tmp / suite.name
        self.tmp.mkdir(parents=True)
        self.n_runs = 0
        #: CPU seconds the machine gave to anything but the workers and the app server during
        #: the last run (other users of a shared machine: the two modes' runs compete with
        #: the same load only if this is about equal)
        self.others = 0.0

    def baseline(self) -> tuple[Matrix, Inventory, dict[str, Any]]:
        inv_path = self.tmp / "inventory.json"
        p = start(
            self.env,
            self.src,
            [*self.suite.args, "--collect-only", "--fanout-inventory", str(inv_path)],
            "collect",
            self.tmp / "collect.log",
        )
        wait_all([p])
        inventory = Inventory.from_dict(json.loads(inv_path.read_text()))
        junit = self.tmp / "baseline.xml"
        p = start(
            self.env,
            self.src,
            [*self.suite.args, f"--junitxml={junit}"],
            "baseline",
            self.tmp / "baseline.log",
        )
        wait_all([p])
        counts, secs, line = pytest_summary(p.log.read_text(errors="replace"))
        run = RunInfo(
            run_id="baseline", repo="bench", commit="0" * 40, branch="main", started_at=None
        )
        rs = ingest_paths([junit]).with_run(
            replace(run, shard_id="all", started_at=_iso(p.started), finished_at=_iso(p.ended))
        )
        ours = _counts_of([rs], run)
        info = {
            "collected": len(inventory.tests),
            "pytest_line": line,
            "pytest_counts": counts,
            "pytest_s": secs,
            "ours": ours,
            "junit_entries": len(rs.tests),
            "wall": p.ended - p.started,
        }
        return plan_from(inventory, junit), inventory, info

    def static(self, matrix: Matrix, k: int) -> tuple[float, float, list[str]]:
        (self.tmp / "m.json").write_text(json.dumps(matrix.to_dict()))
        busy0, server0 = _machine_busy(), self.server.cpu_s()
        procs = [
            start(
                self.env,
                self.src,
                [
                    *self.suite.args,
                    "--fanout-matrix",
                    str(self.tmp / "m.json"),
                    "--fanout-shard",
                    s.id,
                    "--fanout-journal",  # as the CI shard step runs it, in both modes
                    str(self.tmp / f"static-{s.id}.journal"),
                    f"--junitxml={self.tmp / f'static-{s.id}.xml'}",
                ],
                s.id,
                self.tmp / f"static-{s.id}.log",
            )
            for s in matrix.shards[:k]
        ]
        wait_all(procs)
        self.others = _machine_busy() - busy0 - (self.server.cpu_s() - server0)
        self.others -= sum(p.cpu_s for p in procs)
        ids = [
            t.id
            for s in matrix.shards[:k]
            for t in ingest_paths([self.tmp / f"static-{s.id}.xml"]).tests
        ]
        return _wall(procs), sum(p.cpu_s for p in procs), ids

    def queue(
        self, matrix: Matrix, k: int, *, kill: float | None = None
    ) -> tuple[float, float, list[ResultSet], dict[str, Any]]:
        """Wall, the runners' CPU, their result sets; ``extra["server_cpu"]``."""
        self.n_runs += 1
        run_id = f"{self.suite.name}-{k}-{self.n_runs}"
        created = self.server.call(
            "POST", "/api/v1/queue", {"run": run_id, "matrix": matrix.to_dict()}
        )
        (self.tmp / "m.json").write_text(json.dumps(matrix.to_dict()))
        busy0, cpu0 = _machine_busy(), self.server.cpu_s()
        procs = []
        for i, s in enumerate(matrix.shards[:k]):
            procs.append(
                start(
                    self.env,
                    self.src,
                    [
                        *self.suite.args,
                        "--fanout-queue",
                        created["url"],
                        "--fanout-matrix",
                        str(self.tmp / "m.json"),
                        "--fanout-shard",
                        s.id,
                        "--fanout-runner",
                        f"w{i}",
                        "--fanout-journal",
                        str(self.tmp / f"{run_id}-{s.id}.journal"),
                        f"--junitxml={self.tmp / f'{run_id}-{s.id}.xml'}",
                    ],
                    s.id,
                    self.tmp / f"{run_id}-{s.id}.log",
                    CI_FANOUT_QUEUE_TOKEN=created["token"],
                )
            )
        if kill is not None:  # the first worker dies when this share of the run is done

            def progress() -> float:
                p = self.server.call(
                    "GET", f"/api/v1/queue/{run_id}/progress", token=created["token"]
                )
                return float(p["completed"]) / max(1, int(p["total"]))

            victim = procs[0]
            journal = self.tmp / f"{run_id}-{victim.name}.journal"
            threading.Thread(
                target=_kill_at, args=(victim, journal, progress, kill), daemon=True
            ).start()
        wait_all(procs)
        server_cpu = self.server.cpu_s() - cpu0
        self.others = _machine_busy() - busy0 - server_cpu - sum(p.cpu_s for p in procs)
        sets = []
        for p in procs:
            rs = ingest_paths([self.tmp / f"{run_id}-{p.name}.xml"])
            if p.rc not in (0, 1, 5):
                rs, _ = merge_journal(rs, self.tmp / f"{run_id}-{p.name}.journal", why="killed")
            sets.append(rs.with_run(RunInfo(run_id=run_id, shard_id=p.name, runner_name=p.name)))
        record = self.server.call("GET", f"/api/v1/queue/{run_id}/results", token=created["token"])
        extra = {
            "record": record,
            "rcs": {p.name: p.rc for p in procs},
            "run_id": run_id,
            "server_cpu": server_cpu,
        }
        return _wall(procs), sum(p.cpu_s for p in procs), sets, extra


def _kill_at(proc: Proc, journal: Path, progress: Callable[[], float], at: float) -> None:
    """SIGKILL ``proc`` once the queue holds results for ``at`` of the run and the worker has
    finished a test (so it dies mid-batch; near 0 in its first batch, near 1 in its last)."""
    while proc.popen.poll() is None:
        try:
            n = journal.read_bytes().count(b"\n")
        except OSError:
            n = 0
        if n and progress() >= at:
            os.kill(proc.popen.pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _machine_busy() -> float:
    """CPU seconds all CPUs of the machine spent busy since boot."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0))


def _wall(procs: Sequence[Proc]) -> float:
    return max(p.ended for p in procs) - min(p.started for p in procs)


def _iso(monotonic: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(time.time() - (time.monotonic() - monotonic), UTC).isoformat()


def plan_from(inventory: Inventory, junit: Path, k: int = 2, mode: str = "static") -> Matrix:
    history = load_history([str(junit)])
    return plan_matrix(inventory, history, None, PlanOptions(mode=mode, shards=k))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ main
def bench_suite(
    env: Env,
    suite: Suite,
    src: Path,
    tmp: Path,
    server: Server,
    workers: Sequence[int],
    reps: int,
    kill_only: bool = False,
    kill_at: Sequence[float] = (0.4,),
) -> list[str]:
    b = Bench(env, suite, src, tmp, server)
    _, inventory, base = b.baseline()
    junit = b.tmp / "baseline.xml"
    out = [f"\n## {suite.name} ({suite.spec}; CI: {suite.how})", ""]
    ours: Counts = base["ours"]
    pc = base["pytest_counts"]
    out.append(f"collected {base['collected']:,} items; JUnit entries {base['junit_entries']:,}")
    out.append(f"pytest says : {base['pytest_line']}")
    out.append(
        f"ci-fanout   : {ours.tests:,} tests: {ours.passed:,} passed, {ours.failed:,} failed, "
        f"{ours.errors:,} errors, {ours.skipped:,} skipped; wall {ours.wall_s:.1f} s "
        f"(pytest {base['pytest_s']:.1f} s, process {base['wall']:.1f} s)"
    )
    diff = (
        sum(
            pc.get(w, 0)
            for w in ("passed", "failed", "skipped", "xfailed", "xpassed", "error", "errors")
        )
        - ours.tests
    )
    out.append(f"difference  : pytest's line sums to {diff:+,} vs our test count (see docs)")
    out.append("")
    out.append(
        "| workers | static wall | queue wall | wall ratio | static CPU | queue CPU | CPU ratio "
        "| app server CPU | others' CPU (static / queue) | target |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    planned = {t.id for t in inventory.tests}
    for k in () if kill_only else workers:
        static_m = plan_from(inventory, junit, k, "static")
        queue_m = plan_from(inventory, junit, k, "queue")
        st, qu = Timing(), Timing()
        server_cpu: list[float] = []
        others: tuple[list[float], list[float]] = ([], [])
        for _ in range(reps):
            wall, cpu, ids = b.static(static_m, k)
            st.add(wall, cpu)
            others[0].append(b.others)
            _check_once("static", ids, planned)
            wall, cpu, sets, extra = b.queue(queue_m, k)
            qu.add(wall, cpu)
            others[1].append(b.others)
            server_cpu.append(extra["server_cpu"])
            _check_once("queue", [t.id for rs in sets for t in rs.tests], planned)
        sw, qw = statistics.median(st.wall), statistics.median(qu.wall)
        sc, qc = statistics.median(st.cpu), statistics.median(qu.cpu)
        out.append(
            f"| {k} | {sw:.1f} s | {qw:.1f} s | {qw / sw:.3f} | {sc:.1f} s | {qc:.1f} s | "
            f"{qc / sc:.3f} | {statistics.median(server_cpu):.1f} s | "
            f"{statistics.median(others[0]):.1f} s / {statistics.median(others[1]):.1f} s | "
            f"≤ {1 + suite.target:.2f} |"
        )
        print(out[-1], file=sys.stderr, flush=True)
    out.append("")
    out.extend(kill_check(b, inventory, junit, max(workers), at) for at in kill_at)
    return out


def _check_once(mode: str, ids: list[str], planned: set[str]) -> None:
    c = Counter(ids)
    twice = [t for t, n in c.items() if n > 1]
    missing = planned - set(c)
    if twice or missing:
        print(
            f"  {mode}: {len(twice)} test(s) reported twice, {len(missing)} planned test(s) "
            f"missing (e.g. {(twice + sorted(missing))[:3]})",
            file=sys.stderr,
        )


def kill_check(b: Bench, inventory: Inventory, junit: Path, k: int, at: float) -> str:
    matrix = plan_from(inventory, junit, k, "queue")
    wall, _cpu, sets, extra = b.queue(matrix, k, kill=at)
    run = RunInfo(run_id=extra["run_id"], repo="bench", commit="1" * 40, branch="main")
    results, expired = parse_record(extra["record"])
    record = {r.id: r for r in results}
    recovered = recovered_results(record, sets, run)
    all_sets = [*sets, *([recovered] if recovered is not None else [])]
    acc, accounted = accounted_sets(matrix, all_sets, run)
    raw = Counter(t.id for rs in all_sets for t in rs.tests)
    with open_store(":memory:") as store:
        store.results.ingest_many(
            [rs.with_run(replace(run, shard_id=rs.run.shard_id)) for rs in accounted]
        )
        killed = {n: "killed" for n, rc in extra["rcs"].items() if rc not in (0, 1, 5)}
        dead_shards, dead = dead_runners(expired)
        mark_interrupted(
            store.results, run.run_id or "", shards={**dead_shards, **killed}, runners=dead
        )
        report = build_report(store.results, run.run_id or "")
    h = report.head
    # every planned test reported, once (the report counts ids); entries the collection does
    # not list (module-level skips) are reported on top, as unplanned
    once = not acc.lost and acc.ran == acc.planned - acc.not_run
    victim = next(iter(killed), "?")
    return (
        f"kill one of {k} workers at {at:.0%} of the run ({victim}, exit "
        f"{extra['rcs'].get(victim)}): "
        f"{acc.planned:,} planned, {acc.ran:,} of them reported ({h.tests:,} tests counted, "
        f"{len(acc.unplanned)} unplanned), {len(acc.lost)} lost, "
        f"{sum(1 for n in raw.values() if n > 1)} ran twice (finished after the last "
        f"heartbeat), {len(recovered.tests) if recovered else 0} from the queue's record; "
        f"report {'red' if not report.ok else 'GREEN'} for "
        f"{[s.shard_id for s in report.comparison.infra_shards]}; new failures "
        f"{len(report.comparison.new_failures)} -> exactly once: {'yes' if once else 'NO'} "
        f"(wall {wall:.1f} s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--kill-only", action="store_true", help="only the counts and the kill-one-worker check"
    )
    ap.add_argument(
        "--kill-at",
        default="0.4",
        help="shares of the run done when a worker is SIGKILLed, one check each "
        "(e.g. 0.02,0.4,0.9: its first, a middle, its last batch)",
    )
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "ci-fanout-bench"))
    args = ap.parse_args(argv)
    suites = [SUITES[s] for s in args.suites.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    lines = [
        f"# bench/real_suites.py — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU(s), "
        f"reps {args.reps} (medians)"
    ]
    with tempfile.TemporaryDirectory(prefix="ci-fanout-bench-") as tmp:
        env, sources = prepare(Path(args.cache).expanduser(), suites, Path(tmp))
        server = Server(Path(tmp))
        try:
            for s in suites:
                lines += bench_suite(
                    env,
                    s,
                    sources[s.name],
                    Path(tmp),
                    server,
                    workers,
                    args.reps,
                    args.kill_only,
                    [float(x) for x in args.kill_at.split(",")],
                )
                print("\n".join(lines[-(len(workers) + 12) :]), file=sys.stderr, flush=True)
        finally:
            server.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
