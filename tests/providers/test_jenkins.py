"""Jenkins adapter driven through jenkinsapi against the loopback fake (responses built from
jenkinsapi's recorded fixtures; crumb + session enforced on POST)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import ProviderError
from ci_app.providers.base import DispatchRequest, JobState, get_provider
from ci_app.providers.jenkins import JenkinsAdapter
from ci_app.providers.retry import RetryPolicy
from tests.fakes.github import FakeGitHub
from tests.fakes.jenkins import FakeJenkins
from tests.providers.conftest import Sleeps


@pytest.fixture
def fake() -> Iterator[FakeJenkins]:
    with FakeJenkins() as server:
        assert isinstance(server, FakeJenkins)
        server.add_job("gpu-tests", ["CI_FANOUT_SHARD", "CI_FANOUT_REF", "LABELS"])
        yield server
        assert not server.crashes, server.crashes


def make(
    fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps, **kwargs: object
) -> JenkinsAdapter:
    options: dict[str, object] = {
        "url": fake.url,
        "username": "ci",
        "token": "api-token",
        "policy": policy,
        "timeout": 1,
        "poll_interval": 0.25,
        "sleep": sleeps,
    }
    options.update(kwargs)
    return JenkinsAdapter(**options)  # type: ignore[arg-type]


def test_build_with_parameters_queue_status_artifacts(
    fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps, tmp_path: Path
) -> None:
    jenkins = make(fake, policy, sleeps)
    result = jenkins.dispatch(
        DispatchRequest(
            shard_id="s1",
            ref="refs/pull/7/head",
            target="gpu-tests",
            inputs={"LABELS": "gpu sm_90"},
        )
    )
    assert result.run_id == "gpu-tests#1"
    assert sleeps == [0.25]  # one queue poll while "waiting for an executor"
    (item,) = fake.queue.values()
    assert item["params"] == {
        "LABELS": "gpu sm_90",
        "CI_FANOUT_SHARD": "s1",
        "CI_FANOUT_REF": "refs/pull/7/head",
    }
    post = fake.calls("POST", "buildWithParameters")[0]
    assert post.header("Jenkins-Crumb") == "c0ffee-crumb"
    (job,) = jenkins.list_jobs(result.run_id)
    assert job.state is JobState.RUNNING and job.runner == "lab-03"
    fake.complete(
        "gpu-tests",
        1,
        "UNSTABLE",
        {"reports/results.json": b'{"x": 1}', "junit.xml": b"<testsuite/>"},
    )
    (job,) = jenkins.list_jobs(result.run_id)
    assert job.state is JobState.FAILURE
    paths = jenkins.fetch_artifacts(result.run_id, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "junit.xml",
        "reports/results.json",
    ]
    assert (tmp_path / "reports" / "results.json").read_bytes() == b'{"x": 1}'
    assert fake.violations == []


def test_cancel_running_build(fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps) -> None:
    jenkins = make(fake, policy, sleeps)
    run = jenkins.dispatch(DispatchRequest(shard_id="s2", ref="main", target="gpu-tests"))
    assert run.run_id
    jenkins.cancel(run.run_id)
    assert fake.stopped == [("gpu-tests", 1)]
    assert jenkins.list_jobs(run.run_id)[0].state is JobState.CANCELLED
    assert fake.violations == []


def test_stuck_in_queue_is_bounded(fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.queue_polls_before_start = 100
    with pytest.raises(ProviderError) as err:
        make(fake, policy, sleeps, queue_polls=3).dispatch(
            DispatchRequest(shard_id="s", ref="main", target="gpu-tests")
        )
    assert "still queued" in str(err.value) and len(sleeps) == 2


def test_node_labels_via_config_xml(fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.add_node("lab-03", "linux admin-pinned gpu")
    jenkins = make(fake, policy, sleeps)
    runners = {r.name: r for r in jenkins.list_runners()}
    assert runners["lab-03"].labels == {"linux", "admin-pinned", "gpu"}
    assert runners["Built-In Node"].labels == frozenset()
    jenkins.add_label("lab-03", "gpu-mem-ge-80g")
    jenkins.remove_label("lab-03", "gpu")
    assert set(fake.nodes["lab-03"]["labels"].split()) == {
        "linux",
        "admin-pinned",
        "gpu-mem-ge-80g",
    }
    assert fake.violations == []


def test_unknown_job_and_bad_token(fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps) -> None:
    with pytest.raises(ProviderError) as err:
        make(fake, policy, sleeps).dispatch(
            DispatchRequest(shard_id="s", ref="main", target="nope")
        )
    assert err.value.status == 404
    with pytest.raises(ProviderError) as err:
        make(fake, policy, sleeps, token="wrong").list_runners()
    assert err.value.status == 401


def test_5xx_retried_then_succeeds(fake: FakeJenkins, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.add_node("lab-04", "x64")
    fake.inject("500", path="/computer/api/python")
    runners = make(fake, policy, sleeps).list_runners()
    assert {r.name for r in runners} == {"Built-In Node", "lab-04"} and sleeps == [0.5]


def test_results_go_to_the_forge_of_the_triggering_repo(
    fake: FakeJenkins, github_contract: object
) -> None:
    from tests.contracts.validate import GitHubContract

    assert isinstance(github_contract, GitHubContract)
    with FakeGitHub(github_contract) as gh:
        assert isinstance(gh, FakeGitHub)
        provider = get_provider(
            "jenkins",
            {
                "url": fake.url,
                "username": "ci",
                "token": "api-token",
                "forge": "github",
                "forge.repo": "octo/widgets",
                "forge.token": "ghp_test",
                "forge.api_url": gh.api,
            },
        )
        assert provider.forge is not None and provider.ci is not None
        provider.forge.upsert_comment(12, "<!-- ci-fanout:report v1 kind=tests -->\nfrom jenkins")
        assert gh.comments[12][0]["body"].endswith("from jenkins")
        assert gh.violations == []
