"""Fixtures for the provider contract tests: contracts load once per session; one fake per test."""

from __future__ import annotations

import pytest

from ci_app.providers.retry import RetryPolicy
from tests.contracts.validate import GitHubContract, SwaggerContract


class Sleeps(list[float]):
    """Records the waits a RetryPolicy asked for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="session")
def github_contract() -> GitHubContract:
    return GitHubContract()


@pytest.fixture(scope="session")
def azure_contract() -> SwaggerContract:
    return SwaggerContract()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def policy(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.5, max_delay=10.0, max_total=30.0, sleep=sleeps)
