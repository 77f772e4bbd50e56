"""The GitHub Action as users meet it, under nektos/act (not our emulator).

The README's quick-start workflow (copied from README.md, with documented inputs filled in) and
the shipped example workflow run with act's host executor and the pinned actions; the
``ci-fanout/ci-fanout@v1`` they use is this working tree. The report posts to a loopback fake
GitHub that checks each request against GitHub's OpenAPI description.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github import FakeGitHub
from tests.realci.harness import (
    ROOT,
    Act,
    commit_all,
    git,
    readme_block,
    set_inputs,
)
from tests.realci.project import (
    FAILING,
    FLAKY,
    GPU_TEST,
    KILLER,
    RUNNERS,
    SKIPPED,
    all_tests,
    write_project,
)

pytestmark = pytest.mark.slow

REPO = "octo/sample"
PR = 7
MARKER = "<!-- ci-fanout:report"


def quickstart_workflow() -> str:
    """README's quick start, as a user copies it, with the documented inputs this project
    needs: its runner pools, two shards, and a test command that reruns failures once."""
    block = readme_block("### Repo maintainer: the GitHub Action")
    block = set_inputs(block, "plan", {"runners": "runners.json", "shards": 2})
    block = set_inputs(block, "shard", {"test-command": "python -m pytest --reruns 1"})
    return "name: tests\non: [push, pull_request]\n\n" + block


@pytest.fixture(scope="session")
def act_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """act's action and tool cache, shared by the tests (ci-fanout installs once)."""
    return tmp_path_factory.mktemp("act-cache")


def make_act(
    repo: Path, checkout: Path, work: Path, runner_bin: Path, github: FakeGitHub, **env: str
) -> Act:
    return Act(
        repo=repo,
        action=checkout,
        work=repo.parent / "act",
        action_cache=work,
        path_prefix=[runner_bin],
        env={"CI_FANOUT_GITHUB_API_URL": github.url, "PY_COLORS": "1", **env},
        secrets={"GITHUB_TOKEN": "ghp_test"},
    )


def quickstart_repo(root: Path, *, failing: bool) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", f"https://github.com/{REPO}.git")
    write_project(root, failing=failing)
    (root / "runners.json").write_text(json.dumps(RUNNERS))
    wf = root / ".github" / "workflows" / "tests.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(quickstart_workflow())
    return root


def pr_event(head: str, base: str, branch: str = "feature") -> dict[str, Any]:
    return {
        "number": PR,
        "pull_request": {
            "number": PR,
            "head": {"ref": branch, "sha": head},
            "base": {"ref": "main", "sha": base},
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    }


def push_event(sha: str) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "after": sha,
        "repository": {"full_name": REPO, "default_branch": "main"},
    }


def the_comment(github: FakeGitHub) -> str:
    comments = github.comments.get(PR, [])
    assert len(comments) == 1, f"one sticky comment, got {len(comments)}"
    body = str(comments[0]["body"])
    assert body.splitlines()[0].startswith(MARKER)
    return body


def check_conclusions(github: FakeGitHub) -> list[str]:
    return [str(c.get("conclusion")) for c in github.check_runs.values()]


def assert_no_escapes(text: str) -> None:
    for seq in ("\x1b", "#x1B", "[91m", "[0m"):
        assert seq not in text, f"terminal escape {seq!r} reached the comment"


def test_quickstart_push_then_pull_request(
    tmp_path: Path, checkout: Path, act_work: Path, runner_bin: Path, github: FakeGitHub
) -> None:
    """Push to main (history kept in the Actions cache), then a PR: passing, failing (colour
    codes), skipped, flaky and a GPU test no runner has; compared with main's run."""
    repo = quickstart_repo(tmp_path / "repo", failing=False)
    base = commit_all(repo, "main: all green")
    act = make_act(repo, checkout, act_work, runner_bin, github)
    main = act.run("push", push_event(base), env={"GITHUB_RUN_ID": "101"})
    assert main.returncode == 0, main.log[-6000:]
    assert not github.comments, "a push has no PR to comment on"
    assert check_conclusions(github) == ["success"], main.log[-3000:]

    git(repo, "checkout", "-q", "-b", "feature")
    write_project(repo, failing=True)
    head = commit_all(repo, "feature: a new failure")
    pr = act.run("pull_request", pr_event(head, base), env={"GITHUB_RUN_ID": "102"})
    assert pr.returncode != 0, "the report fails on a new failure"
    assert pr.jobs.get("plan") == "succeeded", pr.log[-6000:]
    assert pr.job_failed("report"), pr.log[-6000:]
    body = the_comment(github)
    assert "1 new failure" in body.splitlines()[2], body
    assert FAILING in body
    assert_no_escapes(body)
    # every planned test once: 10 planned, the GPU test not run, nothing lost
    assert "Planned: 10 — ran 9, not run for want of hardware 1, lost 0." in body, body
    assert GPU_TEST in body and "gpu-mem-ge-24g" in body and "Not run" in body
    assert FLAKY in body and "Flaky" in body
    # the base came from the cached history of the push run
    assert "| vs base |" in body, body
    assert f"merge base {base[:10]}" in body or base[:10] in body, body
    assert "failure" in check_conclusions(github)


def test_quickstart_a_shard_dies(
    tmp_path: Path, checkout: Path, act_work: Path, runner_bin: Path, github: FakeGitHub
) -> None:
    """One shard's test process is SIGKILLed at its last test: the tests it finished are kept
    (its journal), the one it was running is lost, named first, and red."""
    repo = quickstart_repo(tmp_path / "repo", failing=False)
    head = commit_all(repo, "green, but one runner dies")
    act = make_act(repo, checkout, act_work, runner_bin, github, E2E_KILL=KILLER)
    run = act.run("pull_request", pr_event(head, head), env={"GITHUB_RUN_ID": "201"})
    assert run.returncode != 0
    assert run.job_failed("report"), run.log[-6000:]
    body = the_comment(github)
    headline = body.splitlines()[2]
    assert "lost" in headline and "🛑" in headline, headline
    lost_at = body.index("### 🛑 Lost")
    assert lost_at < body.find("###", lost_at + 5) or body.count("###") == 1
    assert KILLER in body[lost_at:]
    assert "killed by signal 9" in body and "SIGKILL" in body
    matrix = _matrix(act)
    (victim,) = [s for s in matrix["shards"] if KILLER in s["tests"]]
    # it dies in the killer's set-up: what it ran before is in its journal, the rest is lost
    unfinished = victim["tests"][victim["tests"].index(KILLER) :]
    for t in unfinished:
        assert t in body[lost_at:], f"{t} of the dead shard is not named"
    assert "recovered from its journal" in run.log or len(unfinished) == len(victim["tests"])
    planned = len(all_tests())
    lost = len(unfinished)
    assert (
        f"Planned: {planned} — ran {planned - 1 - lost}, not run for want of hardware 1, "
        f"lost {lost}." in body
    ), body
    assert check_conclusions(github) == ["failure"]


def test_quickstart_every_shard_dead(
    tmp_path: Path, checkout: Path, act_work: Path, runner_bin: Path, github: FakeGitHub
) -> None:
    """Both shards die at their first test that is not skip-marked: never green; every test
    without a result is lost and named."""
    repo = quickstart_repo(tmp_path / "repo", failing=False)
    head = commit_all(repo, "every runner dies")
    act = make_act(repo, checkout, act_work, runner_bin, github, E2E_KILL="all")
    run = act.run("pull_request", pr_event(head, head), env={"GITHUB_RUN_ID": "301"})
    assert run.returncode != 0
    assert run.job_failed("report"), run.log[-6000:]
    body = the_comment(github)
    headline = body.splitlines()[2]
    assert "🛑" in headline and "lost" in headline and "✅" not in headline, body
    for t in all_tests() - {GPU_TEST}:
        assert t in body, f"lost test {t} is not named"
    # a skip-marked test is skipped before the killing set-up hook runs: it has a result
    finished = 0
    for shard in _matrix(act)["shards"]:
        for t in shard["tests"]:
            if t != SKIPPED:
                break
            finished += 1
    assert f"lost {len(all_tests()) - 1 - finished}." in body
    assert check_conclusions(github) == ["failure"]


def test_shipped_example_workflow(
    tmp_path: Path, checkout: Path, act_work: Path, github: FakeGitHub
) -> None:
    """examples/github/ci-fanout.yml as shipped, on the sample it describes: setup-python,
    its requirements, shards on the GPU and browser pools' runners, one comment."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "github" / "sample", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", f"https://github.com/{REPO}.git")
    shutil.copy(ROOT / "examples" / "github" / "ci-fanout.toml", repo / "ci-fanout.toml")
    (repo / "requirements-test.txt").write_text("pytest>=8\n")
    wf = repo / ".github" / "workflows" / "ci-fanout.yml"
    wf.parent.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "github" / "ci-fanout.yml", wf)
    head = commit_all(repo, "example")
    act = make_act(repo, checkout, act_work, Path("/nonexistent"), github)
    act.add_python("3.12.99", python_for("3.12"))
    run = act.run("pull_request", pr_event(head, head), env={"GITHUB_RUN_ID": "401"})
    assert run.jobs.get("plan") == "succeeded", run.log[-6000:]
    assert run.jobs.get("report") == "succeeded", run.log[-6000:]
    body = the_comment(github)
    assert "all tests passed" in body.splitlines()[2], body
    matrix = _matrix(act)
    pools = {tuple(s["runs_on"]) for s in matrix["shards"]}
    assert any("gpu-mem-ge-24g" in p for p in pools), pools
    assert any("webgpu" in p for p in pools), pools


def python_for(version: str) -> str:
    """An interpreter of ``version`` for setup-python's tool cache (this one if none)."""
    import sys

    found = shutil.which(f"python{version}")
    return found or sys.executable


def _matrix(act: Act) -> dict[str, Any]:
    found = sorted(act.work.glob(f"run-{act.runs}/artifacts/**/matrix.json"))
    if not found:  # act keeps uploads zipped per artifact
        import zipfile

        for z in sorted(act.work.glob(f"run-{act.runs}/artifacts/**/*")):
            if z.is_file() and zipfile.is_zipfile(z):
                with zipfile.ZipFile(z) as archive:
                    if "matrix.json" in archive.namelist():
                        doc: dict[str, Any] = json.loads(archive.read("matrix.json"))
                        return doc
        raise AssertionError("no matrix artifact found")
    out: dict[str, Any] = json.loads(found[0].read_text())
    return out
