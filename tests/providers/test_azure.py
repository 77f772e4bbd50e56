"""Azure DevOps adapter driven through the azure-devops SDK against the loopback fake; every API
request is checked against the Swagger 2.0 specs (trimmed copies in tests/contracts/)."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import ProviderError
from ci_app.providers.azure import AzureAdapter, prepare_sdk_cache
from ci_app.providers.base import (
    CheckRunPayload,
    CommitStatus,
    DispatchRequest,
    JobState,
    StatusState,
)
from ci_app.providers.retry import RetryPolicy
from tests.contracts.validate import SwaggerContract
from tests.fakes.azure import FakeAzureDevOps
from tests.providers.conftest import Sleeps

MARKER = "<!-- ci-fanout:report v1 kind=tests -->"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ci-fanout-data")


@pytest.fixture
def fake(azure_contract: SwaggerContract) -> Iterator[FakeAzureDevOps]:
    with FakeAzureDevOps(azure_contract) as server:
        assert isinstance(server, FakeAzureDevOps)
        yield server
        assert not server.crashes, server.crashes
        assert not server.calls(path="ResourceAreas")


def make(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path, **kwargs: object
) -> AzureAdapter:
    options: dict[str, object] = {
        "org_url": fake.org_url,
        "project": "proj",
        "token": "pat-test",
        "repository": "widgets",
        "pool_id": 5,
        "data_dir": data_dir,
        "policy": policy,
        "timeout": 1.0,
    }
    options.update(kwargs)
    return AzureAdapter(**options)  # type: ignore[arg-type]


def test_sdk_cache_lives_in_the_app_data_dir(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    first_import = "azure.devops" not in sys.modules
    azure = make(fake, policy, data_dir)
    azure.list_runners()
    assert fake.calls("OPTIONS", f"^/{fake.org}/_apis$")  # the only discovery call
    if first_import:
        assert azure.cache_dir == data_dir / "azure-devops"
        assert (azure.cache_dir / "options.json").exists()
    assert prepare_sdk_cache(data_dir) == azure.cache_dir
    assert fake.violations == []


def test_sticky_pr_thread_created_once_then_edited(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    fake.add_thread(17, "LGTM")
    azure = make(fake, policy, data_dir)
    first = azure.upsert_comment(17, f"{MARKER}\n1 failed")
    second = azure.upsert_comment(17, f"{MARKER}\nall green")
    assert first.created and not second.created and first.id == second.id
    threads = fake.threads[17]
    assert len(threads) == 2 and threads[1]["comments"][0]["content"].endswith("all green")
    create = fake.calls("POST", "/threads$")[0].json()
    assert create["comments"][0]["commentType"] == "text" and create["status"] == "active"
    assert {r.operation for r in fake.requests if r.method != "OPTIONS"} >= {
        "Pull Request Threads_List",
        "Pull Request Threads_Create",
        "Pull Request Thread Comments_Update",
    }
    assert fake.violations == []


def test_oversized_comment_fits_azure_limit(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    body = MARKER + "\n" + "\n".join(f"### case {i}\n" + "z" * 1000 for i in range(400))
    ref = make(fake, policy, data_dir).upsert_comment(2, body)
    content = fake.threads[2][0]["comments"][0]["content"]
    assert ref.truncated and len(content) <= 150_000 and "more sections" in content
    assert fake.violations == []


def test_statuses_and_check_run_equivalent(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    azure = make(fake, policy, data_dir)
    azure.set_commit_status(
        CommitStatus(
            sha="ab" * 20,
            state=StatusState.FAILURE,
            context="ci-fanout/tests",
            description="2 failed",
        )
    )
    azure.publish_check_run(
        CheckRunPayload(
            name="ci-fanout", head_sha="cd" * 20, title="ok", summary="s", conclusion="success"
        )
    )
    assert [s["state"] for s in fake.statuses] == ["failed", "succeeded"]
    assert fake.statuses[0]["context"] == {"name": "ci-fanout/tests", "genre": "ci-fanout"}
    assert azure.upload_image("c.png", b"x") is None
    assert fake.violations == []


def test_run_pipeline_timeline_artifacts_cancel(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path, tmp_path: Path
) -> None:
    azure = make(fake, policy, data_dir)
    result = azure.dispatch(
        DispatchRequest(shard_id="s4", ref="refs/heads/main", target="12", inputs={"labels": "gpu"})
    )
    assert result.run_id is not None and result.run_id.startswith("12/")
    run_id = int(result.run_id.split("/")[1])
    assert fake.runs[run_id]["parameters"] == {"labels": "gpu", "shard": "s4"}
    assert fake.runs[run_id]["ref"] == "refs/heads/main"
    states = [azure.list_jobs(result.run_id)[0].state for _ in range(3)]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCESS]
    fake.add_artifact(run_id, "results-s4", {"results.json": b"{}"})
    (path,) = azure.fetch_artifacts(result.run_id, tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["results.json"]
    azure.cancel(result.run_id)
    assert fake.runs[run_id]["status"] == "cancelling"
    assert azure.list_jobs(result.run_id)[0].state is JobState.CANCELLED
    assert fake.violations == []


def test_agent_capabilities_as_labels(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    agent = fake.add_agent(5, "lab-agent-1", {"admin.cap": "1", "gpu": "true"})
    fake.add_agent(6, "other-pool", {"x": "1"})
    azure = make(fake, policy, data_dir)
    (runner,) = azure.list_runners()
    assert runner.labels == {"admin.cap", "gpu"} and runner.online
    azure.add_label(str(agent), "cuda-ge-12.4")
    azure.remove_label(str(agent), "gpu")
    assert fake.agents[agent]["userCapabilities"] == {"admin.cap": "1", "cuda-ge-12.4": "true"}
    assert fake.violations == []


def test_429_and_500_and_auth(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path, sleeps: Sleeps
) -> None:
    azure = make(fake, policy, data_dir)
    azure.list_runners()  # discovery done
    fake.inject("429", retry_after=4, path="/agents")
    azure.list_runners()
    assert sleeps == [4.0]
    fake.inject("500", times=5, path="/agents")
    with pytest.raises(ProviderError) as err:
        azure.list_runners()
    assert err.value.status == 500 and "TF246017" in str(err.value)
    with pytest.raises(ProviderError) as err:
        make(fake, policy, data_dir, token="bad").upsert_comment(1, "x")
    assert err.value.status == 401


def test_contract_checker_rejects_bad_requests(azure_contract: SwaggerContract) -> None:
    op, problems = azure_contract.check(
        "POST",
        "/acme/proj/_apis/pipelines/x/runs",
        [("bogus", "1")],
        {},
        b'{"templateParameters": []}',
    )
    assert op == "Runs_Run Pipeline"
    assert any("not an integer" in p for p in problems)
    assert any("unknown query parameter" in p for p in problems)
    assert any("api-version" in p for p in problems)
    assert any("templateParameters" in p for p in problems)


def test_thread_started_by_someone_else_with_our_marker_is_never_edited(
    fake: FakeAzureDevOps, policy: RetryPolicy, data_dir: Path
) -> None:
    """The sticky PR thread is ours only if the token's identity (connectionData) started it."""
    planted = fake.add_thread(21, f"{MARKER}\nlooks good", author="Mallory")
    azure = make(fake, policy, data_dir)
    first = azure.upsert_comment(21, f"{MARKER}\n1 failed")
    second = azure.upsert_comment(21, f"{MARKER}\nall green")
    assert first.created and not second.created and first.id == second.id
    assert planted["comments"][0]["content"].endswith("looks good")
    mine = [t for t in fake.threads[21] if t["comments"][0]["author"]["id"] == fake.me["id"]]
    assert len(mine) == 1 and mine[0]["comments"][0]["content"].endswith("all green")
    assert len(fake.calls("GET", "/connectionData$")) == 1
    assert fake.violations == []
