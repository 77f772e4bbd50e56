"""Request validators for the loopback fakes: GitHub (OpenAPI 3.0 via openapi-core) and Azure
DevOps (Swagger 2.0: a small path/method/parameter/body checker built on jsonschema, because
openapi-core reads OpenAPI 3.x only)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

HERE = Path(__file__).resolve().parent
GITHUB_SPEC = HERE / "github" / "api.github.com.trimmed.json"
AZURE_SPECS = tuple(sorted((HERE / "azure-devops").glob("*.json")))
GITLAB_SCHEMAS = HERE / "gitlab" / "api-schemas" / "public_api" / "v4"
JENKINS_FIXTURES = HERE / "jenkins"


def _describe(exc: BaseException) -> list[str]:
    """Flatten openapi-core's nested errors into ``at a/b: keyword=value violated`` lines."""
    out: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        schema_errors = getattr(err, "schema_errors", None)
        if schema_errors:
            for se in schema_errors:
                where = "/".join(str(p) for p in se.absolute_path) or "(body)"
                out.append(f"at {where}: {se.validator}={se.validator_value!r} violated")
        for nxt in (err.__cause__, err.__context__):
            if nxt is not None:
                stack.append(nxt)
        for nested in getattr(err, "errors", None) or ():
            if isinstance(nested, BaseException):
                stack.append(nested)
    if not out:
        out.append(f"{type(exc).__name__}: {exc}")
    return out


class GitHubContract:
    """Validate requests against the trimmed GitHub OpenAPI description (load once)."""

    def __init__(self, spec_path: Path = GITHUB_SPEC) -> None:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        self.server = spec["servers"][0]["url"].rstrip("/")
        self.openapi = OpenAPI.from_dict(
            spec,
            config=Config(spec_validator_cls=None),  # type: ignore[arg-type]  # skip 85 s check
        )

    def check(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        content_type: str = "application/json",
    ) -> list[str]:
        """Violations of ``method path`` (empty list = valid)."""
        from werkzeug.datastructures import ImmutableMultiDict

        request = MockRequest(
            self.server,
            method,
            path,
            headers=dict(headers),
            data=body or None,
            content_type=content_type if body else "application/json",
        )
        request.parameters.query = ImmutableMultiDict(list(query))
        try:
            self.openapi.validate_request(request)
        except Exception as exc:  # openapi-core raises a family of errors
            return _describe(exc)
        return []


@dataclass
class _Operation:
    method: str
    template: str
    regex: re.Pattern[str]
    spec_name: str
    operation_id: str
    params: list[dict[str, Any]]
    definitions: dict[str, Any]
    version: str


class SwaggerContract:
    """Swagger 2.0 checker: path template + method, required/unknown/typed parameters, body
    schema (jsonschema Draft 4 with the spec's ``definitions``), ``api-version`` (query or, as
    the azure-devops SDK sends it, in ``Accept``)."""

    def __init__(self, spec_paths: Iterable[Path] = AZURE_SPECS) -> None:
        self.operations: list[_Operation] = []
        for spec_path in spec_paths:
            spec = json.loads(spec_path.read_text(encoding="utf-8-sig"))
            shared = spec.get("parameters", {})
            for template, item in spec["paths"].items():
                for method, op in item.items():
                    params = [
                        shared[p["$ref"].split("/")[-1]] if "$ref" in p else p
                        for p in op.get("parameters", [])
                    ]
                    self.operations.append(
                        _Operation(
                            method=method.upper(),
                            template=template,
                            regex=self._compile(template, params),
                            spec_name=spec_path.name,
                            operation_id=op["operationId"],
                            params=params,
                            definitions=spec.get("definitions", {}),
                            version=spec["info"]["version"],
                        )
                    )
        # Most specific first: more literal characters win.
        self.operations.sort(key=lambda o: -len(re.sub(r"\{[^}]+\}", "", o.template)))

    @staticmethod
    def _compile(template: str, params: list[dict[str, Any]]) -> re.Pattern[str]:
        optional = {
            p["name"] for p in params if p.get("in") == "path" and p.get("x-ms-required") is False
        }
        pattern = ""
        for segment in template.strip("/").split("/"):
            m = re.fullmatch(r"\{([^}]+)\}", segment)
            if m:
                name = re.sub(r"\W", "_", m.group(1))
                piece = f"/(?P<{name}>[^/]+)"
                pattern += f"(?:{piece})?" if m.group(1) in optional else piece
            else:
                pattern += "/" + re.escape(segment)
        return re.compile(pattern + "/?")

    def match(self, method: str, path: str) -> _Operation | None:
        for op in self.operations:
            if op.method == method.upper() and op.regex.fullmatch(path):
                return op
        return None

    def check(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[str | None, list[str]]:
        op = self.match(method, path)
        if op is None:
            return None, [f"no operation {method} {path} in the Swagger specs"]
        problems: list[str] = []
        args = dict(query)
        matched = op.regex.fullmatch(path)
        path_values = dict(matched.groupdict()) if matched else {}
        known_query = {p["name"] for p in op.params if p.get("in") == "query"}
        for name in args:
            if name not in known_query:
                problems.append(f"unknown query parameter {name!r}")
        accept = {k.lower(): v for k, v in headers.items()}.get("accept", "")
        header_version = re.search(r"api-version=([0-9.]+(?:-preview(?:\.\d+)?)?)", accept)
        for p in op.params:
            where, name = p.get("in"), p["name"]
            if where == "query":
                value = args.get(name)
                if name == "api-version" and value is None and header_version:
                    value = header_version.group(1)
                if value is None:
                    if p.get("required"):
                        problems.append(f"missing required query parameter {name!r}")
                    continue
                if name == "api-version" and not value.startswith(op.version):
                    problems.append(f"api-version {value!r} is not {op.version}")
                problems += self._scalar(name, value, p)
            elif where == "path":
                value = path_values.get(re.sub(r"\W", "_", name))
                if value is None:
                    if p.get("x-ms-required") is not False:
                        problems.append(f"missing path parameter {name!r}")
                    continue
                problems += self._scalar(name, value, p)
            elif where == "body":
                if not body:
                    if p.get("required"):
                        problems.append("missing required body")
                    continue
                try:
                    instance = json.loads(body)
                except ValueError as exc:
                    problems.append(f"body is not JSON: {exc}")
                    continue
                schema = {**p["schema"], "definitions": op.definitions}
                validator = jsonschema.Draft4Validator(schema)
                for err in validator.iter_errors(instance):
                    at = "/".join(str(x) for x in err.absolute_path) or "(body)"
                    problems.append(f"at {at}: {err.validator}={err.validator_value!r} violated")
        return op.operation_id, problems

    @staticmethod
    def _scalar(name: str, value: str, p: Mapping[str, Any]) -> list[str]:
        kind = p.get("type")
        if kind == "integer" and not re.fullmatch(r"-?\d+", value):
            return [f"parameter {name!r}={value!r} is not an integer"]
        if kind == "boolean" and value.lower() not in ("true", "false"):
            return [f"parameter {name!r}={value!r} is not a boolean"]
        if "enum" in p and value not in p["enum"]:
            return [f"parameter {name!r}={value!r} not in {p['enum']}"]
        return []


def load_gitlab_schema(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GITLAB_SCHEMAS / relative).read_text(encoding="utf-8"))
    return data


def load_jenkins_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((JENKINS_FIXTURES / name).read_text(encoding="utf-8"))
    return data
