"""The GitLab component and template as users meet them, under gitlab-ci-local (not our
emulator): ``spec: inputs``, ``extends``, the ``.pre``/``.post`` stages, the trigger job and its
child pipeline from an artifact, dotenv and artifacts, all by gitlab-ci-local's rules, with the
shell executor. The README's quick start is copied from README.md (documented inputs filled in);
the component project is this working tree, seeded where gitlab-ci-local keeps fetched
components. The report job talks to a loopback fake GitLab, which is shown the pipeline
gitlab-ci-local ran.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.gitlab import FakeGitLab
from tests.realci.harness import (
    ROOT,
    GitLabCiLocal,
    PipelineResult,
    commit_all,
    git,
    readme_block,
)
from tests.realci.project import FAILING, FLAKY, GPU_TEST, KILLER, RUNNERS, all_tests, write_project

pytestmark = pytest.mark.slow

HOST = "gitlab.example.com"
PROJECT = "grp/sub/proj"
MR = 7
MARKER = "<!-- ci-fanout:report"
IMAGE = "python:3.12-bookworm"


@pytest.fixture
def gitlab() -> Any:
    fake = FakeGitLab()
    with fake:
        yield fake
    assert not fake.violations, json.dumps(fake.violations, indent=1)
    assert not fake.shape_violations, fake.shape_violations


def quickstart(checkout: Path) -> str:
    """README's GitLab quick start with the documented inputs this test sets: ``package`` is
    the component project's checkout; two shards; reruns; the image."""
    doc = yaml.safe_load(readme_block("### GitLab user: the template / CI/CD component"))
    inputs = doc["include"][0]["inputs"]
    assert "package" in inputs, "the quick start shows where ci-fanout installs from"
    inputs.update(
        {
            "package": str(checkout),
            "shards": "2",
            "test-command": "python -m pytest --reruns 1",
            "image": IMAGE,
        }
    )
    return yaml.safe_dump(doc, sort_keys=False)


def make_repo(root: Path, checkout: Path, *, failing: bool, kill: str = "") -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", f"https://{HOST}/{PROJECT}.git")
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD") if False else None
    write_project(root, failing=failing, kill=kill)
    (root / "ci").mkdir()
    (root / "ci" / "runners.json").write_text(json.dumps(RUNNERS))
    (root / ".gitlab-ci.yml").write_text(quickstart(checkout))
    (root / ".gitignore").write_text(".gitlab-ci-local/\nci-fanout/\n.ci-fanout-history/\n")
    return root


def runner(repo: Path, runner_bin: Path, gitlab: FakeGitLab, tool_cache: Path) -> GitLabCiLocal:
    gl = GitLabCiLocal(
        repo=repo,
        path_prefix=[runner_bin],
        variables={
            "CI_PROJECT_ID": "42",
            "CI_FANOUT_GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": gitlab.token,
            "CI_FANOUT_TOOL_CACHE": str(tool_cache),
            "PY_COLORS": "1",
        },
    )
    component = (ROOT / "templates" / "ci-fanout.yml").read_text()
    gl.seed_component("ci-fanout/ci-fanout", "1.0.0", "ci-fanout", component, HOST)
    gitlab.pipeline_source = lambda pid: gl.describe(gitlab, pid)
    return gl


def mr_variables(base: str) -> dict[str, str]:
    return {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": str(MR),
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
    }


def the_note(gitlab: FakeGitLab) -> str:
    notes = gitlab.notes.get(MR, [])
    assert len(notes) == 1, f"one sticky note, got {len(notes)}"
    body = str(notes[0]["body"])
    assert body.splitlines()[0].startswith(MARKER)
    return body


def statuses(gitlab: FakeGitLab, sha: str) -> list[str]:
    return [str(s["state"]) for s in gitlab.statuses if s.get("sha") == sha]


def report_junit(repo: Path) -> list[str]:
    """Test names in the report job's merged JUnit (artifacts:reports:junit: the MR widget)."""
    path = repo / ".gitlab-ci-local" / "artifacts" / "ci-fanout-report" / "ci-fanout"
    junit = (path / "report" / "junit.xml").read_text()
    import re

    return re.findall(r'<testcase [^>]*name="([^"]+)"', junit)


def test_component_quickstart_push_then_merge_request(
    tmp_path: Path, checkout: Path, runner_bin: Path, gitlab: FakeGitLab
) -> None:
    repo = make_repo(tmp_path / "repo", checkout, failing=False)
    base = commit_all(repo, "main: all green")
    gl = runner(repo, runner_bin, gitlab, tmp_path.parent / "gl-tools")
    main = gl.run()
    assert main.jobs.get("ci-fanout-plan") == "PASS", main.log[-6000:]
    assert main.jobs.get("ci-fanout-report") == "PASS", main.log[-6000:]
    assert statuses(gitlab, base)[-1:] == ["success"], gitlab.statuses
    # the image input reaches every job of the child pipeline
    child = yaml.safe_load((repo / "ci-fanout" / "child-pipeline.yml").read_text())
    assert child["default"]["image"] == IMAGE

    git(repo, "checkout", "-q", "-b", "feature")
    write_project(repo, failing=True)
    head = commit_all(repo, "feature: a new failure")
    mr = gl.run(variables=mr_variables(base))
    assert mr.jobs.get("ci-fanout-report") == "FAIL", mr.log[-6000:]
    body = the_note(gitlab)
    assert "1 new failure" in body.splitlines()[2], body
    assert FAILING in body and FLAKY in body
    for seq in ("\x1b", "#x1B", "[91m", "[0m"):
        assert seq not in body
    assert "Planned: 10 — ran 9, not run for want of hardware 1, lost 0." in body, body
    assert GPU_TEST in body and "gpu-mem-ge-24g" in body
    assert "| vs base |" in body
    assert statuses(gitlab, head)[-1] == "failed"
    # the MR widget gets every test of the run from the parent pipeline's report job
    names = report_junit(repo)
    assert len(names) == len(all_tests()), names


def test_component_a_shard_dies(
    tmp_path: Path, checkout: Path, runner_bin: Path, gitlab: FakeGitLab
) -> None:
    repo = make_repo(tmp_path / "repo", checkout, failing=False, kill=KILLER)
    head = commit_all(repo, "a runner dies")
    gl = runner(repo, runner_bin, gitlab, tmp_path.parent / "gl-tools")
    run = gl.run(variables=mr_variables(head))
    assert run.jobs.get("ci-fanout-report") == "FAIL", run.log[-6000:]
    body = the_note(gitlab)
    assert "lost" in body.splitlines()[2] and "🛑" in body.splitlines()[2], body
    assert KILLER in body[body.index("### 🛑 Lost") :]
    assert "killed by signal 9" in body
    assert statuses(gitlab, head)[-1] == "failed"


def test_template_every_shard_dead(
    tmp_path: Path, checkout: Path, runner_bin: Path, gitlab: FakeGitLab
) -> None:
    """The template file (include: local, same jobs as the component): both shards die."""
    repo = make_repo(tmp_path / "repo", checkout, failing=False, kill="all")
    doc = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    inputs = doc["include"][0]["inputs"]
    doc["include"] = [{"local": "ci/ci-fanout-template.yml", "inputs": inputs}]
    (repo / "ci" / "ci-fanout-template.yml").write_text(
        (ROOT / ".gitlab-ci-template.yml").read_text()
    )
    (repo / ".gitlab-ci.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    head = commit_all(repo, "every runner dies")
    gl = runner(repo, runner_bin, gitlab, tmp_path.parent / "gl-tools")
    run = gl.run(variables=mr_variables(head))
    assert run.jobs.get("ci-fanout-report") == "FAIL", run.log[-6000:]
    body = the_note(gitlab)
    # each shard dies at its first test that is not skip-marked (a skip-marked test before it
    # has its result, kept from the shard's journal): red, every test without a result lost
    headline = body.splitlines()[2]
    assert "🛑" in headline and "lost" in headline and "✅" not in headline, body
    for t in all_tests() - {GPU_TEST}:
        assert t in body
    assert statuses(gitlab, head)[-1] == "failed"
    assert not _unused(run)


def _unused(result: PipelineResult) -> bool:
    return False


def _zip_names(path: Path) -> list[str]:  # pragma: no cover - debugging aid
    with zipfile.ZipFile(path) as z:
        return z.namelist()
