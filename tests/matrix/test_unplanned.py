"""Every collected test is planned, or run and reported anyway (issue 13, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ci_app.cli import main
from ci_app.matrix import queue_api
from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.inventory import inventory_from_ids
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.matrix.queue import QueueConfig
from ci_app.shard_runner import unplanned_home

from .conftest import QueueServer

MODULE = '''
import os


def double(x):
    """Twice ``x``.

    >>> double(2)
    4
    """
    with open(os.environ["RUN_LOG"], "a") as f:
        f.write("pkg/mod.py::pkg.mod.double\\n")
    return 2 * x
'''

TESTS = """
import os

import pytest


@pytest.mark.parametrize("i", range(6))
def test_t(i, request):
    with open(os.environ["RUN_LOG"], "a") as f:
        f.write(request.node.nodeid + "\\n")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "test_a.py").write_text(textwrap.dedent(TESTS))
    return tmp_path


def _pytest(project: Path, *args: str, log: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "RUN_LOG": str(project / log)},
        timeout=120,
        check=False,
    )


def _ran(project: Path, log: str) -> list[str]:
    p = project / log
    return p.read_text().split() if p.exists() else []


def test_plan_collects_with_the_shards_pytest_arguments(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("RUN_LOG", str(project / "collect.log"))
    assert main(["plan", "--collect", ".", "--shards", "2", "--output", "plain.json"]) == 0
    plain = Matrix.from_dict(json.loads((project / "plain.json").read_text()))
    assert not any("double" in t for s in plain.shards for t in s.tests)
    argv = ["plan", "--collect", ".", "--pytest-args=--doctest-modules", "--shards", "2"]
    assert main([*argv, "--output", "doc.json"]) == 0
    doc = Matrix.from_dict(json.loads((project / "doc.json").read_text()))
    planned = [t for s in doc.shards for t in s.tests]
    assert "pkg/mod.py::pkg.mod.double" in planned and len(planned) == 7


def test_history_tests_absent_from_the_inventory_warn() -> None:
    inv = inventory_from_ids([f"t.py::test_{i}" for i in range(4)])
    hist = DurationHistory.single(
        {**{f"t.py::test_{i}": 1.0 for i in range(4)}, "pkg/mod.py::pkg.mod.double": 0.5}
    )
    m = plan_matrix(inv, hist)
    (warning,) = [w for w in m.warnings if "duration history" in w]
    assert "1 test(s)" in warning and "pkg/mod.py::pkg.mod.double" in warning
    assert "--pytest-args" in warning
    full = plan_matrix(inventory_from_ids([*inv.ids, "pkg/mod.py::pkg.mod.double"]), hist)
    assert not any("duration history" in w for w in full.warnings)


def test_unplanned_home_is_one_fitting_shard() -> None:
    m = plan_matrix(
        inventory_from_ids([f"t.py::test_{i}" for i in range(8)]),
        DurationHistory(),
        options=PlanOptions(shards=3),
    )
    homes = {unplanned_home(m, f"x.py::test_{i}", frozenset()) for i in range(50)}
    assert homes == {s.id for s in m.shards}  # spread over the shards, each test on one
    assert unplanned_home(m, "x.py::test_0", frozenset()) == unplanned_home(
        m, "x.py::test_0", frozenset()
    )
    assert unplanned_home(m, "x.py::gpu", frozenset({"gpu-nvidia"})) is None


def _partial_plan(project: Path, mode: str) -> Matrix:
    """A plan made without --doctest-modules (so the doctest is planned nowhere)."""
    ids = [f"test_a.py::test_t[{i}]" for i in range(6)]
    (project / "tests.txt").write_text("\n".join(ids) + "\n")
    argv = ["plan", "--tests", str(project / "tests.txt"), "--shards", "2", "--mode", mode]
    assert main([*argv, "--output", str(project / "m.json")]) == 0
    return Matrix.from_dict(json.loads((project / "m.json").read_text()))


def test_static_shards_run_an_unplanned_test_exactly_once(project: Path) -> None:
    m = _partial_plan(project, "static")
    seen: list[str] = []
    outs = ""
    for s in m.shards:
        r = _pytest(
            project,
            "--doctest-modules",
            "--fanout-matrix",
            "m.json",
            "--fanout-shard",
            s.id,
            log=f"{s.id}.log",
        )
        assert r.returncode == 0, r.stdout + r.stderr
        seen += _ran(project, f"{s.id}.log")
        outs += r.stdout
    assert seen.count("pkg/mod.py::pkg.mod.double") == 1  # run, not deselected, once
    assert len(seen) == 7 and len(set(seen)) == 7
    assert outs.count("1 collected test(s) were not in the plan") == 1


def test_queue_shards_run_an_unplanned_test_exactly_once(
    project: Path, queue_server: QueueServer
) -> None:
    m = _partial_plan(project, "queue")
    queue_api.handle_create(
        queue_server.state, "run", m.to_dict(), time.time(), QueueConfig(pull_overhead_s=0.01)
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--doctest-modules",
                "--fanout-queue",
                queue_server.url("run"),
                "--fanout-runner",
                s.id,
                "--fanout-matrix",
                "m.json",
                "--fanout-shard",
                s.id,
                f"--junitxml={s.id}.xml",
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "RUN_LOG": str(project / "q.log")},
        )
        for s in m.shards
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    seen = _ran(project, "q.log")
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 7
    assert "pkg/mod.py::pkg.mod.double" in seen
    # reported by its shard (JUnit), not by the queue, which never leased it
    reports = "".join((project / f"{s.id}.xml").read_text() for s in m.shards)
    assert reports.count('name="pkg.mod.double"') == 1
    assert "pkg/mod.py::pkg.mod.double" not in queue_server.state.results("run")
