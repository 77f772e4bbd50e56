"""The planner side: a test that needs a hardware adapter never lands on a software-only runner;
one that says software is fine does, and a software adapter is not scarce hardware."""

from __future__ import annotations

from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.inventory import Inventory, TestSpec
from ci_app.matrix.planner import PlanOptions, plan_matrix
from ci_app.matrix.pools import runners_from_json

SOFTWARE_ONLY = runners_from_json(
    [{"name": f"lab{i}", "labels": ["self-hosted", "x64", "webgpu-sw"]} for i in range(2)]
)
WITH_HARDWARE = runners_from_json(
    [
        {"name": "lab0", "labels": ["self-hosted", "x64", "webgpu-sw"]},
        {"name": "gpu0", "labels": ["self-hosted", "x64", "webgpu", "webgpu-nvidia"]},
    ]
)
INVENTORY = Inventory(
    (
        TestSpec("tests/test_a.py::test_plain"),
        TestSpec("tests/test_webgpu.py::test_any_adapter", ("webgpu-sw",)),
        TestSpec("tests/test_webgpu.py::test_hardware", ("webgpu",)),
        TestSpec("tests/test_webgpu.py::test_nvidia", ("webgpu-nvidia",)),
    )
)


def _where(m: object) -> dict[str, tuple[str, ...]]:
    return {t: s.runs_on for s in m.shards for t in s.tests}  # type: ignore[attr-defined]


def test_hardware_webgpu_tests_are_never_planned_on_a_fallback_runner() -> None:
    m = plan_matrix(
        INVENTORY,
        DurationHistory(),
        SOFTWARE_ONLY,
        PlanOptions(on_unsatisfied="report", setup_s=0),
    )
    where = _where(m)
    assert "tests/test_webgpu.py::test_hardware" not in where
    assert "tests/test_webgpu.py::test_nvidia" not in where
    not_run = {t for u in m.unsatisfied for t in u.tests}
    assert not_run == {"tests/test_webgpu.py::test_hardware", "tests/test_webgpu.py::test_nvidia"}
    assert "webgpu-sw" in where["tests/test_webgpu.py::test_any_adapter"]
    # a software adapter is no accelerator: plain tests still run on these runners
    assert "tests/test_a.py::test_plain" in where


def test_hardware_tests_go_to_the_hardware_runner() -> None:
    m = plan_matrix(INVENTORY, DurationHistory(), WITH_HARDWARE, PlanOptions(setup_s=0))
    where = _where(m)
    assert "webgpu" in where["tests/test_webgpu.py::test_hardware"]
    assert "webgpu-nvidia" in where["tests/test_webgpu.py::test_nvidia"]
    # plain tests stay off the (scarce) hardware runner
    assert "webgpu" not in where["tests/test_a.py::test_plain"]
