"""The test folders mirror the code: ``tests/<pkg>/`` tests ``ci_app/<pkg>/`` (or
``runner_probe``); a few folders test across packages and say so here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folders that are not one package's tests: end-to-end paths, real runners, contracts of the
#: providers' APIs, the loopback fakes, and data
ACROSS = {"e2e", "realci", "contracts", "fakes", "data"}
#: tests of the repository itself rather than of one module
META = {"test_layers.py", "test_layout.py"}


def _packages() -> set[str]:
    pkgs = {p.name for p in (ROOT / "ci_app").iterdir() if (p / "__init__.py").exists()}
    return pkgs | {"runner_probe"}


def test_every_test_folder_is_a_package_or_says_why_not() -> None:
    folders = {
        p.name
        for p in (ROOT / "tests").iterdir()
        if p.is_dir() and not p.name.startswith((".", "_"))
    }
    stray = folders - _packages() - ACROSS
    assert not stray, f"test folders that mirror no package: {sorted(stray)}"


def test_top_level_tests_name_a_top_level_module() -> None:
    modules = {p.stem for p in (ROOT / "ci_app").glob("*.py")}
    stray = [
        p.name
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name not in META and p.stem.removeprefix("test_") not in modules
    ]
    assert not stray, f"top-level tests of no top-level module: {stray}"


def test_no_tracked_link_leaves_the_repository() -> None:
    """A symlink committed from a developer's worktree (``.tools -> /work/main/.tools``) is a
    loop or a dangling path in every other clone; tracked links stay inside the tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("120000 ")]
    outside = []
    for name in links:
        target = os.readlink(ROOT / name) if (ROOT / name).is_symlink() else ""
        resolved = (ROOT / name).parent / target
        if not target or Path(target).is_absolute() or ROOT not in resolved.resolve().parents:
            outside.append(f"{name} -> {target}")
    assert not outside, f"tracked links that leave the repository: {outside}"
