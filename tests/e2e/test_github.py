"""End to end on GitHub: the fake plays GitHub, real gunicorn serves the app, local processes
play the runners. pull_request webhook -> app dispatches ci.yml -> the fake runs it (plan in
queue mode against the app, two shard processes pulling from the app's queue) -> artifacts +
workflow_run webhook -> the app collects, ingests, reports -> one sticky comment."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contracts.validate import GitHubContract
from tests.fakes.github import FakeGitHub
from tests.fakes.workflows import GitHubWorkflow, WorkflowRun, github_signature, post_json

from .conftest import (
    ADMIN,
    BLOCKER_TEST,
    BRANCH,
    GH_SECRET,
    GPU_TEST,
    MARKER,
    NEW_FAILURE,
    RUNNERS,
    TEST_COMMAND,
    App,
    check_report,
    copy_project,
    killed_and_survivor,
    sample_tests,
    sha,
    start_app,
)

pytestmark = pytest.mark.slow

REPO = "octo/sample-project"
PR = 7


@dataclass
class Flow:
    fake: FakeGitHub
    app: App
    workflow: GitHubWorkflow

    def pull_request(self, action: str, commit: int) -> None:
        self.workflow.env["CI_FANOUT_DEMO_COMMIT"] = str(commit)
        payload = {
            "action": action,
            "number": PR,
            "pull_request": {
                "number": PR,
                "draft": False,
                "head": {"ref": BRANCH, "sha": sha(commit)},
                "base": {"ref": "main", "sha": sha(commit - 1)},
            },
            "repository": {"full_name": REPO},
        }
        body = json.dumps(payload).encode()
        status, answer = post_json(
            f"{self.app.url}/webhooks/github",
            body,
            {
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": github_signature(body, GH_SECRET),
            },
        )
        assert status == 202, answer

    def settle(self, runs: int) -> list[WorkflowRun]:
        done = self.workflow.wait(runs, timeout=120)
        for run in done:
            assert run.error is None, f"{run.error}\n{self.app.tail()}"
        self.app.wait_idle()
        return done

    def comments(self) -> list[dict[str, Any]]:
        return list(self.fake.comments.get(PR, []))


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The sample project; with the parameter ``"blocker"``, plus a test that hangs its first
    runner."""
    param = getattr(request, "param", None)
    return copy_project(tmp_path / "project", blocker=param == "blocker", midway=param == "midway")


@pytest.fixture
def flow(tmp_path: Path, github_contract: GitHubContract, project: Path) -> Iterator[Flow]:
    with FakeGitHub(github_contract, token="ghp_e2e") as fake:
        assert isinstance(fake, FakeGitHub)
        for app in start_app(
            tmp_path,
            github_api_url=fake.api,
            github_token="ghp_e2e",
            github_throttle="0",
            github_webhook_secret=GH_SECRET,
            dispatch_workflow="ci.yml",
            queue_lease_timeout_s="3",
            report_on_results="false",
        ):
            work = tmp_path / "runs"
            work.mkdir()
            marker = tmp_path / "kill-me"
            workflow = GitHubWorkflow(
                fake,
                project=project,
                work=work,
                repo=REPO,
                app_url=app.url,
                app_token=ADMIN,
                webhook_secret=GH_SECRET,
                runners=RUNNERS,
                test_command=TEST_COMMAND,
                env={"E2E_KILL_MARKER": str(marker)},
                kill_marker=marker,
            )
            yield Flow(fake, app, workflow)


def ran_tests(run: WorkflowRun) -> list[str]:
    return [t["id"] for rs in run.results.values() for t in rs["tests"]]


def test_pull_request_to_one_sticky_comment(flow: Flow) -> None:
    t0 = time.monotonic()
    flow.pull_request("opened", commit=6)
    (run,) = flow.settle(1)
    # the app dispatched the workflow with the PR and head sha
    (dispatch,) = flow.fake.dispatches
    assert dispatch["ref"] == BRANCH
    assert dispatch["inputs"] == {"pr": str(PR), "sha": sha(6)}
    # the plan ran in queue mode against the app; both shards pulled from its queue
    assert run.matrix["mode"] == "queue" and len(run.matrix["shards"]) == 2
    assert [u["tests"] for u in run.matrix["unsatisfied"]] == [[GPU_TEST]]
    ran = ran_tests(run)
    assert sorted(ran) == sorted(sample_tests() - {GPU_TEST}), "each test ran exactly once"
    assert all(rs["tests"] for rs in run.results.values()), "both shards took work"
    # a pending status at plan time, then the final one from the report
    states = [s["state"] for s in flow.fake.statuses if s["sha"] == sha(6)]
    assert states[0] == "pending" and states[-1] == "failure"
    (comment,) = flow.comments()
    body = comment["body"]
    assert body.splitlines()[0].startswith(MARKER)
    assert NEW_FAILURE in body
    assert GPU_TEST in body and "Not run" in body
    assert "gpu-mem-ge-24g" in body  # the label the hw marker "gpu-mem>=24g" maps to
    total = len(sample_tests())
    # the GPU test is planned but not run: apart from the tests that ran
    assert f"{total - 1} tests: {total - 3} passed, 1 failed, 1 skipped" in body
    assert f"Planned: {total} — ran {total - 1}, not run for want of hardware 1, lost 0" in body
    assert "1 new failure" in body.splitlines()[2]
    first = time.monotonic() - t0

    # a new push to the PR: the same comment is edited in place, not posted twice
    flow.pull_request("synchronize", commit=7)
    runs = flow.settle(2)
    assert len(flow.fake.dispatches) == 2
    (again,) = flow.comments()
    assert again["id"] == comment["id"]
    assert again["updated_at"] != comment["created_at"] or again["body"] != body
    assert NEW_FAILURE in again["body"]
    assert sorted(ran_tests(runs[1])) == sorted(ran)
    edits = flow.fake.calls("PATCH", r"/issues/comments/\d+$")
    posts = flow.fake.calls("POST", rf"/issues/{PR}/comments$")
    assert len(posts) == 1 and len(edits) >= 1
    assert all(status == 202 for _event, status in flow.workflow.webhooks)
    assert flow.fake.violations == []
    print(f"first round {first:.1f}s, both {time.monotonic() - t0:.1f}s")


@pytest.mark.parametrize("project", ["blocker"], indirect=True)
def test_killed_shard_tests_rerun_elsewhere(flow: Flow, project: Path) -> None:
    """One shard's test process is SIGKILLed in its first batch; with a 3 s queue lease its
    leased tests go back to the queue, the other shard runs them, the comment is still right."""
    t0 = time.monotonic()
    flow.pull_request("opened", commit=6)
    (run,) = flow.settle(1)
    _victim, survivor = killed_and_survivor(run)
    everything = sample_tests(project)
    ran = ran_tests(run)
    assert sorted(ran) == sorted(everything - {GPU_TEST}), "every test exactly once"
    assert BLOCKER_TEST in {t["id"] for t in run.results[survivor]["tests"]}
    (comment,) = flow.comments()
    body = comment["body"]
    check_report(body, everything)
    assert flow.fake.violations == []
    print(f"killed-shard round {time.monotonic() - t0:.1f}s")


@pytest.mark.parametrize("project", ["midway"], indirect=True)
def test_runner_killed_after_completing_batches_loses_nothing(flow: Flow, project: Path) -> None:
    """The first shard to finish 10 tests is SIGKILLed (its first batch holds at most 8): the
    tests it completed reach the report (its journal, the queue's record), the one it was
    running re-runs on the other shard, the comment counts every test once and names the dead
    shard as an infrastructure error."""
    flow.workflow.env["E2E_KILL_AFTER"] = "10"
    flow.pull_request("opened", commit=6)
    (run,) = flow.settle(1)
    assert sorted(run.shards.values()) == [0, 1], run.shards  # the killed shard's job failed
    (victim,) = [s for s, rc in run.shards.items() if rc != 0]
    kept = [t["id"] for t in run.results[victim]["tests"]]
    assert len(kept) >= 9, "the killed shard's finished tests are in its results.json"
    everything = sample_tests(project)
    ran = ran_tests(run)
    assert set(ran) == everything - {GPU_TEST}
    (comment,) = flow.comments()
    body = comment["body"]
    check_report(body, everything)  # every test counted once, none lost
    infra = body.split("Infrastructure failures (1)", 1)[1].split("###", 1)[0]
    assert f"shard `{victim}`" in infra and "stopped answering" in infra
    statuses = [s["state"] for s in flow.fake.statuses if s["sha"] == sha(6)]
    assert statuses[-1] == "failure"
    assert flow.fake.violations == []
