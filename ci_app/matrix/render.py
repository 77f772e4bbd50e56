"""Render a Matrix for CI providers: JSON, GitHub ``strategy.matrix``, GitLab child pipeline.

GitHub: ``{"include": [{"shard", "pool", "runs-on", "runs_on", "expected_seconds", "tests"}]}``
for ``strategy: matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`` and
``runs-on: ${{ matrix.runs_on }}``. Test lists stay out of the matrix (job outputs are capped
at 1 MB); each shard job selects its tests from the matrix JSON artifact with
``pytest --fanout-matrix matrix.json --fanout-shard ${{ matrix.shard }}``.

GitLab: a child-pipeline YAML with one job per shard, ``tags:`` = the shard's labels, fetching the
matrix artifact from the parent's plan job.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ci_app.matrix.planner import Matrix

__all__ = [
    "dump_yaml",
    "gitlab_child_pipeline",
    "gitlab_job_name",
    "render",
    "render_github",
    "render_gitlab",
    "render_json",
]


def render_json(matrix: Matrix) -> str:
    return json.dumps(matrix.to_dict(), indent=2, sort_keys=False) + "\n"


def render_github(matrix: Matrix) -> dict[str, Any]:
    include = []
    for s in matrix.shards:
        labels = list(s.runs_on)
        include.append(
            {
                "shard": s.id,
                "pool": s.pool,
                "runs-on": labels,
                "runs_on": labels,  # alias: `${{ matrix.runs_on }}` reads better in expressions
                "expected_seconds": round(s.expected_seconds, 1),
                "tests": len(s.tests),
                "mode": matrix.mode,
            }
        )
    return {"include": include}


def gitlab_child_pipeline(
    matrix: Matrix,
    *,
    matrix_path: str = "matrix.json",
    plan_job: str = "plan",
    stage: str = "test",
    command: str | None = None,
) -> dict[str, Any]:
    """The child pipeline as data: ``{"stages": [...], "<shard job>": {...}, ...}``.

    Each shard job has ``tags:`` = its labels, the matrix artifact from the parent's plan job
    and ``CI_FANOUT_SHARD``. ``command`` may use ``{shard}`` and ``{matrix}``.
    """
    if command is None:
        command = "python -m pytest --fanout-matrix={matrix} --fanout-shard={shard}"
        if matrix.mode == "queue":
            command += ' --fanout-queue="$CI_FANOUT_QUEUE_URL"'
    doc: dict[str, Any] = {"stages": [stage]}
    for s in matrix.shards:
        doc[gitlab_job_name(s.id)] = {
            "stage": stage,
            "tags": list(s.runs_on),
            "needs": [{"pipeline": "$PARENT_PIPELINE_ID", "job": plan_job}],
            "variables": {
                "CI_FANOUT_SHARD": s.id,
                "CI_FANOUT_EXPECTED_SECONDS": str(round(s.expected_seconds)),
            },
            "script": [command.format(shard=shlex.quote(s.id), matrix=shlex.quote(matrix_path))],
        }
    return doc


def gitlab_job_name(shard_id: str) -> str:
    return f"shard {shard_id}"


def render_gitlab(
    matrix: Matrix,
    *,
    matrix_path: str = "matrix.json",
    plan_job: str = "plan",
    stage: str = "test",
    command: str | None = None,
) -> str:
    """Child pipeline YAML (:func:`gitlab_child_pipeline` dumped)."""
    doc = gitlab_child_pipeline(
        matrix, matrix_path=matrix_path, plan_job=plan_job, stage=stage, command=command
    )
    return dump_yaml(doc)


def dump_yaml(doc: Any) -> str:
    import yaml  # here: only the GitLab format needs it

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def render(matrix: Matrix, fmt: str) -> str:
    if fmt == "json":
        return render_json(matrix)
    if fmt == "github":
        return json.dumps(render_github(matrix), separators=(",", ":")) + "\n"
    if fmt == "gitlab":
        return render_gitlab(matrix)
    raise ValueError(f"unknown format {fmt!r} (json, github, gitlab)")
