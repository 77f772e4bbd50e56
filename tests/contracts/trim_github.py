"""Trim GitHub's OpenAPI description to the operations ci-fanout calls.

Usage: python tests/contracts/trim_github.py [SOURCE] [DEST]
SOURCE defaults to ../shared/contracts/github/openapi/api.github.com.json (@octokit/openapi 23.0.2,
MIT); DEST to tests/contracts/github/api.github.com.trimmed.json. Keeps the listed paths/methods,
every component they reach through ``$ref`` (transitively), and drops ``examples`` (not needed to
validate requests) so the file stays small and loads in well under a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = (
    HERE.parents[2] / "shared" / "contracts" / "github" / "openapi" / "api.github.com.json"
)
DEFAULT_DEST = HERE / "github" / "api.github.com.trimmed.json"

#: (path template, method) for every GitHub call the adapter and PyGithub make.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("/app", "get"),
    ("/user", "get"),
    ("/app/installations/{installation_id}/access_tokens", "post"),
    ("/repos/{owner}/{repo}/installation", "get"),
    ("/repos/{owner}/{repo}", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"),
    ("/repos/{owner}/{repo}/issues/comments/{comment_id}", "patch"),
    ("/repos/{owner}/{repo}/pulls/{pull_number}", "get"),
    ("/repos/{owner}/{repo}/check-runs", "post"),
    ("/repos/{owner}/{repo}/check-runs/{check_run_id}", "patch"),
    ("/repos/{owner}/{repo}/statuses/{sha}", "post"),
    ("/repos/{owner}/{repo}/commits/{ref}", "get"),
    ("/repos/{owner}/{repo}/actions/workflows/{workflow_id}", "get"),
    ("/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "post"),
    ("/repos/{owner}/{repo}/dispatches", "post"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", "get"),
    ("/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", "post"),
    ("/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", "get"),
    ("/repos/{owner}/{repo}/actions/runners", "get"),
    ("/repos/{owner}/{repo}/actions/runners/{runner_id}/labels", "get"),
    ("/repos/{owner}/{repo}/actions/runners/{runner_id}/labels", "post"),
    ("/repos/{owner}/{repo}/actions/runners/{runner_id}/labels/{name}", "delete"),
    ("/orgs/{org}", "get"),
    ("/orgs/{org}/actions/runners", "get"),
    ("/orgs/{org}/actions/runners/{runner_id}/labels", "post"),
    ("/orgs/{org}/actions/runners/{runner_id}/labels/{name}", "delete"),
)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _strip_examples(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip_examples(v)
            for k, v in node.items()
            # media-type/parameter examples and GitHub's doc metadata; a schema *property*
            # named "examples" lives under "properties" and is kept
            if k != "x-github" and not (k == "examples" and "schema" in node)
        }
    if isinstance(node, list):
        return [_strip_examples(v) for v in node]
    return node


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, method in OPERATIONS:
        item = spec["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k == "parameters"})
        kept[method] = item[method]
    paths = _strip_examples(paths)
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    _refs(paths, pending)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, kind, name = ref.split("/", 3)
        assert section == "components", ref
        target = _strip_examples(_resolve(spec, ref))
        components.setdefault(kind, {})[name] = target
        _refs(target, pending)
    return {
        "openapi": spec["openapi"],
        "info": {
            **{k: spec["info"][k] for k in ("title", "version") if k in spec["info"]},
            "description": "Trimmed by tests/contracts/trim_github.py from @octokit/openapi "
            "23.0.2 generated/api.github.com.json (MIT); see NOTICE.md.",
        },
        "servers": spec.get("servers", [{"url": "https://api.github.com"}]),
        "paths": paths,
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    dest = Path(argv[2]) if len(argv) > 2 else DEFAULT_DEST
    spec = json.loads(source.read_text(encoding="utf-8"))
    trimmed = trim(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(trimmed, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    n_ops = sum(1 for p in trimmed["paths"].values() for k in p if k != "parameters")
    n_comp = sum(len(v) for v in trimmed["components"].values())
    print(f"{dest}: {n_ops} operations, {n_comp} components, {dest.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
