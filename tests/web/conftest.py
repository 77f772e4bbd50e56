"""Fixtures for the app server: settings with secrets, an in-memory store, fake providers."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ProviderError
from ci_app.options.server import Settings
from ci_app.providers.base import (
    CheckRunPayload,
    CheckRunRef,
    CommentRef,
    CommitStatus,
    DispatchRequest,
    DispatchResult,
    ImageRef,
    JobInfo,
    Provider,
    RunnerInfo,
)
from ci_app.store import Store, open_store
from ci_app.web.app import create_app

WEBHOOKS = Path(__file__).parents[1] / "data" / "webhooks"
GH_SECRET = "It's a Secret to Everybody"
GH_OLD_SECRET = "the-previous-secret"
GL_TOKEN = "gitlab-hook-token"
ADMIN = "admin-token-0123456789"


def sign(body: bytes, secret: str = GH_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class FakeForge:
    name: str = "fake"
    comments: dict[tuple[int, str], str] = field(default_factory=dict)
    created: int = 0
    edited: int = 0
    statuses: list[CommitStatus] = field(default_factory=list)
    fail: int = 0  # raise ProviderError this many more times

    def _maybe_fail(self, op: str) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise ProviderError("upstream 502", provider="fake", operation=op, status=502)

    def upsert_comment(self, number: int, body: str, *, kind: str = "tests") -> CommentRef:
        self._maybe_fail("comment")
        key = (number, kind)
        created = key not in self.comments
        self.comments[key] = body
        if created:
            self.created += 1
        else:
            self.edited += 1
        return CommentRef(id=str(number), url=None, created=created)

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef:
        return CheckRunRef(id="1", url=None, requests=1, annotations_sent=0)

    def set_commit_status(self, status: CommitStatus) -> None:
        self._maybe_fail("status")
        self.statuses.append(status)

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        return None


@dataclass
class FakeCI:
    name: str = "fake"
    artifacts: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    dispatched: list[DispatchRequest] = field(default_factory=list)

    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        self.dispatched.append(request)
        return DispatchResult(run_id=None)

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        return []

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        out = []
        for name, data in self.artifacts.get(run_id, []):
            path = dest / f"{name}.zip"
            path.write_bytes(data)
            out.append(path)
        return out

    def cancel(self, run_id: str) -> None:
        pass


@dataclass
class FakeRunners:
    name: str = "fake"
    runners: dict[str, RunnerInfo] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def list_runners(self) -> list[RunnerInfo]:
        return list(self.runners.values())

    def _set(self, runner_id: str, labels: frozenset[str]) -> None:
        for k, r in self.runners.items():
            if r.id == runner_id:
                self.runners[k] = RunnerInfo(id=r.id, name=r.name, labels=labels)

    def add_label(self, runner_id: str, label: str) -> None:
        self.calls.append(("add", runner_id, label))
        r = next(r for r in self.runners.values() if r.id == runner_id)
        self._set(runner_id, r.labels | {label})

    def remove_label(self, runner_id: str, label: str) -> None:
        self.calls.append(("remove", runner_id, label))
        r = next(r for r in self.runners.values() if r.id == runner_id)
        self._set(runner_id, r.labels - {label})


@dataclass
class Fakes:
    forge: FakeForge = field(default_factory=FakeForge)
    ci: FakeCI = field(default_factory=FakeCI)
    runners: FakeRunners = field(default_factory=FakeRunners)
    asked: list[tuple[str, str | None, int | None]] = field(default_factory=list)

    def __call__(
        self, name: str, scope: str | None, *, installation_id: int | None = None
    ) -> Provider:
        self.asked.append((name, scope, installation_id))
        return Provider(name=name, forge=self.forge, ci=self.ci, runners=self.runners)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "github_webhook_secret": GH_SECRET,
        "github_webhook_secret_previous": GH_OLD_SECRET,
        "gitlab_webhook_token": GL_TOKEN,
        "jenkins_webhook_secret": "jenkins-secret",
        "azure_webhook_secret": "azure-secret",
        "api_token": ADMIN,
        "job_backoff_s": 1.0,
        "job_max_attempts": 3,
        "label_sync_interval_s": 0.0,
    }
    base.update(kw)
    return Settings(**base)


@dataclass
class Server:
    app: Flask
    client: FlaskClient
    store: Store
    fakes: Fakes
    clock: Clock

    @property
    def ctx(self) -> Any:
        return self.app.extensions["ci_fanout"]

    def drain(self) -> int:
        n: int = self.ctx.worker.drain()
        return n

    def github(self, event: str, body: bytes, delivery: str, secret: str = GH_SECRET) -> Any:
        return self.client.post(
            "/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(body, secret),
                "Content-Type": "application/json",
            },
        )

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}


def build_server(**settings: Any) -> Iterator[Server]:
    clock = Clock()
    fakes = Fakes()
    with open_store(":memory:") as store:
        app = create_app(
            make_settings(**settings),
            store=store,
            providers=fakes,
            clock=clock,
            start_worker=False,
        )
        app.config["TESTING"] = True
        yield Server(app, app.test_client(), store, fakes, clock)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from build_server()


def results_json(
    run_id: str,
    shard: str,
    outcomes: dict[str, str],
    *,
    repo: str = "octo/app",
    pr: int | None = 7,
    commit: str = "abc123",
    branch: str = "feature",
    provider: str = "github",
) -> dict[str, Any]:
    from ci_app.model.results import SCHEMA_VERSION

    return {
        "version": SCHEMA_VERSION,
        "run": {
            "run_id": run_id,
            "shard_id": shard,
            "repo": repo,
            "provider": provider,
            "commit": commit,
            "branch": branch,
            "pr": pr,
            "runner_name": f"runner-{shard}",
            "runner_labels": ["x64"],
        },
        "tests": [
            {"id": t, "name": t.rsplit("::", 1)[-1], "outcome": o, "duration_s": 0.5}
            for t, o in outcomes.items()
        ],
        "tool": "pytest",
    }


def zipped(files: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, doc in files.items():
            zf.writestr(name, json.dumps(doc))
    return buf.getvalue()
