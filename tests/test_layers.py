"""The import contracts in pyproject.toml catch what they are meant to catch.

``make lint`` runs ``lint-imports`` on the real tree; here the contracts run on a copy of
the packages with one bad import planted, so a contract that silently matches nothing (a
misspelt module, a layer that lost its modules) fails a test instead of passing forever.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ci_app", "runner_probe")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy_tree(dest: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # Run in the copy (its pyproject.toml is the config), which comes first on the path,
    # ahead of the editable install of the real tree.
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("layers")
    _copy_tree(dest)
    return dest


def test_the_copy_keeps_every_contract(tree: Path) -> None:
    """The baseline: the unmodified copy passes, so a failure below is the planted import's."""
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # an upward import from the pure core into the web layer
        ("ci_app/model/_planted.py", "import ci_app.web.app\n", ["Layers:", "pure core"]),
        # an adapter reaching into the CLI layer
        ("ci_app/store/_planted.py", "import ci_app.commands.report\n", ["Layers:"]),
        # a provider SDK outside its adapter
        ("ci_app/web/_planted.py", "import github\n", ["PyGithub only"]),
        # a database driver in the pure core
        ("ci_app/reporting/_planted.py", "import duckdb\n", ["pure core", "DuckDB"]),
        # the probe reaching into the server
        ("runner_probe/_planted.py", "import ci_app.store\n", ["runner_probe"]),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tree: Path, module: str, source: str, broken: list[str]
) -> None:
    planted = tree / module
    planted.write_text(source)
    try:
        result = _lint(tree)
    finally:
        planted.unlink()
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    importer = module.removesuffix(".py").replace("/", ".")
    imported = source.split()[1]
    assert f"{importer} -> {imported}" in out
    report = out.split("Broken contracts")[0]
    for name in broken:
        assert any(name in line and "BROKEN" in line for line in report.splitlines()), out


def test_an_adapter_importing_another_adapter_breaks_independence(tree: Path) -> None:
    """One provider adapter using another's (and so its SDK's objects)."""
    github = tree / "ci_app/providers/github.py"
    original = github.read_text()
    github.write_text(original + "\nimport ci_app.providers.gitlab  # noqa\n")
    try:
        result = _lint(tree)
    finally:
        github.write_text(original)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "ci_app.providers.github -> ci_app.providers.gitlab" in out
