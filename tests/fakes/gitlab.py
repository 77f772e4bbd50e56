"""Loopback fake of the GitLab REST API v4 (what python-gitlab calls for ci-fanout).

GitLab publishes no spec copy here, so requests are checked against the shapes recorded from
python-gitlab (see ../shared/notes/providers.md §2) and every response object the fake builds is
validated against GitLab's own API JSON schemas (tests/contracts/gitlab/api-schemas)."""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode

import jsonschema
from referencing import Registry, Resource

from tests.contracts.validate import GITLAB_SCHEMAS
from tests.fakes.base import FakeServer, Fault, Request, Response
from tests.fakes.github import make_zip

T = TypeVar("T")
NOW = "2026-01-01T00:00:00.000Z"
API = "/api/v4"
PROJECT = API + r"/projects/(?P<project>[^/]+)"
STATUS_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}
BASE_URI = "https://gitlab.test/schemas/v4/"
SUBRESOURCES = {
    "merge_requests",
    "statuses",
    "uploads",
    "trigger",
    "pipeline",
    "pipelines",
    "jobs",
    "runners",
}


def _registry() -> Registry:
    registry: Registry = Registry()
    for path in GITLAB_SCHEMAS.rglob("*.json"):
        uri = BASE_URI + path.relative_to(GITLAB_SCHEMAS).as_posix()
        contents = json.loads(path.read_text(encoding="utf-8"))
        registry = registry.with_resource(uri, Resource.opaque(contents))
    return registry


_REGISTRY = _registry()


def shape_errors(schema: str, instance: Any) -> list[str]:
    """Violations of GitLab's API schema ``schema`` (e.g. ``job.json``) by ``instance``."""
    uri = BASE_URI + schema
    root = {**_REGISTRY.contents(uri), "$id": uri}  # relative $refs resolve from here
    validator = jsonschema.Draft7Validator(root, registry=_REGISTRY)
    return [
        f"{schema} at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}"
        for e in validator.iter_errors(instance)
    ]


class FakeGitLab(FakeServer):
    provider = "gitlab"

    def __init__(
        self,
        *,
        token: str = "glpat-test",
        trigger_token: str = "glptt-trigger",
        username: str = "ci-fanout-bot",
    ) -> None:
        super().__init__()
        self.token = token
        self._user_ids: dict[str, int] = {}
        #: the account the token acts as (``GET /user``); notes created through the API are
        #: written by it
        self.me = self.user(username)
        self.trigger_token = trigger_token
        self._ids = itertools.count(500)
        self.projects: dict[str, int] = {"grp/sub/proj": 42}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.artifacts: dict[int, bytes] = {}
        self.runners: dict[int, dict[str, Any]] = {}
        self.shape_violations: list[str] = []
        #: called (under the fake's lock) with each pipeline created through the API or a
        #: trigger and the request body: a test can "run" it (tests/fakes/workflows.py)
        self.on_pipeline: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
        #: called (under the fake's lock) with the id of a pipeline the fake does not know
        #: when a client asks for its jobs or bridges: a test can describe a pipeline that an
        #: independent runner (gitlab-ci-local) ran
        self.pipeline_source: Callable[[int], None] | None = None
        self._install_routes()

    # -- helpers ---------------------------------------------------------------------------
    def shaped(self, schema: str, obj: T) -> T:
        self.shape_violations += shape_errors(schema, obj)
        return obj

    def _project_id(self, raw: str) -> int | None:
        name = unquote(raw)
        if name.isdigit():
            return int(name) if int(name) in self.projects.values() else None
        return self.projects.get(name)

    def user(self, username: str) -> dict[str, Any]:
        """The account ``username`` (a stable id per name), as GitLab shows an author."""
        user_id = self._user_ids.setdefault(username, 1 + len(self._user_ids))
        return {
            "id": user_id,
            "name": username.title(),
            "username": username,
            "state": "active",
            "avatar_url": f"https://gitlab.test/{username}.png",
            "web_url": f"https://gitlab.test/{username}",
        }

    def add_note(
        self,
        iid: int,
        body: str,
        *,
        system: bool = False,
        author: str | dict[str, Any] = "someone",
    ) -> dict[str, Any]:
        note_id = next(self._ids)
        note = {
            "id": note_id,
            "type": None,
            "body": body,
            "attachment": None,
            "author": self.user(author) if isinstance(author, str) else dict(author),
            "created_at": NOW,
            "updated_at": NOW,
            "system": system,
            "noteable_id": 9000 + iid,
            "noteable_iid": iid,
            "noteable_type": "MergeRequest",
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        self.notes.setdefault(iid, []).append(note)
        return note

    def add_runner(self, description: str, tags: list[str], *, online: bool = True) -> int:
        runner_id = next(self._ids)
        self.runners[runner_id] = {
            "id": runner_id,
            "description": description,
            "ip_address": "",
            "active": True,
            "paused": False,
            "is_shared": False,
            "runner_type": "project_type",
            "name": "gitlab-runner",
            "online": online,
            "status": "online" if online else "offline",
            "tag_list": list(tags),
        }
        return runner_id

    def _runner_basic(self, runner: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "id",
            "description",
            "ip_address",
            "active",
            "is_shared",
            "name",
            "online",
            "status",
        )
        return self.shaped("runner.json", {k: runner[k] for k in keys})

    def new_pipeline(
        self,
        ref: str,
        variables: dict[str, str],
        *,
        parent: int | None = None,
        pipeline_id: int | None = None,
    ) -> dict[str, Any]:
        pipeline_id = pipeline_id if pipeline_id is not None else next(self._ids)
        pipeline = {
            "id": pipeline_id,
            "iid": len(self.pipelines) + 1,
            "project_id": 42,
            "sha": "0" * 40,
            "ref": ref,
            "status": "created",
            "source": "parent_pipeline" if parent else "api",
            "web_url": f"https://gitlab.test/grp/sub/proj/-/pipelines/{pipeline_id}",
            "created_at": NOW,
            "updated_at": NOW,
            "variables": variables,
            "job_ids": [],
            "bridges": [],
        }
        self.pipelines[pipeline_id] = pipeline
        return pipeline

    def add_job(
        self,
        pipeline: dict[str, Any],
        name: str,
        *,
        status: str = "success",
        tags: list[str] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> int:
        job_id = next(self._ids)
        artifact = make_zip(files) if files else None
        if artifact:
            self.artifacts[job_id] = artifact
        self.jobs[job_id] = {
            "id": job_id,
            "status": status,
            "stage": "test",
            "name": name,
            "ref": pipeline["ref"],
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": NOW,
            "started_at": NOW,
            "finished_at": NOW,
            "erased_at": None,
            "duration": 12.5,
            "queued_duration": 0.5,
            "user": {
                "id": 1,
                "state": "active",
                "avatar_url": "",
                "web_url": "https://gitlab.test/u",
            },
            "commit": None,
            "pipeline": {k: pipeline[k] for k in ("id", "sha", "ref", "status")},
            "web_url": f"https://gitlab.test/grp/sub/proj/-/jobs/{job_id}",
            "artifacts": (
                [
                    {
                        "file_type": "archive",
                        "size": len(artifact),
                        "filename": "artifacts.zip",
                        "file_format": "zip",
                    }
                ]
                if artifact
                else []
            ),
            "artifacts_file": {"filename": "artifacts.zip", "size": len(artifact)}
            if artifact
            else None,
            "artifacts_expire_at": None,
            "tag_list": tags or [],
            "runner": None,
            "runner_manager": None,
            "project": {"ci_job_token_scope_enabled": False},
            "archived": False,
        }
        pipeline["job_ids"].append(job_id)
        return job_id

    def add_child(self, parent: dict[str, Any], bridge_name: str) -> dict[str, Any]:
        child = self.new_pipeline(parent["ref"], {}, parent=parent["id"])
        parent["bridges"].append(
            {
                "id": next(self._ids),
                "name": bridge_name,
                "status": "success",
                "stage": "test",
                "downstream_pipeline": {
                    k: child[k] for k in ("id", "sha", "ref", "status", "web_url")
                },
            }
        )
        return child

    # -- contract --------------------------------------------------------------------------
    def validate(self, request: Request) -> None:
        if not request.path.startswith(API + "/"):
            request.violations.append("not under /api/v4")
        sub = re.match(API + r"/projects/[^/]+/([^/]+)", request.path)
        if sub and sub.group(1) not in SUBRESOURCES:
            request.violations.append("project path not URL-encoded (use %2F)")
        ctype = request.header("Content-Type") or ""
        if (
            request.body
            and request.method in ("POST", "PUT")
            and not request.path.endswith("/uploads")
        ):
            if ctype.split(";")[0] != "application/json":
                request.violations.append(f"body sent as {ctype!r}, expected application/json")
                return
            try:
                request.json()
            except ValueError:
                request.violations.append("body is not JSON")

    def reject(self, request: Request) -> Response:
        return Response(400, {"message": "; ".join(request.violations)})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            headers = {
                "Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)
            }
            return Response(429, "Retry later\n", headers, content_type="text/plain")
        if fault.kind == "500":
            return Response(500, {"message": "500 Internal Server Error"})
        return super().fault_response(fault, request)

    def not_found(self, request: Request) -> Response:
        return Response(404, {"message": "404 Not Found"})

    def _auth(self, handler: Any) -> Any:
        def wrapped(request: Request, m: re.Match[str]) -> Response:
            if request.header("PRIVATE-TOKEN") != self.token:
                return Response(401, {"message": "401 Unauthorized"})
            if "project" in m.groupdict() and self._project_id(m["project"]) is None:
                return Response(404, {"message": "404 Project Not Found"})
            result: Response = handler(request, m)
            return result

        return wrapped

    def _bad(self, request: Request, problem: str) -> Response:
        request.violations.append(problem)
        return Response(400, {"message": problem})

    # -- routes ----------------------------------------------------------------------------
    def _install_routes(self) -> None:
        a = self._auth
        self.add_route("GET", API + "/user", a(self._get_user))
        self.add_route("GET", PROJECT, a(self._get_project))
        notes = PROJECT + r"/merge_requests/(?P<iid>\d+)/notes"
        self.add_route("GET", notes, a(self._list_notes))
        self.add_route("POST", notes, a(self._create_note))
        self.add_route("PUT", notes + r"/(?P<id>\d+)", a(self._update_note))
        self.add_route("POST", PROJECT + r"/statuses/(?P<sha>[0-9a-f]+)", a(self._create_status))
        self.add_route("POST", PROJECT + "/uploads", a(self._upload))
        self.add_route("POST", PROJECT + "/trigger/pipeline", self._trigger)
        self.add_route("POST", PROJECT + "/pipeline", a(self._create_pipeline))
        self.add_route("GET", PROJECT + r"/pipelines/(?P<id>\d+)/jobs", a(self._list_jobs))
        self.add_route("GET", PROJECT + r"/pipelines/(?P<id>\d+)/bridges", a(self._list_bridges))
        self.add_route("POST", PROJECT + r"/pipelines/(?P<id>\d+)/cancel", a(self._cancel))
        self.add_route("GET", PROJECT + r"/jobs/(?P<id>\d+)/artifacts", a(self._artifacts))
        self.add_route("GET", API + "/runners", a(self._list_runners))
        self.add_route("GET", PROJECT + "/runners", a(self._list_runners))
        self.add_route("GET", API + r"/runners/(?P<id>\d+)", a(self._get_runner))
        self.add_route("PUT", API + r"/runners/(?P<id>\d+)", a(self._update_runner))

    def _paged(self, request: Request, items: list[Any]) -> Response:
        per_page = int(request.arg("per_page", "20") or 20)
        page = int(request.arg("page", "1") or 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {"X-Total": str(len(items)), "X-Page": str(page), "X-Per-Page": str(per_page)}
        if page * per_page < len(items):
            query = [(k, v) for k, v in request.query if k != "page"] + [("page", str(page + 1))]
            headers["Link"] = f'<{self.url}{request.path}?{urlencode(query)}>; rel="next"'
            headers["X-Next-Page"] = str(page + 1)
        return Response(200, chunk, headers)

    def _get_user(self, request: Request, m: re.Match[str]) -> Response:
        me = {
            **self.me,
            "web_url": f"{self.url}/{self.me['username']}",
            "bot": False,
            "public_email": None,
            "created_at": NOW,
        }
        return Response(200, self.shaped("user/basic.json", me))

    def _get_project(self, request: Request, m: re.Match[str]) -> Response:
        pid = self._project_id(m["project"])
        return Response(
            200,
            {
                "id": pid,
                "path_with_namespace": "grp/sub/proj",
                "web_url": "https://gitlab.test/grp/sub/proj",
            },
        )

    def _list_notes(self, request: Request, m: re.Match[str]) -> Response:
        items = self.shaped("notes.json", self.notes.get(int(m["iid"]), []))
        return self._paged(request, items)

    def _create_note(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        if not isinstance(body.get("body"), str) or not body["body"]:
            return self._bad(request, "note body missing")
        if len(body["body"]) > 1_000_000:
            return Response(
                400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}}
            )
        note = self.add_note(int(m["iid"]), body["body"], author=self.me)
        return Response(201, self.shaped("notes.json", [note])[0])

    def _update_note(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        for note in self.notes.get(int(m["iid"]), []):
            if note["id"] == int(m["id"]):
                if set(body) - {
                    "body",
                    "id",
                    "type",
                    "attachment",
                    "author",
                    "created_at",
                    "updated_at",
                    "system",
                    "noteable_id",
                    "noteable_iid",
                    "noteable_type",
                    "resolvable",
                    "confidential",
                    "internal",
                }:
                    return self._bad(request, f"unexpected note fields {sorted(body)}")
                note["body"] = body["body"]
                note["updated_at"] = "2026-01-01T00:05:00.000Z"
                return Response(200, note)
        return self.not_found(request)

    def _create_status(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        if body.get("state") not in STATUS_STATES:
            return self._bad(request, f"state {body.get('state')!r} not in {sorted(STATUS_STATES)}")
        status = {"id": next(self._ids), "sha": m["sha"], **body}
        self.statuses.append(status)
        return Response(
            201,
            {
                "id": status["id"],
                "sha": m["sha"],
                "ref": None,
                "status": body["state"],
                "name": body.get("name", "default"),
                "target_url": body.get("target_url"),
                "description": body.get("description"),
                "created_at": NOW,
                "started_at": None,
                "finished_at": None,
                "allow_failure": False,
                "coverage": None,
                "author": {"id": 1, "username": "bot"},
            },
        )

    def _upload(self, request: Request, m: re.Match[str]) -> Response:
        ctype = request.header("Content-Type") or ""
        if not ctype.startswith("multipart/form-data"):
            return self._bad(request, "upload must be multipart/form-data")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + request.body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                filename = part.get_filename() or "file"
                data = part.get_payload(decode=True)
                assert isinstance(data, bytes)
                self.uploads.append((filename, data))
                secret = f"{len(self.uploads):032x}"
                url = f"/uploads/{secret}/{filename}"
                return Response(
                    201,
                    {
                        "id": len(self.uploads),
                        "alt": filename.rsplit(".", 1)[0],
                        "url": url,
                        "full_path": f"/-/project/42{url}",
                        "markdown": f"![{filename.rsplit('.', 1)[0]}]({url})",
                    },
                )
        return self._bad(request, "multipart upload has no 'file' part")

    def _pipeline_json(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in pipeline.items() if k not in ("variables", "job_ids", "bridges")}
        self.shaped("pipeline/basic.json", {k: out[k] for k in ("id", "sha", "ref", "status")})
        return out

    def _trigger(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        if body.get("token") != self.trigger_token:
            return Response(404, {"message": "404 Not Found"})
        if not isinstance(body.get("ref"), str):
            return self._bad(request, "ref is missing")
        variables = body.get("variables", {})
        if not isinstance(variables, dict) or not all(
            isinstance(v, str) for v in variables.values()
        ):
            return self._bad(request, "trigger variables must be an object of strings")
        pipeline = self.new_pipeline(body["ref"], variables)
        if self.on_pipeline is not None:
            self.on_pipeline(pipeline, body)
        return Response(201, self._pipeline_json(pipeline))

    def _create_pipeline(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        if not isinstance(body.get("ref"), str):
            return self._bad(request, "ref is missing")
        variables = body.get("variables", [])
        if not isinstance(variables, list) or not all(
            isinstance(v, dict)
            and isinstance(v.get("key"), str)
            and isinstance(v.get("value"), str)
            for v in variables
        ):
            return self._bad(request, "pipeline variables must be an array of {key, value}")
        pipeline = self.new_pipeline(body["ref"], {v["key"]: v["value"] for v in variables})
        if self.on_pipeline is not None:
            self.on_pipeline(pipeline, body)
        return Response(201, self._pipeline_json(pipeline))

    def _list_jobs(self, request: Request, m: re.Match[str]) -> Response:
        pipeline = self._pipeline(int(m["id"]))
        if pipeline is None:
            return self.not_found(request)
        jobs = [self.shaped("job.json", self.jobs[j]) for j in pipeline["job_ids"]]
        return self._paged(request, jobs)

    def _list_bridges(self, request: Request, m: re.Match[str]) -> Response:
        pipeline = self._pipeline(int(m["id"]))
        if pipeline is None:
            return self.not_found(request)
        return self._paged(request, pipeline["bridges"])

    def _pipeline(self, pipeline_id: int) -> dict[str, Any] | None:
        if pipeline_id not in self.pipelines and self.pipeline_source is not None:
            self.pipeline_source(pipeline_id)
        return self.pipelines.get(pipeline_id)

    def _cancel(self, request: Request, m: re.Match[str]) -> Response:
        pipeline = self.pipelines.get(int(m["id"]))
        if pipeline is None:
            return self.not_found(request)
        pipeline["status"] = "canceled"
        for job_id in pipeline["job_ids"]:
            if self.jobs[job_id]["status"] in ("created", "pending", "running"):
                self.jobs[job_id]["status"] = "canceled"
        return Response(201, self._pipeline_json(pipeline))

    def _artifacts(self, request: Request, m: re.Match[str]) -> Response:
        data = self.artifacts.get(int(m["id"]))
        if data is None:
            return self.not_found(request)
        return Response(200, data, content_type="application/zip")

    def _list_runners(self, request: Request, m: re.Match[str]) -> Response:
        return self._paged(request, [self._runner_basic(r) for r in self.runners.values()])

    def _get_runner(self, request: Request, m: re.Match[str]) -> Response:
        runner = self.runners.get(int(m["id"]))
        if runner is None:
            return self.not_found(request)
        self._runner_basic(runner)
        return Response(200, dict(runner))

    def _update_runner(self, request: Request, m: re.Match[str]) -> Response:
        runner = self.runners.get(int(m["id"]))
        if runner is None:
            return self.not_found(request)
        body = request.json() or {}
        tags = body.get("tag_list")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return self._bad(request, "tag_list must be an array of strings")
        runner["tag_list"] = tags
        return Response(200, dict(runner))
