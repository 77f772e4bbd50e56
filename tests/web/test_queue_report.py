"""The CI steps in queue mode against the real app, with a shard SIGKILLed after it completed
batches: the report step merges the shard's journal or, when the whole job vanished, the
queue's record, so every planned test is reported once; the dead shard is an infrastructure
error (issue 13, item 1)."""

from __future__ import annotations

import io
import json
import shutil
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_app.ci import run_step
from ci_app.ciout import CiOutput

N = 12
TESTS = f"""
import os
import signal
import time

import pytest

_finished = 0


@pytest.fixture(autouse=True)
def _die_after_five():
    global _finished
    yield
    _finished += 1
    if _finished == 5:  # the first shard process to finish five tests dies
        try:
            fd = os.open(os.environ["KILL_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("i", range({N}))
def test_t(i):
    time.sleep(0.02)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_q.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "runners.json").write_text(
        json.dumps([{"name": f"r{i}", "labels": ["self-hosted", "x64"]} for i in range(2)])
    )
    return tmp_path


@pytest.fixture
def app() -> Iterator[str]:
    from werkzeug.serving import make_server

    from ci_app.options.server import Settings
    from ci_app.store import open_store
    from ci_app.web.app import create_app

    with open_store(":memory:") as store:
        flask_app = create_app(
            Settings(api_token="admin-t0ken", report_on_results=False, queue_lease_timeout_s=1.0),
            store=store,
            start_worker=False,
        )
        server = make_server("127.0.0.1", 0, flask_app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(5)


def _env(project: Path, url: str) -> dict[str, str]:
    event = project / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {"number": 7, "head": {"sha": "a" * 40}, "base": {"sha": "b" * 40}},
                "repository": {"default_branch": "main"},
            }
        )
    )
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(project / "github_output"),
        "GITHUB_STEP_SUMMARY": str(project / "summary.md"),
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REPOSITORY": "octo/widgets",
        "GITHUB_WORKSPACE": str(project),
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_BASE_REF": "main",
        "GITHUB_SERVER_URL": "https://github.example",
        "CI_FANOUT_COLLECT": "tests",
        "CI_FANOUT_RUNNERS": "runners.json",
        "CI_FANOUT_SHARDS": "2",
        "CI_FANOUT_TEST_COMMAND": f"{sys.executable} -m pytest -q --fanout-heartbeat 0.2",
        "CI_FANOUT_SERVER_URL": url,
        "CI_FANOUT_SERVER_TOKEN": "admin-t0ken",
        "CI_FANOUT_MODE": "queue",
        "CI_FANOUT_PUBLISH": "none",
        "CI_FANOUT_FAIL_ON": "never",
        "KILL_MARKER": str(project / "killed"),
    }


def _matrix_shards(project: Path) -> list[str]:
    for line in (project / "github_output").read_text().splitlines():
        if line.startswith("matrix="):
            return [e["shard"] for e in json.loads(line.split("=", 1)[1])["include"]]
    raise AssertionError("no matrix output")


def _run_shards(project: Path, env: dict[str, str]) -> dict[str, int]:
    """Each shard in turn (the first dies midway; the second runs what it left)."""
    assert run_step("plan", env, io=CiOutput(env, stream=io.StringIO())) == 0
    codes = {}
    for i, shard in enumerate(_matrix_shards(project)):
        shard_env = {**env, "CI_FANOUT_SHARD": shard, "RUNNER_NAME": f"runner-{i}"}
        codes[shard] = run_step("shard", shard_env, io=CiOutput(shard_env, stream=io.StringIO()))
    return codes


def _report(project: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    log = io.StringIO()
    code = run_step("report", env, io=CiOutput(env, stream=log))
    doc = json.loads((project / "ci-fanout" / "report" / "report.json").read_text())
    return code, doc, log.getvalue()


@pytest.mark.parametrize("how", ["shard step survived", "whole job vanished"])
def test_report_keeps_what_a_killed_shard_completed(project: Path, app: str, how: str) -> None:
    env = _env(project, app)
    codes = _run_shards(project, env)
    victim, survivor = sorted(codes, key=lambda s: codes[s] == 0)
    assert codes[victim] != 0 and codes[survivor] == 0, codes
    out = project / "ci-fanout"
    status = json.loads((out / f"shard-{victim}" / "status.json").read_text())
    assert status["exit_code"] == -9 and status["recovered"] >= 4
    if how == "whole job vanished":  # no artifact at all: only the queue remembers
        shutil.rmtree(out / f"shard-{victim}")
    code, doc, log = _report(project, env)
    s = doc["summary"]
    assert (s["tests"], s["passed"], s["lost"]) == (N, N, 0), s
    assert s["infra_failed_shards"] == [victim]
    assert code == 1 and s["ok"] is False  # red for the infrastructure error ...
    assert s["new_failures"] == 0 and s["failed"] == 0  # ... green for the tests
    if how == "whole job vanished":
        assert "recovered from the queue's record" in log
    comment = (out / "report" / "comment.md").read_text()
    assert "died (infrastructure error); no test failed" in comment
