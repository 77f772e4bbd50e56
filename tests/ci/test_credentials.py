"""Least privilege in the shard step: the code under test never sees a credential.

A spy test records its own environment (and looks for the queue token's file); the shard step
runs it with every ci-fanout and provider credential in the step's environment, statically and
in queue mode against the real app."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_app.ci import run_step
from ci_app.ciout import CiOutput
from ci_app.credentials import TOKEN_ENV, TOKEN_FILE_ENV, is_credential, scrub, take_token

SECRETS = {
    "GITHUB_TOKEN": "ghs_secret_github",
    "GH_TOKEN": "ghs_secret_gh",
    "GITLAB_TOKEN": "glpat-secret",
    "CI_JOB_TOKEN": "secret-job-token",
    "CI_JOB_JWT_V2": "secret.jwt.v2",
    "ACTIONS_RUNTIME_TOKEN": "secret-runtime",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-oidc",
    "CI_REPOSITORY_URL": "https://gitlab-ci-token:secret-job-token@gitlab.example/x.git",
    "SYSTEM_ACCESSTOKEN": "secret-azure",
    "CI_FANOUT_SERVER_TOKEN": "admin-t0ken",
    "CI_FANOUT_API_TOKEN": "admin-t0ken",
    TOKEN_ENV: "secret-queue-token",
}

SPY = """
import json
import os
from pathlib import Path


def test_spy():
    out = Path(os.environ["SPY_OUT"]) / f"env-{os.getpid()}.json"
    token_file = os.environ.get("CI_FANOUT_QUEUE_TOKEN_FILE")
    seen = {
        "env": dict(os.environ),
        "token_file_exists": bool(token_file) and Path(token_file).exists(),
    }
    out.write_text(json.dumps(seen))
"""


def test_scrub_keeps_the_projects_own_variables() -> None:
    env = {**SECRETS, "MY_SERVICE_TOKEN": "theirs", "PATH": "/bin", "CI_FANOUT_LABELS": "x64"}
    clean = scrub(env)
    assert clean == {"MY_SERVICE_TOKEN": "theirs", "PATH": "/bin", "CI_FANOUT_LABELS": "x64"}
    assert not is_credential(TOKEN_FILE_ENV)  # a path; the file is deleted once read


def test_take_token_reads_once_and_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "t"
    f.write_text("tok\n")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(f))
    monkeypatch.setenv(TOKEN_ENV, "other")
    assert take_token(os.environ) == "tok"
    assert not f.exists()
    assert TOKEN_FILE_ENV not in os.environ and TOKEN_ENV not in os.environ


def _project(tmp: Path) -> Path:
    (tmp / "tests").mkdir()
    (tmp / "tests" / "test_spy.py").write_text(SPY)
    (tmp / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp / "spy").mkdir()
    return tmp


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    event = tmp / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3, "head": {"sha": "a" * 40}}}))
    return {
        **SECRETS,
        "PATH": os.environ["PATH"],
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp / "out"),
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_ID": "77",
        "GITHUB_REPOSITORY": "octo/spy",
        "GITHUB_WORKSPACE": str(tmp),
        "CI_FANOUT_COLLECT": "tests",
        "CI_FANOUT_TEST_COMMAND": f"{sys.executable} -m pytest -q",
        "CI_FANOUT_PUBLISH": "none",
        "SPY_OUT": str(tmp / "spy"),
        **extra,
    }


def _seen(tmp: Path) -> dict[str, Any]:
    (found,) = list((tmp / "spy").glob("env-*.json"))
    seen: dict[str, Any] = json.loads(found.read_text())
    return seen


def _assert_clean(seen: dict[str, Any], *also: str) -> None:
    env: dict[str, str] = seen["env"]
    assert env["SPY_OUT"], "the spy ran in the shard"
    for name in SECRETS:
        assert name not in env, f"{name} reached the test process"
    values = "\n".join(env.values())
    for secret in {*SECRETS.values(), *also}:
        assert secret not in values, "a credential's value reached the test process"
    assert TOKEN_ENV not in env and TOKEN_FILE_ENV not in env
    assert not seen["token_file_exists"]


def test_static_shard_test_process_sees_no_credential(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = _env(project)
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    shard_env = {**env, "CI_FANOUT_SHARD": "cpu-1"}
    matrix = json.loads((project / "ci-fanout" / "matrix.json").read_text())
    shard_env["CI_FANOUT_SHARD"] = matrix["shards"][0]["id"]
    assert run_step("shard", shard_env, io=CiOutput(shard_env, stream=log)) == 0, log.getvalue()
    _assert_clean(_seen(project))


def test_queue_shard_test_process_sees_no_credential(
    tmp_path: Path, real_app: tuple[str, Any]
) -> None:
    """Queue mode: the plugin pulls with the run token, yet the test sees neither it nor the
    admin token, and the token's file is gone before the first test."""
    url, store = real_app
    project = _project(tmp_path)
    env = _env(project, CI_FANOUT_SERVER_URL=url, CI_FANOUT_MODE="queue")
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0, log.getvalue()
    run_token = (project / "ci-fanout" / "run-token").read_text().strip()
    assert run_token and run_token != SECRETS["CI_FANOUT_SERVER_TOKEN"]
    matrix = json.loads((project / "ci-fanout" / "matrix.json").read_text())
    assert matrix["mode"] == "queue"
    shard_env = {**env, "CI_FANOUT_SHARD": matrix["shards"][0]["id"]}
    shard_env.pop("CI_FANOUT_SERVER_TOKEN")  # a shard job never has the admin token
    assert run_step("shard", shard_env, io=CiOutput(shard_env, stream=log)) == 0, log.getvalue()
    assert "falling back" not in log.getvalue(), "the plugin pulled from the queue"
    _assert_clean(_seen(project), run_token)
    assert store.results.run("77") is not None  # results posted with the run token
