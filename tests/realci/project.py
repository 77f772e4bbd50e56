"""The scenario project the real-CI tests run: passing, failing (with colour codes), skipped and
flaky tests, one test that needs a GPU no runner has, and a hook that kills the test process
(a shard that dies) on demand."""

from __future__ import annotations

from pathlib import Path

RUNNERS = [
    {"name": "box-1", "labels": ["self-hosted", "linux", "x64"]},
    {"name": "box-2", "labels": ["self-hosted", "linux", "x64"]},
]
GPU_TEST = "tests/test_hw.py::test_needs_a_big_gpu"
FAILING = "tests/test_core.py::test_colours"
FLAKY = "tests/test_core.py::test_flaky"
KILLER = "tests/test_zz_last.py::test_last"
SKIPPED = "tests/test_core.py::test_skipped"  # skip-marked: skipped before any set-up hook

KILL_FILE = "e2e-kill.txt"

CONFTEST = '''
import os
import signal
from pathlib import Path


def pytest_runtest_setup(item):
    """E2E_KILL (or the file e2e-kill.txt at the root) = all: every shard's test process dies
    at its first test; = <node id>: the process that runs that test dies (SIGKILL: no report
    is written)."""
    kill = os.environ.get("E2E_KILL", "")
    marker = Path(item.config.rootpath, "e2e-kill.txt")
    if not kill and marker.exists():
        kill = marker.read_text().strip()
    if kill and (kill == "all" or item.nodeid == kill):
        os.kill(os.getpid(), signal.SIGKILL)
'''

TEST_CORE = """
import pytest

EXPECTED = "{expected}"
_calls = {{"flaky": 0}}


def test_ok():
    assert 1 + 1 == 2


def test_colours():
    # PY_COLORS=1 makes pytest colour this diff inside the JUnit message
    assert "red" == EXPECTED


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


def test_flaky():
    _calls["flaky"] += 1
    assert _calls["flaky"] > 1, "fails on its first attempt only"
"""

TEST_MORE = """
import pytest


@pytest.mark.parametrize("n", range(4))
def test_numbers(n):
    assert n >= 0
"""

TEST_HW = """
import pytest


@pytest.mark.hw("gpu-nvidia", "gpu-mem>=24g")
def test_needs_a_big_gpu():
    pass
"""

TEST_LAST = """
def test_last():
    pass
"""


def write_project(root: Path, *, failing: bool = True, kill: str = "") -> Path:
    """The project at ``root``; ``failing=False`` makes ``test_colours`` pass (the base);
    ``kill`` (a node id or ``all``) makes the shards that run it die."""
    tests = root / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "conftest.py").write_text(CONFTEST)
    (tests / "test_core.py").write_text(TEST_CORE.format(expected="green" if failing else "red"))
    (tests / "test_more.py").write_text(TEST_MORE)
    (tests / "test_hw.py").write_text(TEST_HW)
    (tests / "test_zz_last.py").write_text(TEST_LAST)
    marker = root / KILL_FILE
    if kill:
        marker.write_text(kill + "\n")
    else:
        marker.unlink(missing_ok=True)
    return root


def all_tests() -> set[str]:
    return {
        "tests/test_core.py::test_ok",
        FAILING,
        "tests/test_core.py::test_skipped",
        FLAKY,
        *(f"tests/test_more.py::test_numbers[{n}]" for n in range(4)),
        GPU_TEST,
        KILLER,
    }
