"""Jenkins and Azure DevOps collect jobs with the server's own settings (issue 14): a build
finishes, its webhook reaches the app, the collect job downloads the artifacts through the real
client library from the loopback fake, stores the results and posts the report."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_app.providers.azure import AzureAdapter
from ci_app.providers.base import DispatchRequest
from ci_app.providers.jenkins import JenkinsAdapter
from ci_app.providers.retry import RetryPolicy
from ci_app.store import open_store
from ci_app.web.app import create_app
from tests.contracts.validate import GitHubContract, SwaggerContract
from tests.fakes.azure import FakeAzureDevOps
from tests.fakes.github import FakeGitHub
from tests.fakes.jenkins import FakeJenkins

from .conftest import Clock, make_settings, results_json

FAST = RetryPolicy(attempts=2, base_delay=0.0, sleep=lambda _s: None)
SHA = "a" * 40


def _results(**run: Any) -> bytes:
    doc = results_json(
        "", "s1", {"tests/test_x.py::ok": "passed", "tests/test_x.py::bad": "failed"}
    )
    doc["run"].update({"run_id": None, "repo": None, "provider": None, "pr": None, "commit": None})
    doc["run"].update(run)
    return json.dumps(doc).encode()


def _app(tmp_path: Path, **settings: Any) -> Any:
    store = open_store(":memory:")
    app = create_app(
        make_settings(db=str(tmp_path / "app.duckdb"), **settings),
        store=store,
        clock=Clock(),
        start_worker=False,
    )
    return app, store


@pytest.fixture(scope="module")
def github_contract() -> GitHubContract:
    return GitHubContract()


@pytest.fixture
def gh(github_contract: GitHubContract) -> Iterator[FakeGitHub]:
    with FakeGitHub(github_contract) as server:
        assert isinstance(server, FakeGitHub)
        yield server


def test_jenkins_build_is_collected_and_reported_on_the_forge(
    tmp_path: Path, gh: FakeGitHub
) -> None:
    with FakeJenkins() as jenkins:
        assert isinstance(jenkins, FakeJenkins)
        jenkins.add_job(
            "gpu-tests", ["CI_FANOUT_REPO", "CI_FANOUT_PR", "CI_FANOUT_SHARD", "CI_FANOUT_REF"]
        )
        adapter = JenkinsAdapter(
            url=jenkins.url, username="ci", token="api-token", policy=FAST, poll_interval=0.0
        )
        build = adapter.dispatch(
            DispatchRequest(
                shard_id="s1",
                ref="main",
                target="gpu-tests",
                inputs={"CI_FANOUT_REPO": "octo/widgets", "CI_FANOUT_PR": "12"},
            )
        )
        assert build.run_id == "gpu-tests#1"
        jenkins.complete("gpu-tests", 1, "UNSTABLE", {"out/results.json": _results()})
        app, store = _app(
            tmp_path,
            jenkins_url=jenkins.url,
            jenkins_username="ci",
            jenkins_token="api-token",
            jenkins_forge="github",
            github_api_url=gh.api,
            github_token="ghp_test",
            github_throttle="0",
        )
        hook = {
            "name": "gpu-tests",
            "url": "job/gpu-tests/",
            "build": {
                "number": 1,
                "phase": "COMPLETED",
                "status": "UNSTABLE",
                "full_url": f"{jenkins.url}/job/gpu-tests/1/",
                "scm": {"commit": SHA, "branch": "main"},
                "parameters": {"CI_FANOUT_REPO": "octo/widgets", "CI_FANOUT_PR": "12"},
            },
        }
        resp = app.test_client().post(
            "/webhooks/jenkins", json=hook, headers={"X-CI-Fanout-Token": "jenkins-secret"}
        )
        assert resp.status_code == 202, resp.get_json()
        assert app.extensions["ci_fanout"].worker.drain() == 2
        jobs = {(j.kind, j.state, j.last_error) for j in store.jobs.list_jobs()}
        assert jobs == {("ci.collect", "done", None), ("report", "done", None)}
        meta = store.results.run("jenkins:octo/widgets:gpu-tests#1")
        assert meta is not None and (meta.pr, meta.commit) == (12, SHA)
        (comment,) = gh.comments[12]
        assert "bad" in comment["body"]
        assert gh.violations == [] and jenkins.violations == []
        store.close()


def test_azure_build_is_collected_and_its_status_set(tmp_path: Path) -> None:
    with FakeAzureDevOps(SwaggerContract()) as azure:
        assert isinstance(azure, FakeAzureDevOps)
        adapter = AzureAdapter(
            org_url=azure.org_url, project="proj", token="pat-test", data_dir=tmp_path, policy=FAST
        )
        run = adapter.dispatch(DispatchRequest(shard_id="s1", ref="refs/heads/main", target="12"))
        assert run.run_id is not None
        pipeline, build_id = run.run_id.split("/")
        azure.add_artifact(int(build_id), "ci-fanout-results-s1", {"results.json": _results()})
        app, store = _app(
            tmp_path,
            azure_org_url=azure.org_url,
            azure_project="proj",
            azure_token="pat-test",
        )
        hook = {
            "id": "e6f2c1d0-0000-0000-0000-000000000001",
            "eventType": "build.complete",
            "resource": {
                "id": int(build_id),
                "result": "failed",
                "repository": {"name": "widgets", "id": "widgets"},
                "definition": {"id": int(pipeline)},
                "sourceVersion": SHA,
                "sourceBranch": "refs/heads/main",
            },
        }
        basic = "Basic " + base64.b64encode(b"azure:azure-secret").decode()
        resp = app.test_client().post(
            "/webhooks/azure", json=hook, headers={"Authorization": basic}
        )
        assert resp.status_code == 202, resp.get_json()
        assert app.extensions["ci_fanout"].worker.drain() == 2
        jobs = {(j.kind, j.state, j.last_error) for j in store.jobs.list_jobs()}
        assert jobs == {("ci.collect", "done", None), ("report", "done", None)}
        meta = store.results.run(f"azure:widgets:{build_id}")
        assert meta is not None and meta.commit == SHA
        (status,) = azure.statuses
        assert status["sha"] == SHA and status["repo"] == "widgets" and status["state"] == "failed"
        assert azure.violations == []
        store.close()


def test_collect_without_provider_settings_parks_with_the_setting_named(tmp_path: Path) -> None:
    app, store = _app(tmp_path)
    hook = {"name": "j", "build": {"number": 3, "phase": "COMPLETED", "status": "SUCCESS"}}
    resp = app.test_client().post(
        "/webhooks/jenkins", json=hook, headers={"X-CI-Fanout-Token": "jenkins-secret"}
    )
    assert resp.status_code == 202
    app.extensions["ci_fanout"].worker.drain()
    (job,) = store.jobs.list_jobs(state="parked")
    assert "'url' is required" in (job.last_error or "")
    store.close()
