"""GitHub adapter driven through PyGithub against the loopback fake; every request is checked
against GitHub's OpenAPI description (trimmed copy in tests/contracts/)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ci_app.errors import ProviderError
from ci_app.providers.base import (
    Annotation,
    CheckRunPayload,
    CommitStatus,
    DispatchRequest,
    JobState,
    StatusState,
    get_provider,
)
from ci_app.providers.github import GitHubAdapter, GitHubAuth
from ci_app.providers.retry import RetryPolicy
from tests.contracts.validate import GitHubContract
from tests.fakes.github import FakeGitHub
from tests.providers.conftest import Sleeps

MARKER = "<!-- ci-fanout:report v1 kind=tests -->"


@pytest.fixture
def fake(github_contract: GitHubContract) -> Iterator[FakeGitHub]:
    with FakeGitHub(github_contract) as server:
        assert isinstance(server, FakeGitHub)
        yield server
        assert not server.crashes, server.crashes


def make(fake: FakeGitHub, policy: RetryPolicy, **kwargs: object) -> GitHubAdapter:
    options: dict[str, object] = {
        "repo": "octo/widgets",
        "auth": GitHubAuth(token="ghp_test"),
        "api_url": fake.api,
        "policy": policy,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
        "timeout": 1,
    }
    options.update(kwargs)
    return GitHubAdapter(**options)  # type: ignore[arg-type]


def test_sticky_comment_created_once_then_edited_in_place(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    for i in range(130):  # the sticky one lands on page 2 of the comment list
        fake.add_comment(7, f"human comment {i}")
    fake.add_comment(7, "<!-- ci-fanout:report v1 kind=bench -->\nbenchmarks")
    gh = make(fake, policy)

    first = gh.upsert_comment(7, f"{MARKER}\n## Results\n1 failed")
    second = gh.upsert_comment(7, f"{MARKER}\n## Results\nall green")
    third = gh.upsert_comment(7, f"{MARKER}\n## Results\nall green")  # unchanged: no PATCH

    assert first.created and not second.created and not third.created
    assert first.id == second.id == third.id
    ours = [c for c in fake.comments[7] if c["body"].startswith(MARKER)]
    assert len(ours) == 1 and ours[0]["body"].endswith("all green")
    assert len(fake.calls("POST", r"/issues/7/comments$")) == 1
    assert len(fake.calls("PATCH", r"/issues/comments/")) == 1
    assert any("page" in dict(r.query) for r in fake.calls("GET", r"/comments$"))
    # The other kind of sticky comment and human comments are untouched.
    assert fake.comments[7][130]["body"].endswith("benchmarks")
    assert fake.violations == []


def test_comment_without_marker_gets_one(fake: FakeGitHub, policy: RetryPolicy) -> None:
    gh = make(fake, policy)
    gh.upsert_comment(3, "plain body", kind="flaky")
    again = gh.upsert_comment(3, "plain body v2", kind="flaky")
    assert not again.created
    (comment,) = fake.comments[3]
    assert comment["body"].splitlines()[0] == "<!-- ci-fanout:report v1 kind=flaky -->"
    assert fake.violations == []


def test_oversized_comment_truncated_by_section_not_rejected(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    sections = [
        f"## Shard {i}\n" + "\n".join(f"- test_{i}_{j} failed" for j in range(400))
        for i in range(20)
    ]
    body = MARKER + "\n# Test results\n" + "\n".join(sections)
    assert len(body) > 150_000
    gh = make(fake, policy, dashboard_url="https://ci.example/runs/1")
    ref = gh.upsert_comment(11, body)
    posted = fake.comments[11][0]["body"]
    assert ref.truncated
    assert len(posted) <= 65_536
    assert posted.startswith(MARKER + "\n# Test results\n## Shard 0")
    assert "more sections — see [dashboard](https://ci.example/runs/1)" in posted
    assert fake.violations == []


def test_check_run_annotations_go_in_batches_of_50(fake: FakeGitHub, policy: RetryPolicy) -> None:
    annotations = [
        Annotation(
            path=f"tests/test_{i}.py", start_line=i + 1, message=f"assert {i} == 0", title=f"t{i}"
        )
        for i in range(121)
    ]
    payload = CheckRunPayload(
        name="ci-fanout",
        head_sha="a" * 40,
        title="3 failed",
        summary="## Summary\n" + "x" * 70_000,
        conclusion="failure",
        annotations=annotations,
    )
    ref = make(fake, policy).publish_check_run(payload)
    (run,) = fake.check_runs.values()
    assert ref.requests == 3 and ref.annotations_sent == 121 and ref.truncated
    assert [a["start_line"] for a in run["annotations"]] == list(range(1, 122))
    sizes = [
        len((r.json().get("output") or {}).get("annotations", []))
        for r in fake.calls(None, "check-runs")
    ]
    assert sizes == [50, 50, 21]
    first = fake.calls("POST", "check-runs")[0].json()
    assert first["status"] == "in_progress" and "conclusion" not in first
    assert run["status"] == "completed" and run["conclusion"] == "failure"
    assert len(run["output"]["summary"]) <= 65_535
    assert fake.violations == []


def test_single_batch_check_run_completes_in_one_request(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    payload = CheckRunPayload(name="ci", head_sha="b" * 40, title="ok", summary="fine")
    ref = make(fake, policy).publish_check_run(payload)
    assert ref.requests == 1
    (run,) = fake.check_runs.values()
    assert run["conclusion"] == "neutral" and run["status"] == "completed"
    assert fake.violations == []


def test_commit_status_description_is_clipped(fake: FakeGitHub, policy: RetryPolicy) -> None:
    make(fake, policy).set_commit_status(
        CommitStatus(
            sha="c" * 40,
            state=StatusState.FAILURE,
            context="ci-fanout/tests",
            description="12 failed, " * 30,
            target_url="https://ci.example/r/1",
        )
    )
    (status,) = fake.statuses
    assert len(status["description"]) == 140 and status["description"].endswith("…")
    assert status["state"] == "failure"
    assert fake.violations == []


def test_contract_violation_is_caught_by_the_fake(fake: FakeGitHub, policy: RetryPolicy) -> None:
    """Sanity check of the fake itself: a raw request with 51 annotations is rejected."""
    gh = make(fake, policy)
    repo = gh._repo()
    with pytest.raises(Exception, match="422"):
        repo.create_check_run(
            name="x",
            head_sha="d" * 40,
            output={
                "title": "t",
                "summary": "s",
                "annotations": [
                    {
                        "path": "a",
                        "start_line": 1,
                        "end_line": 1,
                        "annotation_level": "failure",
                        "message": "m",
                    }
                ]
                * 51,
            },
        )
    assert any("maxItems=50" in v for v in fake.violations)


def test_workflow_dispatch_jobs_artifacts_cancel(
    fake: FakeGitHub, policy: RetryPolicy, tmp_path: Path
) -> None:
    gh = make(fake, policy)
    result = gh.dispatch(
        DispatchRequest(
            shard_id="s1", ref="main", target="ci.yml", inputs={"shard": "s1", "n": "3"}
        )
    )
    assert result.run_id is not None
    run = fake.runs[int(result.run_id)]
    assert run.inputs == {"shard": "s1", "n": "3"}
    states = [gh.list_jobs(result.run_id)[0].state for _ in range(3)]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCESS]
    fake.add_artifact(run, "results-s1", {"results.json": b'{"schema": "x"}'})
    fake.add_artifact(run, "old", {"a.txt": b"x"}, expired=True)
    paths = gh.fetch_artifacts(result.run_id, tmp_path)
    assert [p.name for p in paths] == ["results-s1.zip"]
    with zipfile.ZipFile(paths[0]) as archive:
        assert archive.read("results.json") == b'{"schema": "x"}'
    assert fake.calls("GET", r"/_blobs/")  # followed the 302 to the blob store
    gh.cancel(result.run_id)
    assert run.cancelled
    assert fake.violations == []


def test_dispatch_over_25_inputs_fails_before_sending(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    gh = make(fake, policy)
    with pytest.raises(ProviderError) as err:
        gh.dispatch(
            DispatchRequest(
                shard_id="s", ref="main", target="ci.yml", inputs={f"k{i}": "v" for i in range(26)}
            )
        )
    assert "25" in str(err.value) and err.value.operation == "workflow_dispatch"
    assert fake.requests == []


def test_repository_dispatch(fake: FakeGitHub, policy: RetryPolicy) -> None:
    result = make(fake, policy).dispatch(
        DispatchRequest(shard_id="s2", ref="main", event_type="ci-fanout-shard", inputs={"a": "1"})
    )
    assert result.run_id is None
    assert fake.repository_dispatches == [
        {
            "event_type": "ci-fanout-shard",
            "client_payload": {"shard_id": "s2", "ref": "main", "inputs": {"a": "1"}},
        }
    ]
    assert fake.violations == []


@pytest.mark.parametrize("org", [None, "octo"])
def test_runner_labels_added_and_removed_one_by_one(
    fake: FakeGitHub, policy: RetryPolicy, org: str | None
) -> None:
    runner_id = fake.add_runner("lab-01", ["self-hosted", "linux", "x64", "admin-label", "gpu"])
    gh = make(fake, policy, org_runners=org)
    (runner,) = gh.list_runners()
    assert runner.labels == {"self-hosted", "linux", "x64", "admin-label", "gpu"} and runner.online
    gh.add_label(str(runner_id), "gpu-mem-ge-80g")
    gh.remove_label(str(runner_id), "gpu")
    (runner,) = gh.list_runners()
    assert runner.labels == {"self-hosted", "linux", "x64", "admin-label", "gpu-mem-ge-80g"}
    assert not fake.calls("PUT")  # never replaces the whole label set
    prefix = "/orgs/octo" if org else "/repos/octo/widgets"
    assert fake.calls("POST", f"^{prefix}/actions/runners/{runner_id}/labels$")
    assert fake.calls("DELETE", f"^{prefix}/actions/runners/{runner_id}/labels/gpu$")
    assert fake.violations == []


def _app_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_app_auth_jwt_installation_token_refreshed_before_expiry(
    github_contract: GitHubContract, policy: RetryPolicy
) -> None:
    private, public = _app_key()
    # Tokens that live 10 s are inside PyGithub's 20 s refresh window: each use refreshes.
    with FakeGitHub(github_contract, app_id=321, public_key=public, token_lifetime_s=10) as fake:
        assert isinstance(fake, FakeGitHub)
        gh = make(fake, policy, auth=GitHubAuth(app_id="321", private_key=private))
        gh.upsert_comment(1, f"{MARKER}\nv1")
        gh.upsert_comment(1, f"{MARKER}\nv2")
        lookup = fake.calls("GET", "/installation$")[0]
        assert (lookup.header("Authorization") or "").startswith("Bearer ")
        assert len(fake.issued_tokens) >= 2
        last = fake.calls("PATCH", "/issues/comments/")[-1]
        assert last.header("Authorization") == f"token {fake.issued_tokens[-1]}"
        assert fake.comments[1][0]["body"].endswith("v2")
        assert fake.violations == [] and not fake.crashes


def test_app_auth_long_lived_token_is_reused(
    github_contract: GitHubContract, policy: RetryPolicy
) -> None:
    private, public = _app_key()
    with FakeGitHub(github_contract, app_id=5, public_key=public) as fake:
        assert isinstance(fake, FakeGitHub)
        gh = make(
            fake, policy, auth=GitHubAuth(app_id="5", private_key=private, installation_id=4242)
        )
        for i in range(3):
            gh.upsert_comment(2, f"{MARKER}\nv{i}")
        assert len(fake.issued_tokens) == 1
        assert not fake.calls("GET", "/installation$")  # installation id given: no lookup
        assert fake.violations == []


def test_enterprise_base_url_with_path_prefix(
    github_contract: GitHubContract, policy: RetryPolicy, tmp_path: Path
) -> None:
    with FakeGitHub(github_contract, prefix="/api/v3") as fake:
        assert isinstance(fake, FakeGitHub)
        gh = make(fake, policy)
        assert gh.api_url.endswith("/api/v3")
        gh.upsert_comment(5, f"{MARKER}\nhello")
        gh.upsert_comment(5, f"{MARKER}\nhello again")
        result = gh.dispatch(DispatchRequest(shard_id="s", ref="main", target="ci.yml"))
        assert result.run_id
        fake.add_artifact(fake.runs[int(result.run_id)], "r", {"x": b"1"})
        assert len(gh.fetch_artifacts(result.run_id, tmp_path)) == 1
        assert all(r.path.startswith("/api/v3/") for r in fake.requests)
        assert len(fake.comments[5]) == 1
        assert fake.violations == []


def test_primary_rate_limit_waits_until_reset_then_succeeds(
    fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fake.inject("rate_limit", reset_in=3, method="POST")
    make(fake, policy).upsert_comment(9, f"{MARKER}\nx")
    assert len(sleeps) == 1 and 2 <= sleeps[0] <= 5
    assert len(fake.comments[9]) == 1


def test_rate_limit_reset_far_away_surfaces_at_once(
    fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fake.inject("rate_limit", reset_in=3600, times=5)
    with pytest.raises(ProviderError) as err:
        make(fake, policy).upsert_comment(9, "x")
    assert sleeps == []
    assert err.value.status == 403 and err.value.provider == "github"
    assert "resets at" in err.value.hint


def test_429_retry_after_honoured(fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.inject("429", retry_after=2, times=2)
    make(fake, policy).set_commit_status(
        CommitStatus(sha="e" * 40, state=StatusState.SUCCESS, context="c")
    )
    assert sleeps == [2.0, 2.0]
    assert len(fake.statuses) == 1


def test_secondary_rate_limit_waits_at_least_a_minute_or_gives_up(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    fake.inject("secondary", times=1)
    patient = RetryPolicy(attempts=2, base_delay=0.1, max_delay=120, sleep=sleeps)
    make(fake, patient).upsert_comment(4, "x")
    assert sleeps == [60.0]
    fake.inject("secondary", times=1, retry_after=5)
    make(fake, patient).upsert_comment(4, "y")
    assert sleeps[-1] == 5.0
    fake.inject("secondary", times=1)
    with pytest.raises(ProviderError) as err:
        make(fake, RetryPolicy(attempts=3, max_delay=10, sleep=sleeps)).upsert_comment(4, "z")
    assert "secondary rate limit" in err.value.hint


def test_5xx_retried_within_bounds_then_provider_error(
    fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fake.inject("500", times=10)
    with pytest.raises(ProviderError) as err:
        make(fake, policy).list_runners()
    assert err.value.status == 500 and "after 3 tries" in str(err.value)
    assert sleeps == [0.5, 1.0]
    assert len(fake.calls("GET", "/actions/runners$")) == 3


def test_timeout_is_retried(fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps) -> None:
    fake.add_runner("r", ["self-hosted"])
    fake.inject("timeout", delay=1.5)
    runners = make(fake, policy).list_runners()
    assert len(runners) == 1 and sleeps == [0.5]


def test_timeouts_exhausted_give_clear_error(fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.inject("timeout", delay=1.3, times=2)
    with pytest.raises(ProviderError) as err:
        make(fake, RetryPolicy(attempts=2, base_delay=0.1, sleep=sleeps)).list_runners()
    assert err.value.status is None and "no answer in time" in err.value.hint


def test_bad_credentials(fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps) -> None:
    gh = make(fake, policy, auth=GitHubAuth(token="wrong"))
    with pytest.raises(ProviderError) as err:
        gh.upsert_comment(1, "x")
    assert err.value.status == 401 and "token" in err.value.hint and sleeps == []
    assert "Bad credentials" in str(err.value)


def test_registry_builds_github_from_settings(fake: FakeGitHub) -> None:
    provider = get_provider(
        "github", {"repo": "octo/widgets", "token": "ghp_test", "api_url": fake.api}
    )
    assert provider.forge is not None and id(provider.ci) == id(provider.forge)
    assert provider.forge.upload_image("chart.png", b"\x89PNG") is None


# -- the sticky comment is ours: marker AND author ----------------------------------------------
def test_user_comment_with_our_marker_is_never_edited(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    """issue 14: a comment whose first line is the marker used to be taken over (no author
    check). Now it is left alone and our own comment is created beside it."""
    planted = fake.add_comment(8, f"{MARKER}\n@everyone this PR is fine, merge it", user="mallory")
    gh = make(fake, policy)
    first = gh.upsert_comment(8, f"{MARKER}\n## Results\n1 failed")
    second = gh.upsert_comment(8, f"{MARKER}\n## Results\nall green")
    assert first.created and not second.created and first.id == second.id != str(planted["id"])
    assert planted["body"].endswith("merge it")  # untouched
    assert not [r for r in fake.calls("PATCH") if r.path.endswith(f"/{planted['id']}")]
    mine = [c for c in fake.comments[8] if c["user"]["login"] == "ci-fanout-bot"]
    assert len(mine) == 1 and mine[0]["body"].endswith("all green")
    assert len(fake.calls("GET", "/user$")) == 1  # identity looked up once per adapter
    assert fake.violations == []


def test_same_login_but_other_account_is_not_us(fake: FakeGitHub, policy: RetryPolicy) -> None:
    """Ids win over logins: a renamed or recreated account with our old login is someone else."""
    impostor = {"login": "ci-fanout-bot", "id": 999_999, "type": "User"}
    planted = fake.add_comment(12, f"{MARKER}\nfake results", user=impostor)
    created = make(fake, policy).upsert_comment(12, f"{MARKER}\nreal results")
    assert created.created and planted["body"].endswith("fake results")


def test_github_token_comments_are_github_actions_bot(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    """A workflow's GITHUB_TOKEN cannot read /user (403): the author is github-actions[bot]."""
    fake.add_token("ghs_workflow", actions=True)
    fake.add_comment(9, f"{MARKER}\nplanted", user="mallory")
    gh = make(fake, policy, auth=GitHubAuth(token="ghs_workflow"))
    assert gh.whoami().login == "github-actions[bot]"
    first = gh.upsert_comment(9, f"{MARKER}\nv1")
    second = gh.upsert_comment(9, f"{MARKER}\nv2")
    assert first.created and not second.created and first.id == second.id
    bodies = {c["user"]["login"]: c["body"] for c in fake.comments[9]}
    assert bodies == {"mallory": f"{MARKER}\nplanted", "github-actions[bot]": f"{MARKER}\nv2"}
    # A PAT of another user does not count as the bot either.
    fake.add_token("ghp_other", login="someone-else")
    other = make(fake, policy, auth=GitHubAuth(token="ghp_other")).upsert_comment(9, MARKER)
    assert other.created
    assert fake.violations == []


def test_comment_author_setting_for_another_apps_installation_token(
    fake: FakeGitHub, policy: RetryPolicy
) -> None:
    fake.add_token("ghs_other_app", actions=True)
    fake.identities["ghs_other_app"] = fake.user("release-bot[bot]")
    gh = make(fake, policy, auth=GitHubAuth(token="ghs_other_app"))
    # Without the setting the bot is assumed to be GitHub Actions: a new comment, never a
    # hijack; with it, the App's own comment is found again.
    gh.upsert_comment(4, f"{MARKER}\nv1")
    named = make(
        fake, policy, auth=GitHubAuth(token="ghs_other_app"), comment_author="release-bot[bot]"
    )
    assert not named.upsert_comment(4, f"{MARKER}\nv2").created
    assert [c["body"] for c in fake.comments[4]] == [f"{MARKER}\nv2"]


def test_rate_limited_user_lookup_is_retried_not_taken_for_a_bot(
    fake: FakeGitHub, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fake.inject("rate_limit", times=1, path="/user$", reset_in=2)
    gh = make(fake, policy)
    assert gh.whoami().login == "ci-fanout-bot"
    assert len(sleeps) == 1


def test_app_comments_are_the_apps_bot(
    github_contract: GitHubContract, policy: RetryPolicy
) -> None:
    private, public = _app_key()
    with FakeGitHub(github_contract, app_id=77, app_slug="fanout-app", public_key=public) as fake:
        assert isinstance(fake, FakeGitHub)
        fake.add_comment(6, f"{MARKER}\nplanted", user="mallory")
        fake.add_comment(6, f"{MARKER}\nplanted by a bot", user="evil[bot]")
        gh = make(fake, policy, auth=GitHubAuth(app_id="77", private_key=private))
        gh.upsert_comment(6, f"{MARKER}\nv1")
        assert not gh.upsert_comment(6, f"{MARKER}\nv2").created
        app = fake.calls("GET", "/app$")
        assert len(app) == 1 and (app[0].header("Authorization") or "").startswith("Bearer ")
        by = {c["user"]["login"]: c["body"] for c in fake.comments[6]}
        assert by["fanout-app[bot]"].endswith("v2")
        assert by["mallory"].endswith("planted") and by["evil[bot]"].endswith("planted by a bot")
        assert fake.violations == [] and not fake.crashes
