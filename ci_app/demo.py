"""``make demo``: the whole ci-fanout flow on one machine, on the embedded default.

1. the probe describes this machine and derives its runner labels;
2. ``ci-app serve`` (gunicorn) starts on a free loopback port with a fresh DuckDB file;
3. for a few simulated commits of ``examples/sample-project`` (main, then a pull
   request): ``ci-app plan --mode queue`` over two local runners, the run's queue is
   created through the API, two local runner processes (the local provider) pull
   batches inside one pytest session each, every shard's JUnit report is ingested
   into ``results.json`` and posted to ``/api/v1/results``; the server stores it
   and its report job updates the sticky comment (the local forge writes it under
   ``out/``);
4. the final report is rendered: ``out/comment.md``, ``out/*.png``, ``out/report.json``;
5. the dashboard is served at a printed URL (until Ctrl-C when run in a terminal); the two
   local runners heartbeat the probe's profile with runner tokens of their own, like any
   runner, and a screenshot of each dashboard page is saved as ``out/dashboard-*.png``
   (Playwright with Debian's Chromium, when installed).

Environment: ``CI_FANOUT_DB`` (default ``out/ci-fanout.duckdb``, recreated each run),
``CI_FANOUT_OUT`` (default ``out``), ``CI_FANOUT_DEMO_SERVE`` (seconds to keep the
dashboard up after the run; default: until Ctrl-C in a terminal, 0 otherwise).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

from ci_app.artifacts.ingest import ingest_paths
from ci_app.browser.record import merge_record_file, record_path_for
from ci_app.ci.journal import merge_journal
from ci_app.cli import main as ci_app
from ci_app.client import NO_RETRY, AppClient
from ci_app.errors import CiFanoutError, ProviderError
from ci_app.matrix.accounting import accounted_sets
from ci_app.matrix.planner import Matrix
from ci_app.model.results import ResultSet, RunInfo
from ci_app.providers.base import DispatchRequest, JobState
from ci_app.providers.local import LocalProvider

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-project"
REPO = "example/sample-project"
RUNNERS = 2
#: (commit number, branch, pr) of the simulated history; the last one is the PR to report.
COMMITS: tuple[tuple[int, str, int | None], ...] = (
    (1, "main", None),
    (2, "main", None),
    (3, "main", None),
    (4, "main", None),
    (5, "main", None),
    (6, "feature/faster-slugify", 7),
)


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _sha(n: int) -> str:
    return f"{n:02d}" + "c0ffee" * 6 + f"{n:02d}"


def _quiet(argv: Sequence[str]) -> tuple[int, str]:
    """Run ``ci-app ARGV`` in this process; returns (exit code, captured stderr)."""
    err = StringIO()
    with redirect_stderr(err), redirect_stdout(StringIO()):
        code = ci_app(list(argv))
    return code, err.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``ci-app serve`` in a child process, and a tiny JSON client for its API."""

    def __init__(self, db: Path, out: Path, token: str, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = (out / "server.log").open("ab")
        env = dict(os.environ)
        env.update(
            {
                "CI_FANOUT_API_TOKEN": token,
                "CI_FANOUT_PUBLIC_URL": self.url,
                "CI_FANOUT_LOG_LEVEL": "warning",
                # results of provider "local": the server writes their sticky comment here
                "CI_FANOUT_LOCAL_OUT_DIR": str(out),
                # the runner processes below: the local provider syncs their labels
                "CI_FANOUT_LOCAL_RUNNERS": " ".join(f"local-{i + 1}" for i in range(RUNNERS)),
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ci_app", "serve", "--port", str(self.port), "--db", str(db)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CiFanoutError(f"ci-app serve exited early; see {self.log.name}")
            try:
                AppClient(self.url, timeout_s=1, retry=NO_RETRY).exchange("GET", "healthz")
                return
            except ProviderError:
                time.sleep(0.1)
        raise CiFanoutError(f"ci-app serve did not answer within {timeout:.0f}s")

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        return AppClient(self.url, token or self.token, timeout_s=30).request(method, path, body)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the job worker has nothing queued or leased."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.call("GET", "/api/v1/jobs")
            counts = jobs.get("counts", {}) if isinstance(jobs, dict) else {}
            if not counts.get("queued") and not counts.get("leased"):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def probe() -> tuple[list[str], Any]:
    """Describe this machine; returns its labels and its HardwareProfile."""
    from ci_app.model.labels import derive_labels
    from runner_probe.detect import DetectOptions, detect

    # the browser probe earns webgpu-sw here, which routes the sample's WebGPU tests
    profile = detect(DetectOptions(browser=Path("/usr/bin/chromium").exists()))
    labels = sorted(derive_labels(profile))
    cpu, mem = profile.cpu, profile.memory
    _say(
        f"probe: {cpu.model or cpu.arch}, {cpu.effective} effective CPU(s), "
        f"{(mem.effective_bytes or 0) / 1e9:.1f} GB effective memory, "
        f"GPUs: {len(profile.gpus) or 'none'}"
    )
    _say(f"probe: labels {' '.join(labels)}")
    return labels, profile


class LocalRunners:
    """The local runners register like any other: a runner token each (admin API), then
    heartbeats with this machine's profile every few seconds, until :meth:`stop`."""

    def __init__(self, server: Server, profile: Any, names: Sequence[str]) -> None:
        import threading

        from runner_probe.heartbeat import HeartbeatClient, HeartbeatConfig, sample_load

        self._stop = threading.Event()
        self.clients = []
        for name in names:
            path = f"/api/v1/admin/runners/{name}/tokens"
            token = server.call("POST", path, {"provider": "local"})["token"]
            config = HeartbeatConfig(
                server=server.url, token=token, runner=name, interval_s=5.0, jitter=0.0
            )
            self.clients.append(
                HeartbeatClient(
                    config, profile_fn=lambda: profile, load_fn=sample_load, wait=self._stop.wait
                )
            )
        self.threads: list[threading.Thread] = []

    def start(self) -> LocalRunners:
        import threading

        self._stop.clear()
        for client in self.clients:
            client.force_profile = True
            client.beat()  # online before the first shard starts
            t = threading.Thread(target=client.run, daemon=True, name=client.config.runner)
            t.start()
            self.threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=15)
        self.threads = []


def save_dashboard_screenshots(server: Server, out: Path, last: str, report: Any) -> None:
    """One screenshot per dashboard page, as ``out/dashboard-<page>.png`` (for the README)."""
    from ci_app.reporting.links import page_key
    from ci_app.web.screenshots import save_screenshots

    named = [f.get("test_id") for f in report.get("new_failures") or []]
    named += [f.get("test_id") for f in report.get("flaky") or []]
    pages = [("overview", "/"), ("runners", "/runners"), ("runner", "/runners/local-1"),
             ("runs", "/runs"), ("run", f"/runs/{last}"), ("tests", "/tests?status=failed"),
             ("repo", f"/repo?name={REPO}"), ("jobs", "/jobs")]  # fmt: skip
    for n, test_id in enumerate(t for t in named[:2] if t):
        pages.append((f"test-{n + 1}", f"/tests/{page_key(test_id)}"))
    try:
        shots = save_screenshots(server.url, pages, out)
    except RuntimeError as exc:
        _say(f"no dashboard screenshots: {exc}")
        return
    for shot in shots:
        if shot.status != 200 or shot.problems:
            _say(f"dashboard page {shot.path}: HTTP {shot.status}; {'; '.join(shot.problems)}")
    _say(f"dashboard screenshots: {', '.join(str(s.file.name) for s in shots if s.file)}")


def _with(run: RunInfo, **changes: Any) -> RunInfo:
    from dataclasses import replace

    return replace(run, **changes)


def _browser_env(labels: Sequence[str], work: Path) -> dict[str, str]:
    """With a WebGPU label (the browser probe found an adapter) the sample's browser tests are
    collected and run in ci-fanout's browser pool; the runner promises its labels, and the
    renderer the demo kills on purpose is logged apart from this machine's crash log."""
    if not {"webgpu", "webgpu-sw"} & set(labels):
        return {}
    return {
        "CI_FANOUT_DEMO_BROWSER": "1",
        "CI_FANOUT_LABELS": ",".join(labels),
        "CI_FANOUT_BROWSER_HEALTH": str(work / "browser-health.jsonl"),
    }


def run_commit(
    server: Server,
    provider: LocalProvider,
    work: Path,
    labels: list[str],
    commit: int,
    branch: str,
    pr: int | None,
    history: list[Path],
) -> Path:
    """Plan, run and post one simulated commit; returns its merged results.json."""
    run_id = f"demo-{commit}"
    cdir = work / run_id
    cdir.mkdir(parents=True)
    runners = [{"name": f"local-{i + 1}", "labels": labels} for i in range(RUNNERS)]
    (cdir / "runners.json").write_text(json.dumps(runners))
    browser_env = _browser_env(labels, work)
    os.environ.update(browser_env)  # for the plan's collection and the runners; removed below
    matrix_path = cdir / "matrix.json"
    argv = ["plan", "--collect", str(SAMPLE / "tests"), "--runners", str(cdir / "runners.json"),
            "--mode", "queue", "--shards", str(RUNNERS), "--setup-seconds", "1",
            "--unsatisfied", "report", "--output", str(matrix_path)]  # fmt: skip
    for h in history[-3:]:
        argv += ["--durations", str(h)]
    code, err = _quiet(argv)
    if code != 0:
        raise CiFanoutError(f"ci-app plan failed: {err.strip()}")
    matrix = json.loads(matrix_path.read_text())
    shards = [s["id"] for s in matrix["shards"]]
    # the run's token is bound to this identity: results naming anything else are refused
    identity = {"repo": REPO, "provider": "local", "pr": pr, "commit": _sha(commit)}
    queue = server.call("POST", "/api/v1/queue", {"run": run_id, "matrix": matrix, **identity})
    not_run = sum(len(u["tests"]) for u in matrix.get("unsatisfied") or ())
    _say(
        f"commit {commit} ({branch}{f', PR #{pr}' if pr else ''}): planned "
        f"{sum(len(s['tests']) for s in matrix['shards'])} tests into {len(shards)} shard(s) "
        f"over {RUNNERS} local runners in queue mode; {not_run} test(s) need hardware no "
        "runner has"
    )
    dispatched = []
    for i, shard in enumerate(shards):
        junit = cdir / f"{shard}.xml"
        target = (
            f"{{python}} -m pytest {SAMPLE / 'tests'} -q -p no:cacheprovider --reruns 1 "
            f"--rootdir {SAMPLE} --fanout-matrix={matrix_path} --fanout-shard={shard} "
            f"--fanout-queue={queue['url']} --fanout-runner=local-{i + 1} --junitxml={junit} "
            f"--fanout-journal={junit.with_suffix('.journal')}"
        )
        os.environ["CI_FANOUT_QUEUE_TOKEN"] = queue["token"]
        os.environ["CI_FANOUT_DEMO_COMMIT"] = str(commit)
        os.environ["CI_FANOUT_DEMO_STATE"] = str(cdir / "state")
        result = provider.dispatch(DispatchRequest(shard_id=shard, ref=branch, target=target))
        dispatched.append((shard, i, junit, str(result.run_id)))
    base = RunInfo(
        run_id=run_id,
        repo=REPO,
        provider="local",
        commit=_sha(commit),
        branch=branch,
        base_commit=_sha(commit - 1) if pr else None,
        pr=pr,
        runner_labels=tuple(labels),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time())),
    )
    merged: list[ResultSet] = []
    for shard, i, junit, local_run in dispatched:
        state = provider.wait(local_run, timeout=300)
        rs = ingest_paths([junit]).with_run(
            _with(base, shard_id=shard, runner_name=f"local-{i + 1}")
        )
        if state is JobState.FAILURE and not rs.tests:  # died before its report: the journal
            rs, _ = merge_journal(rs, junit.with_suffix(".journal"), why="the shard died")
        rs = merge_record_file(rs, record_path_for(junit))  # browser adapters, metrics, retries
        s = rs.summary
        _say(
            f"  shard {shard} on local-{i + 1} ({state.value}): {s.tests} tests, "
            f"{s.failed + s.errors} failed, {s.flaky} flaky, {s.duration_s:.1f}s"
        )
        if state is JobState.FAILURE and not rs.tests:
            log = (provider.work_dir / local_run / "log.txt").read_text(errors="replace")
            raise CiFanoutError(f"shard {shard} failed without results:\n{log[-2000:]}")
        merged.append(rs)
    # every planned test ends reported once: the not-run ones and any a shard lost
    acc, merged = accounted_sets(Matrix.from_dict(matrix), merged, base)
    if acc.lost:
        _say(f"  {len(acc.lost)} planned test(s) lost (no shard reported them)")
    for rs in merged:
        server.call("POST", "/api/v1/results", rs.to_dict(), token=queue["token"])
    all_cases = tuple(t for rs in merged for t in rs.tests)
    merged_path = cdir / "results.json"
    merged_path.write_text(json.dumps(ResultSet(run=base, tests=all_cases).to_dict()))
    for name in browser_env:
        os.environ.pop(name, None)
    return merged_path


def serve_dashboard(server: Server, env: Mapping[str, str]) -> None:
    wanted = env.get("CI_FANOUT_DEMO_SERVE")
    seconds = float(wanted) if wanted else (float("inf") if sys.stdin.isatty() else 0.0)
    _say(f"dashboard: {server.url}/  (runs: {server.url}/runs)")
    if seconds <= 0:
        return
    _say("serving the dashboard; press Ctrl-C to stop" if seconds == float("inf") else
         f"serving the dashboard for {seconds:.0f}s")  # fmt: skip
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and server.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    started = time.monotonic()
    out = Path(env.get("CI_FANOUT_OUT", "out")).resolve()
    db = Path(env.get("CI_FANOUT_DB", str(out / "ci-fanout.duckdb"))).resolve()
    if out.exists():
        for old in (*out.glob("*.png"), *out.glob("comment*.md"), out / "report.json"):
            old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    work = out / "demo-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()

    labels, profile = probe()
    token = secrets.token_urlsafe(24)
    _say("starting ci-app serve (gunicorn) ...")
    server = Server(db, out, token)
    _say(f"server: {server.url} (DuckDB {db})")
    runners = LocalRunners(server, profile, [f"local-{i + 1}" for i in range(RUNNERS)]).start()
    provider = LocalProvider(work_dir=out / "local", out_dir=out, labels=frozenset(labels))
    history: list[Path] = []
    try:
        for commit, branch, pr in COMMITS:
            history.append(run_commit(server, provider, work, labels, commit, branch, pr, history))
        server.wait_idle()
    except BaseException:
        runners.stop()
        server.stop()
        raise
    last = f"demo-{COMMITS[-1][0]}"
    runners.stop()
    server.stop()  # one writer: release the DuckDB file for the report step

    _say("rendering the report for the pull request ...")
    code, err = _quiet(["report", "--db", str(db), "--run-id", last, "--output",
                        str(out / "comment.md"), "--charts", str(out),
                        "--dashboard-url", f"{server.url}/runs/{last}"])  # fmt: skip
    if code != 0:
        raise CiFanoutError(f"ci-app report failed: {err.strip()}")
    _quiet(["report", "--db", str(db), "--run-id", last, "--format", "json",
            "--output", str(out / "report.json")])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    summary = report.get("summary") or {}
    print()
    print((out / "comment.md").read_text())
    charts = sorted(p.name for p in out.glob("*.png"))
    _say(
        f"PR #7: {summary.get('tests', '?')} tests, {len(report.get('new_failures') or [])} new "
        f"failure(s), {len(report.get('fixed') or [])} fixed, {len(report.get('flaky') or [])} "
        f"flaky, {len(report.get('regressions') or [])} regression(s)"
    )
    _say(f"wrote {out / 'comment.md'}, {out / 'report.json'}, charts: {', '.join(charts)}")
    _say(f"done in {time.monotonic() - started:.0f}s")

    server = Server(db, out, token, port=server.port)
    runners.start()
    try:
        save_dashboard_screenshots(server, out, last, report)
        serve_dashboard(server, env)
    finally:
        runners.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CiFanoutError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
