"""Every ``CI_FANOUT_*`` environment variable ci-fanout reads or hands to a job, in one table.

Three families are option tables of their own and are listed from them: the CI steps' options
(:mod:`ci_app.options.ci`), the ``ci-app serve`` settings (:mod:`ci_app.options.server`) and
the browser pool's ``CI_FANOUT_BROWSER_*`` (:mod:`ci_app.options.browser`). The rest are
declared below: name, meaning, who reads it and who sets it. ``docs/environment.md`` is
generated from this module; a test fails when the code names a variable that is not here, or
a row names one the code no longer uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["PREFIXES", "VARIABLES", "EnvVar", "known_names", "render_env_docs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvVar:
    name: str
    meaning: str
    #: modules (or shell snippets) that read it
    readers: tuple[str, ...]
    #: who sets it when it is not the user ('' : the user)
    set_by: str = ""


VARIABLES: Final[tuple[EnvVar, ...]] = (
    # -- the CI steps and their install snippet --------------------------------------------
    EnvVar(
        name="CI_FANOUT_SOURCE",
        meaning="where the install snippet installs ci-fanout from when `package` is empty "
        "(the action's own checkout)",
        readers=("ci_app.ci.install (INSTALL_SH)",),
        set_by="action.yml",
    ),
    EnvVar(
        name="CI_FANOUT_EXTRA",
        meaning="pip extra the install snippet adds (`app` for the report step)",
        readers=("ci_app.ci.install (INSTALL_SH)",),
        set_by="action.yml, the GitLab template",
    ),
    EnvVar(
        name="CI_FANOUT_TOOL_CACHE",
        meaning="folder of ci-fanout's own virtual environments (default: the runner's tool "
        "cache, else `$XDG_CACHE_HOME`)",
        readers=("ci_app.ci.install (INSTALL_SH)", "ci_app.ci.gitlab (forwarded to shards)"),
    ),
    EnvVar(
        name="CI_FANOUT_TOOL_PYTHON",
        meaning="the interpreter of ci-fanout's own virtual environment",
        readers=("action.yml", "the GitLab template", "ci_app.ci.gitlab"),
        set_by="the install snippet",
    ),
    EnvVar(
        name="CI_FANOUT_RUN_ID",
        meaning="the run id shared by plan, shards and report (GitLab: passed to the child "
        "pipeline)",
        readers=("ci_app.ci.context",),
        set_by="ci_app.ci.gitlab (child pipeline, plan.env)",
    ),
    EnvVar(
        name="CI_FANOUT_PR",
        meaning="the merge request number, for child pipelines that see no MR variables; "
        "Jenkins: the PR a build belongs to",
        readers=("ci_app.ci.context", "ci_app.web.events"),
        set_by="ci_app.ci.gitlab (child pipeline)",
    ),
    EnvVar(
        name="CI_FANOUT_REPO",
        meaning="Jenkins build parameter: the repository a build belongs to",
        readers=("ci_app.web.events",),
        set_by="the Jenkins job",
    ),
    EnvVar(
        name="CI_FANOUT_SHARD",
        meaning="the shard a job runs (when the `shard` input is empty)",
        readers=("ci_app.ci.shard",),
        set_by="ci_app.matrix.render, ci_app.ci.gitlab, the jenkins/gitlab/local providers",
    ),
    EnvVar(
        name="CI_FANOUT_REF",
        meaning="the git ref a dispatched shard job checks out",
        readers=("the dispatched job",),
        set_by="the jenkins and local providers",
    ),
    EnvVar(
        name="CI_FANOUT_ARTIFACTS",
        meaning="folder whose files are a local-provider job's artifacts",
        readers=("the dispatched job",),
        set_by="ci_app.providers.local",
    ),
    EnvVar(
        name="CI_FANOUT_EXPECTED_SECONDS",
        meaning="the planner's expected duration of the shard (informational)",
        readers=("the shard job",),
        set_by="ci_app.matrix.render",
    ),
    EnvVar(
        name="CI_FANOUT_QUEUE_URL",
        meaning="the run's test queue on the app (queue mode)",
        readers=("the shard command (`--fanout-queue`)",),
        set_by="ci_app.matrix.render",
    ),
    EnvVar(
        name="CI_FANOUT_QUEUE_TOKEN",
        meaning="token for the test queue (removed from the environment once read)",
        readers=("ci_app.credentials",),
    ),
    EnvVar(
        name="CI_FANOUT_QUEUE_TOKEN_FILE",
        meaning="file holding the queue token (deleted once read); wins over CI_FANOUT_QUEUE_TOKEN",
        readers=("ci_app.credentials",),
        set_by="ci_app.ci.shard",
    ),
    EnvVar(
        name="CI_FANOUT_LABELS",
        meaning="comma-separated labels of the runner this shard runs on (what it promised)",
        readers=("ci_app.commands.shard", "ci_app.browser.config"),
        set_by="ci_app.ci.shard",
    ),
    EnvVar(
        name="CI_FANOUT_RUNNER",
        meaning="the runner name results are recorded under (before RUNNER_NAME, "
        "CI_RUNNER_DESCRIPTION, NODE_NAME)",
        readers=("ci_app.ci.context", "ci_app.commands.shard"),
    ),
    EnvVar(
        name="CI_FANOUT_GITLAB_URL",
        meaning="GitLab base URL for publishing from the report step (default: CI_SERVER_URL; "
        "also a ci-app serve setting)",
        readers=("ci_app.ci.report", "ci_app.providers.publish"),
    ),
    EnvVar(
        name="CI_FANOUT_GITHUB_API_URL",
        meaning="GitHub REST API base URL for publishing from the report step (default: "
        "GITHUB_API_URL; also a ci-app serve setting)",
        readers=("ci_app.providers.publish",),
    ),
    EnvVar(
        name="CI_FANOUT_GITHUB_THROTTLE",
        meaning="seconds between GitHub writes when the report step publishes (0: off; also a "
        "ci-app serve setting)",
        readers=("ci_app.providers.publish",),
    ),
    EnvVar(
        name="CI_FANOUT_GITHUB_COMMENT_AUTHOR",
        meaning="login whose sticky comment is edited (default: the token's user)",
        readers=("ci_app.providers.publish",),
    ),
    # -- command-line tools ------------------------------------------------------------------
    EnvVar(
        name="CI_FANOUT_SERVER",
        meaning="URL of the running app for `ci-app runners` (`--server`)",
        readers=("ci_app.commands.runners",),
    ),
    EnvVar(
        name="CI_FANOUT_RUNNER_TOKEN",
        meaning="runner token of `runner-probe` (instead of `--token-file`)",
        readers=("runner_probe.cli",),
    ),
    EnvVar(
        name="CI_FANOUT_DISK_PATH",
        meaning="folder whose free space the probe reports (default: the working directory)",
        readers=("runner_probe.detect",),
    ),
    EnvVar(
        name="CI_FANOUT_DATA_DIR",
        meaning="where the Azure adapter caches the SDK's resource metadata",
        readers=("ci_app.providers.azure",),
    ),
    EnvVar(
        name="CI_FANOUT_SERVE_CONFIG",
        meaning="settings file of `ci-app serve` (`--config`); the old name CI_FANOUT_CONFIG "
        "is still read, with a warning, when it is unset",
        readers=("ci_app.options.server",),
    ),
    # -- build and tests -----------------------------------------------------------------------
    EnvVar(
        name="CI_FANOUT_PURE",
        meaning="`1`: build without the C speedups",
        readers=("setup.py",),
    ),
    EnvVar(
        name="CI_FANOUT_PURE_PYTHON",
        meaning="`1`: do not use the built C speedups (the pure-Python reference code runs)",
        readers=("ci_app.artifacts.native",),
    ),
    # -- make demo -----------------------------------------------------------------------------
    EnvVar(
        name="CI_FANOUT_OUT",
        meaning="output folder of `make demo` (default `out`)",
        readers=("ci_app.demo",),
    ),
    EnvVar(
        name="CI_FANOUT_DEMO_SERVE",
        meaning="seconds `make demo` keeps its server up at the end",
        readers=("ci_app.demo",),
    ),
    EnvVar(
        name="CI_FANOUT_DEMO_COMMIT",
        meaning="the simulated commit number of the demo's sample project",
        readers=("examples/sample-project",),
        set_by="ci_app.demo",
    ),
    EnvVar(
        name="CI_FANOUT_DEMO_STATE",
        meaning="state folder of the demo's sample project (its flaky test)",
        readers=("examples/sample-project",),
        set_by="ci_app.demo",
    ),
    EnvVar(
        name="CI_FANOUT_DEMO_BROWSER",
        meaning="`1`: collect the demo's WebGPU tests",
        readers=("examples/sample-project",),
        set_by="ci_app.demo",
    ),
)

#: families named by a prefix: ``CI_FANOUT_INPUT_<NAME>`` is each input of a local-provider
#: dispatch; ``CI_FANOUT_BROWSER_*`` are the browser pool's settings
PREFIXES: Final = {
    "CI_FANOUT_INPUT_": "each input of a job dispatched by the local provider "
    "(ci_app.providers.local)",
    "CI_FANOUT_BROWSER_": "the browser pool's settings (ci_app.options.browser; an unknown one "
    "is an error)",
}


def _families() -> list[tuple[str, list[str]]]:
    from ci_app.options import browser
    from ci_app.options.ci import OPTIONS
    from ci_app.options.engine import specs
    from ci_app.options.server import Settings

    return [
        ("the CI steps' options (docs/ci.md)", [o.env for o in OPTIONS]),
        ("ci-app serve settings (docs/options.md)", [o.env for o in specs(Settings)]),
        ("the browser pool (docs/browser.md)", [o.env for o in browser.OPTIONS]),
    ]


def known_names() -> set[str]:
    """Every declared variable name (the families included)."""
    names = {v.name for v in VARIABLES}
    for _, members in _families():
        names.update(members)
    return names


def render_env_docs() -> str:
    """``docs/environment.md``."""
    lines = [
        "# Environment variables",
        "",
        "Generated from `ci_app/options/env.py` by `make docs`; a test keeps this file current"
        " and fails when the code reads a `CI_FANOUT_*` variable that is not listed here.",
        "",
        "| variable | meaning | read by | set by |",
        "|---|---|---|---|",
    ]
    for v in VARIABLES:
        readers = ", ".join(v.readers)
        lines.append(f"| `{v.name}` | {v.meaning} | {readers} | {v.set_by or 'you'} |")
    for prefix, meaning in PREFIXES.items():
        lines.append(f"| `{prefix}*` | {meaning} | | |")
    lines += ["", "## Option tables", ""]
    lines.append(
        "Each option of these tables is also an environment variable `CI_FANOUT_<NAME>`"
        " (upper case, `-` → `_`):"
    )
    lines.append("")
    for title, members in _families():
        lines.append(f"- {title}: " + ", ".join(f"`{m}`" for m in members))
    return "\n".join(lines) + "\n"
