"""End to end: ``ci-app report --publish github|gitlab`` against the loopback fakes, with the
base URLs and tokens taken from the environment as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.cli import main
from ci_app.errors import ConfigError
from ci_app.providers.publish import forge_settings, publish_report
from tests.contracts.validate import GitHubContract
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="suite" tests="3" failures="1">
  <testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3" time="0.01"/>
  <testcase classname="tests.test_math" name="test_div" file="tests/test_math.py" line="9" time="0.02">
    <failure message="ZeroDivisionError">Traceback: boom</failure>
  </testcase>
  <testcase classname="tests.test_gpu" name="test_kernel" time="1.5"/>
</testsuite>
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT, encoding="utf-8")
    db = tmp_path / "ci.duckdb"
    code = main(
        [
            "ingest",
            str(report),
            "--db",
            str(db),
            "--run-id",
            "r1",
            "--shard-id",
            "s1",
            "--commit",
            "a" * 40,
            "--branch",
            "feature",
            "--pr",
            "7",
            "-q",
            "-o",
            str(tmp_path / "results.json"),
        ]
    )
    assert code == 0
    return db


@pytest.fixture
def github(github_contract: GitHubContract) -> Iterator[FakeGitHub]:
    with FakeGitHub(github_contract, token="ghp_e2e") as fake:
        assert isinstance(fake, FakeGitHub)
        yield fake
        assert not fake.crashes


def test_report_publish_github_twice_edits_one_comment(
    store: Path,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CI_FANOUT_GITHUB_API_URL", github.api)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_e2e")
    monkeypatch.setenv("CI_FANOUT_GITHUB_THROTTLE", "0")
    github.add_comment(7, "a human review")
    argv = [
        "report",
        "--db",
        str(store),
        "--run-id",
        "r1",
        "-o",
        str(tmp_path / "c.md"),
        "--publish",
        "github",
        "--repo",
        "octo/widgets",
        "--pr",
        "7",
    ]
    assert main(argv) == 0
    assert main([*argv, "--head-sha", "b" * 40]) == 0
    comments = github.comments[7]
    assert len(comments) == 2
    sticky = comments[1]["body"]
    assert sticky.startswith("<!-- ci-fanout:report v1")
    assert sticky == (tmp_path / "c.md").read_text(encoding="utf-8")
    assert len(github.calls("POST", "/issues/7/comments$")) == 1
    (check,) = github.check_runs.values()
    assert check["head_sha"] == "b" * 40 and check["status"] == "completed"
    assert "comment" in capsys.readouterr().err
    assert github.violations == []


def test_report_publish_gitlab(
    store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeGitLab(token="glpat-e2e") as gitlab:
        assert isinstance(gitlab, FakeGitLab)
        monkeypatch.setenv("CI_FANOUT_GITLAB_URL", gitlab.url)
        monkeypatch.setenv("GITLAB_TOKEN", "glpat-e2e")
        argv = [
            "report",
            "--db",
            str(store),
            "--run-id",
            "r1",
            "-o",
            str(tmp_path / "c.md"),
            "--publish",
            "gitlab",
            "--project",
            "grp/sub/proj",
            "--mr",
            "4",
        ]
        assert main(argv) == 0
        assert main([*argv, "--head-sha", "c" * 40]) == 0
        (note,) = gitlab.notes[4]
        assert note["body"].startswith("<!-- ci-fanout:report v1")
        assert [s["sha"] for s in gitlab.statuses] == ["c" * 40]
        assert gitlab.violations == [] and gitlab.shape_violations == [] and not gitlab.crashes


def test_missing_flags_and_tokens_are_config_errors(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    code = main(
        [
            "report",
            "--db",
            str(store),
            "--run-id",
            "r1",
            "-o",
            "-",
            "--publish",
            "github",
            "--repo",
            "o/r",
            "--pr",
            "1",
        ]
    )
    assert code == ConfigError.exit_code
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GITLAB_TOKEN", "x")
    code = main(
        [
            "report",
            "--db",
            str(store),
            "--run-id",
            "r1",
            "-o",
            "-",
            "--publish",
            "gitlab",
            "--project",
            "1",
        ]
    )
    assert code == ConfigError.exit_code
    assert "--mr" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        forge_settings("jenkins", env={})


def test_gitlab_chart_upload_is_linked_in_the_note() -> None:
    with FakeGitLab(token="t") as gitlab:
        assert isinstance(gitlab, FakeGitLab)
        result = publish_report(
            "gitlab",
            number=9,
            comment="<!-- ci-fanout:report v1 run=1 -->\nbody",
            project="42",
            images={"trend.png": b"\x89PNG"},
            env={"GITLAB_TOKEN": "t", "CI_FANOUT_GITLAB_URL": gitlab.url},
        )
        assert result.comment.created and len(result.images) == 1
        assert gitlab.notes[9][0]["body"].endswith("![trend](/uploads/" + f"{1:032x}/trend.png)\n")


def test_publish_with_github_token_leaves_a_planted_marker_comment_alone(
    store: Path, github: FakeGitHub, tmp_path: Path
) -> None:
    """``report --publish github`` in a workflow (GITHUB_TOKEN): a user's comment that starts
    with our marker stays as it is; ours is created, then edited in place."""
    github.add_token("ghs_actions", actions=True)
    planted = github.add_comment(7, "<!-- ci-fanout:report v1 run=r1 -->\nall green!", "mallory")
    env = {
        "GITHUB_TOKEN": "ghs_actions",
        "CI_FANOUT_GITHUB_API_URL": github.api,
        "CI_FANOUT_GITHUB_THROTTLE": "0",
    }
    for body in (
        "<!-- ci-fanout:report v1 run=r1 -->\nv1",
        "<!-- ci-fanout:report v1 run=r1 -->\nv2",
    ):
        publish_report("github", number=7, comment=body, repo="octo/widgets", env=env)
    assert planted["body"].endswith("all green!")
    by = {c["user"]["login"]: c["body"] for c in github.comments[7]}
    assert by["github-actions[bot]"].endswith("v2") and len(github.comments[7]) == 2
    assert github.violations == []


def test_comment_author_from_the_environment() -> None:
    env = {"GITHUB_TOKEN": "t", "CI_FANOUT_GITHUB_COMMENT_AUTHOR": "release-bot[bot]"}
    settings = forge_settings("github", env=env, repo="o/r")
    assert settings["comment_author"] == "release-bot[bot]"
    assert "comment_author" not in forge_settings("github", env={"GITHUB_TOKEN": "t"}, repo="o/r")
