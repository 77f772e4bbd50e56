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

CONFTEST = '''
import os
import signal


def pytest_runtest_setup(item):
    """E2E_KILL=all: every shard's test process dies at its first test; E2E_KILL=<node id>:
    the process that runs that test dies (SIGKILL: no report is written)."""
    kill = os.environ.get("E2E_KILL", "")
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


def write_project(root: Path, *, failing: bool = True) -> Path:
    """The project at ``root``; ``failing=False`` makes ``test_colours`` pass (the base)."""
    tests = root / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "conftest.py").write_text(CONFTEST)
    (tests / "test_core.py").write_text(TEST_CORE.format(expected="green" if failing else "red"))
    (tests / "test_more.py").write_text(TEST_MORE)
    (tests / "test_hw.py").write_text(TEST_HW)
    (tests / "test_zz_last.py").write_text(TEST_LAST)
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
