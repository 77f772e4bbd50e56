"""Loopback fake of the Jenkins remote API as jenkinsapi uses it.

Jenkins publishes no spec: every JSON object served is built from jenkinsapi's own unit-test
fixtures (tests/contracts/jenkins, captured from real Jenkins) with values overridden, so the
key set matches real responses; requests are checked for what Jenkins enforces (Basic auth,
CSRF crumb + session cookie on POST, form-encoded ``buildWithParameters``)."""

from __future__ import annotations

import base64
import copy
import itertools
import re
import xml.etree.ElementTree as ET  # parsing our own fake's trusted XML
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from tests.contracts.validate import load_jenkins_fixture
from tests.fakes.base import FakeServer, Request, Response

FIXTURES = {
    name: load_jenkins_fixture(f"{name}.json")
    for name in ("job", "build", "node", "jenkins_two_jobs")
}
CRUMB = "c0ffee-crumb"
NODE_XML = """<?xml version="1.1" encoding="UTF-8"?>
<slave>
  <name>{name}</name>
  <description>lab machine</description>
  <remoteFS>/var/lib/jenkins</remoteFS>
  <numExecutors>1</numExecutors>
  <mode>NORMAL</mode>
  <label>{labels}</label>
</slave>
"""


def from_fixture(fixture: str, /, **overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(FIXTURES[fixture])
    unknown = set(overrides) - set(data)
    assert not unknown, f"fake invents keys not in the {fixture} fixture: {unknown}"
    data.update(overrides)
    return data


class FakeJenkins(FakeServer):
    provider = "jenkins"

    def __init__(
        self, *, user: str = "ci", token: str = "api-token", queue_polls_before_start: int = 2
    ) -> None:
        super().__init__()
        self.user = user
        self.token = token
        self.queue_polls_before_start = queue_polls_before_start
        self._ids = itertools.count(100)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.queue: dict[int, dict[str, Any]] = {}
        self.builds: dict[tuple[str, int], dict[str, Any]] = {}
        self.artifact_data: dict[tuple[str, int, str], bytes] = {}
        self.nodes: dict[str, dict[str, Any]] = {
            "Built-In Node": {"labels": "", "offline": False, "idle": True}
        }
        self.sessions: set[str] = set()
        self.stopped: list[tuple[str, int]] = []
        self._install_routes()

    def add_job(self, name: str, params: list[str]) -> None:
        self.jobs[name] = {"params": params, "next": 1}

    def add_node(self, name: str, labels: str, *, offline: bool = False, idle: bool = True) -> None:
        self.nodes[name] = {"labels": labels, "offline": offline, "idle": idle}

    def complete(
        self, job: str, number: int, result: str, artifacts: dict[str, bytes] | None = None
    ) -> None:
        build = self.builds[(job, number)]
        build["building"] = False
        build["result"] = result
        for rel, data in (artifacts or {}).items():
            self.artifact_data[(job, number, rel)] = data
            build["artifacts"].append(
                {
                    "displayPath": rel.rsplit("/", 1)[-1],
                    "fileName": rel.rsplit("/", 1)[-1],
                    "relativePath": rel,
                }
            )

    # -- contract --------------------------------------------------------------------------
    def validate(self, request: Request) -> None:
        auth = request.header("Authorization") or ""
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
        request.operation = "auth-ok" if auth == expected else "auth-bad"
        if request.method == "POST" and request.operation == "auth-ok":
            cookie = request.header("Cookie") or ""
            session = re.search(r"JSESSIONID=([^;]+)", cookie)
            if (
                request.header("Jenkins-Crumb") != CRUMB
                or not session
                or session.group(1) not in self.sessions
            ):
                request.violations.append("POST without a valid crumb for this session")

    def reject(self, request: Request) -> Response:
        return Response(403, "No valid crumb was included in the request", content_type="text/html")

    def not_found(self, request: Request) -> Response:
        return Response(404, "<html>Not Found</html>", content_type="text/html")

    def _auth(self, handler: Any) -> Any:
        def wrapped(request: Request, m: re.Match[str]) -> Response:
            if request.operation != "auth-ok":
                return Response(401, "<html>Unauthorized</html>", content_type="text/html")
            result: Response = handler(request, m)
            return result

        return wrapped

    def _install_routes(self) -> None:
        a = self._auth
        job = r"/job/(?P<job>[^/]+)"
        build = job + r"/(?P<n>\d+)"
        self.add_route("GET", r"/api/python", a(self._root))
        self.add_route("GET", r"/crumbIssuer/api/python", a(self._crumb))
        self.add_route("GET", job + r"/api/python", a(self._job))
        self.add_route("POST", job + r"/buildWithParameters", a(self._build_with_params))
        self.add_route("GET", r"/queue/item/(?P<id>\d+)/api/python", a(self._queue_item))
        self.add_route("GET", build + r"/api/python", a(self._build))
        self.add_route("GET", build + r"/artifact/(?P<path>.+)", a(self._artifact))
        self.add_route("POST", build + r"/stop", a(self._stop))
        self.add_route("GET", r"/computer/api/python", a(self._computers))
        self.add_route("GET", r"/computer/(?P<node>[^/]+)/api/python", a(self._node))
        self.add_route("GET", r"/computer/(?P<node>[^/]+)/config\.xml", a(self._get_config))
        self.add_route("POST", r"/computer/(?P<node>[^/]+)/config\.xml", a(self._post_config))

    # -- handlers --------------------------------------------------------------------------
    def _root(self, request: Request, m: re.Match[str]) -> Response:
        jobs = [
            {"name": n, "url": f"{self.url}/job/{quote(n)}/", "color": "blue"} for n in self.jobs
        ]
        return Response(
            200, {"_class": "hudson.model.Hudson", **FIXTURES["jenkins_two_jobs"], "jobs": jobs}
        )

    def _crumb(self, request: Request, m: re.Match[str]) -> Response:
        session = f"node0{next(self._ids)}"
        self.sessions.add(session)
        return Response(
            200,
            {
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": CRUMB,
                "crumbRequestField": "Jenkins-Crumb",
            },
            {"Set-Cookie": f"JSESSIONID={session}; Path=/; HttpOnly"},
        )

    def _build_ref(self, name: str, n: int) -> dict[str, Any]:
        return {"number": n, "url": f"{self.url}/job/{quote(name)}/{n}/"}

    def _job(self, request: Request, m: re.Match[str]) -> Response:
        name = unquote(m["job"])
        spec = self.jobs.get(name)
        if spec is None:
            return self.not_found(request)
        numbers = sorted((n for (j, n) in self.builds if j == name), reverse=True)
        refs = [self._build_ref(name, n) for n in numbers]
        last = refs[0] if refs else None
        definitions = [
            {
                "defaultParameterValue": {"name": p, "value": ""},
                "description": "",
                "name": p,
                "type": "StringParameterDefinition",
            }
            for p in spec["params"]
        ]
        return Response(
            200,
            from_fixture(
                "job",
                actions=[{"parameterDefinitions": definitions}],
                property=[{"parameterDefinitions": definitions}],
                name=name,
                displayName=name,
                url=f"{self.url}/job/{quote(name)}/",
                builds=refs,
                allBuilds=refs,
                firstBuild=refs[-1] if refs else None,
                lastBuild=last,
                lastCompletedBuild=None,
                lastFailedBuild=None,
                lastStableBuild=None,
                lastSuccessfulBuild=None,
                lastUnstableBuild=None,
                lastUnsuccessfulBuild=None,
                nextBuildNumber=spec["next"],
                inQueue=False,
                queueItem=None,
                downstreamProjects=[],
                upstreamProjects=[],
            ),
        )

    def _build_with_params(self, request: Request, m: re.Match[str]) -> Response:
        name = unquote(m["job"])
        if name not in self.jobs:
            return self.not_found(request)
        if not (request.header("Content-Type") or "").startswith(
            "application/x-www-form-urlencoded"
        ):
            request.violations.append("buildWithParameters must be form-encoded")
            return Response(400, "bad form", content_type="text/plain")
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        unknown = set(form) - {"json", *self.jobs[name]["params"]}
        if unknown:
            request.violations.append(f"undeclared build parameters {sorted(unknown)}")
            return Response(400, "undeclared parameters", content_type="text/plain")
        item_id = next(self._ids)
        self.queue[item_id] = {
            "job": name,
            "params": {k: v for k, v in form.items() if k != "json"},
            "polls": 0,
            "number": None,
        }
        return Response(201, None, {"Location": f"{self.url}/queue/item/{item_id}/"})

    def _queue_item(self, request: Request, m: re.Match[str]) -> Response:
        item = self.queue.get(int(m["id"]))
        if item is None:
            return self.not_found(request)
        item["polls"] += 1
        if item["number"] is None and item["polls"] > self.queue_polls_before_start:
            spec = self.jobs[item["job"]]
            number = spec["next"]
            spec["next"] += 1
            item["number"] = number
            self.builds[(item["job"], number)] = from_fixture(
                "build",
                actions=[
                    {"parameters": [{"name": k, "value": v} for k, v in item["params"].items()]}
                ],
                artifacts=[],
                building=True,
                builtOn="lab-03",
                result=None,
                number=number,
                id=str(number),
                url=f"{self.url}/job/{quote(item['job'])}/{number}/",
                fullDisplayName=f"{item['job']} #{number}",
                runs=[],
                changeSet={"items": [], "kind": None},
                culprits=[],
            )
        task = {
            "name": item["job"],
            "url": f"{self.url}/job/{quote(item['job'])}/",
            "color": "blue",
        }
        data: dict[str, Any] = {
            "_class": "hudson.model.Queue$WaitingItem",
            "id": int(m["id"]),
            "task": task,
            "actions": [
                {"parameters": [{"name": k, "value": v} for k, v in item["params"].items()]}
            ],
            "blocked": False,
            "buildable": item["number"] is None,
            "stuck": False,
            "cancelled": False,
            "inQueueSince": 1700000000000,
            "why": None if item["number"] else "Waiting for next available executor on lab-gpu",
            "executable": self._build_ref(item["job"], item["number"]) if item["number"] else None,
        }
        return Response(200, data)

    def _build(self, request: Request, m: re.Match[str]) -> Response:
        build = self.builds.get((unquote(m["job"]), int(m["n"])))
        if build is None:
            return self.not_found(request)
        return Response(200, build)

    def _artifact(self, request: Request, m: re.Match[str]) -> Response:
        data = self.artifact_data.get((unquote(m["job"]), int(m["n"]), unquote(m["path"])))
        if data is None:
            return self.not_found(request)
        return Response(200, data, content_type="application/octet-stream")

    def _stop(self, request: Request, m: re.Match[str]) -> Response:
        key = (unquote(m["job"]), int(m["n"]))
        build = self.builds.get(key)
        if build is None:
            return self.not_found(request)
        self.stopped.append(key)
        build["building"] = False
        build["result"] = "ABORTED"
        return Response(200, "", content_type="text/html")

    def _computers(self, request: Request, m: re.Match[str]) -> Response:
        return Response(
            200,
            {
                "_class": "hudson.model.ComputerSet",
                "busyExecutors": 0,
                "computer": [{"displayName": n} for n in self.nodes],
            },
        )

    def _node_name(self, raw: str) -> str:
        name = unquote(raw)
        return "Built-In Node" if name == "(built-in)" else name

    def _node(self, request: Request, m: re.Match[str]) -> Response:
        name = self._node_name(m["node"])
        node = self.nodes.get(name)
        if node is None:
            return self.not_found(request)
        return Response(
            200,
            from_fixture(
                "node",
                displayName=name,
                offline=node["offline"],
                temporarilyOffline=False,
                idle=node["idle"],
                offlineCause=None,
            ),
        )

    def _get_config(self, request: Request, m: re.Match[str]) -> Response:
        name = self._node_name(m["node"])
        if name not in self.nodes or name == "Built-In Node":
            return self.not_found(request)
        xml = NODE_XML.format(name=name, labels=self.nodes[name]["labels"])
        return Response(200, xml, content_type="application/xml")

    def _post_config(self, request: Request, m: re.Match[str]) -> Response:
        name = self._node_name(m["node"])
        if name not in self.nodes:
            return self.not_found(request)
        root = ET.fromstring(request.body)
        label = root.find("label")
        self.nodes[name]["labels"] = (label.text or "") if label is not None else ""
        return Response(200, "", content_type="text/html")
