"""The CI-facing options: ONE table shared by the GitHub Action, the GitLab template/component,
``ci-fanout.toml`` and the environment.

Each option has one external name, kebab-case (``target-minutes``). It is

* an input of ``action.yml`` (GitHub) and of the GitLab template's ``spec: inputs``;
* a key of the ``[ci]`` table in ``ci-fanout.toml``;
* the environment variable ``CI_FANOUT_<NAME>`` (``CI_FANOUT_TARGET_MINUTES``): the action and
  the template hand every input to ``ci-app ci`` this way and never interpolate it into a script.

Cascade, later wins: the defaults below → ``[ci]`` in ``ci-fanout.toml`` → ``CI_FANOUT_*``.
An empty environment value means "not set", so the action's and the template's inputs default to
``''`` and ``ci-fanout.toml`` can still decide; the real default is declared once, here, and
shown in each input's description. Options that the CI files themselves need literally (paths of
artifacts and caches, the interpreter) are not read from ``ci-fanout.toml`` and their inputs carry
the real default. Options that live on one surface only (``command``, ``shard`` and the tokens on
GitHub, ``image``/``stage`` on GitLab) say so in :attr:`CiOption.surfaces`.

``docs/ci.md`` is generated from this table (:func:`render_docs`); a test keeps it current and
checks that ``action.yml``, ``.gitlab-ci-template.yml`` and ``templates/ci-fanout.yml`` declare
exactly these inputs.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ci_app.errors import ConfigError

__all__ = [
    "OPTIONS",
    "CiOption",
    "CiValues",
    "env_name",
    "github_inputs",
    "gitlab_inputs",
    "option",
    "render_docs",
    "resolve",
]

ENV_PREFIX: Final = "CI_FANOUT_"
ACTION: Final = "action"
GITLAB: Final = "gitlab"
TOML: Final = "toml"
BOTH: Final = frozenset({ACTION, GITLAB, TOML})

OptType = Literal["string", "boolean", "integer", "number"]
Scalar = str | bool | int | float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class CiOption:
    name: str
    default: Scalar
    description: str
    type: OptType = "string"
    choices: tuple[str, ...] = ()
    #: which steps read it: plan, shard, report
    commands: tuple[str, ...] = ("plan", "shard", "report")
    #: where it is declared: ``action`` inputs, GitLab ``spec: inputs``, ``toml`` ([ci] table)
    surfaces: frozenset[str] = BOTH
    secret: bool = False
    #: the literal default of the GitHub input when it cannot be '' (a context expression)
    action_default: str | None = None

    @property
    def env(self) -> str:
        return env_name(self.name)

    @property
    def default_text(self) -> str:
        """The default as users write it (``''`` shown as *empty*)."""
        if self.default is None or self.default == "":
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    @property
    def input_default(self) -> str:
        """Default of the action/GitLab input: '' (so the cascade can decide) for options that
        ``ci-fanout.toml`` may set; the real default for the others."""
        if self.action_default is not None:
            return self.action_default
        if TOML in self.surfaces:
            return ""
        return self.default_text

    @property
    def input_description(self) -> str:
        text = self.description.rstrip(".") + "."
        if self.choices:
            text += " One of: " + ", ".join(f"`{c}`" for c in self.choices) + "."
        if TOML in self.surfaces:
            shown = f"`{self.default_text}`" if self.default_text else "empty"
            text += f" Default: {shown} (or `{self.name}` in `[ci]` of ci-fanout.toml)."
        return text


def env_name(name: str) -> str:
    """``target-minutes`` → ``CI_FANOUT_TARGET_MINUTES``."""
    return ENV_PREFIX + name.replace("-", "_").upper()


_ACTION_ONLY: Final = frozenset({ACTION})
_GITLAB_ONLY: Final = frozenset({GITLAB})
_NOT_TOML: Final = frozenset({ACTION, GITLAB})

OPTIONS: Final[tuple[CiOption, ...]] = (
    CiOption(
        name="command",
        default="plan",
        description="What this step does: `plan` emits the shard matrix, `shard` runs one shard "
        "and uploads its results.json, `report` collects all shards and posts the comment",
        choices=("plan", "shard", "report"),
        surfaces=_ACTION_ONLY,
    ),
    CiOption(
        name="working-directory",
        default=".",
        description="Directory the tests run in and ci-fanout.toml is read from, relative to "
        "the repository root",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="config",
        default="ci-fanout.toml",
        description="Config file (planner rules, policies and a `[ci]` table with these "
        "options), relative to working-directory; a missing default file is fine",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="collect",
        default=".",
        description="Path given to `pytest --collect-only` to list the tests (markers such as "
        '`@pytest.mark.hw("gpu-mem>=24g")` become runner labels), with the pytest arguments of '
        "test-command (e.g. `--doctest-modules`) so the plan sees what the shards run; empty: "
        "plan only the tests the duration history knows",
        commands=("plan",),
    ),
    CiOption(
        name="tests-file",
        default="",
        description="File with one test id per line, instead of collecting with pytest",
        commands=("plan",),
    ),
    CiOption(
        name="runners",
        default="",
        description='Runner pools as JSON `[{"name", "labels": [...]}]`, inline or a file '
        "path; empty: asked from server-url, else one pool per hardware class labelled "
        "`self-hosted` plus the labels it needs",
        commands=("plan",),
    ),
    CiOption(
        name="durations",
        default="",
        description="Extra duration files (pytest-split `.test_durations`, results.json), "
        "space-separated globs; the history kept in history-dir is always used",
        commands=("plan",),
    ),
    CiOption(
        name="shards",
        default=None,
        type="integer",
        description="Shards per runner pool; empty: the smallest count that meets target-minutes",
        commands=("plan",),
    ),
    CiOption(
        name="target-minutes",
        default=10.0,
        type="number",
        description="Target wall time of the sharded test run, in minutes",
        commands=("plan",),
    ),
    CiOption(
        name="mode",
        default="static",
        description="`static`: each shard runs a fixed slice; `queue`: shards pull batches "
        "from the app's longest-first queue (needs server-url; falls back to static)",
        choices=("static", "queue"),
        commands=("plan", "shard"),
    ),
    CiOption(
        name="setup-seconds",
        default=30.0,
        type="number",
        description="Per-shard set-up cost (checkout, install) the planner adds to each shard",
        commands=("plan",),
    ),
    CiOption(
        name="gpu-for-cpu",
        default=False,
        type="boolean",
        description="Let CPU-only tests run on GPU runners when that finishes sooner",
        commands=("plan",),
    ),
    CiOption(
        name="test-command",
        default="python -m pytest",
        description="Command a shard runs. A pytest command gets `--fanout-matrix`, "
        "`--fanout-shard` and `--junitxml` appended; any other command must contain `{tests}`, "
        "replaced by the shard's test ids",
        commands=("shard",),
    ),
    CiOption(
        name="reports",
        default="",
        description="Report files the test command writes (space-separated globs, any format "
        "`ci-app ingest` reads); empty: the JUnit XML ci-fanout asks pytest for",
        commands=("shard",),
    ),
    CiOption(
        name="shard",
        default="",
        description="This job's shard id: the `shard` field of the plan's matrix entry "
        "(GitLab's generated shard jobs set it themselves)",
        commands=("shard",),
        surfaces=_ACTION_ONLY,
    ),
    CiOption(
        name="output-dir",
        default="ci-fanout",
        description="Where ci-fanout writes matrix.json, the shard results and the report, "
        "relative to the repository root; kept as artifacts",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="artifact-name",
        default="ci-fanout",
        description="Prefix of the artifact names (`<prefix>-matrix`, `<prefix>-results-<shard>`, "
        "`<prefix>-report`)",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="history-dir",
        default=".ci-fanout-history",
        description="Where the DuckDB history and durations live between runs (restored and "
        "saved with the CI cache when cache is on)",
        commands=("plan", "report"),
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="cache",
        default=True,
        type="boolean",
        description="Keep history-dir in the CI cache (GitHub actions/cache, GitLab `cache:`) "
        "so that runs without the app server still have durations and trends; `false`: start "
        "from an empty history each run",
        commands=("plan", "report"),
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="server-url",
        default="",
        description="Base URL of a ci-fanout app server: live runner pools, the test queue, "
        "results upload; empty: work from the CI cache alone",
    ),
    CiOption(
        name="server-token",
        default="",
        description="Bearer token for server-url; pass a secret. On GitLab set the masked "
        "CI/CD variable CI_FANOUT_SERVER_TOKEN instead (inputs are not secret)",
        surfaces=_ACTION_ONLY,
        secret=True,
    ),
    CiOption(
        name="base-branch",
        default="",
        description="Branch whose history is the baseline; empty: the PR/MR target branch, "
        "else the default branch",
        commands=("report",),
    ),
    CiOption(
        name="publish",
        default="auto",
        description="Where the sticky comment goes: `auto` posts to the PR (GitHub) or MR "
        "(GitLab) when there is one",
        choices=("auto", "github", "gitlab", "none"),
        commands=("report",),
    ),
    CiOption(
        name="check-run",
        default=True,
        type="boolean",
        description="Also publish a check run (GitHub; needs `checks: write`) or commit "
        "status (GitLab) with the annotations",
        commands=("report",),
    ),
    CiOption(
        name="dashboard-url",
        default="",
        description="Dashboard link for 'N more — see dashboard' in truncated comments",
        commands=("report",),
    ),
    CiOption(
        name="fail-on",
        default="failures",
        description="`failures`: a shard fails when its tests fail and the report fails on "
        "failing tests; `never`: only errors of ci-fanout itself fail the step",
        choices=("failures", "never"),
        commands=("shard", "report"),
    ),
    CiOption(
        name="python",
        default="python3",
        description="The Python that has your test dependencies: the plan step collects the "
        "tests with it and shards run the test command with it (a leading `python` or `pytest` "
        "in test-command means this interpreter). ci-fanout itself installs into its own "
        "virtual environment made from it (cached in the runner's tool cache), so nothing is "
        "installed into this interpreter",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="package",
        default="",
        description="Where ci-fanout installs from (a pip requirement: a path, a wheel, "
        "`ci-fanout @ git+https://host/group/ci-fanout.git@v1.0.0`); empty: the action's own "
        "checkout (GitHub); on GitLab set it (or the CI/CD variable CI_FANOUT_PACKAGE) to the "
        "component's project at the included ref or a wheel from your package registry",
        surfaces=_NOT_TOML,
    ),
    CiOption(
        name="github-token",
        default="${{ github.token }}",
        action_default="${{ github.token }}",
        description="Token for the comment, check run and artifact API (needs "
        "`pull-requests: write`, `checks: write`)",
        commands=("report",),
        surfaces=_ACTION_ONLY,
        secret=True,
    ),
    CiOption(
        name="image",
        default="python:3.12-slim",
        description="Container image of the plan and report jobs and of shard jobs on "
        "Docker runners (shell runners ignore it)",
        surfaces=_GITLAB_ONLY,
    ),
    CiOption(
        name="stage",
        default="test",
        description="Stage of the job that triggers the shard child pipeline (plan runs in "
        "`.pre`, report in `.post`)",
        surfaces=_GITLAB_ONLY,
    ),
)

_BY_NAME: Final = {o.name: o for o in OPTIONS}


def option(name: str) -> CiOption:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no CI option {name!r}{_suggest(name, list(_BY_NAME))}") from None


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f". Perhaps you meant {close[0]!r}?" if close else ""


def github_inputs() -> list[CiOption]:
    return [o for o in OPTIONS if ACTION in o.surfaces]


def gitlab_inputs() -> list[CiOption]:
    return [o for o in OPTIONS if GITLAB in o.surfaces]


# -- resolution ------------------------------------------------------------------------------
def _convert(opt: CiOption, raw: Any, source: str) -> Scalar:
    if raw is None:
        return None
    try:
        if opt.type == "boolean":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if opt.type == "integer":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(str(raw).strip())
        if opt.type == "number":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {opt.name} = {raw!r} is not a valid {opt.type}"
            + (" (true or false)" if opt.type == "boolean" else "")
        ) from None
    value = str(raw)
    if opt.choices and value not in opt.choices:
        close = difflib.get_close_matches(value, opt.choices, n=1)
        hint = f" Perhaps you meant {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{source}: {opt.name} = {value!r}; choose one of {', '.join(opt.choices)}.{hint}"
        )
    return value


@dataclass(frozen=True, slots=True)
class CiValues:
    """Resolved options; typed getters fail loudly on a name not in the table."""

    values: Mapping[str, Scalar]
    sources: Mapping[str, str]

    def get(self, name: str) -> Scalar:
        option(name)
        return self.values.get(name)

    def text(self, name: str) -> str:
        v = self.get(name)
        return "" if v is None else str(v)

    def flag(self, name: str) -> bool:
        return bool(self.get(name))

    def int_or_none(self, name: str) -> int | None:
        v = self.get(name)
        return None if v is None or v == "" else int(v)

    def number(self, name: str) -> float:
        v = self.get(name)
        if v is None or v == "":
            raise ConfigError(f"{name} must be set")
        return float(v)


def read_ci_table(path: Path) -> dict[str, Any]:
    """The ``[ci]`` table of ``ci-fanout.toml`` (``{}`` when the file or table is missing)."""
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    table = doc.get("ci", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [ci] must be a table")
    allowed = [o.name for o in OPTIONS if TOML in o.surfaces]
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path} [ci]: unknown option {key!r}{_suggest(key, allowed)}")
    return dict(table)


def resolve(env: Mapping[str, str], *, base_dir: Path | None = None) -> CiValues:
    """Defaults → ``[ci]`` of the config file → ``CI_FANOUT_*`` (empty values are unset)."""
    values: dict[str, Scalar] = {o.name: o.default for o in OPTIONS}
    sources = {o.name: "default" for o in OPTIONS}
    for o in OPTIONS:
        raw = env.get(o.env, "")
        if raw != "" and TOML not in o.surfaces:
            values[o.name] = _convert(o, raw, o.env)
            sources[o.name] = o.env
    workdir = Path(base_dir or Path.cwd()) / str(values["working-directory"] or ".")
    cfg = workdir / str(values["config"] or "ci-fanout.toml")
    named = env.get(option("config").env, "")
    if named and named != option("config").default and not cfg.exists():
        # a missing default file is fine (the action and the template always pass the input);
        # a file the user named must exist
        raise ConfigError(f"config file {cfg} does not exist (from {option('config').env})")
    for key, raw in read_ci_table(cfg).items():
        values[key] = _convert(_BY_NAME[key], raw, f"{cfg} [ci]")
        sources[key] = str(cfg)
    for o in OPTIONS:
        raw = env.get(o.env, "")
        if raw != "" and TOML in o.surfaces:
            values[o.name] = _convert(o, raw, o.env)
            sources[o.name] = o.env
    return CiValues(values=values, sources=sources)


# -- rendering -------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_docs() -> str:
    """``docs/ci.md``'s option reference (the part between the generated markers)."""
    lines = [
        "| option | default | steps | GitHub input | GitLab input | `[ci]` key | description |",
        "|---|---|---|:-:|:-:|:-:|---|",
    ]
    for o in OPTIONS:
        default = "`" + o.default_text + "`" if o.default_text else "*empty*"
        desc = o.description.rstrip(".") + "."
        if o.choices:
            desc += " One of " + ", ".join(f"`{c}`" for c in o.choices) + "."
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{o.name}`",
                    _cell(default),
                    ", ".join(o.commands),
                    "✓" if ACTION in o.surfaces else "",
                    "✓" if GITLAB in o.surfaces else "",
                    "✓" if TOML in o.surfaces else "",
                    _cell(desc),
                ]
            )
            + " |"
        )
    lines.append("")
    lines.append(
        "Every option is also the environment variable `CI_FANOUT_<NAME>` (upper case, `-` → `_`),"
        " e.g. " + ", ".join(f"`{o.env}`" for o in OPTIONS[1:4]) + "."
    )
    return "\n".join(lines) + "\n"


DOCS_BEGIN: Final = "<!-- BEGIN ci_options (generated by ci_app.ci_options.render_docs) -->"
DOCS_END: Final = "<!-- END ci_options -->"


def docs_section(text: str) -> str:
    """The generated part of ``docs/ci.md``."""
    return generated_section(text, DOCS_BEGIN, DOCS_END)


def update_generated(path: Path, begin: str, end: str, body: str) -> bool:
    """Rewrite the generated section of ``path`` between the markers; True when it changed."""
    text = path.read_text(encoding="utf-8")
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    new = text[:start] + "\n" + body + text[stop:]
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def update_docs(path: Path) -> bool:
    return update_generated(path, DOCS_BEGIN, DOCS_END, render_docs())


README_BEGIN: Final = "<!-- BEGIN action inputs (generated by ci_app.ci_options.render_readme) -->"
README_END: Final = "<!-- END action inputs -->"


def render_readme() -> str:
    """The README's table of action inputs (name, default, description)."""
    lines = ["| input | default | description |", "|---|---|---|"]
    for o in github_inputs():
        default = "`" + o.default_text + "`" if o.default_text else "*empty*"
        desc = o.description.rstrip(".") + "."
        if o.choices:
            desc += " One of " + ", ".join(f"`{c}`" for c in o.choices) + "."
        lines.append(f"| `{o.name}` | {_cell(default)} | {_cell(desc)} |")
    return "\n".join(lines) + "\n"


def generated_section(text: str, begin: str, end: str) -> str:
    start = text.index(begin) + len(begin)
    return text[start : text.index(end)].strip("\n") + "\n"


def action_inputs_yaml() -> dict[str, dict[str, Any]]:
    """The ``inputs:`` mapping ``action.yml`` must declare."""
    return {
        o.name: {"description": o.input_description, "required": False, "default": o.input_default}
        for o in github_inputs()
    }


def gitlab_spec_inputs() -> dict[str, dict[str, Any]]:
    """The ``spec: inputs:`` mapping the GitLab template and component must declare."""
    out: dict[str, dict[str, Any]] = {}
    for o in gitlab_inputs():
        entry: dict[str, Any] = {"description": o.input_description, "default": o.input_default}
        if o.choices:
            opts = list(o.choices)
            if o.input_default not in opts:
                opts = [o.input_default, *opts]
            entry["options"] = opts
        out[o.name] = entry
    return out


if __name__ == "__main__":  # pragma: no cover - maintenance helper
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--write-docs":
        changed = update_docs(Path(sys.argv[2] if len(sys.argv) > 2 else "docs/ci.md"))
        sys.stdout.write("updated\n" if changed else "up to date\n")
    if len(sys.argv) > 1 and sys.argv[1] == "--write-readme":
        path = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
        changed = update_generated(path, README_BEGIN, README_END, render_readme())
        sys.stdout.write("updated\n" if changed else "up to date\n")
