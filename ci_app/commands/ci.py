"""``ci-app ci plan|shard|report``: the entry point of the GitHub Action and the GitLab template.

Options come from ``CI_FANOUT_*`` environment variables (see :mod:`ci_app.ci_options`; the action
and the template pass their inputs that way and never interpolate them into scripts), the CI
context from the provider's own variables (``GITHUB_*`` / ``CI_*``). The steps call the existing
commands' functions: the planner (``ci-app plan``), the shard runner and pytest plugin
(``ci-app shard``), ingest/export and the reporting + publishing of ``ci-app report``.

* ``plan``  — inventory + duration history (+ live runner pools) → ``<output-dir>/matrix.json``;
  GitHub: the ``matrix`` output for ``strategy.matrix``; GitLab: ``child-pipeline.yml`` (one
  job per shard with ``tags:``) and ``plan.env`` (dotenv).
* ``shard`` — runs one shard's tests (static slice, or queue mode against the app), normalises
  the reports into ``<output-dir>/shard-<id>/results.json`` plus standard ``junit.xml``.
* ``report`` — collects every shard's results.json (downloaded artifacts; on GitLab through the
  API), stores them in the DuckDB history, compares with the base branch, writes the comment,
  charts, job summary, and posts the sticky comment + check run.

All CI output goes through :mod:`ci_app.ciout`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml

from ci_app.ci_options import OPTIONS as CI_OPTIONS
from ci_app.ci_options import CiValues, env_name, resolve
from ci_app.ciout import CiOutput, dotenv_line
from ci_app.errors import CiFanoutError, ConfigError, InputError, ProviderError
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.model.results import Outcome, ResultSet, RunInfo

log = logging.getLogger(__name__)

STEPS: Final = ("plan", "shard", "report")
MATRIX_FILE: Final = "matrix.json"
CHILD_PIPELINE_FILE: Final = "child-pipeline.yml"
PLAN_ENV_FILE: Final = "plan.env"
RESULTS_FILE: Final = "results.json"
DURATIONS_FILE: Final = "durations.json"
DB_FILE: Final = "ci-fanout.duckdb"
GITLAB_PLAN_JOB: Final = "ci-fanout-plan"
#: set by the plan step for the shard jobs (GitLab child pipelines have their own pipeline id)
RUN_ID_ENV: Final = "CI_FANOUT_RUN_ID"
HTTP_TIMEOUT_S: Final = 15.0
_MAX_RESULTS_MEMBER: Final = 512 * 1024 * 1024
_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A shard id usable in file and artifact names."""
    return _SAFE.sub("_", text).strip("._") or "shard"


# -- context ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class CiContext:
    """Where this step runs, from the provider's predefined variables."""

    provider: str  # github | gitlab | local
    run_id: str
    root: Path
    repo: str | None = None
    project: str | None = None
    pipeline_id: str | None = None
    commit: str | None = None
    branch: str | None = None
    base_branch: str | None = None
    base_commit: str | None = None
    default_branch: str | None = None
    pr: int | None = None
    job_url: str | None = None
    runner_name: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: Path) -> CiContext:
        if env.get("GITHUB_ACTIONS") == "true":
            return _github_context(env, cwd)
        if env.get("GITLAB_CI") == "true":
            return _gitlab_context(env, cwd)
        return cls(
            provider="local",
            run_id=env.get(RUN_ID_ENV) or time.strftime("local-%Y%m%dT%H%M%S"),
            root=cwd,
            runner_name=env.get("CI_FANOUT_RUNNER") or None,
        )


def _int(text: Any) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _github_context(env: Mapping[str, str], cwd: Path) -> CiContext:
    event: dict[str, Any] = {}
    path = env.get("GITHUB_EVENT_PATH")
    if path and Path(path).is_file():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            event = loaded if isinstance(loaded, dict) else {}
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    # app-driven dispatch (``dispatch-workflow``): workflow_dispatch inputs ``pr`` and ``sha``
    inputs: dict[str, Any] = event["inputs"] if isinstance(event.get("inputs"), dict) else {}
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    run_id = env.get(RUN_ID_ENV) or env.get("GITHUB_RUN_ID", "") or "local"
    if attempt not in ("", "1") and not env.get(RUN_ID_ENV):
        run_id = f"{run_id}-{attempt}"
    repo_info = event.get("repository") if isinstance(event.get("repository"), dict) else {}
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    return CiContext(
        provider="github",
        run_id=run_id,
        root=Path(env.get("GITHUB_WORKSPACE") or cwd),
        repo=env.get("GITHUB_REPOSITORY") or None,
        pipeline_id=env.get("GITHUB_RUN_ID") or None,
        commit=(pr or {}).get("head", {}).get("sha")
        or inputs.get("sha")
        or env.get("GITHUB_SHA")
        or None,
        branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None,
        base_branch=env.get("GITHUB_BASE_REF") or None,
        base_commit=(pr or {}).get("base", {}).get("sha") or None,
        default_branch=(repo_info or {}).get("default_branch") or None,
        pr=_int((pr or {}).get("number")) if pr else _int(inputs.get("pr")),
        job_url=(
            f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
            if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID")
            else None
        ),
        runner_name=env.get("RUNNER_NAME") or None,
    )


def _gitlab_context(env: Mapping[str, str], cwd: Path) -> CiContext:
    # app-driven dispatch (``dispatch-workflow``) creates a branch pipeline through the API with
    # the variables ``pr`` and ``sha`` (no CI_MERGE_REQUEST_* there); the plan job hands the MR
    # on to the shard child pipeline as CI_FANOUT_PR (child pipelines see no MR variables)
    return CiContext(
        provider="gitlab",
        run_id=env.get(RUN_ID_ENV) or env.get("CI_PIPELINE_ID", "") or "local",
        root=Path(env.get("CI_PROJECT_DIR") or cwd),
        repo=env.get("CI_PROJECT_PATH") or None,
        project=env.get("CI_PROJECT_ID") or None,
        pipeline_id=env.get("CI_PIPELINE_ID") or None,
        commit=env.get("CI_COMMIT_SHA") or env.get("sha") or None,
        branch=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
        base_branch=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None,
        base_commit=env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
        default_branch=env.get("CI_DEFAULT_BRANCH") or None,
        pr=_int(env.get("CI_MERGE_REQUEST_IID"))
        or _int(env.get("CI_FANOUT_PR"))
        or _int(env.get("pr")),
        job_url=env.get("CI_JOB_URL") or None,
        runner_name=env.get("CI_RUNNER_DESCRIPTION") or None,
    )


@dataclass(frozen=True, slots=True)
class Step:
    """Everything a step needs; built once by :func:`run_step`."""

    vals: CiValues
    ctx: CiContext
    io: CiOutput
    env: Mapping[str, str]

    @property
    def workdir(self) -> Path:
        return self.ctx.root / self.vals.text("working-directory")

    @property
    def output_dir(self) -> Path:
        return self.ctx.root / self.vals.text("output-dir")

    @property
    def history_dir(self) -> Path:
        if not self.vals.flag("cache"):  # the CI may still restore it; do not read it
            return self.output_dir / "history"
        return self.ctx.root / self.vals.text("history-dir")

    @property
    def server(self) -> str:
        return self.vals.text("server-url").rstrip("/")

    @property
    def server_token(self) -> str:
        return self.env.get(env_name("server-token"), "")

    def queue_url(self) -> str | None:
        """The run's queue on the app (``POST /api/v1/queue`` creates it under this URL)."""
        if self.vals.text("mode") != "queue" or not self.server:
            return None
        return f"{self.server}/api/v1/queue/{urllib.parse.quote(self.ctx.run_id, safe='-._~')}"


# -- small HTTP client for the optional app server ---------------------------------------------
def _http_json(url: str, *, token: str = "", body: Any = None, method: str | None = None) -> Any:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"server-url must be an http(s) URL, got {url!r}")
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))  # noqa: S310 - scheme checked above
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ProviderError(
            exc.reason if isinstance(exc.reason, str) else "request failed",
            provider="ci-fanout app",
            operation=f"{req.get_method()} {url}",
            status=exc.code,
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ProviderError(
            str(exc), provider="ci-fanout app", operation=f"{req.get_method()} {url}"
        ) from exc
    return json.loads(raw) if raw.strip() else {}


# -- plan --------------------------------------------------------------------------------------
def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _globs(text: str, base: Path) -> list[str]:
    out: list[str] = []
    for pattern in shlex.split(text):
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full, recursive=True))  # noqa: PTH207
        out.extend(matches or [full])
    return out


def _runners(step: Step) -> Any | None:
    """Runner pools: the app's registry, else the ``runners`` option (inline JSON or a file)."""
    from ci_app.matrix.pools import runners_from_json

    if step.server:
        try:
            doc = _http_json(f"{step.server}/api/v1/runners", token=step.server_token)
            pools = runners_from_json(doc)
            if any(r.online for r in pools):
                return pools
            step.io.info("ci-fanout: the app knows no online runner yet; using the runners input")
        except (ProviderError, InputError, ValueError) as exc:
            step.io.annotate("warning", f"runner pools from the app unavailable: {exc}")
    text = step.vals.text("runners").strip()
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


def _inventory(step: Step, config: Mapping[str, Any], duration_files: list[str]) -> Any:
    from ci_app.commands.plan import collect_inventory
    from ci_app.matrix.durations import durations_from_json
    from ci_app.matrix.inventory import apply_rules, inventory_from_ids, rules_from_config

    tests_file = step.vals.text("tests-file")
    collect = step.vals.text("collect")
    if tests_file:
        path = step.workdir / tests_file
        try:
            ids = [x.strip() for x in path.read_text(encoding="utf-8").splitlines()]
        except OSError as exc:
            raise InputError(f"tests-file {path}: {exc}") from exc
        inv = inventory_from_ids([x for x in ids if x and not x.startswith("#")])
    elif collect:
        with contextlib.chdir(step.workdir):
            inv = collect_inventory(collect)
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
    config = _read_config(step.workdir / vals.text("config"))
    durations = [p for p in _globs(vals.text("durations"), step.workdir) if Path(p).exists()]
    cached = step.history_dir / DURATIONS_FILE
    if cached.exists():
        durations.insert(0, str(cached))
    with io.group("ci-fanout: collect tests"):
        inventory = _inventory(step, config, durations)
        io.info(f"{len(inventory.tests)} test(s); history from {len(durations)} file(s)")
    history = load_history(durations)
    runners = _runners(step)
    options = PlanOptions(
        mode="queue" if vals.text("mode") == "queue" else "static",
        shards=vals.int_or_none("shards"),
        target_s=vals.number("target-minutes") * 60.0,
        setup_s=vals.number("setup-seconds"),
        gpu_for_cpu=vals.flag("gpu-for-cpu"),
        on_unsatisfied="report",
    )
    default_branch = ctx.default_branch or ""
    plan_ctx = PlanContext(
        repo=ctx.repo or "",
        ref=ctx.branch or "",
        default_branch=bool(default_branch) and ctx.branch == default_branch and ctx.pr is None,
        now=time.time(),
    )
    policies = load_policies(None, config.get("policies") or {})
    matrix = plan_matrix(inventory, history, runners, options, policies=policies, ctx=plan_ctx)
    if matrix.mode == "queue":
        matrix = _create_queue(step, matrix)
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


def _send_not_run(step: Step, matrix: Matrix) -> None:
    """Tell the app which tests no runner can take (skipped cases whose message starts with
    ``NOT_RUN_PREFIX``), so that its report lists them: no shard ever sees those tests."""
    from ci_app.model.results import TestCase
    from ci_app.reporting.compare import NOT_RUN_PREFIX, NOT_RUN_SHARD

    if not step.server or not matrix.unsatisfied:
        return
    ctx = step.ctx
    cases = tuple(
        TestCase(
            id=test,
            name=test.rsplit("::", 1)[-1],
            file=test.split("::", 1)[0],
            outcome=Outcome.SKIPPED,
            message=f"{NOT_RUN_PREFIX} [{', '.join(u.requires)}]",
            details=u.reason or "",
        )
        for u in matrix.unsatisfied
        for test in u.tests
    )
    run = RunInfo(
        run_id=ctx.run_id,
        shard_id=NOT_RUN_SHARD,
        repo=ctx.repo,
        provider=ctx.provider,
        pipeline_id=ctx.pipeline_id,
        commit=ctx.commit,
        branch=ctx.branch,
        base_commit=ctx.base_commit,
        pr=ctx.pr,
    )
    try:
        _http_json(
            f"{step.server}/api/v1/results",
            token=step.server_token,
            body=ResultSet(run=run, tests=cases).to_dict(),
        )
    except ProviderError as exc:
        step.io.annotate("warning", f"not-run tests not sent to the app: {exc}")


def _create_queue(step: Step, matrix: Matrix) -> Matrix:
    """Queue mode needs the app (the queue lives there); without it, plan static slices."""
    url = step.queue_url()
    if url is None:
        step.io.annotate(
            "warning",
            "mode queue needs server-url (the queue lives in the app); shards run their "
            "static slices",
            title="ci-fanout plan",
        )
        return replace(matrix, mode="static")
    body = {"run": step.ctx.run_id, "matrix": matrix.to_dict(), "repo": step.ctx.repo}
    try:
        # the app answers with a run token too; shards authenticate with server-token (admin),
        # since a job output cannot carry a secret to the matrix jobs
        _http_json(f"{step.server}/api/v1/queue", token=step.server_token, body=body)
    except ProviderError as exc:
        step.io.annotate(
            "warning", f"could not create the test queue ({exc}); shards run static slices"
        )
        return replace(matrix, mode="static")
    return matrix


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


def _shard_command(step: Step) -> list[str]:
    py = '"${CI_FANOUT_PYTHON:-python3}"'
    return [
        f'{py} -m pip install --quiet "${{CI_FANOUT_PACKAGE:-ci-fanout[app]}}"',
        f"{py} -m ci_app ci shard",
    ]


def render_child_pipeline(step: Step, matrix: Matrix) -> str:
    """The GitLab child pipeline: one job per shard with ``tags:``, JUnit + results.json."""
    from ci_app.matrix.render import render_gitlab

    out_rel = step.vals.text("output-dir").strip("/") or "."
    doc: dict[str, Any] = yaml.safe_load(
        render_gitlab(matrix, matrix_path=f"{out_rel}/{MATRIX_FILE}", plan_job=GITLAB_PLAN_JOB)
    )
    variables: dict[str, str] = {RUN_ID_ENV: step.ctx.run_id}
    if step.ctx.pr is not None:
        variables["CI_FANOUT_PR"] = str(step.ctx.pr)
    for o in CI_OPTIONS:
        if o.secret or o.name == "shard":
            continue
        value = step.env.get(o.env, "")
        if value != "":
            variables[o.env] = value
    child: dict[str, Any] = {"stages": doc.get("stages", ["test"]), "variables": variables}
    image = step.vals.text("image")
    if image:
        child["default"] = {"image": image}
    name = step.vals.text("artifact-name") or "ci-fanout"
    for key, job in doc.items():
        if not isinstance(job, dict) or "tags" not in job:
            continue
        shard_id = str(job.get("variables", {}).get("CI_FANOUT_SHARD", key))
        shard_dir = f"{out_rel}/shard-{safe_id(shard_id)}"
        job["script"] = _shard_command(step)
        job["interruptible"] = True
        job["artifacts"] = {
            "name": f"{name}-results-{safe_id(shard_id)}",
            "when": "always",
            "expire_in": "1 week",
            "paths": [f"{shard_dir}/"],
            "reports": {"junit": f"{shard_dir}/junit.xml"},
        }
        child[key] = job
    if len(child) == 2 + ("default" in child):
        # nothing to run: GitLab rejects an empty child pipeline, so say so in one job
        child["no tests planned"] = {
            "stage": child["stages"][0],
            "script": ["echo 'ci-fanout: no tests were planned'"],
        }
    return yaml.safe_dump(child, sort_keys=False, default_flow_style=False, width=1000)


def write_gitlab_child(step: Step, matrix: Matrix) -> None:
    out = step.output_dir
    (out / CHILD_PIPELINE_FILE).write_text(render_child_pipeline(step, matrix), encoding="utf-8")
    lines = [
        dotenv_line("CI_FANOUT_SHARD_COUNT", str(len(matrix.shards))),
        dotenv_line(RUN_ID_ENV, step.ctx.run_id),
        dotenv_line("CI_FANOUT_MODE", matrix.mode),
    ]
    (out / PLAN_ENV_FILE).write_text("".join(lines), encoding="utf-8")


# -- shard -------------------------------------------------------------------------------------
def _is_pytest(cmd: Sequence[str]) -> bool:
    names = [Path(c).name for c in cmd[:3]]
    return any(n in ("pytest", "py.test") for n in names) or (
        len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] == "pytest"
    )


def step_shard(step: Step) -> int:
    from ci_app.artifacts.export import write_junit
    from ci_app.artifacts.ingest import ingest_paths

    vals, ctx, io = step.vals, step.ctx, step.io
    shard_id = vals.text("shard") or step.env.get("CI_FANOUT_SHARD", "")
    if not shard_id:
        raise ConfigError("ci-app ci shard needs the shard id: shard: ${{ matrix.shard }}")
    matrix_path = step.output_dir / MATRIX_FILE
    try:
        matrix = Matrix.from_dict(json.loads(matrix_path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise InputError(
            f"{matrix_path}: {exc}; download the plan step's matrix artifact first"
        ) from exc
    shard = matrix.shard(shard_id)
    shard_dir = step.output_dir / f"shard-{safe_id(shard_id)}"
    shard_dir.mkdir(parents=True, exist_ok=True)
    queue = step.queue_url() if matrix.mode == "queue" else None
    cmd = shlex.split(vals.text("test-command"))
    if not cmd:
        raise ConfigError("test-command is empty")
    child_env = dict(os.environ)
    child_env.update(step.env)
    if step.server_token:
        child_env.setdefault("CI_FANOUT_QUEUE_TOKEN", step.server_token)
    child_env.setdefault("CI_FANOUT_LABELS", ",".join(shard.runs_on))
    native = shard_dir / "native-junit.xml"
    generic = any("{tests}" in c for c in cmd)
    if generic:
        if not vals.text("reports"):
            raise ConfigError(
                "a test-command with {tests} must say where it writes its reports: set reports"
            )
        argv = [
            sys.executable,
            "-m",
            "ci_app",
            "shard",
            "run",
            "--matrix",
            str(matrix_path),
            "--shard",
            shard_id,
            "--labels",
            ",".join(shard.runs_on),
            *(["--queue", queue] if queue else []),
            "--",
            *cmd,
        ]
    elif _is_pytest(cmd):
        argv = [
            *cmd,
            "--fanout-matrix",
            str(matrix_path),
            "--fanout-shard",
            shard_id,
            f"--junitxml={native}",
            "-o",
            "junit_family=xunit1",  # file= and line= attributes, for annotations
            *(["--fanout-queue", queue] if queue else []),
        ]
    else:
        raise ConfigError(
            f"test-command {cmd[0]!r} is not pytest: put {{tests}} where the test ids go "
            "and set reports"
        )
    with io.group(f"ci-fanout: shard {shard_id} ({len(shard.tests)} test(s))"):
        io.info("$ " + shlex.join(argv))
        t0 = time.monotonic()
        rc = subprocess.run(argv, cwd=step.workdir, env=child_env, check=False).returncode
        wall = time.monotonic() - t0
    patterns = _globs(vals.text("reports"), step.workdir) if vals.text("reports") else [str(native)]
    run = RunInfo(
        run_id=ctx.run_id,
        shard_id=shard_id,
        repo=ctx.repo,
        provider=ctx.provider,
        pipeline_id=ctx.pipeline_id,
        job_url=ctx.job_url,
        commit=ctx.commit,
        branch=ctx.branch,
        base_commit=ctx.base_commit,
        pr=ctx.pr,
        runner_name=ctx.runner_name,
        runner_labels=tuple(shard.runs_on),
    )
    results = ingest_paths(patterns, run=run)
    results = replace(results, duration_s=round(wall, 3))
    results_path = shard_dir / RESULTS_FILE
    results_path.write_text(json.dumps(results.to_dict(), ensure_ascii=False) + "\n", "utf-8")
    with (shard_dir / "junit.xml").open("wb") as fh:
        write_junit(results, fh)
    s = results.summary
    for f in results.files:
        if f.error:
            io.annotate("warning", f"{f.path}: {f.error}", title="ci-fanout: unreadable report")
    failed = [t for t in results.tests if t.outcome in (Outcome.FAILED, Outcome.ERROR)]
    for t in failed:
        io.annotate(
            "error",
            (t.message or "failed").strip()[:2000],
            file=_rel(t.file or _file_of(t.id), step),
            line=t.line,
            title=f"{t.id} ({shard_id})",
        )
    if step.server:
        try:
            _http_json(
                f"{step.server}/api/v1/results", token=step.server_token, body=results.to_dict()
            )
        except ProviderError as exc:
            io.annotate("warning", f"results not sent to the app: {exc}")
    line = (
        f"shard `{shard_id}` on `{', '.join(shard.runs_on)}`: {s.tests} tests, {s.passed} passed, "
        f"{s.failed} failed, {s.errors} errors, {s.skipped} skipped in {wall:.0f}s"
    )
    io.append_summary(line)
    io.info("ci-fanout: " + line.replace("`", ""))
    conclusion = "failure" if failed or (rc not in (0, 1, 5) and not results.tests) else "success"
    io.set_output("conclusion", conclusion)
    io.set_output("report-json", str(results_path))
    if rc not in (0, 1, 5) and not results.tests:
        io.annotate("error", f"test command exited {rc} and reported no tests")
        return rc if rc > 0 else 1
    if failed and vals.text("fail-on") == "failures":
        return 1
    return 0


def _file_of(test_id: str) -> str | None:
    """``tests/test_a.py::test_x`` → ``tests/test_a.py`` (pytest node ids)."""
    head = test_id.split("::", 1)[0]
    return head if "::" in test_id and "." in Path(head).name else None


def _rel(path: str | None, step: Step) -> str | None:
    """Annotation paths are relative to the repository root."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            return str(p.relative_to(step.ctx.root))
        return path
    wd = step.vals.text("working-directory").strip("/")
    return str(Path(wd) / p) if wd not in ("", ".") else path


# -- report ------------------------------------------------------------------------------------
def _fetch_gitlab_results(step: Step, dest: Path) -> None:
    """GitLab: the shard jobs ran in a child pipeline; download their artifacts through the API
    (``needs:`` cannot reach into a child pipeline) and keep their results.json members."""
    from ci_app.providers.base import get_provider

    token = step.env.get("GITLAB_TOKEN", "")
    if not (token and step.ctx.project and step.ctx.pipeline_id):
        raise ConfigError(
            "the GitLab report job downloads the shard artifacts through the API: set the "
            "masked CI/CD variable GITLAB_TOKEN (a project access token with api scope)"
        )
    settings = {"project": step.ctx.project, "token": token}
    url = step.env.get("CI_FANOUT_GITLAB_URL") or step.env.get("CI_SERVER_URL")
    if url:
        settings["url"] = url
    ci = get_provider("gitlab", settings).ci
    if ci is None:  # pragma: no cover - the GitLab adapter has the role
        raise ConfigError("gitlab offers no CI role")
    zips = ci.fetch_artifacts(step.ctx.pipeline_id, dest / "zips")
    extract_results(zips, dest)


def extract_results(zips: Sequence[Path], dest: Path) -> list[Path]:
    """Copy the ``results.json`` members of artifact zips to ``dest/<zip stem>/N/results.json``."""
    out: list[Path] = []
    for z in zips:
        try:
            with zipfile.ZipFile(z) as archive:
                members = [
                    m
                    for m in archive.infolist()
                    if Path(m.filename).name == RESULTS_FILE
                    and not m.is_dir()
                    and m.file_size <= _MAX_RESULTS_MEMBER
                ]
                for i, m in enumerate(members):
                    target = dest / safe_id(z.stem) / str(i) / RESULTS_FILE
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(m))
                    out.append(target)
        except (zipfile.BadZipFile, OSError) as exc:
            log.warning("artifact %s skipped: %s", z, exc)
    return out


def load_shard_results(paths: Sequence[Path], ctx: CiContext) -> list[ResultSet]:
    """Read each shard's results.json and stamp this run's identity on it (one run id for all
    shards, the PR head commit, branch, base) while keeping its shard id and runner."""
    sets: list[ResultSet] = []
    seen: set[str] = set()
    for p in paths:
        try:
            rs = ResultSet.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, CiFanoutError) as exc:
            log.warning("%s skipped: not a ci-fanout results.json (%s)", p, exc)
            continue
        shard = rs.run.shard_id or safe_id(p.parent.name)
        if shard in seen:  # the same shard's artifact twice (re-run jobs): keep the first
            continue
        seen.add(shard)
        run = replace(
            rs.run,
            run_id=ctx.run_id,
            shard_id=shard,
            repo=ctx.repo or rs.run.repo,
            provider=ctx.provider if ctx.provider != "local" else rs.run.provider,
            commit=ctx.commit or rs.run.commit,
            branch=ctx.branch or rs.run.branch,
            base_commit=ctx.base_commit or rs.run.base_commit,
            pr=ctx.pr if ctx.pr is not None else rs.run.pr,
        )
        sets.append(rs.with_run(run))
    return sets


def update_durations(path: Path, sets: Sequence[ResultSet], *, limit: int = 200_000) -> int:
    """Merge this run's per-test durations into the history's pytest-split style file."""
    data: dict[str, float] = {}
    if path.exists():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                data = {str(k): float(v) for k, v in loaded.items() if isinstance(v, int | float)}
    for rs in sets:
        for t in rs.tests:
            if t.outcome in (Outcome.PASSED, Outcome.FAILED):  # skipped: no real duration
                data.pop(t.id, None)
                data[t.id] = round(t.duration_s, 4)
    if len(data) > limit:  # keep the most recently seen
        data = dict(list(data.items())[-limit:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    return len(data)


def _publish_target(step: Step) -> str | None:
    choice = step.vals.text("publish")
    if choice == "none":
        return None
    if choice == "auto":
        if step.ctx.provider == "github" and step.env.get("GITHUB_TOKEN"):
            return "github"
        if step.ctx.provider == "gitlab" and step.env.get("GITLAB_TOKEN"):
            return "gitlab"
        return None
    return choice


def step_report(step: Step) -> int:
    from ci_app.reporting.render import render_check_run, render_comment, render_job_summary
    from ci_app.reporting.report import build_report
    from ci_app.store import open_store

    vals, ctx, io = step.vals, step.ctx, step.io
    out = step.output_dir
    results_dir = out / "results"
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted(results_dir.rglob(RESULTS_FILE)) if results_dir.exists() else []
    if not paths and ctx.provider == "gitlab":
        with io.group("ci-fanout: download shard artifacts"):
            _fetch_gitlab_results(step, results_dir)
        paths = sorted(results_dir.rglob(RESULTS_FILE))
    if not paths:
        paths = sorted(out.glob(f"shard-*/{RESULTS_FILE}"))
    sets = load_shard_results(paths, ctx)
    if not sets:
        raise InputError(
            f"no shard results found under {results_dir} (download the "
            f"{vals.text('artifact-name')}-results-* artifacts there first)"
        )
    step.history_dir.mkdir(parents=True, exist_ok=True)
    db = step.history_dir / DB_FILE
    with io.group(f"ci-fanout: store {len(sets)} shard(s) of run {ctx.run_id}"):
        with open_store(db) as store:
            rows = store.ingest_many(sets)
        n = update_durations(step.history_dir / DURATIONS_FILE, sets)
        io.info(f"{rows} test rows stored in {db}; {n} test durations kept for planning")
    with open_store(db, read_only=True) as store:
        report = build_report(
            store,
            ctx.run_id,
            base_branch=vals.text("base-branch") or ctx.base_branch or ctx.default_branch,
            dashboard_url=vals.text("dashboard-url") or None,
        )
    comment = render_comment(report)
    (report_dir / "comment.md").write_text(comment, encoding="utf-8")
    report_json = report_dir / "report.json"
    report_json.write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    charts: dict[str, bytes] = {}
    try:
        from ci_app.reporting.charts import render_charts

        charts = render_charts(report)
    except Exception as exc:  # charts are optional; the comment has Mermaid charts
        io.annotate("warning", f"charts not rendered: {exc}")
    for name, png in charts.items():
        (report_dir / name).write_bytes(png)
    check = render_check_run(report)
    conclusion = str(check.get("conclusion") or "neutral")
    io.append_summary(render_job_summary(report))
    comment_id = _publish(step, comment, check, charts)
    io.set_output("conclusion", conclusion)
    io.set_output("comment-id", comment_id)
    io.set_output("report-json", str(report_json))
    io.info(f"ci-fanout: report {conclusion}; comment, charts and report.json in {report_dir}")
    if conclusion == "failure" and vals.text("fail-on") == "failures":
        io.annotate("error", str(check.get("title") or "tests failed"), title="ci-fanout")
        return 1
    return 0


def _publish(
    step: Step, comment: str, check: Mapping[str, Any], charts: Mapping[str, bytes]
) -> str:
    """Post the sticky comment (+ check run); a forge error is a warning, never a lost report."""
    from ci_app.providers.base import get_provider
    from ci_app.providers.publish import check_run_payload, forge_settings, publish_report

    target = _publish_target(step)
    if target is None:
        step.io.info("ci-fanout: publish skipped (no forge or token for this run)")
        return ""
    ctx = step.ctx
    payload = (
        check_run_payload(check, head_sha=ctx.commit)
        if step.vals.flag("check-run") and ctx.commit
        else None
    )
    try:
        if ctx.pr is None:
            if payload is not None:
                settings = forge_settings(target, env=step.env, repo=ctx.repo, project=ctx.project)
                forge = get_provider(target, settings).forge
                if forge is not None:
                    forge.publish_check_run(payload)
            return ""
        result = publish_report(
            target,
            number=ctx.pr,
            comment=comment,
            repo=ctx.repo,
            project=ctx.project,
            check_run=payload,
            images=charts if target == "gitlab" else None,
            env=step.env,
            dashboard_url=step.vals.text("dashboard-url") or None,
        )
    except (ProviderError, ConfigError) as exc:
        step.io.annotate("warning", f"could not publish to {target}: {exc}", title="ci-fanout")
        return ""
    step.io.info(f"ci-fanout: comment {result.comment.id} on {target} #{ctx.pr}")
    return str(result.comment.id)


# -- entry point -------------------------------------------------------------------------------
def run_step(
    name: str,
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    io: CiOutput | None = None,
) -> int:
    """Run one step with options and context from ``env``; returns the exit code."""
    if name not in STEPS:
        raise ConfigError(f"unknown step {name!r}; choose one of {', '.join(STEPS)}")
    ctx = CiContext.from_env(env, cwd or Path.cwd())
    vals = resolve(env, base_dir=ctx.root)
    step = Step(vals=vals, ctx=ctx, io=io or CiOutput(env), env=env)
    if step.server_token:
        step.io.mask(step.server_token)
    handler = {"plan": step_plan, "shard": step_shard, "report": step_report}[name]
    return handler(step)


def cmd_ci(args: argparse.Namespace) -> int:
    return run_step(args.step, os.environ)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ci",
        help="the GitHub Action / GitLab template steps: plan, shard, report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("step", choices=STEPS, help="plan | shard | report")
    p.set_defaults(func=cmd_ci)


__all__ = [
    "CiContext",
    "extract_results",
    "load_shard_results",
    "plan_summary",
    "render_child_pipeline",
    "run_step",
    "update_durations",
]
