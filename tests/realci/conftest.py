"""Fixtures of the real-CI tests: the ci-fanout checkout under test, the runner's Python."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contracts.validate import GitHubContract
from tests.fakes.github import FakeGitHub
from tests.realci.harness import runner_python, source_copy


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This working tree, as the action's checkout / the component's project holds it."""
    return source_copy(tmp_path_factory.mktemp("ci-fanout-src"))


@pytest.fixture(scope="session")
def runner_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-hosted runner's Python: has the scenario project's test dependencies."""
    return runner_python(tmp_path_factory.mktemp("runner") / "python")


@pytest.fixture(scope="session")
def github_contract() -> GitHubContract:
    return GitHubContract()


@pytest.fixture
def github(github_contract: GitHubContract) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(github_contract)
    with fake:
        yield fake
    assert not fake.violations, json.dumps(fake.violations, indent=1)
