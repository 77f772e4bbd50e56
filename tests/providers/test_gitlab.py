"""GitLab adapter driven through python-gitlab against the loopback fake (request shapes as
recorded from python-gitlab; responses checked against GitLab's API JSON schemas)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.errors import ProviderError
from ci_app.providers.base import (
    CheckRunPayload,
    CommitStatus,
    DispatchRequest,
    JobState,
    StatusState,
    get_provider,
)
from ci_app.providers.gitlab import GitLabAdapter
from ci_app.providers.retry import RetryPolicy
from tests.fakes.gitlab import FakeGitLab, shape_errors
from tests.providers.conftest import Sleeps

MARKER = "<!-- ci-fanout:report v1 kind=tests -->"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        assert isinstance(server, FakeGitLab)
        yield server
        assert not server.crashes, server.crashes
        assert server.shape_violations == []


def make(fake: FakeGitLab, policy: RetryPolicy, **kwargs: object) -> GitLabAdapter:
    options: dict[str, object] = {
        "project": "grp/sub/proj",
        "token": "glpat-test",
        "url": fake.url,
        "policy": policy,
        "timeout": 1.0,
    }
    options.update(kwargs)
    return GitLabAdapter(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("project", ["grp/sub/proj", "42"])
def test_sticky_note_created_once_then_edited(
    fake: FakeGitLab, policy: RetryPolicy, project: str
) -> None:
    for i in range(45):
        fake.add_note(3, f"review comment {i}")
    fake.add_note(3, f"{MARKER}\nnot ours, a system note", system=True)
    gl = make(fake, policy, project=project)
    first = gl.upsert_comment(3, f"{MARKER}\n## Results\n2 failed")
    second = gl.upsert_comment(3, f"{MARKER}\n## Results\nall green")
    assert first.created and not second.created and first.id == second.id
    ours = [n for n in fake.notes[3] if n["body"].startswith(MARKER) and not n["system"]]
    assert len(ours) == 1 and ours[0]["body"].endswith("all green")
    assert len(fake.calls("PUT", "/notes/")) == 1
    if project != "42":  # a path is resolved to the numeric id once, properly encoded
        assert fake.calls(path="/projects/")[0].path == "/api/v4/projects/grp%2Fsub%2Fproj"
        assert len(fake.calls("GET", r"/projects/[^/]+$")) == 1
    project_calls = fake.calls(path="/projects/")
    assert all("/projects/42/" in r.path for r in project_calls[1:])
    assert len(project_calls) == len(fake.requests) - 1  # + one GET /user (who we are)
    assert fake.violations == []


def test_huge_note_is_budgeted_to_a_million_chars(fake: FakeGitLab, policy: RetryPolicy) -> None:
    body = MARKER + "\n" + "\n".join(f"## part {i}\n" + "y" * 100_000 for i in range(15))
    ref = make(fake, policy).upsert_comment(1, body)
    (note,) = fake.notes[1]
    assert ref.truncated and len(note["body"]) <= 1_000_000
    assert "more sections — see dashboard" in note["body"]


def test_commit_status_and_check_run_equivalent(fake: FakeGitLab, policy: RetryPolicy) -> None:
    gl = make(fake, policy)
    gl.set_commit_status(
        CommitStatus(
            sha="ab" * 20, state=StatusState.FAILURE, context="ci-fanout", description="3 failed"
        )
    )
    ref = gl.publish_check_run(
        CheckRunPayload(
            name="ci-fanout/tests",
            head_sha="cd" * 20,
            title="all passed",
            summary="s",
            conclusion="success",
        )
    )
    assert [s["state"] for s in fake.statuses] == ["failed", "success"]
    assert fake.statuses[1]["name"] == "ci-fanout/tests" and ref.annotations_sent == 0
    assert fake.violations == []


def test_upload_image_returns_markdown(fake: FakeGitLab, policy: RetryPolicy) -> None:
    image = make(fake, policy).upload_image("trend chart.png", b"\x89PNG\r\n\x1a\nfake")
    assert image is not None
    assert fake.uploads == [("trend_chart.png", b"\x89PNG\r\n\x1a\nfake")]
    assert image.markdown.startswith("![trend_chart](/uploads/")
    assert image.url.startswith(fake.url)
    assert fake.violations == []


@pytest.mark.parametrize("trigger", [None, "glptt-trigger"])
def test_dispatch_with_variables_both_forms(
    fake: FakeGitLab, policy: RetryPolicy, trigger: str | None
) -> None:
    gl = make(fake, policy, trigger_token=trigger)
    result = gl.dispatch(
        DispatchRequest(shard_id="s3", ref="main", inputs={"CI_FANOUT_LABELS": "gpu"})
    )
    assert result.run_id is not None
    pipeline = fake.pipelines[int(result.run_id)]
    assert pipeline["variables"] == {"CI_FANOUT_LABELS": "gpu", "CI_FANOUT_SHARD": "s3"}
    path = "/trigger/pipeline" if trigger else "/pipeline$"
    (call,) = fake.calls("POST", path)
    if trigger:
        assert call.header("PRIVATE-TOKEN") == "glpat-test" or call.json()["token"] == trigger
    else:
        assert call.json()["variables"][0] == {"key": "CI_FANOUT_LABELS", "value": "gpu"}
    assert fake.violations == []


def test_jobs_of_child_pipelines_and_artifacts(
    fake: FakeGitLab, policy: RetryPolicy, tmp_path: Path
) -> None:
    parent = fake.new_pipeline("main", {})
    fake.add_job(parent, "plan", files={"matrix.json": b"{}"})
    child = fake.add_child(parent, "shards")
    fake.add_job(child, "shard 1/2", status="running", tags=["gpu-nvidia"])
    fake.add_job(child, "shard 2/2", status="failed", files={"results.json": b'{"ok": false}'})
    gl = make(fake, policy)
    jobs = gl.list_jobs(str(parent["id"]))
    assert [(j.name, j.state) for j in jobs] == [
        ("plan", JobState.SUCCESS),
        ("shard 1/2", JobState.RUNNING),
        ("shard 2/2", JobState.FAILURE),
    ]
    assert jobs[1].labels == ("gpu-nvidia",) and jobs[1].pipeline_id == str(child["id"])
    paths = gl.fetch_artifacts(str(parent["id"]), tmp_path)
    assert sorted(p.name.split("-")[0] for p in paths) == ["plan", "shard_2_2"]
    with zipfile.ZipFile(next(p for p in paths if p.name.startswith("shard"))) as archive:
        assert archive.read("results.json") == b'{"ok": false}'
    gl.cancel(str(child["id"]))
    assert fake.pipelines[child["id"]]["status"] == "canceled"
    assert fake.violations == []


def test_runner_tags_read_modify_write_keeps_admin_tags(
    fake: FakeGitLab, policy: RetryPolicy
) -> None:
    runner_id = fake.add_runner("lab-02", ["admin-tag", "docker"])
    gl = make(fake, policy)
    (runner,) = gl.list_runners()
    assert runner.labels == {"admin-tag", "docker"} and runner.name == "lab-02"
    gl.add_label(str(runner_id), "cuda-ge-12.4")
    gl.add_label(str(runner_id), "cuda-ge-12.4")  # idempotent: no second write
    gl.remove_label(str(runner_id), "docker")
    assert fake.runners[runner_id]["tag_list"] == ["admin-tag", "cuda-ge-12.4"]
    assert len(fake.calls("PUT", "/runners/")) == 2
    assert fake.violations == []


def test_429_retry_after_then_5xx_exhausted(
    fake: FakeGitLab, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fake.inject("429", retry_after=3)
    make(fake, policy).upsert_comment(5, "hello")
    assert sleeps == [3.0] and len(fake.notes[5]) == 1
    fake.inject("500", times=5)
    with pytest.raises(ProviderError) as err:
        make(fake, policy).upsert_comment(5, "hello 2")
    assert err.value.status == 500 and err.value.provider == "gitlab"
    assert len(sleeps) == 3


def test_timeout_then_success(fake: FakeGitLab, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.inject("timeout", delay=1.3)
    make(fake, policy).set_commit_status(
        CommitStatus(sha="ef" * 20, state=StatusState.PENDING, context="c")
    )
    assert len(fake.statuses) == 1 and sleeps == [0.5]


def test_unauthorized_and_missing_project(fake: FakeGitLab, policy: RetryPolicy) -> None:
    with pytest.raises(ProviderError) as err:
        make(fake, policy, token="nope").upsert_comment(1, "x")
    assert err.value.status == 401
    with pytest.raises(ProviderError) as err:
        make(fake, policy, project="grp/other").upsert_comment(1, "x")
    assert err.value.status == 404 and "not found" in err.value.hint


def test_fake_responses_really_follow_gitlab_schemas() -> None:
    """Guard for the fake itself: the schemas reject a job without its required fields."""
    assert shape_errors("job.json", {"id": 1, "status": "success"})
    assert shape_errors("runner.json", {"id": 1, "tag_list": []})


def test_registry_builds_gitlab(fake: FakeGitLab) -> None:
    provider = get_provider("gitlab", {"project": "42", "token": "glpat-test", "url": fake.url})
    assert provider.runners is not None and provider.runners.list_runners() == []


def test_user_note_with_our_marker_is_never_edited(fake: FakeGitLab, policy: RetryPolicy) -> None:
    """issue 14: a note whose first line is the marker used to be taken over (no author check).
    Now only notes by the token's own user (GET /user) are ours."""
    planted = fake.add_note(4, f"{MARKER}\nall green, merge it", author="mallory")
    impostor = {**fake.user("ci-fanout-bot"), "id": 4242}  # our username, another account
    fake.add_note(4, f"{MARKER}\nstill not ours", author=impostor)
    gl = make(fake, policy)
    first = gl.upsert_comment(4, f"{MARKER}\n## Results\n2 failed")
    second = gl.upsert_comment(4, f"{MARKER}\n## Results\nall green")
    assert first.created and not second.created and first.id == second.id
    assert planted["body"].endswith("merge it") and fake.notes[4][1]["body"].endswith("not ours")
    mine = [n for n in fake.notes[4] if n["author"]["id"] == fake.me["id"]]
    assert len(mine) == 1 and mine[0]["body"].endswith("all green")
    assert len(fake.calls("PUT", "/notes/")) == 1
    assert len(fake.calls("GET", "/api/v4/user$")) == 1
    assert fake.violations == []
