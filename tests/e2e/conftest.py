"""The app (``ci-app serve``, real gunicorn) as a subprocess against the provider fakes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contracts.validate import GitHubContract

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-project"
ADMIN = "e2e-admin-token"
GH_SECRET = "e2e-webhook-secret"
GL_TOKEN = "e2e-gitlab-hook-token"

# The sample project and what both provider flows assert about it.
BRANCH = "feature/faster-slugify"
RUNNERS = [
    {"name": "runner-1", "labels": ["self-hosted", "linux", "x64"]},
    {"name": "runner-2", "labels": ["self-hosted", "linux", "x64"]},
]
TEST_COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider --reruns 1 --fanout-heartbeat 1"
MARKER = "<!-- ci-fanout:report"
GPU_TEST = "tests/test_gpu.py::test_matmul_on_gpu"
NEW_FAILURE = "tests/test_strings.py::test_title_case"


def sha(n: int) -> str:
    """The fake commit SHA of simulated commit ``n``."""
    return f"{n:02d}" + "c0ffee" * 6 + f"{n:02d}"


# A test that hangs the first runner to reach it: the emulators SIGKILL that test process
# (a runner dying mid-batch); its re-run on the other shard passes.
BLOCKER = """
import os
import time
from pathlib import Path


def test_blocks_the_first_runner_once() -> None:
    \"\"\"The first shard to run this hangs (and is SIGKILLed); the re-run elsewhere passes.\"\"\"
    marker = Path(os.environ["E2E_KILL_MARKER"])
    try:
        fd = os.open(f"{marker}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    runner = os.environ.get("RUNNER_NAME") or os.environ["CI_RUNNER_DESCRIPTION"]
    Path(f"{marker}.tmp").write_text(f"{os.getpid()} {runner}")
    os.replace(f"{marker}.tmp", marker)
    time.sleep(120)
"""
BLOCKER_TEST = "tests/test_0_blocker.py::test_blocks_the_first_runner_once"


# A runner that dies after completing batches: the first test process to finish
# ``E2E_KILL_AFTER`` tests SIGKILLs itself (in that test's teardown, so the test it was running
# is the one left unfinished).
MIDWAY_KILLER = """

import signal as _signal

_finished = 0


@pytest.fixture(autouse=True)
def _die_midway():
    global _finished
    yield
    _finished += 1
    if _finished != int(os.environ.get("E2E_KILL_AFTER") or 0):
        return
    try:
        fd = os.open(os.environ["E2E_KILL_MARKER"] + ".midway", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), _signal.SIGKILL)
"""


def copy_project(dest: Path, *, blocker: bool = False, midway: bool = False) -> Path:
    """The sample project at ``dest``; with ``blocker``, plus the test that hangs a runner;
    with ``midway``, the first test process to finish ``E2E_KILL_AFTER`` tests dies."""
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    if blocker:
        (dest / "tests" / "test_0_blocker.py").write_text(BLOCKER)
    if midway:
        conftest = dest / "tests" / "conftest.py"
        conftest.write_text(conftest.read_text() + MIDWAY_KILLER)
    return dest


def killed_and_survivor(run: Any) -> tuple[str, str]:
    """(victim, survivor) shards of a blocker run (a WorkflowRun or a PipelineRun)."""
    assert len(run.killed) == 1, "the blocker test asked for its runner to be killed"
    (victim,) = [s for s, runner in run.runner_of.items() if runner in run.killed]
    (survivor,) = [s for s in run.runner_of if s != victim]
    assert not run.results.get(victim, {}).get("tests"), "the killed shard reported nothing"
    assert run.shards[victim] != 0
    return victim, survivor


def check_report(body: str, tests: set[str]) -> None:
    """The sticky report on the sample project: marker, counts, the failure, the GPU test."""
    assert body.splitlines()[0].startswith(MARKER)
    total = len(tests)
    # the GPU test is planned but not run: apart from the tests that ran
    assert f"{total - 1} tests: {total - 3} passed, 1 failed, 1 skipped" in body
    assert f"Planned: {total} — ran {total - 1}, not run for want of hardware 1, lost 0" in body
    assert NEW_FAILURE in body and GPU_TEST in body


def sample_tests(project: Path = SAMPLE) -> set[str]:
    """Every test id of the sample project (collected the way the plan step does)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


@pytest.fixture(scope="session")
def github_contract() -> GitHubContract:
    return GitHubContract()


@dataclass
class App:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the job worker has nothing queued or leased (and nothing parked/failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.get("/api/v1/jobs").get("counts", {})
            if not counts.get("queued") and not counts.get("leased"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"app jobs still busy: {counts}; log:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_app(tmp: Path, **settings: str) -> Iterator[App]:
    """``ci-app serve --port 0`` with ``CI_FANOUT_*`` settings; yields once /healthz answers."""
    log = tmp / "app.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CI_FANOUT_", "GITHUB_"))},
        "CI_FANOUT_API_TOKEN": ADMIN,
        "CI_FANOUT_JOB_POLL_S": "0.05",
        **{f"CI_FANOUT_{k.upper()}": v for k, v in settings.items()},
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
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
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"ci-app serve exited {proc.returncode}:\n{log.read_text()}")
            m = re.search(
                r"listening at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace")
            )
            url = m.group(1) if m else None
            time.sleep(0.05)
        assert url, f"ci-app serve did not start:\n{log.read_text()}"
        app = App(url, proc, log)
        for _ in range(200):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("worker"):
                        break
            except OSError:
                pass
            time.sleep(0.05)
        yield app
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
