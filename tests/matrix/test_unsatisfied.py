"""``--unsatisfied report``: tests no runner can take are listed, the rest still planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_app.cli import main
from ci_app.errors import PlanningError
from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.inventory import Inventory, TestSpec
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.matrix.pools import runners_from_json

CPU_ONLY = runners_from_json(
    [{"name": f"cpu{i}", "labels": ["self-hosted", "x64"]} for i in range(2)]
)
INVENTORY = Inventory(
    (
        *(TestSpec(f"tests/test_a.py::test_{i}") for i in range(6)),
        TestSpec("tests/test_gpu.py::test_big", ("gpu-nvidia", "gpu-mem>=24g")),
    )
)


def test_default_is_still_an_error() -> None:
    with pytest.raises(PlanningError, match="gpu-mem-ge-24g"):
        plan_matrix(INVENTORY, DurationHistory(), CPU_ONLY)


def test_report_mode_lists_the_test_and_plans_the_rest() -> None:
    m = plan_matrix(
        INVENTORY, DurationHistory(), CPU_ONLY, PlanOptions(on_unsatisfied="report", setup_s=0)
    )
    planned = sorted(t for s in m.shards for t in s.tests)
    assert planned == [f"tests/test_a.py::test_{i}" for i in range(6)]
    assert len(m.unsatisfied) == 1
    u = m.unsatisfied[0]
    assert u.tests == ("tests/test_gpu.py::test_big",)
    assert u.requires == ("gpu-mem-ge-24g", "gpu-nvidia")
    assert "gpu-nvidia" in u.reason and "not run" in m.warnings[-1]
    again = Matrix.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.unsatisfied == m.unsatisfied


def test_report_mode_with_nothing_runnable_is_an_error() -> None:
    only_gpu = Inventory((TestSpec("t::g", ("gpu-nvidia",)),))
    with pytest.raises(PlanningError, match="no test can run"):
        plan_matrix(only_gpu, DurationHistory(), CPU_ONLY, PlanOptions(on_unsatisfied="report"))


def test_cli_flag(tmp_path: Path) -> None:
    tests = tmp_path / "tests.txt"
    tests.write_text("a::x\na::y\n")
    runners = tmp_path / "runners.json"
    runners.write_text(json.dumps([{"name": "r", "labels": ["self-hosted"]}]))
    out = tmp_path / "m.json"
    assert main(["plan", "--tests", str(tests), "--runners", str(runners), "--output", str(out),
                 "--unsatisfied", "report"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["unsatisfied"] == []
