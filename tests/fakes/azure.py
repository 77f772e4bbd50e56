"""Loopback fake of Azure DevOps Services for the azure-devops SDK: the discovery protocol
(``OPTIONS {org}/_apis`` route table), ``{"count","value"}`` collections, wrapped-exception
errors, and every API request checked against the Swagger 2.0 specs (trimmed copies in
tests/contracts/azure-devops) with :class:`tests.contracts.validate.SwaggerContract`."""

from __future__ import annotations

import base64
import itertools
import re
from typing import Any
from urllib.parse import unquote

from tests.contracts.validate import SwaggerContract
from tests.fakes.base import FakeServer, Fault, Request, Response
from tests.fakes.github import make_zip

NOW = "2026-01-01T00:00:00Z"
PROJECT_ROUTES = {
    "7859261e-d2e9-4a68-b820-a5d84cc5bb3d": (
        "pipelines",
        "runs",
        "{project}/_apis/pipelines/{pipelineId}/runs/{runId}",
    ),
    "85023071-bd5e-4438-89b0-2a5bf362a19d": (
        "pipelines",
        "artifacts",
        "{project}/_apis/pipelines/{pipelineId}/runs/{runId}/artifacts",
    ),
    "0cd358e1-9217-4d94-8269-1c1ee6f93dcf": (
        "build",
        "builds",
        "{project}/_apis/build/builds/{buildId}",
    ),
    "1db06c96-014e-44e1-ac91-90b2d4b3e984": (
        "build",
        "artifacts",
        "{project}/_apis/build/builds/{buildId}/artifacts",
    ),
    "8baac422-4c6e-4de5-8532-db96d92acffa": (
        "build",
        "timeline",
        "{project}/_apis/build/builds/{buildId}/timeline/{timelineId}",
    ),
    "ab6e2e5d-a0b7-4153-b64a-a4efe0d49449": (
        "git",
        "pullRequestThreads",
        "{project}/_apis/git/repositories/{repositoryId}/pullRequests/{pullRequestId}/threads/{threadId}",
    ),
    "965a3ec7-5ed8-455a-bdcb-835a5ea7fe7b": (
        "git",
        "pullRequestThreadComments",
        "{project}/_apis/git/repositories/{repositoryId}/pullRequests/{pullRequestId}/threads/{threadId}/comments/{commentId}",
    ),
    "428dd4fb-fda5-4722-af02-9313b80305da": (
        "git",
        "statuses",
        "{project}/_apis/git/repositories/{repositoryId}/commits/{commitId}/statuses",
    ),
    "00d9565f-ed9c-4a06-9a50-00e7896ccab4": (
        "Location",
        "ConnectionData",
        "_apis/connectionData",
    ),
    "a8c47e17-4d56-4a56-92bb-de7ea7dc65be": (
        "distributedtask",
        "pools",
        "_apis/distributedtask/pools/{poolId}",
    ),
    "e298ef32-5878-4cab-993c-043836571f42": (
        "distributedtask",
        "agents",
        "_apis/distributedtask/pools/{poolId}/agents/{agentId}",
    ),
    "bfa72b3d-0fc6-43fb-932b-a7f6559f93b9": (
        "distributedtask",
        "agents",
        "_apis/distributedtask/pools/{poolId}/agents/{agentId}",
    ),
}


def wrapped_error(message: str, type_key: str = "VssServiceException") -> dict[str, Any]:
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.VisualStudio.Services.Common.{type_key}, Microsoft.VisualStudio.Services.Common",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }


class FakeAzureDevOps(FakeServer):
    provider = "azure"

    def __init__(
        self,
        contract: SwaggerContract,
        *,
        org: str = "acme",
        project: str = "proj",
        pat: str = "pat-test",
        user: str = "ci-fanout-bot",
    ) -> None:
        super().__init__()
        self.contract = contract
        self.org = org
        self.project = project
        self.pat = pat
        self._identities: dict[str, dict[str, Any]] = {}
        #: the identity the PAT acts as (``connectionData``); threads it creates are its own
        self.me = self.identity(user)
        self._ids = itertools.count(300)
        self.runs: dict[int, dict[str, Any]] = {}
        self.artifacts: dict[int, dict[str, bytes]] = {}
        self.threads: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.agents: dict[int, dict[str, Any]] = {}
        self._install_routes()

    @property
    def org_url(self) -> str:
        return f"{self.url}/{self.org}"

    def add_agent(self, pool_id: int, name: str, capabilities: dict[str, str]) -> int:
        agent_id = next(self._ids)
        self.agents[agent_id] = {
            "id": agent_id,
            "name": name,
            "version": "3.240.0",
            "enabled": True,
            "status": "online",
            "provisioningState": "Provisioned",
            "systemCapabilities": {"Agent.OS": "Linux", "Agent.Name": name},
            "userCapabilities": dict(capabilities),
            "_pool": pool_id,
        }
        return agent_id

    def identity(self, name: str) -> dict[str, Any]:
        """An IdentityRef for ``name`` with a stable GUID."""
        if name not in self._identities:
            n = len(self._identities) + 1
            guid = f"{n:08x}-0000-4000-8000-{n:012x}"
            self._identities[name] = {
                "id": guid,
                "displayName": name,
                "uniqueName": f"{name}@example.test",
                "descriptor": f"aad.{guid}",
            }
        return dict(self._identities[name])

    def add_thread(
        self, pr: int, content: str, *, author: str | dict[str, Any] = "Someone"
    ) -> dict[str, Any]:
        thread_id = next(self._ids)
        thread = {
            "id": thread_id,
            "status": "active",
            "publishedDate": NOW,
            "lastUpdatedDate": NOW,
            "isDeleted": False,
            "comments": [
                {
                    "id": 1,
                    "parentCommentId": 0,
                    "content": content,
                    "commentType": "text",
                    "isDeleted": False,
                    "author": self.identity(author) if isinstance(author, str) else dict(author),
                    "publishedDate": NOW,
                }
            ],
            "properties": {},
        }
        self.threads.setdefault(pr, []).append(thread)
        return thread

    # -- contract --------------------------------------------------------------------------
    def validate(self, request: Request) -> None:
        if request.method == "OPTIONS" or request.path.startswith("/_blobs/"):
            request.operation = request.method
            return
        if request.path == f"/{self.org}/_apis/connectionData":
            # Not in the published Swagger specs (the Location area is not among them):
            # checked by hand against what the SDK documents for GetConnectionData.
            request.operation = "Location_GetConnectionData"
            if request.method != "GET" or request.body:
                request.violations.append("connectionData is a GET without a body")
            known = {"connectOptions", "lastChangeId", "lastChangeId64", "api-version"}
            request.violations += [
                f"unknown query parameter {k!r}" for k, _ in request.query if k not in known
            ]
            return
        if request.path.endswith("/_apis/ResourceAreas"):
            request.violations.append(
                "resource-area discovery is not used (clients are built on the org URL)"
            )
            return
        operation, problems = self.contract.check(
            request.method, request.path, request.query, request.headers, request.body
        )
        request.operation = operation
        request.violations += problems

    def reject(self, request: Request) -> Response:
        return Response(
            400, wrapped_error("; ".join(request.violations), "InvalidArgumentValueException")
        )

    def not_found(self, request: Request) -> Response:
        return Response(
            404, wrapped_error(f"The resource {request.path} cannot be found.", "NotFoundException")
        )

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            headers = {
                "Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)
            }
            return Response(
                429,
                wrapped_error(
                    "TF400733: The request has been blocked (rate limit).",
                    "RequestBlockedException",
                ),
                headers,
            )
        if fault.kind == "500":
            return Response(500, wrapped_error("TF246017: internal server error"))
        return super().fault_response(fault, request)

    def _auth(self, handler: Any) -> Any:
        expected = "Basic " + base64.b64encode(f":{self.pat}".encode()).decode()

        def wrapped(request: Request, m: re.Match[str]) -> Response:
            if request.header("Authorization") != expected:
                return Response(401, "Unauthorized", content_type="text/plain")
            result: Response = handler(request, m)
            return result

        return wrapped

    def _install_routes(self) -> None:
        a = self._auth
        org = f"/{self.org}"
        prj = f"{org}/(?P<project>[^/]+)/_apis"
        self.add_route("OPTIONS", org + "/_apis", self._options)
        self.add_route("GET", org + "/_apis/connectionData", a(self._connection_data))
        self.add_route("POST", prj + r"/pipelines/(?P<pid>\d+)/runs", a(self._run_pipeline))
        self.add_route(
            "GET",
            prj + r"/pipelines/(?P<pid>\d+)/runs/(?P<rid>\d+)/artifacts",
            a(self._run_artifact),
        )
        self.add_route("GET", prj + r"/build/builds/(?P<bid>\d+)/timeline", a(self._timeline))
        self.add_route(
            "GET", prj + r"/build/builds/(?P<bid>\d+)/artifacts", a(self._build_artifacts)
        )
        self.add_route("PATCH", prj + r"/build/builds/(?P<bid>\d+)", a(self._update_build))
        threads = prj + r"/git/repositories/(?P<repo>[^/]+)/pullRequests/(?P<pr>\d+)/threads"
        self.add_route("GET", threads, a(self._list_threads))
        self.add_route("POST", threads, a(self._create_thread))
        self.add_route(
            "PATCH", threads + r"/(?P<tid>\d+)/comments/(?P<cid>\d+)", a(self._update_comment)
        )
        self.add_route(
            "POST",
            prj + r"/git/repositories/(?P<repo>[^/]+)/commits/(?P<sha>[^/]+)/statuses",
            a(self._status),
        )
        pools = org + r"/_apis/distributedtask/pools/(?P<pool>\d+)"
        self.add_route("GET", pools + "/agents", a(self._list_agents))
        self.add_route("PATCH", pools + r"/agents/(?P<aid>\d+)", a(self._update_agent))
        self.add_route("GET", r"/_blobs/(?P<rid>\d+)/(?P<name>[^/]+)", self._blob)

    # -- handlers --------------------------------------------------------------------------
    def _options(self, request: Request, m: re.Match[str]) -> Response:
        value = [
            {
                "id": location_id,
                "area": area,
                "resourceName": resource,
                "routeTemplate": template,
                "resourceVersion": 7,
                "minVersion": "1.0",
                "maxVersion": "7.1",
                "releasedVersion": "7.0",
            }
            for location_id, (area, resource, template) in PROJECT_ROUTES.items()
        ]
        return Response(200, {"count": len(value), "value": value})

    def _connection_data(self, request: Request, m: re.Match[str]) -> Response:
        me = self.me
        user = {
            "id": me["id"],
            "descriptor": me["descriptor"],
            "subjectDescriptor": me["descriptor"],
            "providerDisplayName": me["displayName"],
            "isActive": True,
            "properties": {"Account": {"$type": "System.String", "$value": me["uniqueName"]}},
        }
        return Response(
            200,
            {
                "authenticatedUser": user,
                "authorizedUser": user,
                "instanceId": "00000000-0000-4000-8000-000000000001",
                "locationServiceData": None,
            },
        )

    def _check_project(self, m: re.Match[str]) -> bool:
        return unquote(m["project"]) == self.project

    def _run_pipeline(self, request: Request, m: re.Match[str]) -> Response:
        if not self._check_project(m):
            return self.not_found(request)
        body = request.json() or {}
        run_id = next(self._ids)
        self.runs[run_id] = {
            "pipeline": int(m["pid"]),
            "parameters": body.get("templateParameters", {}),
            "ref": (
                ((body.get("resources") or {}).get("repositories") or {}).get("self") or {}
            ).get("refName"),
            "polls": 0,
            "status": "inProgress",
        }
        return Response(
            200,
            {
                "id": run_id,
                "name": f"20260101.{run_id}",
                "state": "inProgress",
                "createdDate": NOW,
                "pipeline": {"id": int(m["pid"]), "name": "ci", "folder": "\\", "revision": 1},
                "_links": {
                    "web": {
                        "href": f"https://dev.azure.test/{self.org}/{self.project}/_build/results?buildId={run_id}"
                    }
                },
                "templateParameters": body.get("templateParameters", {}),
            },
        )

    def _run_artifact(self, request: Request, m: re.Match[str]) -> Response:
        rid = int(m["rid"])
        name = request.arg("artifactName") or ""
        if name not in self.artifacts.get(rid, {}):
            return self.not_found(request)
        out: dict[str, Any] = {"name": name}
        if request.arg("$expand") == "signedContent":
            out["signedContent"] = {
                "url": f"{self.url}/_blobs/{rid}/{name}?sig=s",
                "signatureExpires": NOW,
            }
        return Response(200, out)

    def _timeline(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["bid"]))
        if run is None:
            return self.not_found(request)
        run["polls"] += 1
        if run["status"] == "cancelling":
            state, result = "completed", "canceled"
        elif run["polls"] == 1:
            state, result = "pending", None
        elif run["polls"] == 2:
            state, result = "inProgress", None
        else:
            state, result = "completed", "succeeded"
        records = [
            {
                "id": "11111111-0000-0000-0000-000000000001",
                "name": "Stage 1",
                "type": "Stage",
                "state": state,
                "result": result,
            },
            {
                "id": "11111111-0000-0000-0000-000000000002",
                "parentId": "11111111-0000-0000-0000-000000000001",
                "name": f"shard {run['parameters'].get('shard', '?')}",
                "type": "Job",
                "state": state,
                "result": result,
                "workerName": "lab-agent-1" if state != "pending" else None,
            },
        ]
        return Response(
            200,
            {
                "id": "22222222-0000-0000-0000-000000000000",
                "changeId": run["polls"],
                "records": records,
            },
        )

    def _build_artifacts(self, request: Request, m: re.Match[str]) -> Response:
        bid = int(m["bid"])
        value = [
            {
                "id": i + 1,
                "name": name,
                "resource": {"type": "Container", "downloadUrl": f"{self.url}/_blobs/{bid}/{name}"},
            }
            for i, name in enumerate(self.artifacts.get(bid, {}))
        ]
        return Response(200, {"count": len(value), "value": value})

    def _update_build(self, request: Request, m: re.Match[str]) -> Response:
        run = self.runs.get(int(m["bid"]))
        if run is None:
            return self.not_found(request)
        body = request.json() or {}
        run["status"] = body.get("status", run["status"])
        return Response(200, {"id": int(m["bid"]), "status": run["status"], "result": None})

    def _blob(self, request: Request, m: re.Match[str]) -> Response:
        data = self.artifacts.get(int(m["rid"]), {}).get(unquote(m["name"]))
        if data is None:
            return Response(404, b"", content_type="text/plain")
        return Response(200, data, content_type="application/zip")

    def add_artifact(self, run_id: int, name: str, files: dict[str, bytes]) -> None:
        self.artifacts.setdefault(run_id, {})[name] = make_zip(files)

    def _list_threads(self, request: Request, m: re.Match[str]) -> Response:
        threads = self.threads.get(int(m["pr"]), [])
        return Response(200, {"count": len(threads), "value": threads})

    def _create_thread(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        comments = body.get("comments") or []
        if not comments or not comments[0].get("content"):
            request.violations.append("a thread must contain at least one comment")
            return self.reject(request)
        if len(comments[0]["content"]) > 150_000:
            return Response(
                400, wrapped_error("A discussion comment cannot be longer than 150000 characters.")
            )
        thread = self.add_thread(int(m["pr"]), comments[0]["content"], author=self.me)
        thread["status"] = body.get("status", "active")
        return Response(200, thread)

    def _update_comment(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        for thread in self.threads.get(int(m["pr"]), []):
            if thread["id"] == int(m["tid"]):
                for comment in thread["comments"]:
                    if comment["id"] == int(m["cid"]):
                        comment["content"] = body["content"]
                        comment["lastContentUpdatedDate"] = NOW
                        return Response(200, comment)
        return self.not_found(request)

    def _status(self, request: Request, m: re.Match[str]) -> Response:
        body = request.json() or {}
        self.statuses.append({"sha": m["sha"], "repo": unquote(m["repo"]), **body})
        return Response(201, {"id": len(self.statuses), **body, "creationDate": NOW})

    def _agent_json(self, agent: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in agent.items() if not k.startswith("_")}

    def _list_agents(self, request: Request, m: re.Match[str]) -> Response:
        value = [self._agent_json(a) for a in self.agents.values() if a["_pool"] == int(m["pool"])]
        if request.arg("includeCapabilities") != "true":
            value = [{k: v for k, v in a.items() if not k.endswith("Capabilities")} for a in value]
        return Response(200, {"count": len(value), "value": value})

    def _update_agent(self, request: Request, m: re.Match[str]) -> Response:
        agent = self.agents.get(int(m["aid"]))
        if agent is None or agent["_pool"] != int(m["pool"]):
            return self.not_found(request)
        body = request.json() or {}
        if "userCapabilities" in body:
            agent["userCapabilities"] = dict(body["userCapabilities"] or {})
        return Response(200, self._agent_json(agent))
