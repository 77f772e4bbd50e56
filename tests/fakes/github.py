"""Loopback fake of the GitHub REST API, validating every request against the (trimmed) OpenAPI
description, with the non-spec limits added by hand (comment body 65,536, status description 140)
and GitHub's exact error messages (PyGithub maps exceptions on them)."""

from __future__ import annotations

import io
import itertools
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

import jwt

from tests.contracts.validate import GitHubContract
from tests.fakes.base import FakeServer, Request, Response

NOW = "2026-01-01T00:00:00Z"
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ACTIONS_BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


@dataclass
class FakeRun:
    id: int
    workflow_id: int
    head_sha: str
    inputs: dict[str, Any]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    cancelled: bool = False


class FakeGitHub(FakeServer):
    provider = "github"

    def __init__(
        self,
        contract: GitHubContract,
        *,
        prefix: str = "",
        token: str = "ghp_test",
        login: str = "ci-fanout-bot",
        app_id: int | None = None,
        app_slug: str = "ci-fanout",
        public_key: str | None = None,
        installation_id: int = 4242,
        token_lifetime_s: int = 3600,
    ) -> None:
        super().__init__()
        self.contract = contract
        self.prefix = prefix.rstrip("/")
        self.tokens: dict[str, float] = {token: float("inf")}  # token -> expiry epoch
        self._user_ids: dict[str, int] = {}
        #: token -> the account it acts as; personal tokens are users (``GET /user`` answers),
        #: installation tokens (the App's, GITHUB_TOKEN) are bots (``GET /user`` answers 403)
        self.identities: dict[str, dict[str, Any]] = {token: self.user(login)}
        self.app_id = app_id
        self.app_slug = app_slug
        self.public_key = public_key
        self.installation_id = installation_id
        self.token_lifetime_s = token_lifetime_s
        self.issued_tokens: list[str] = []
        self._ids = itertools.count(1000)
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.workflows: dict[str, int] = {"ci.yml": 7}
        self.dispatches: list[dict[str, Any]] = []
        self.repository_dispatches: list[dict[str, Any]] = []
        self.runs: dict[int, FakeRun] = {}
        self.blobs: dict[int, bytes] = {}
        self.runners: dict[int, dict[str, Any]] = {}
        self.return_run_details = True
        #: called (under the fake's lock) with each dispatched run and the request body;
        #: tests/fakes/workflows.py uses it to "run" the workflow
        self.on_dispatch: Callable[[FakeRun, dict[str, Any]], None] | None = None
        self._install_routes()

    # -- helpers ---------------------------------------------------------------------------
    @property
    def api(self) -> str:
        return self.url + self.prefix

    def _repo_url(self, m: re.Match[str]) -> str:
        return f"{self.api}/repos/{m['owner']}/{m['repo']}"

    def add_runner(self, name: str, labels: list[str], *, status: str = "online") -> int:
        runner_id = next(self._ids)
        kinds = {"self-hosted", "linux", "x64"}
        self.runners[runner_id] = {
            "id": runner_id,
            "name": name,
            "os": "linux",
            "status": status,
            "busy": False,
            "labels": [
                {
                    "id": i + 1,
                    "name": label,
                    "type": "read-only" if label in kinds else "custom",
                }
                for i, label in enumerate(labels)
            ],
        }
        return runner_id

    def user(self, login: str) -> dict[str, Any]:
        """The account ``login`` (a stable id per login; ``…[bot]`` logins are bots)."""
        user_id = self._user_ids.setdefault(login, 100 + len(self._user_ids))
        return {"login": login, "id": user_id, "type": "Bot" if login.endswith("[bot]") else "User"}

    def add_token(self, token: str, *, login: str | None = None, actions: bool = False) -> str:
        """Another valid token: a user's (``login``) or a workflow's ``GITHUB_TOKEN``."""
        self.tokens[token] = float("inf")
        self.identities[token] = dict(ACTIONS_BOT) if actions else self.user(login or token)
        return token

    def _caller(self, request: Request) -> dict[str, Any]:
        token = (request.header("Authorization") or "").partition(" ")[2]
        return self.identities[token]

    def add_comment(
        self, number: int, body: str, user: str | dict[str, Any] = "someone"
    ) -> dict[str, Any]:
        comment_id = next(self._ids)
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "body": body,
            "user": self.user(user) if isinstance(user, str) else dict(user),
            "created_at": NOW,
            "updated_at": NOW,
            "author_association": "NONE",
            "_number": number,
        }
        self.comments.setdefault(number, []).append(comment)
        return comment

    def _comment_json(self, comment: dict[str, Any], owner: str, repo: str) -> dict[str, Any]:
        base = f"{self.api}/repos/{owner}/{repo}"
        out = {k: v for k, v in comment.items() if not k.startswith("_")}
        out["url"] = f"{base}/issues/comments/{comment['id']}"
        out["html_url"] = (
            f"https://github.example/{owner}/{repo}/pull/{comment['_number']}"
            f"#issuecomment-{comment['id']}"
        )
        out["issue_url"] = f"{base}/issues/{comment['_number']}"
        return out

    # -- contract + auth -------------------------------------------------------------------
    def validate(self, request: Request) -> None:
        path = request.path
        if path.startswith(self.prefix + "/_blobs/"):
            request.operation = "blob"
            return
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                request.violations.append(f"path outside the API prefix {self.prefix}")
                return
            path = path[len(self.prefix) :]
        content_type = request.header("Content-Type") or "application/json"
        request.violations += self.contract.check(
            request.method,
            unquote(path),
            request.query,
            request.headers,
            request.body,
            content_type.split(";")[0],
        )
        body = request.json() if request.body else None
        # Limits GitHub enforces but the OpenAPI description does not encode.
        if not isinstance(body, dict):
            return
        comment = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+|comments/\d+)(/comments)?", path)
        if comment and len(str(body.get("body", ""))) > 65_536:
            request.violations.append("Body is too long (maximum is 65536 characters)")
        status = re.fullmatch(r"/repos/[^/]+/[^/]+/statuses/[^/]+", path)
        if status and len(str(body.get("description", ""))) > 140:
            request.violations.append("description is too long (maximum is 140 characters)")

    def reject(self, request: Request) -> Response:
        return Response(
            422,
            {
                "message": "Validation Failed",
                "errors": [{"message": v, "code": "invalid"} for v in request.violations],
                "documentation_url": "https://docs.github.com/rest",
            },
        )

    def _auth_ok(self, request: Request, app: bool = False) -> bool:
        header = request.header("Authorization") or ""
        if app:
            if not header.startswith("Bearer ") or self.public_key is None:
                return False
            try:
                claims = jwt.decode(header[7:], self.public_key, algorithms=["RS256"])
            except jwt.PyJWTError:
                return False
            return str(claims.get("iss")) == str(self.app_id)
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return False
        return self.tokens.get(token, 0.0) > time.time()

    def _guard(self, handler: Any, *, app: bool = False) -> Any:
        def wrapped(request: Request, m: re.Match[str]) -> Response:
            if not self._auth_ok(request, app=app):
                return Response(
                    401,
                    {"message": "Bad credentials", "documentation_url": "https://docs.github.com"},
                )
            result: Response = handler(request, m)
            return result

        return wrapped

    def _route(self, method: str, pattern: str, handler: Any, *, app: bool = False) -> None:
        self.add_route(method, self.prefix + pattern, self._guard(handler, app=app))

    # -- routes ----------------------------------------------------------------------------
    def _install_routes(self) -> None:
        r = self._route
        r("GET", REPO + "/installation", self._installation, app=True)
        r("POST", r"/app/installations/(?P<id>\d+)/access_tokens", self._access_token, app=True)
        r("GET", "/app", self._get_app, app=True)
        r("GET", "/user", self._get_user)
        r("GET", REPO, self._get_repo)
        r("GET", REPO + r"/issues/(?P<n>\d+)/comments", self._list_comments)
        r("POST", REPO + r"/issues/(?P<n>\d+)/comments", self._create_comment)
        r("PATCH", REPO + r"/issues/comments/(?P<id>\d+)", self._edit_comment)
        r("POST", REPO + "/check-runs", self._create_check_run)
        r("PATCH", REPO + r"/check-runs/(?P<id>\d+)", self._update_check_run)
        r("POST", REPO + r"/statuses/(?P<sha>[^/]+)", self._create_status)
        r("GET", REPO + r"/actions/workflows/(?P<wf>[^/]+)", self._get_workflow)
        r("POST", REPO + r"/actions/workflows/(?P<wf>[^/]+)/dispatches", self._dispatch_workflow)
        r("POST", REPO + "/dispatches", self._repository_dispatch)
        r("GET", REPO + r"/actions/runs/(?P<id>\d+)", self._get_run)
        r("GET", REPO + r"/actions/runs/(?P<id>\d+)/jobs", self._list_jobs)
        r("GET", REPO + r"/actions/runs/(?P<id>\d+)/artifacts", self._list_artifacts)
        r("POST", REPO + r"/actions/runs/(?P<id>\d+)/cancel", self._cancel_run)
        r("GET", REPO + r"/actions/artifacts/(?P<id>\d+)/zip", self._artifact_zip)
        r("GET", REPO + "/actions/runners", self._list_runners)
        r("GET", r"/orgs/(?P<org>[^/]+)", self._get_org)
        r("GET", r"/orgs/(?P<org>[^/]+)/actions/runners", self._list_runners)
        for scope in (REPO, r"/orgs/(?P<org>[^/]+)"):
            r("POST", scope + r"/actions/runners/(?P<id>\d+)/labels", self._add_labels)
            r(
                "DELETE",
                scope + r"/actions/runners/(?P<id>\d+)/labels/(?P<name>[^/]+)",
                self._del_label,
            )
        self.add_route("GET", self.prefix + r"/_blobs/(?P<id>\d+)", self._blob)

    def _installation(self, request: Request, m: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "id": self.installation_id,
                "app_id": self.app_id,
                "account": {"login": m["owner"], "id": 1},
                "target_type": "Organization",
                "permissions": {"checks": "write", "pull_requests": "write"},
                "events": [],
                "created_at": NOW,
                "updated_at": NOW,
                "access_tokens_url": f"{self.api}/app/installations/{self.installation_id}/access_tokens",
                "repositories_url": f"{self.api}/installation/repositories",
                "html_url": "https://github.example/apps/x",
            },
        )

    def _access_token(self, request: Request, m: re.Match[str]) -> Response:
        if int(m["id"]) != self.installation_id:
            return self.not_found(request)
        token = f"ghs_{self.app_id}_{len(self.issued_tokens) + 1:04d}"
        expires = time.time() + self.token_lifetime_s
        self.tokens[token] = expires
        self.identities[token] = self.user(f"{self.app_slug}[bot]")
        self.issued_tokens.append(token)
        stamp = datetime.fromtimestamp(expires, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Response(201, {"token": token, "expires_at": stamp, "permissions": {}})

    def _get_app(self, request: Request, m: re.Match[str]) -> Response:
        owner = {"login": "octo", "id": 1, "type": "Organization"}
        return Response(
            200,
            {
                "id": self.app_id,
                "slug": self.app_slug,
                "node_id": f"A_{self.app_id}",
                "owner": owner,
                "name": self.app_slug,
                "description": None,
                "external_url": "https://ci.example",
                "html_url": f"https://github.example/apps/{self.app_slug}",
                "created_at": NOW,
                "updated_at": NOW,
                "permissions": {"checks": "write", "pull_requests": "write"},
                "events": [],
            },
        )

    def _get_user(self, request: Request, m: re.Match[str]) -> Response:
        me = self._caller(request)
        if me["type"] == "Bot":  # installation tokens (an App's, GITHUB_TOKEN) have no user
            return Response(
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                    "status": "403",
                },
            )
        return Response(
            200,
            {
                **me,
                "node_id": f"U_{me['id']}",
                "html_url": f"https://github.example/{me['login']}",
                "site_admin": False,
                "name": None,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )

    def _get_repo(self, request: Request, m: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "id": 1,
                "name": m["repo"],
                "full_name": f"{m['owner']}/{m['repo']}",
                "url": self._repo_url(m),
                "owner": {"login": m["owner"], "id": 1},
                "private": False,
            },
        )

    def _list_comments(self, request: Request, m: re.Match[str]) -> Response:
        number = int(m["n"])
        items = [
            self._comment_json(c, m["owner"], m["repo"]) for c in self.comments.get(number, [])
        ]
        per_page = int(request.arg("per_page", "30") or 30)
        page = int(request.arg("page", "1") or 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        headers = {}
        if page < last:
            base = f"{self.url}{request.path}"

            def link(p: int) -> str:
                return f"{base}?{urlencode({'per_page': per_page, 'page': p})}"

            headers["Link"] = f'<{link(page + 1)}>; rel="next", <{link(last)}>; rel="last"'
        return Response(200, chunk, headers)

    def _create_comment(self, request: Request, m: re.Match[str]) -> Response:
        comment = self.add_comment(int(m["n"]), request.json()["body"], user=self._caller(request))
        return Response(201, self._comment_json(comment, m["owner"], m["repo"]))

    def _edit_comment(self, request: Request, m: re.Match[str]) -> Response:
        for comments in self.comments.values():
            for comment in comments:
                if comment["id"] == int(m["id"]):
                    comment["body"] = request.json()["body"]
                    comment["updated_at"] = "2026-01-01T00:05:00Z"
                    return Response(200, self._comment_json(comment, m["owner"], m["repo"]))
        return self.not_found(request)

    def _check_json(self, run: dict[str, Any], m: re.Match[str]) -> dict[str, Any]:
        base = self._repo_url(m)
        return {
            "id": run["id"],
            "node_id": f"CR_{run['id']}",
            "head_sha": run["head_sha"],
            "name": run["name"],
            "status": run["status"],
            "conclusion": run.get("conclusion"),
            "url": f"{base}/check-runs/{run['id']}",
            "html_url": f"https://github.example/{m['owner']}/{m['repo']}/runs/{run['id']}",
            "details_url": run.get("details_url"),
            "external_id": run.get("external_id"),
            "started_at": NOW,
            "completed_at": NOW if run["status"] == "completed" else None,
            "output": {
                "title": run["output"].get("title"),
                "summary": run["output"].get("summary"),
                "text": run["output"].get("text"),
                "annotations_count": len(run["annotations"]),
                "annotations_url": f"{base}/check-runs/{run['id']}/annotations",
            },
            "check_suite": {"id": 1},
            "app": None,
            "pull_requests": [],
        }

    def _create_check_run(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json()
        run_id = next(self._ids)
        output = dict(body.get("output") or {})
        run = {
            "id": run_id,
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": body.get("status", "queued"),
            "conclusion": body.get("conclusion"),
            "details_url": body.get("details_url"),
            "external_id": body.get("external_id"),
            "annotations": list(output.pop("annotations", [])),
            "output": output,
            "requests": 1,
        }
        if run["conclusion"]:
            run["status"] = "completed"
        self.check_runs[run_id] = run
        return Response(201, self._check_json(run, m))

    def _update_check_run(self, request: Request, m: re.Match[str]) -> Response:
        run = self.check_runs.get(int(m["id"]))
        if run is None:
            return self.not_found(request)
        body = request.json()
        output = dict(body.get("output") or {})
        run["annotations"] += output.pop("annotations", [])  # GitHub appends annotations
        run["output"].update(output)
        for key in ("status", "conclusion", "name", "details_url"):
            if key in body:
                run[key] = body[key]
        if run.get("conclusion"):
            run["status"] = "completed"
        run["requests"] += 1
        return Response(200, self._check_json(run, m))

    def _create_status(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json()
        status = {"sha": m["sha"], **body, "id": next(self._ids)}
        self.statuses.append(status)
        return Response(
            201,
            {
                "id": status["id"],
                "node_id": "S",
                "state": body["state"],
                "description": body.get("description"),
                "target_url": body.get("target_url"),
                "context": body.get("context", "default"),
                "url": f"{self._repo_url(m)}/statuses/{m['sha']}",
                "avatar_url": None,
                "created_at": NOW,
                "updated_at": NOW,
                "creator": {"login": "ci-fanout[bot]", "id": 2},
            },
        )

    def _workflow_id(self, name: str) -> int | None:
        if name.isdigit() and int(name) in self.workflows.values():
            return int(name)
        return self.workflows.get(name)

    def _get_workflow(self, request: Request, m: re.Match[str]) -> Response:
        wf_id = self._workflow_id(m["wf"])
        if wf_id is None:
            return self.not_found(request)
        return Response(
            200,
            {
                "id": wf_id,
                "node_id": "W",
                "name": "CI",
                "path": f".github/workflows/{m['wf']}",
                "state": "active",
                "created_at": NOW,
                "updated_at": NOW,
                "url": f"{self._repo_url(m)}/actions/workflows/{wf_id}",
                "html_url": "https://github.example/w",
                "badge_url": "https://github.example/b",
            },
        )

    def new_run(self, workflow_id: int, head_sha: str, inputs: dict[str, Any]) -> FakeRun:
        run = FakeRun(id=next(self._ids), workflow_id=workflow_id, head_sha=head_sha, inputs=inputs)
        shard = str(inputs.get("shard", "shard-1"))
        run.jobs.append(
            {
                "id": next(self._ids),
                "name": f"test ({shard})",
                "labels": ["self-hosted", "gpu-nvidia"],
                "runner_name": "lab-01",
            }
        )
        self.runs[run.id] = run
        return run

    def add_artifact(
        self, run: FakeRun, name: str, files: dict[str, bytes], *, expired: bool = False
    ) -> int:
        artifact_id = next(self._ids)
        data = make_zip(files)
        self.blobs[artifact_id] = data
        run.artifacts.append(
            {"id": artifact_id, "name": name, "size_in_bytes": len(data), "expired": expired}
        )
        return artifact_id

    def _dispatch_workflow(self, request: Request, m: re.Match[str]) -> Response:
        wf_id = self._workflow_id(m["wf"])
        if wf_id is None:
            return self.not_found(request)
        body = request.json()
        self.dispatches.append({"workflow_id": wf_id, **body})
        run = self.new_run(wf_id, "deadbeef", dict(body.get("inputs") or {}))
        if self.on_dispatch is not None:
            self.on_dispatch(run, body)
        if body.get("return_run_details") and self.return_run_details:
            base = self._repo_url(m)
            return Response(
                200,
                {
                    "workflow_run_id": run.id,
                    "run_url": f"{base}/actions/runs/{run.id}",
                    "html_url": f"https://github.example/{m['owner']}/{m['repo']}/actions/runs/{run.id}",
                },
            )
        return Response(204)

    def _repository_dispatch(self, request: Request, m: re.Match[str]) -> Response:
        self.repository_dispatches.append(request.json())
        return Response(204)

    def _run_json(self, run: FakeRun, m: re.Match[str]) -> dict[str, Any]:
        base = f"{self._repo_url(m)}/actions/runs/{run.id}"
        status, conclusion = self._run_state(run)
        return {
            "id": run.id,
            "name": "CI",
            "node_id": "R",
            "head_branch": "main",
            "head_sha": run.head_sha,
            "path": ".github/workflows/ci.yml",
            "run_number": 1,
            "event": "workflow_dispatch",
            "status": status,
            "conclusion": conclusion,
            "workflow_id": run.workflow_id,
            "url": base,
            "html_url": f"https://github.example/runs/{run.id}",
            "jobs_url": f"{base}/jobs",
            "artifacts_url": f"{base}/artifacts",
            "cancel_url": f"{base}/cancel",
            "rerun_url": f"{base}/rerun",
            "logs_url": f"{base}/logs",
            "check_suite_url": f"{self._repo_url(m)}/check-suites/1",
            "workflow_url": f"{self._repo_url(m)}/actions/workflows/{run.workflow_id}",
            "created_at": NOW,
            "updated_at": NOW,
        }

    @staticmethod
    def _run_state(run: FakeRun) -> tuple[str, str | None]:
        if run.cancelled:
            return "completed", "cancelled"
        if run.polls == 0:
            return "queued", None
        if run.polls == 1:
            return "in_progress", None
        return "completed", "success"

    def _get_run(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["id"]))
        if run is None:
            return self.not_found(request)
        return Response(200, self._run_json(run, m))

    def _list_jobs(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["id"]))
        if run is None:
            return self.not_found(request)
        status, conclusion = self._run_state(run)
        run.polls += 1  # runs progress: queued -> in_progress -> completed, one step per poll
        jobs = [
            {
                **job,
                "run_id": run.id,
                "node_id": "J",
                "head_sha": run.head_sha,
                "url": f"{self._repo_url(m)}/actions/jobs/{job['id']}",
                "html_url": f"https://github.example/jobs/{job['id']}",
                "status": status,
                "conclusion": conclusion,
                "started_at": NOW,
                "completed_at": NOW if status == "completed" else None,
                "steps": [],
                "check_run_url": f"{self._repo_url(m)}/check-runs/1",
                "runner_id": 1,
                "runner_group_id": 1,
                "runner_group_name": "default",
                "workflow_name": "CI",
                "head_branch": "main",
                "created_at": NOW,
                "run_url": f"{self._repo_url(m)}/actions/runs/{run.id}",
                "run_attempt": 1,
            }
            for job in run.jobs
        ]
        return Response(200, {"total_count": len(jobs), "jobs": jobs})

    def _list_artifacts(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["id"]))
        if run is None:
            return self.not_found(request)
        base = self._repo_url(m)
        artifacts = [
            {
                **a,
                "node_id": "A",
                "url": f"{base}/actions/artifacts/{a['id']}",
                "archive_download_url": f"{base}/actions/artifacts/{a['id']}/zip",
                "created_at": NOW,
                "expires_at": NOW,
                "updated_at": NOW,
                "workflow_run": {"id": run.id, "head_sha": run.head_sha},
            }
            for a in run.artifacts
        ]
        return Response(200, {"total_count": len(artifacts), "artifacts": artifacts})

    def _artifact_zip(self, request: Request, m: re.Match[str]) -> Response:
        artifact_id = int(m["id"])
        if artifact_id not in self.blobs:
            return self.not_found(request)
        # Same host and port: PyGithub only follows redirects there (or to github.com hosts).
        return Response(302, None, {"Location": f"{self.api}/_blobs/{artifact_id}?sig=x"})

    def _blob(self, request: Request, m: re.Match[str]) -> Response:
        data = self.blobs.get(int(m["id"]))
        if data is None:
            return Response(404, b"no such blob", content_type="text/plain")
        return Response(200, data, content_type="application/zip")

    def _cancel_run(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["id"]))
        if run is None:
            return self.not_found(request)
        run.cancelled = True
        return Response(202, {})

    def _get_org(self, request: Request, m: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "login": m["org"],
                "id": 9,
                "url": f"{self.api}/orgs/{m['org']}",
                "type": "Organization",
            },
        )

    def _list_runners(self, request: Request, m: re.Match[str]) -> Response:
        runners = list(self.runners.values())
        return Response(200, {"total_count": len(runners), "runners": runners})

    def _labels(self, runner: dict[str, Any]) -> Response:
        return Response(200, {"total_count": len(runner["labels"]), "labels": runner["labels"]})

    def _add_labels(self, request: Request, m: re.Match[str]) -> Response:
        runner = self.runners.get(int(m["id"]))
        if runner is None:
            return self.not_found(request)
        have = {label["name"] for label in runner["labels"]}
        for name in request.json()["labels"]:
            if name not in have:
                runner["labels"].append(
                    {"id": len(runner["labels"]) + 1, "name": name, "type": "custom"}
                )
        return self._labels(runner)

    def _del_label(self, request: Request, m: re.Match[str]) -> Response:
        runner = self.runners.get(int(m["id"]))
        name = unquote(m["name"])
        if runner is None or not any(label["name"] == name for label in runner["labels"]):
            return self.not_found(request)
        runner["labels"] = [label for label in runner["labels"] if label["name"] != name]
        return self._labels(runner)


def expiring_in(seconds: int) -> str:
    return (datetime.now(tz=UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
