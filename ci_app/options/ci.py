"""The CI-facing options: ONE table shared by the GitHub Action, the GitLab template/component,
``ci-fanout.toml`` and the environment.

Each option has one external name, kebab-case (``target-minutes``). It is

* an input of ``action.yml`` (GitHub) and of the GitLab template's ``spec: inputs``;
* a key of the ``[ci]`` table in ``ci-fanout.toml``;
* the environment variable ``CI_FANOUT_<NAME>`` (``CI_FANOUT_TARGET_MINUTES``): the action and
  the template hand every input to ``ci-app ci`` this way and never interpolate it into a script;
* the attribute of :class:`CiOptions` the steps read (``opts.target_minutes``).

Cascade, later wins: the defaults below → ``[ci]`` in ``ci-fanout.toml`` → ``CI_FANOUT_*`` →
the flags of ``ci-app plan`` that name the same settings.
An empty environment value means "not set", so the action's and the template's inputs default to
``''`` and ``ci-fanout.toml`` can still decide; the real default is declared once, here, and
shown in each input's description. Options that the CI files themselves need literally (paths of
artifacts and caches, the interpreter) are not read from ``ci-fanout.toml`` and their inputs carry
the real default. Options that live on one surface only (``command``, ``shard`` and the tokens on
GitHub, ``image``/``stage`` on GitLab) say so in their ``surfaces``.

``ci-fanout.toml`` is read here only (:func:`read_project_config`): the CI steps get the whole
document with their options (:class:`CiConfig`), ``ci-app plan`` resolves the same way with its
flags as the last layer, the browser pool reads its ``[browser]`` table
(:mod:`ci_app.options.browser`).
``docs/ci.md`` is generated from this table (:func:`render_docs`); a test keeps it current and
checks that ``action.yml``, ``.gitlab-ci-template.yml`` and ``templates/ci-fanout.yml`` declare
exactly these inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ci_app.errors import ConfigError
from ci_app.options.engine import (
    OptionSpec,
    build,
    env_layer,
    flag_layer,
    opt,
    read_toml,
    specs,
    table_layer,
)

__all__ = [
    "ACTION",
    "GITLAB",
    "OPTIONS",
    "TOML",
    "CiConfig",
    "CiOptions",
    "action_inputs_yaml",
    "github_inputs",
    "gitlab_inputs",
    "gitlab_spec_inputs",
    "input_default",
    "input_description",
    "read_project_config",
    "render_docs",
    "render_readme",
    "resolve",
]

ACTION: Final = "action"
GITLAB: Final = "gitlab"
TOML: Final = "toml"
EVERYWHERE: Final = frozenset({ACTION, GITLAB, TOML})
ALL_STEPS: Final = ("plan", "shard", "report")
_ACTION_ONLY: Final = frozenset({ACTION})
_GITLAB_ONLY: Final = frozenset({GITLAB})
_NOT_TOML: Final = frozenset({ACTION, GITLAB})
DEFAULT_CONFIG: Final = "ci-fanout.toml"


@dataclass(frozen=True, kw_only=True, slots=True)
class CiOptions:
    """The options of the CI steps. ``commands``: the steps that read it; ``surfaces``: where
    it is declared (``action`` inputs, GitLab ``spec: inputs``, ``toml`` = ``[ci]`` table)."""

    command: Literal["plan", "shard", "report"] = opt(
        "plan",
        "What this step does: `plan` emits the shard matrix, `shard` runs one shard "
        "and uploads its results.json, `report` collects all shards and posts the comment",
        surfaces=_ACTION_ONLY,
        commands=ALL_STEPS,
    )
    working_directory: str = opt(
        ".",
        "Directory the tests run in and ci-fanout.toml is read from, relative to "
        "the repository root",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    config: str = opt(
        "ci-fanout.toml",
        "Config file (planner rules, policies and a `[ci]` table with these "
        "options), relative to working-directory; a missing default file is fine",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    collect: str = opt(
        ".",
        "Path given to `pytest --collect-only` to list the tests (markers such as "
        '`@pytest.mark.hw("gpu-mem>=24g")` become runner labels), with the pytest arguments of '
        "test-command (e.g. `--doctest-modules`) so the plan sees what the shards run; empty: "
        "plan only the tests the duration history knows",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    tests_file: str = opt(
        "",
        "File with one test id per line, instead of collecting with pytest",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    runners: str = opt(
        "",
        'Runner pools as JSON `[{"name", "labels": [...]}]`, inline or a file '
        "path; empty: asked from server-url, else one pool per hardware class labelled "
        "`self-hosted` plus the labels it needs",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    durations: str = opt(
        "",
        "Extra duration files (pytest-split `.test_durations`, results.json), "
        "space-separated globs; the history kept in history-dir is always used",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    shards: int | None = opt(
        None,
        "Shards per runner pool; empty: the smallest count that meets target-minutes",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    target_minutes: float = opt(
        10.0,
        "Target wall time of the sharded test run, in minutes",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    mode: Literal["static", "queue"] = opt(
        "static",
        "`static`: each shard runs a fixed slice; `queue`: shards pull batches "
        "from the app's longest-first queue (needs server-url; falls back to static)",
        commands=("plan", "shard"),
        surfaces=EVERYWHERE,
    )
    setup_seconds: float = opt(
        30.0,
        "Per-shard set-up cost (checkout, install) the planner adds to each shard",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    gpu_for_cpu: bool = opt(
        False,
        "Let CPU-only tests run on GPU runners when that finishes sooner",
        commands=("plan",),
        surfaces=EVERYWHERE,
    )
    test_command: str = opt(
        "python -m pytest",
        "Command a shard runs. A pytest command gets `--fanout-matrix`, "
        "`--fanout-shard` and `--junitxml` appended; any other command must contain `{tests}`, "
        "replaced by the shard's test ids",
        commands=("shard",),
        surfaces=EVERYWHERE,
    )
    reports: str = opt(
        "",
        "Report files the test command writes (space-separated globs, any format "
        "`ci-app ingest` reads); empty: the JUnit XML ci-fanout asks pytest for",
        commands=("shard",),
        surfaces=EVERYWHERE,
    )
    shard: str = opt(
        "",
        "This job's shard id: the `shard` field of the plan's matrix entry "
        "(GitLab's generated shard jobs set it themselves)",
        commands=("shard",),
        surfaces=_ACTION_ONLY,
    )
    output_dir: str = opt(
        "ci-fanout",
        "Where ci-fanout writes matrix.json, the shard results and the report, "
        "relative to the repository root; kept as artifacts",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    artifact_name: str = opt(
        "ci-fanout",
        "Prefix of the artifact names (`<prefix>-matrix`, `<prefix>-results-<shard>`, "
        "`<prefix>-report`)",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    history_dir: str = opt(
        ".ci-fanout-history",
        "Where the DuckDB history and durations live between runs (restored and "
        "saved with the CI cache when cache is on)",
        commands=("plan", "report"),
        surfaces=_NOT_TOML,
    )
    cache: bool = opt(
        True,
        "Keep history-dir in the CI cache (GitHub actions/cache, GitLab `cache:`) "
        "so that runs without the app server still have durations and trends; `false`: start "
        "from an empty history each run",
        commands=("plan", "report"),
        surfaces=_NOT_TOML,
    )
    server_url: str = opt(
        "",
        "Base URL of a ci-fanout app server: live runner pools, the test queue, "
        "results upload; empty: work from the CI cache alone",
        commands=ALL_STEPS,
        surfaces=EVERYWHERE,
    )
    server_token: str = opt(
        "",
        "Bearer token for server-url; pass a secret. On GitLab set the masked "
        "CI/CD variable CI_FANOUT_SERVER_TOKEN instead (inputs are not secret)",
        surfaces=_ACTION_ONLY,
        secret=True,
        commands=ALL_STEPS,
    )
    base_branch: str = opt(
        "",
        "Branch whose history is the baseline; empty: the PR/MR target branch, "
        "else the default branch",
        commands=("report",),
        surfaces=EVERYWHERE,
    )
    publish: Literal["auto", "github", "gitlab", "none"] = opt(
        "auto",
        "Where the sticky comment goes: `auto` posts to the PR (GitHub) or MR "
        "(GitLab) when there is one",
        commands=("report",),
        surfaces=EVERYWHERE,
    )
    check_run: bool = opt(
        True,
        "Also publish a check run (GitHub; needs `checks: write`) or commit "
        "status (GitLab) with the annotations",
        commands=("report",),
        surfaces=EVERYWHERE,
    )
    dashboard_url: str = opt(
        "",
        "Dashboard link for 'N more — see dashboard' in truncated comments",
        commands=("report",),
        surfaces=EVERYWHERE,
    )
    fail_on: Literal["failures", "never"] = opt(
        "failures",
        "`failures`: a shard fails when its tests fail and the report fails on "
        "failing tests; `never`: only errors of ci-fanout itself fail the step",
        commands=("shard", "report"),
        surfaces=EVERYWHERE,
    )
    python: str = opt(
        "python3",
        "The Python that has your test dependencies: the plan step collects the "
        "tests with it and shards run the test command with it (a leading `python` or `pytest` "
        "in test-command means this interpreter). ci-fanout itself installs into its own "
        "virtual environment made from it (cached in the runner's tool cache), so nothing is "
        "installed into this interpreter",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    package: str = opt(
        "",
        "Where ci-fanout installs from (a pip requirement: a path, a wheel, "
        "`ci-fanout @ git+https://host/group/ci-fanout.git@v1.0.0`); empty: the action's own "
        "checkout (GitHub); on GitLab set it (or the CI/CD variable CI_FANOUT_PACKAGE) to the "
        "component's project at the included ref or a wheel from your package registry",
        surfaces=_NOT_TOML,
        commands=ALL_STEPS,
    )
    github_token: str = opt(
        "${{ github.token }}",
        "Token for the comment, check run and artifact API (needs "
        "`pull-requests: write`, `checks: write`)",
        action_default="${{ github.token }}",
        commands=("report",),
        surfaces=_ACTION_ONLY,
        secret=True,
    )
    image: str = opt(
        "python:3.12-slim",
        "Container image of the plan and report jobs and of shard jobs on "
        "Docker runners (shell runners ignore it)",
        surfaces=_GITLAB_ONLY,
        commands=ALL_STEPS,
    )
    stage: str = opt(
        "test",
        "Stage of the job that triggers the shard child pipeline (plan runs in "
        "`.pre`, report in `.post`)",
        surfaces=_GITLAB_ONLY,
        commands=ALL_STEPS,
    )


OPTIONS: Final[tuple[OptionSpec, ...]] = specs(CiOptions)


def github_inputs() -> list[OptionSpec]:
    return [o for o in OPTIONS if ACTION in o.surfaces]


def gitlab_inputs() -> list[OptionSpec]:
    return [o for o in OPTIONS if GITLAB in o.surfaces]


def input_default(o: OptionSpec) -> str:
    """Default of the action/GitLab input: '' (so the cascade can decide) for options that
    ``ci-fanout.toml`` may set; the real default for the others."""
    if o.action_default is not None:
        return o.action_default
    if TOML in o.surfaces:
        return ""
    return o.default_text


def input_description(o: OptionSpec) -> str:
    text = o.description.rstrip(".") + "."
    if o.choices:
        text += " One of: " + ", ".join(f"`{c}`" for c in o.choices) + "."
    if TOML in o.surfaces:
        shown = f"`{o.default_text}`" if o.default_text else "empty"
        text += f" Default: {shown} (or `{o.name}` in `[ci]` of ci-fanout.toml)."
    return text


# -- resolution ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CiConfig:
    """The resolved options, where each came from, and the whole ``ci-fanout.toml`` (planner
    rules, policies; ``{}`` when there is none)."""

    options: CiOptions
    sources: Mapping[str, str]
    project: Mapping[str, Any]


def read_project_config(path: Path, *, required: bool) -> dict[str, Any]:
    """``ci-fanout.toml``: the one reader of it. A missing file is ``{}`` unless ``required``
    (a file the user named must exist). Its ``[ci]`` table holds the TOML options below, its
    ``[browser]`` table the browser pool's (:mod:`ci_app.options.browser`)."""
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    return read_toml(path)


def resolve(
    env: Mapping[str, str],
    *,
    base_dir: Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> CiConfig:
    """Defaults → ``[ci]`` of the config file → ``CI_FANOUT_*`` (empty values are unset) →
    ``flags`` (``ci-app plan``'s; ``None`` values are flags not given).

    ``working-directory`` and ``config`` locate the file, so they come from the environment
    and the flags (they are not ``[ci]`` keys); a file named by a flag must exist."""
    environment = env_layer(OPTIONS, env, empty_is_unset=True)
    command_line = flag_layer(flags or {})
    located, _ = build(CiOptions, [environment, command_line])
    named = located.config != DEFAULT_CONFIG or "config" in command_line.values
    path = Path(base_dir or Path.cwd()) / (located.working_directory or ".")
    path = path / (located.config or DEFAULT_CONFIG)
    doc = read_project_config(path, required=named)
    # the CI files need the other options literally
    ci = table_layer(path, doc, "ci", OPTIONS, surface=TOML, elsewhere="set it as a CI input")
    options, sources = build(CiOptions, [ci, environment, command_line])
    return CiConfig(options=options, sources=sources, project=doc)


# -- rendering -------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc_description(o: OptionSpec) -> str:
    desc = o.description.rstrip(".") + "."
    if o.choices:
        desc += " One of " + ", ".join(f"`{c}`" for c in o.choices) + "."
    return desc


def render_docs() -> str:
    """``docs/ci.md``'s option reference (the part between the generated markers)."""
    lines = [
        "| option | default | steps | GitHub input | GitLab input | `[ci]` key | description |",
        "|---|---|---|:-:|:-:|:-:|---|",
    ]
    for o in OPTIONS:
        default = "`" + o.default_text + "`" if o.default_text else "*empty*"
        cells = [
            f"`{o.name}`",
            _cell(default),
            ", ".join(o.commands),
            "✓" if ACTION in o.surfaces else "",
            "✓" if GITLAB in o.surfaces else "",
            "✓" if TOML in o.surfaces else "",
            _cell(_doc_description(o)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Every option is also the environment variable `CI_FANOUT_<NAME>` (upper case, `-` → `_`),"
        " e.g. " + ", ".join(f"`{o.env}`" for o in OPTIONS[1:4]) + "."
    )
    return "\n".join(lines) + "\n"


def render_readme() -> str:
    """The README's table of action inputs (name, default, description)."""
    lines = ["| input | default | description |", "|---|---|---|"]
    for o in github_inputs():
        default = "`" + o.default_text + "`" if o.default_text else "*empty*"
        lines.append(f"| `{o.name}` | {_cell(default)} | {_cell(_doc_description(o))} |")
    return "\n".join(lines) + "\n"


def action_inputs_yaml() -> dict[str, dict[str, Any]]:
    """The ``inputs:`` mapping ``action.yml`` must declare."""
    return {
        o.name: {
            "description": input_description(o),
            "required": False,
            "default": input_default(o),
        }
        for o in github_inputs()
    }


def gitlab_spec_inputs() -> dict[str, dict[str, Any]]:
    """The ``spec: inputs:`` mapping the GitLab template and component must declare."""
    out: dict[str, dict[str, Any]] = {}
    for o in gitlab_inputs():
        default = input_default(o)
        entry: dict[str, Any] = {"description": input_description(o), "default": default}
        if o.choices:
            entry["options"] = list(o.choices) if default in o.choices else [default, *o.choices]
        out[o.name] = entry
    return out
