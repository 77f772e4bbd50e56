"""The CI steps behind the GitHub Action and the GitLab template: ``plan``, ``shard``, ``report``.

Options come from ``CI_FANOUT_*`` environment variables (:mod:`ci_app.options.ci`; the action and
the template pass their inputs that way and never interpolate them into scripts), the CI context
from the provider's own variables (:mod:`ci_app.ci.context`). One module per step:

* :mod:`~ci_app.ci.plan` — inventory + duration history (+ live runner pools) → ``matrix.json``
  (the plan's record), the GitHub ``matrix`` output, the GitLab child pipeline
  (:mod:`~ci_app.ci.gitlab`, built as data);
* :mod:`~ci_app.ci.shard` — one shard's tests in the project's interpreter
  (:mod:`~ci_app.ci.testenv`: plugin on ``PYTHONPATH``, no credentials) → ``results.json``;
* :mod:`~ci_app.ci.report` — every shard's results against the plan → history, comment, check run.

ci-fanout installs itself in its own virtual environment (:mod:`~ci_app.ci.install`). All CI
output goes through :mod:`ci_app.ciout`. This package imports its steps lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ci_app.ciout import CiOutput

__all__ = ["run_step"]


def run_step(
    name: str,
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    io: CiOutput | None = None,
) -> int:
    """Run one step with options and context from ``env``; returns the exit code."""
    from ci_app.ci.context import CiContext
    from ci_app.ci.step import STEPS, Step
    from ci_app.errors import ConfigError
    from ci_app.options.ci import resolve

    if name not in STEPS:
        raise ConfigError(f"unknown step {name!r}; choose one of {', '.join(STEPS)}")
    ctx = CiContext.from_env(env, cwd or Path.cwd())
    config = resolve(env, base_dir=ctx.root)
    step = Step(
        vals=config.options, ctx=ctx, io=io or CiOutput(env), env=env, project=config.project
    )
    if step.server_token:
        step.io.mask(step.server_token)
    if step.run_token:
        step.io.mask(step.run_token)
    if name == "plan":
        from ci_app.ci.plan import step_plan

        return step_plan(step)
    if name == "shard":
        from ci_app.ci.shard import step_shard

        return step_shard(step)
    from ci_app.ci.report import step_report

    return step_report(step)
