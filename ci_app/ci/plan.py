"""``ci-app ci plan``: inventory + duration history (+ live runner pools) → the matrix.

Writes ``<output-dir>/matrix.json`` (the plan's record: shards, their tests, the tests no runner
can take; the report step accounts for every one of them), the GitHub ``matrix`` output, and for
GitLab the child pipeline and ``plan.env``. With an app server it obtains a token bound to this
run (``run-token`` beside the matrix): shards use only that, never the server token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_app.ci.gitlab import write_gitlab_child
from ci_app.ci.step import DURATIONS_FILE, MATRIX_FILE, RUN_TOKEN_FILE, Step, globs
from ci_app.ci.testenv import (
    PLUGINS,
    is_pytest,
    plugin_dir,
    pytest_args,
    resolve_command,
    sandbox_env,
)
from ci_app.errors import ConfigError, InputError, ProviderError
from ci_app.matrix.accounting import not_run_results
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix


def _runners(step: Step) -> Any | None:
    """Runner pools: the app's registry, else the ``runners`` option (inline JSON or a file)."""
    from ci_app.matrix.pools import runners_from_json

    if step.server and step.server_token:
        try:
            doc = step.app(step.server_token).runners()
            pools = runners_from_json(doc)
            if any(r.online for r in pools):
                return pools
            step.io.info("ci-fanout: the app knows no online runner yet; using the runners input")
        except (ProviderError, InputError, ValueError) as exc:
            step.io.annotate("warning", f"runner pools from the app unavailable: {exc}")
    text = step.vals.runners.strip()
    if not text:
        return None
    if text.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"runners: not valid JSON: {exc}") from exc
    else:
        path = step.workdir / text
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"runners file {path}: {exc}") from exc
    return runners_from_json(doc)


def _collect(step: Step, paths: str) -> Any:
    """``pytest --collect-only`` in the test interpreter, with the test command's arguments."""
    from ci_app.commands.plan import collect_inventory

    python = step.test_python()
    cmd = resolve_command(shlex.split(step.vals.test_command), python, step.vals.python)
    args: list[str] = []
    if is_pytest(cmd):  # collect with what the shards run: their interpreter and arguments
        args = pytest_args(cmd)
        if len(cmd) >= 3 and cmd[1:3] == ["-m", "pytest"]:
            python = cmd[0]
    with tempfile.TemporaryDirectory(prefix="ci-fanout-plugin-") as tmp:
        plugin = plugin_dir(Path(tmp))
        with contextlib.chdir(step.workdir):
            return collect_inventory(
                paths,
                python=python,
                args=args,
                env=sandbox_env({**os.environ, **step.env}, plugin),
                plugins=list(PLUGINS),
            )


def _inventory(step: Step, config: Mapping[str, Any], duration_files: list[str]) -> Any:
    from ci_app.matrix.durations import durations_from_json
    from ci_app.matrix.inventory import apply_rules, inventory_from_ids, rules_from_config

    tests_file = step.vals.tests_file
    collect = step.vals.collect
    if tests_file:
        path = step.workdir / tests_file
        try:
            ids = [x.strip() for x in path.read_text(encoding="utf-8").splitlines()]
        except OSError as exc:
            raise InputError(f"tests-file {path}: {exc}") from exc
        inv = inventory_from_ids([x for x in ids if x and not x.startswith("#")])
    elif collect:
        inv = _collect(step, collect)
    else:
        ids_set: set[str] = set()
        for p in duration_files:
            with contextlib.suppress(OSError, ValueError):
                ids_set.update(durations_from_json(json.loads(Path(p).read_text("utf-8"))))
        inv = inventory_from_ids(sorted(ids_set))
    return apply_rules(inv, rules_from_config(config))


def step_plan(step: Step) -> int:
    from ci_app.commands.plan import load_history
    from ci_app.matrix.policies import PlanContext, load_policies
    from ci_app.matrix.render import render_github, render_json

    vals, ctx, io = step.vals, step.ctx, step.io
    out = step.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_TOKEN_FILE).unlink(missing_ok=True)
    config = step.project
    durations = [p for p in globs(vals.durations, step.workdir) if Path(p).exists()]
    cached = step.history_dir / DURATIONS_FILE
    if cached.exists():
        durations.insert(0, str(cached))
    with io.group("ci-fanout: collect tests"):
        inventory = _inventory(step, config, durations)
        io.info(f"{len(inventory.tests)} test(s); history from {len(durations)} file(s)")
    history = load_history(durations)
    runners = _runners(step)
    options = PlanOptions(
        mode="queue" if vals.mode == "queue" else "static",
        shards=vals.shards,
        target_s=vals.target_minutes * 60.0,
        setup_s=vals.setup_seconds,
        gpu_for_cpu=vals.gpu_for_cpu,
        on_unsatisfied="report",
    )
    plan_ctx = PlanContext(
        repo=ctx.repo or "",
        ref=ctx.branch or "",
        default_branch=ctx.on_default_branch,
        now=time.time(),
    )
    policies = load_policies(None, config.get("policies") or {})
    matrix = plan_matrix(inventory, history, runners, options, policies=policies, ctx=plan_ctx)
    matrix = _register_run(step, matrix)
    (out / MATRIX_FILE).write_text(render_json(matrix), encoding="utf-8")
    _send_not_run(step, matrix)

    github = render_github(matrix)
    io.set_output("matrix", json.dumps(github, separators=(",", ":")))
    io.set_output("report-json", str(out / MATRIX_FILE))
    write_gitlab_child(step, matrix)  # cheap; GitLab's trigger job includes it
    for w in matrix.warnings:
        io.annotate("warning", w, title="ci-fanout plan")
    for u in matrix.unsatisfied:
        io.annotate(
            "warning",
            f"{len(u.tests)} test(s) need {', '.join(u.requires)}: {u.reason}",
            title="ci-fanout: no runner satisfies",
        )
    io.append_summary(plan_summary(matrix))
    with io.group("ci-fanout: plan"):
        for p in matrix.pools:
            io.info(
                f"pool {p.key} [{', '.join(p.runs_on)}]: {p.shards} shard(s), "
                f"{p.total_s:.0f}s of tests, expected wall {p.expected_wall_s:.0f}s"
            )
    io.info(f"ci-fanout: {len(matrix.shards)} shard(s) planned -> {out / MATRIX_FILE}")
    return 0


def _identity(step: Step) -> dict[str, Any]:
    ctx = step.ctx
    return {
        "run": ctx.run_id,
        "repo": ctx.repo,
        "provider": ctx.provider,
        "pr": ctx.pr,
        "commit": ctx.commit,
    }


def _register_run(step: Step, matrix: Matrix) -> Matrix:
    """With an app server: obtain the run-scoped token (and, in queue mode, create the queue).

    The token is written to ``<output-dir>/run-token`` (it travels with the matrix artifact to
    the shard and report jobs) and masked in the log; the server token stays in this step.
    Queue mode without an app falls back to static slices.
    """
    io = step.io
    if matrix.mode == "queue" and not step.server:
        io.annotate(
            "warning",
            "mode queue needs server-url (the queue lives in the app); shards run their "
            "static slices",
            title="ci-fanout plan",
        )
        return replace(matrix, mode="static")
    if not step.server:
        return matrix
    if not step.server_token:
        io.annotate(
            "warning",
            "server-url is set but server-token is empty: the app cannot issue a run token; "
            "results are not sent to it" + ("; shards run static slices" if matrix.mode else ""),
            title="ci-fanout plan",
        )
        return replace(matrix, mode="static")
    admin = step.app(step.server_token)
    token = ""
    try:
        if matrix.mode == "queue":
            token = admin.create_queue(_identity(step), matrix.to_dict())
        else:
            token = admin.create_run(_identity(step))
    except ProviderError as exc:
        if matrix.mode == "queue":
            io.annotate(
                "warning", f"could not create the test queue ({exc}); shards run static slices"
            )
            matrix = replace(matrix, mode="static")
        else:
            io.annotate("warning", f"the app issued no run token ({exc}); results stay in CI")
        return matrix
    if token:
        io.mask(token)
        path = step.output_dir / RUN_TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
    return matrix


def _send_not_run(step: Step, matrix: Matrix) -> None:
    """Tell the app which tests no runner can take, so that its report lists them."""
    token = step.run_token
    if not step.server or not matrix.unsatisfied or not token:
        return
    rs = not_run_results(matrix, step.ctx.run_info())
    try:
        step.app(token).send_results(rs.to_dict())
    except ProviderError as exc:
        step.io.annotate("warning", f"not-run tests not sent to the app: {exc}")


def plan_summary(matrix: Matrix) -> str:
    lines = [
        "### ci-fanout plan",
        "",
        f"{sum(len(s.tests) for s in matrix.shards):,} test(s) in {len(matrix.shards)} "
        f"shard(s), mode `{matrix.mode}`",
        "",
        "| shard | runs on | tests | expected |",
        "|---|---|--:|--:|",
    ]
    for s in matrix.shards[:200]:
        labels = ", ".join(f"`{x}`" for x in s.runs_on)
        lines.append(f"| {s.id} | {labels} | {len(s.tests)} | {s.expected_seconds:.0f}s |")
    if len(matrix.shards) > 200:
        lines.append(f"| … {len(matrix.shards) - 200} more | | | |")
    for u in matrix.unsatisfied:
        lines.append("")
        lines.append(
            f"> **Not run:** {len(u.tests)} test(s) need `{', '.join(u.requires)}` — {u.reason}"
        )
    return "\n".join(lines) + "\n"
