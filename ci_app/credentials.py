"""Credentials never reach the code under test.

A shard runs the project's tests, i.e. code from the pull request. Its environment is scrubbed of
every ci-fanout and CI-provider credential (:func:`scrub`); the run-scoped queue token the pytest
plugin needs is handed over in a file that the plugin reads once and deletes
(:func:`take_token`), before any test is collected. Stdlib only: this runs in the test
interpreter.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

#: the queue token, when given in the environment (plain ``ci-app shard run`` use)
TOKEN_ENV: Final = "CI_FANOUT_QUEUE_TOKEN"  # noqa: S105 - a variable name
#: a file holding the queue token; read once and deleted by the reader
TOKEN_FILE_ENV: Final = "CI_FANOUT_QUEUE_TOKEN_FILE"  # noqa: S105 - a variable name

#: variables that hold a credential of ci-fanout or of a CI provider, by exact name
_EXACT: Final = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITLAB_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_CACHE_URL",
        "ACTIONS_RESULTS_URL",
        "ACTIONS_RUNTIME_URL",
        "CI_JOB_TOKEN",
        "CI_JOB_JWT",
        "CI_JOB_JWT_V1",
        "CI_JOB_JWT_V2",
        "CI_REGISTRY_PASSWORD",
        "CI_DEPENDENCY_PROXY_PASSWORD",
        "CI_DEPLOY_PASSWORD",
        "CI_REPOSITORY_URL",  # GitLab: https://gitlab-ci-token:<job token>@host/...
        "SYSTEM_ACCESSTOKEN",  # Azure Pipelines
        "JENKINS_API_TOKEN",
    }
)
#: ci-fanout's own variables, and provider variables named like a secret
_PATTERN: Final = re.compile(
    r"^(CI_FANOUT_|GITHUB_|GITLAB_|ACTIONS_|CI_|SYSTEM_|AZURE_DEVOPS_|JENKINS_)"
    r".*(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|JWT)"
)


def is_credential(name: str) -> bool:
    """True for a variable that holds a ci-fanout or CI-provider credential."""
    if name == TOKEN_FILE_ENV:  # a path; the file is deleted once read
        return False
    return name in _EXACT or _PATTERN.match(name.upper()) is not None


def scrub(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any ci-fanout or provider credential."""
    return {k: v for k, v in env.items() if not is_credential(k)}


def take_token(env: Mapping[str, str]) -> str | None:
    """The queue token: from the file named by ``CI_FANOUT_QUEUE_TOKEN_FILE`` (deleted after
    reading), else ``CI_FANOUT_QUEUE_TOKEN``; both variables are removed from ``os.environ``
    so the tests that run later in this process cannot read them."""
    path = env.get(TOKEN_FILE_ENV)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
        with contextlib.suppress(OSError):
            Path(path).unlink()
        os.environ.pop(TOKEN_FILE_ENV, None)
        if token:
            os.environ.pop(TOKEN_ENV, None)
            return token
    from_env = env.get(TOKEN_ENV) or None
    os.environ.pop(TOKEN_ENV, None)  # the tests that run next in this process never see it
    return from_env
