"""Meta-tests: action.yml, the GitLab template and component, ci_app/options/ci.py, README and
docs/ci.md agree; the workflows are actionlint-clean; GitLab/Azure YAML match their schemas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_app.options.ci import (
    ACTION,
    GITLAB,
    OPTIONS,
    TOML,
    action_inputs_yaml,
    gitlab_spec_inputs,
    input_description,
)

ROOT = Path(__file__).resolve().parents[2]
ACTION_YML = ROOT / "action.yml"
GITLAB_TEMPLATE = ROOT / ".gitlab-ci-template.yml"
COMPONENT = ROOT / "templates" / "ci-fanout.yml"
SELF_TEST = ROOT / ".github" / "workflows" / "action-self-test.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
EXAMPLE_GITHUB = ROOT / "examples" / "github" / "ci-fanout.yml"
EXAMPLE_GITLAB = ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
EXAMPLE_AZURE = ROOT / "examples" / "azure" / "azure-pipelines.yml"
EXAMPLE_JENKINS = ROOT / "examples" / "jenkins" / "Jenkinsfile"
BIN = Path(sys.executable).parent


def _action() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ACTION_YML.read_text())
    return doc


def _gitlab_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is a dev dependency (pip install -e '.[dev]')"
    return found


# -- one set of options -----------------------------------------------------------------------
def test_generated_ci_files_are_current() -> None:
    """action.yml and the GitLab template/component are generated (make docs)."""
    from ci_app.ci import files

    for rel, text in files.generated().items():
        assert (ROOT / rel).read_text() == text, f"{rel} is stale: make docs"


def test_action_inputs_are_the_table() -> None:
    assert _action()["inputs"] == action_inputs_yaml()


@pytest.mark.parametrize("path", [GITLAB_TEMPLATE, COMPONENT], ids=["template", "component"])
def test_gitlab_spec_inputs_are_the_table(path: Path) -> None:
    header = _gitlab_docs(path)[0]
    assert set(header) == {"spec"}
    assert header["spec"]["inputs"] == gitlab_spec_inputs()


def test_component_is_the_template() -> None:
    assert _gitlab_docs(COMPONENT) == _gitlab_docs(GITLAB_TEMPLATE)


def test_surfaces_share_every_option_but_the_declared_ones() -> None:
    """Action inputs, GitLab inputs and the table are one set, less options that are
    meaningless on one side (declared in the table, listed here so a change is deliberate)."""
    action = set(_action()["inputs"])
    gitlab = set(_gitlab_docs(GITLAB_TEMPLATE)[0]["spec"]["inputs"])
    names = {o.name for o in OPTIONS}
    assert action | gitlab == names
    assert action - gitlab == {"command", "shard", "server-token", "github-token"}
    assert gitlab - action == {"image", "stage"}
    assert {o.name for o in OPTIONS if ACTION in o.surfaces} == action
    assert {o.name for o in OPTIONS if GITLAB in o.surfaces} == gitlab


def test_every_option_is_documented_and_kebab_case() -> None:
    for o in OPTIONS:
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", o.name), o.name
        assert len(o.description) > 20, o.name
        assert o.env == "CI_FANOUT_" + o.name.upper().replace("-", "_")
        if o.default_text and TOML in o.surfaces:
            assert f"`{o.default_text}`" in input_description(o)


def test_action_passes_every_input_through_env_only() -> None:
    steps = _action()["runs"]["steps"]
    assert _action()["runs"]["using"] == "composite"
    ci_step = next(s for s in steps if s.get("id") == "ci")
    env = ci_step["env"]
    for o in OPTIONS:
        if ACTION not in o.surfaces or o.secret:
            continue
        assert env[o.env] == "${{ inputs." + o.name + " }}", o.name
    # each credential reaches only the step that needs it
    assert env["GITHUB_TOKEN"] == "${{ inputs.command == 'report' && inputs.github-token || '' }}"
    assert env["CI_FANOUT_SERVER_TOKEN"] == (
        "${{ inputs.command == 'plan' && inputs.server-token || '' }}"
    )
    for s in steps:
        if "run" in s:  # no expression may be interpolated into a script
            assert "${{" not in s["run"], s.get("name")
    for s in steps:
        if "uses" in s:
            ref = s["uses"].split("@", 1)[1]
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{s['uses']} is not pinned by SHA"


def test_action_outputs() -> None:
    outputs = _action()["outputs"]
    assert set(outputs) == {"matrix", "conclusion", "comment-id", "report-json"}
    for name, spec in outputs.items():
        assert spec["value"] == "${{ steps.ci.outputs." + name + " }}"
        assert spec["description"]


def test_gitlab_template_passes_inputs_as_variables_only() -> None:
    docs = _gitlab_docs(GITLAB_TEMPLATE)
    jobs = docs[1]
    variables = jobs[".ci-fanout-base"]["variables"]
    for o in OPTIONS:
        if GITLAB in o.surfaces and o.name != "stage":  # image: the child pipeline's too
            assert variables[o.env] == "$[[ inputs." + o.name + " ]]", o.name
    for name, job in jobs.items():
        for key in ("script", "before_script"):
            for line in job.get(key, []) if isinstance(job, dict) else []:
                assert "$[[" not in line, f"{name}: input interpolated into a script"
    trigger = jobs["ci-fanout-shards"]["trigger"]
    assert trigger["include"][0]["job"] == "ci-fanout-plan"
    assert trigger["include"][0]["artifact"].endswith("/child-pipeline.yml")
    assert trigger["strategy"] == "depend"


def _descriptions() -> list[tuple[str, str]]:
    out = [(f"action input {k}", str(v["description"])) for k, v in _action()["inputs"].items()]
    out += [(f"action output {k}", str(v["description"])) for k, v in _action()["outputs"].items()]
    out.append(("action", str(_action()["description"])))
    for path in (GITLAB_TEMPLATE, COMPONENT):
        for k, v in _gitlab_docs(path)[0]["spec"]["inputs"].items():
            out.append((f"{path.name} input {k}", str(v["description"])))
    return out


def test_no_expression_in_any_description() -> None:
    """Runners evaluate expressions in action metadata: `${{ matrix.shard }}` in a description
    fails every job that uses the action while loading it ("expressions are not allowed
    here"); GitLab interpolates `$[[ ]]` in spec text likewise."""
    descriptions = _descriptions()
    assert len(descriptions) > 40
    for where, text in descriptions:
        assert "${{" not in text and "$[[" not in text, f"{where}: {text}"
    for o in OPTIONS:
        assert "${{" not in o.description and "$[[" not in o.description, o.name


def test_install_script_is_the_one_snippet() -> None:
    """action.yml, the template and the component install ci-fanout with INSTALL_SH."""
    from ci_app.ci.install import INSTALL_SH

    step = next(s for s in _action()["runs"]["steps"] if s.get("name") == "Install ci-fanout")
    assert step["run"] == "set -euo pipefail\n" + INSTALL_SH
    assert step["env"]["CI_FANOUT_SOURCE"] == "${{ github.action_path }}"
    for path in (GITLAB_TEMPLATE, COMPONENT):
        jobs = _gitlab_docs(path)[1]
        assert jobs[".ci-fanout-base"]["before_script"] == [INSTALL_SH], path.name
        assert jobs["ci-fanout-report"]["variables"]["CI_FANOUT_EXTRA"] == "app"
        assert jobs["ci-fanout-report"]["dependencies"] == ["ci-fanout-plan"]
        junit = jobs["ci-fanout-report"]["artifacts"]["reports"]["junit"]
        assert junit.endswith("/report/junit.xml")
    for s in _action()["runs"]["steps"]:
        if s.get("id") == "ci":
            assert s["run"] == '"$CI_FANOUT_TOOL_PYTHON" -m ci_app ci "$CI_FANOUT_COMMAND"'


def test_readme_documents_every_action_input() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, spec in _action()["inputs"].items():
        assert f"| `{name}` |" in readme, name
        assert spec["description"]


def test_generated_files_are_current() -> None:
    """Every file ``make docs`` writes (docs/ci.md, docs/options.md, docs/environment.md,
    docs/labels.md, the README's tables, action.yml, the GitLab template and component) is
    what the code renders now."""
    from ci_app.docs import GENERATED, stale

    assert {"docs/ci.md", "README.md", "docs/options.md", "docs/environment.md"} <= set(GENERATED)
    assert stale(ROOT) == [], "stale generated files: run make docs"


def test_make_docs_from_a_clean_checkout(tmp_path: Path) -> None:
    """``make docs`` (``python -m ci_app.docs``) rewrites a stale file and creates a missing one;
    run again, it has nothing to do."""
    from ci_app.docs import GENERATED

    for rel in GENERATED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    (tmp_path / "docs" / "environment.md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `working-directory` |", "| `stale` |"))
    run = [sys.executable, "-m", "ci_app.docs"]
    first = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert first.stdout.split("\n")[:2] == ["updated README.md", "updated docs/environment.md"]
    assert readme.read_text() == (ROOT / "README.md").read_text()
    again = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert again.stdout == "generated files are up to date\n"


# -- linters and schemas ----------------------------------------------------------------------
def test_actionlint_clean() -> None:
    """actionlint checks the workflows and, for `uses: ./`, their inputs against action.yml."""
    proc = subprocess.run(
        [
            _tool("actionlint"),
            "-shellcheck=",
            "-pyflakes=",
            str(SELF_TEST),
            str(RELEASE),
            str(EXAMPLE_GITHUB),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_an_unknown_input(tmp_path: Path) -> None:
    """Negative control: the lint above really reads action.yml."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".git").mkdir()  # actionlint finds the project (and ./action.yml) by its .git
    shutil.copy(ACTION_YML, repo / "action.yml")
    text = SELF_TEST.read_text().replace("collect: tests", "colect: tests")
    (repo / ".github" / "workflows" / "t.yml").write_text(text)
    proc = subprocess.run(
        [_tool("actionlint"), "-shellcheck=", "-pyflakes=", ".github/workflows/t.yml"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert 'input "colect" is not defined' in proc.stdout


def check_schema(schema: str, docs: list[tuple[str, Any]], tmp_path: Path) -> None:
    """Validate YAML documents with check-jsonschema's vendored schema (the CLI reads one
    document per file, so multi-document files are split into JSON files first)."""
    files = []
    for i, (name, doc) in enumerate(docs):
        f = tmp_path / f"{i}-{re.sub(r'[^A-Za-z0-9]+', '_', name)}.json"
        f.write_text(json.dumps(doc))
        files.append(str(f))
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", schema, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_files_match_gitlab_ci_schema(tmp_path: Path) -> None:
    docs = []
    for path in (GITLAB_TEMPLATE, COMPONENT, EXAMPLE_GITLAB):
        for i, doc in enumerate(_gitlab_docs(path)):
            docs.append((f"{path.name}-{i}", doc))
    check_schema("vendor.gitlab-ci", docs, tmp_path)


def test_gitlab_schema_rejects_a_broken_job(tmp_path: Path) -> None:
    """Negative control for the schema check."""
    jobs = _gitlab_docs(GITLAB_TEMPLATE)[1]
    jobs["ci-fanout-shards"]["trigger"]["include"][0]["artefact"] = "x.yml"
    with pytest.raises(AssertionError, match="trigger"):
        check_schema("vendor.gitlab-ci", [("broken", jobs)], tmp_path)


def test_azure_example_matches_schema(tmp_path: Path) -> None:
    check_schema(
        "vendor.azure-pipelines", [("azure", yaml.safe_load(EXAMPLE_AZURE.read_text()))], tmp_path
    )


def test_app_driven_examples_declare_what_the_providers_send() -> None:
    """The Jenkins adapter sends CI_FANOUT_SHARD / CI_FANOUT_REF, the Azure adapter `shard`."""
    jenkins = EXAMPLE_JENKINS.read_text()
    for name in ("CI_FANOUT_SHARD", "CI_FANOUT_REF", "CI_FANOUT_LABELS", "CI_FANOUT_QUEUE_URL"):
        assert f"string(name: '{name}'" in jenkins
    assert "sh '''" in jenkins and 'sh "' not in jenkins  # no Groovy interpolation into sh
    azure = yaml.safe_load(EXAMPLE_AZURE.read_text())
    assert {"shard", "pool", "labels", "queueUrl"} <= {p["name"] for p in azure["parameters"]}
    for src in (
        ROOT / "ci_app" / "providers" / "jenkins.py",
        ROOT / "ci_app" / "providers" / "azure.py",
    ):
        text = src.read_text()
        assert '"CI_FANOUT_SHARD"' in text or '"shard"' in text
