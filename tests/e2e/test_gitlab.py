"""End to end on GitLab: the fake plays GitLab, real gunicorn serves the app, local processes
play the runners. Merge Request Hook -> the app creates a pipeline (``dispatch-workflow``) ->
the fake runs the template's jobs (plan in queue mode against the app, a child pipeline of two
shard jobs pulling from the app's queue, artifacts on the jobs) -> Pipeline Hook -> the app
collects through the API (bridge -> child pipeline), ingests, reports -> one sticky MR note."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gitlab import FakeGitLab
from tests.fakes.workflows import GitLabPipeline, PipelineRun, post_json

from .conftest import (
    ADMIN,
    BLOCKER_TEST,
    BRANCH,
    GL_TOKEN,
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

PROJECT = "grp/sub/proj"  # FakeGitLab's project (id 42)
MR = 7
API_TOKEN = "glpat-e2e"


@dataclass
class Flow:
    fake: FakeGitLab
    app: App
    pipeline: GitLabPipeline

    def merge_request(self, action: str, commit: int) -> None:
        self.pipeline.env["CI_FANOUT_DEMO_COMMIT"] = str(commit)
        attrs: dict[str, Any] = {
            "iid": MR,
            "action": action,
            "state": "opened",
            "draft": False,
            "work_in_progress": False,
            "source_branch": BRANCH,
            "target_branch": "main",
            "last_commit": {"id": sha(commit)},
        }
        if action == "update":
            attrs["oldrev"] = sha(commit - 1)
        payload = {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "project": {"id": 42, "path_with_namespace": PROJECT},
            "object_attributes": attrs,
        }
        status, answer = post_json(
            f"{self.app.url}/webhooks/gitlab",
            json.dumps(payload).encode(),
            {
                "X-Gitlab-Event": "Merge Request Hook",
                "X-Gitlab-Token": GL_TOKEN,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            },
        )
        assert status == 202, answer

    def settle(self, runs: int) -> list[PipelineRun]:
        done = self.pipeline.wait(runs, timeout=120)
        for run in done:
            assert run.error is None, f"{run.error}\n{self.app.tail()}"
        self.app.wait_idle()
        return done

    def notes(self) -> list[dict[str, Any]]:
        return [n for n in self.fake.notes.get(MR, []) if not n["system"]]


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The sample project; with the parameter ``"blocker"``, plus a test that hangs its first
    runner."""
    return copy_project(tmp_path / "project", blocker=getattr(request, "param", None) == "blocker")


@pytest.fixture
def flow(tmp_path: Path, project: Path) -> Iterator[Flow]:
    with FakeGitLab(token=API_TOKEN) as fake:
        assert isinstance(fake, FakeGitLab)
        for app in start_app(
            tmp_path,
            gitlab_url=fake.url,
            gitlab_token=API_TOKEN,
            gitlab_webhook_token=GL_TOKEN,
            dispatch_workflow=".gitlab-ci.yml",
            queue_lease_timeout_s="3",
            report_on_results="false",
        ):
            work = tmp_path / "runs"
            work.mkdir()
            pipeline = GitLabPipeline(
                fake,
                project=project,
                work=work,
                project_path=PROJECT,
                app_url=app.url,
                app_token=ADMIN,
                hook_token=GL_TOKEN,
                gitlab_token=API_TOKEN,
                runners=RUNNERS,
                test_command=TEST_COMMAND,
                env={"E2E_KILL_MARKER": str(tmp_path / "kill-me")},
                kill_marker=tmp_path / "kill-me",
            )
            yield Flow(fake, app, pipeline)


def ran_tests(run: PipelineRun) -> list[str]:
    return [t["id"] for rs in run.results.values() for t in rs["tests"]]


def test_merge_request_to_one_sticky_note(flow: Flow) -> None:
    t0 = time.monotonic()
    flow.merge_request("open", commit=6)
    (run,) = flow.settle(1)
    # the app created a branch pipeline with the MR and head sha as variables
    (created,) = flow.fake.calls("POST", r"/projects/\d+/pipeline$")
    body = created.json()
    assert body["ref"] == BRANCH
    assert {v["key"]: v["value"] for v in body["variables"]} == {
        "pr": str(MR),
        "sha": sha(6),
        "CI_FANOUT_SHARD": "plan",
    }
    # plan in queue mode; a child pipeline behind the bridge ran one job per shard
    assert run.matrix["mode"] == "queue" and len(run.matrix["shards"]) == 2
    assert [u["tests"] for u in run.matrix["unsatisfied"]] == [[GPU_TEST]]
    parent = flow.fake.pipelines[run.pipeline_id]
    (bridge,) = parent["bridges"]
    assert run.child_id is not None and bridge["downstream_pipeline"]["id"] == run.child_id
    child = flow.fake.pipelines[run.child_id]
    assert child["source"] == "parent_pipeline" and len(child["job_ids"]) == 2
    for job_id in child["job_ids"]:
        job = flow.fake.jobs[job_id]
        assert job["tag_list"] and set(job["tag_list"]) <= set(RUNNERS[0]["labels"])
        assert flow.fake.artifacts[job_id], "each shard job has its artifacts"
    assert sorted(run.runner_of.values()) == ["runner-1", "runner-2"]
    # the MR reached the shard jobs of the child pipeline (it has no CI_MERGE_REQUEST_*)
    assert all(rs["run"]["pr"] == MR for rs in run.results.values())
    assert all(rs["run"]["commit"] == sha(6) for rs in run.results.values())
    ran = ran_tests(run)
    assert sorted(ran) == sorted(sample_tests() - {GPU_TEST}), "each test ran exactly once"
    assert all(rs["tests"] for rs in run.results.values()), "both shards took work"
    # the app read the artifacts through the API, following the bridge into the child
    assert flow.fake.calls("GET", rf"/pipelines/{run.pipeline_id}/bridges$")
    assert len(flow.fake.calls("GET", r"/jobs/\d+/artifacts$")) >= 2
    # pending at plan time, the final state from the report
    states = [s["state"] for s in flow.fake.statuses if s["sha"] == sha(6)]
    assert states[0] == "pending" and states[-1] == "failed"
    (note,) = flow.notes()
    text = note["body"]
    assert text.splitlines()[0].startswith(MARKER)
    assert NEW_FAILURE in text
    assert GPU_TEST in text and "Not run" in text
    assert "gpu-mem-ge-24g" in text
    total = len(sample_tests())
    # the GPU test is planned but not run: apart from the tests that ran
    assert f"{total - 1} tests: {total - 3} passed, 1 failed, 1 skipped" in text
    assert f"Planned: {total} — ran {total - 1}, not run for want of hardware 1, lost 0" in text
    assert "1 new failure" in text.splitlines()[2]
    first = time.monotonic() - t0

    # new commits on the MR: the same note is edited in place, not posted twice
    flow.merge_request("update", commit=7)
    runs = flow.settle(2)
    assert len(flow.fake.calls("POST", r"/projects/\d+/pipeline$")) == 2
    (again,) = flow.notes()
    assert again["id"] == note["id"]
    assert again["updated_at"] != note["created_at"] or again["body"] != text
    assert NEW_FAILURE in again["body"]
    assert sorted(ran_tests(runs[1])) == sorted(ran)
    assert len(flow.fake.calls("POST", rf"/merge_requests/{MR}/notes$")) == 1
    assert len(flow.fake.calls("PUT", rf"/merge_requests/{MR}/notes/\d+$")) >= 1
    assert flow.pipeline.webhooks == [("Pipeline Hook", 202)] * 2
    assert flow.fake.violations == []
    assert flow.fake.shape_violations == []
    print(f"first round {first:.1f}s, both {time.monotonic() - t0:.1f}s")


@pytest.mark.parametrize("project", ["blocker"], indirect=True)
def test_killed_shard_job_tests_rerun_elsewhere(flow: Flow, project: Path) -> None:
    """One shard job's test process is SIGKILLed in its first batch: the job fails, its leased
    tests go back to the app's queue after the 3 s lease, the other shard job runs them, and
    the MR note still counts every test exactly once."""
    t0 = time.monotonic()
    flow.merge_request("open", commit=6)
    (run,) = flow.settle(1)
    _victim, survivor = killed_and_survivor(run)
    assert run.shards[survivor] == 0
    everything = sample_tests(project)
    assert sorted(ran_tests(run)) == sorted(everything - {GPU_TEST}), "every test exactly once"
    assert BLOCKER_TEST in {t["id"] for t in run.results[survivor]["tests"]}
    # GitLab saw the failed job and the failed pipeline; the app still reported
    assert run.child_id is not None
    child = flow.fake.pipelines[run.child_id]
    assert sorted(flow.fake.jobs[j]["status"] for j in child["job_ids"]) == ["failed", "success"]
    assert flow.pipeline.webhooks == [("Pipeline Hook", 202)]
    (note,) = flow.notes()
    text = note["body"]
    check_report(text, everything)
    assert flow.fake.violations == []
    assert flow.fake.shape_violations == []
    print(f"killed-shard round {time.monotonic() - t0:.1f}s")
