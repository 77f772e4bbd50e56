"""The GitLab child pipeline, built as data: one job per shard with ``tags:`` = its labels.

Each shard job installs ci-fanout the one way (:data:`~ci_app.ci.install.INSTALL_SH`) and runs
``ci-app ci shard``; it keeps its results (``results.json`` + standard JUnit for the MR widget)
as artifacts. The options the plan job was given travel as pipeline variables (child pipelines
see neither the parent's variables nor the MR), secrets excepted; ``image`` becomes every job's
image.
"""

from __future__ import annotations

from typing import Any, Final

from ci_app.ci.context import PR_ENV, RUN_ID_ENV
from ci_app.ci.install import INSTALL_SH
from ci_app.ci.step import (
    CHILD_PIPELINE_FILE,
    GITLAB_PLAN_JOB,
    MATRIX_FILE,
    PLAN_ENV_FILE,
    Step,
    safe_id,
)
from ci_app.ciout import dotenv_line
from ci_app.matrix.planner import Matrix
from ci_app.matrix.render import dump_yaml, gitlab_child_pipeline
from ci_app.options.ci import OPTIONS

SHARD_COMMAND: Final = '"$CI_FANOUT_TOOL_PYTHON" -m ci_app ci shard'
#: variables of the plan job that the shard jobs need, besides the options
_FORWARD: Final = ("CI_FANOUT_GITLAB_URL", "CI_FANOUT_TOOL_CACHE")


def child_pipeline(step: Step, matrix: Matrix) -> dict[str, Any]:
    """The child pipeline document."""
    out_rel = step.vals.output_dir.strip("/") or "."
    doc = gitlab_child_pipeline(
        matrix, matrix_path=f"{out_rel}/{MATRIX_FILE}", plan_job=GITLAB_PLAN_JOB
    )
    variables: dict[str, str] = {RUN_ID_ENV: step.ctx.run_id}
    if step.ctx.pr is not None:
        variables[PR_ENV] = str(step.ctx.pr)
    for o in OPTIONS:
        if o.secret or o.name in ("shard", "command"):
            continue
        value = step.env.get(o.env, "")
        if value != "":
            variables[o.env] = value
    for name in _FORWARD:
        if step.env.get(name):
            variables[name] = step.env[name]
    child: dict[str, Any] = {"stages": doc.pop("stages"), "variables": variables}
    image = step.vals.image
    if image:
        child["default"] = {"image": image}
    name = step.vals.artifact_name or "ci-fanout"
    for key, job in doc.items():
        shard_id = str(job["variables"]["CI_FANOUT_SHARD"])
        shard_dir = f"{out_rel}/shard-{safe_id(shard_id)}"
        job["script"] = [INSTALL_SH, SHARD_COMMAND]
        job["interruptible"] = True
        job["artifacts"] = {
            "name": f"{name}-results-{safe_id(shard_id)}",
            "when": "always",
            "expire_in": "1 week",
            "paths": [f"{shard_dir}/"],
            "reports": {"junit": f"{shard_dir}/junit.xml"},
        }
        child[key] = job
    if not doc:
        # nothing to run: GitLab rejects an empty child pipeline, so say so in one job
        child["no tests planned"] = {
            "stage": child["stages"][0],
            "script": ["echo 'ci-fanout: no tests were planned'"],
        }
    return child


def write_gitlab_child(step: Step, matrix: Matrix) -> None:
    out = step.output_dir
    (out / CHILD_PIPELINE_FILE).write_text(dump_yaml(child_pipeline(step, matrix)), "utf-8")
    lines = [dotenv_line(RUN_ID_ENV, step.ctx.run_id), dotenv_line("CI_FANOUT_MODE", matrix.mode)]
    (out / PLAN_ENV_FILE).write_text("".join(lines), encoding="utf-8")
