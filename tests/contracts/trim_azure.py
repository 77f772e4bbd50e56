"""Trim the Azure DevOps Swagger 2.0 specs to the operations ci-fanout calls.

Usage: python tests/contracts/trim_azure.py [SOURCE_DIR] [DEST_DIR]
SOURCE_DIR defaults to ../shared/contracts/azure-devops (MicrosoftDocs/vsts-rest-api-specs at
adb28786, MIT); DEST_DIR to tests/contracts/azure-devops. Keeps the listed operations, their
``#/parameters`` and every ``#/definitions`` entry reachable from them (transitively).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "contracts" / "azure-devops"
DEFAULT_DEST = HERE / "azure-devops"

#: spec file -> operationIds kept
OPERATIONS: dict[str, tuple[str, ...]] = {
    "pipelines/7.1/pipelines.json": ("Runs_Run Pipeline", "Runs_Get", "Artifacts_Get"),
    "build/7.1/build.json": (
        "Builds_Get",
        "Builds_Update Build",
        "Artifacts_List",
        "Timeline_Get",
    ),
    "git/7.1/git.json": (
        "Pull Request Threads_Create",
        "Pull Request Threads_List",
        "Pull Request Thread Comments_Update",
        "Statuses_Create",
    ),
    "distributedTask/7.1/taskAgent.json": ("Pools_Get", "Agents_List", "Agents_Update"),
}


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def trim(spec: dict[str, Any], operation_ids: tuple[str, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    wanted = set(operation_ids)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") in wanted:
                kept = {k: v for k, v in op.items() if k != "x-ms-examples"}
                paths.setdefault(path, {})[method] = kept
                wanted.discard(op["operationId"])
    if wanted:
        raise SystemExit(f"operations not found: {sorted(wanted)}")
    out: dict[str, Any] = {k: spec[k] for k in ("swagger", "info", "host", "basePath", "schemes")}
    out["info"] = {**spec["info"], "x-trimmed-by": "tests/contracts/trim_azure.py"}
    out["paths"] = paths
    pending: set[str] = set()
    _refs(paths, pending)
    seen: set[str] = set()
    sections: dict[str, dict[str, Any]] = {"definitions": {}, "parameters": {}}
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, name = ref.split("/", 2)
        target = spec[section][name]
        sections[section][name] = target
        _refs(target, pending)
    out["definitions"] = dict(sorted(sections["definitions"].items()))
    out["parameters"] = dict(sorted(sections["parameters"].items()))
    return out


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    dest = Path(argv[2]) if len(argv) > 2 else DEFAULT_DEST
    for rel, ops in OPERATIONS.items():
        spec = json.loads((source / rel).read_text(encoding="utf-8-sig"))
        trimmed = trim(spec, ops)
        target = dest / Path(rel).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(trimmed, indent=1) + "\n", encoding="utf-8")
        print(f"{target}: {len(ops)} operations, {len(trimmed['definitions'])} definitions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
