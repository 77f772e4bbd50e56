"""The release as far as it can run here: the sdist and the pure-Python wheel build, pass
`twine check --strict`, hold what users need, and the wheel installs and runs in a fresh venv.
(The manylinux wheels need cibuildwheel's containers; the upload needs PyPI's OIDC.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.realci.harness import source_copy

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


def test_release_workflow_publishes_with_trusted_publishing() -> None:
    doc = yaml.safe_load(RELEASE.read_text())
    assert doc[True] == {"push": {"tags": ["v*"]}}  # PyYAML reads the key `on` as True
    assert doc["permissions"] == {"contents": "read"}
    pypi = doc["jobs"]["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}, "trusted publishing, no token"
    assert pypi["environment"]["name"] == "pypi"
    publish = pypi["steps"][-1]["uses"]
    assert publish.startswith("pypa/gh-action-pypi-publish@") and "with" not in pypi["steps"][-1]
    assert doc["jobs"]["github-release"]["permissions"] == {"contents": "write"}
    for job in doc["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].split("@", 1)[1]
                assert len(ref) == 40, f"{step['uses']} is not pinned by SHA"


@pytest.mark.slow
def test_sdist_and_pure_wheel_build_check_and_install(tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    env = {**os.environ, "CI_FANOUT_PURE": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(src)],
        check=True,
        env=env,
        capture_output=True,
    )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name == f"ci_fanout-{version}-py3-none-any.whl"
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ci_app/ci/install.py",
        "ci_app/pytest_plugin.py",
        "ci_app/model/schemas/results.v1.json",
        "runner_probe/cli.py",
    ):
        assert needed in names, needed
    assert not any(n.endswith(".so") for n in names), "the pure wheel has no native code"
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("ci_app/artifacts/_speedups.c") for m in members), "sdist builds it"
    # a fresh environment: the wheel and its base dependencies only
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    py = target / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(target / "bin" / "ci-app"), "--version"], check=True, capture_output=True, text=True
    )
    assert version in out.stdout
    # the base install: commands that need the [app] extra say so instead of a traceback
    help_ = subprocess.run(
        [str(target / "bin" / "ci-app"), "--help"], check=True, capture_output=True, text=True
    )
    assert "ingest" in help_.stdout and "needs the [app] extra" in help_.stdout
    report = subprocess.run(
        [str(target / "bin" / "ci-app"), "report", "results.json"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 2 and "[app] extra" in report.stderr
    assert "Traceback" not in report.stderr
