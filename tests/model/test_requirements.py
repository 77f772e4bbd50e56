"""compile_requirement: requirement strings -> the one label a runner must hold."""

from __future__ import annotations

import pytest

from ci_app.errors import CiFanoutError
from ci_app.model.labels import (
    LADDERS,
    RequirementError,
    compile_requirement,
    compile_requirements,
    is_valid_label,
)


@pytest.mark.parametrize(
    ("requirement", "label"),
    [
        ("gpu-mem>=20g", "gpu-mem-ge-24g"),
        ("gpu-mem>=24g", "gpu-mem-ge-24g"),
        ("gpu-mem>=24.5g", "gpu-mem-ge-32g"),
        ("gpu-mem >= 80GB", "gpu-mem-ge-80g"),
        ("gpu-mem>=24gib", "gpu-mem-ge-32g"),  # 24 GiB = 25.77 GB
        ("gpu_mem>=141g", "gpu-mem-ge-141g"),
        ("mem>=64g", "mem-ge-64g"),
        ("mem>=2g", "mem-ge-4g"),
        ("mem>=1t", "mem-ge-1024g"),
        ("cpus>=8", "cpus-ge-8"),
        ("cpus>=3", "cpus-ge-4"),
        ("cpus>=1", "cpus-ge-1"),
        ("gpus>=2", "gpus-ge-2"),
        ("gpus>=3", "gpus-ge-4"),
        ("cuda>=12.4", "cuda-ge-12.4"),
        ("cuda>=12.3", "cuda-ge-12.4"),
        ("cuda>=12", "cuda-ge-12.0"),
        ("cuda>=12.4.1", "cuda-ge-12.4"),
        ("cuda>=11", "cuda-ge-11.8"),
        ("sm>=80", "sm-ge-80"),
        ("sm>=8.6", "sm-ge-86"),
        ("sm>=81", "sm-ge-86"),
        ("disk-free>=20g", "disk-free-ge-50g"),
        ("gpu-nvidia", "gpu-nvidia"),
        ("gpu", "gpu"),
        ("cpu-avx512", "cpu-avx512"),
        ("webgpu", "webgpu"),
        ("cpu:avx512", "cpu-avx512"),
        ("  GPU-NVIDIA ", "gpu-nvidia"),
    ],
)
def test_compile_requirement(requirement: str, label: str) -> None:
    assert compile_requirement(requirement) == label
    assert is_valid_label(label)


@pytest.mark.parametrize(
    ("requirement", "fragment"),
    [
        ("gpu-mem>=200g", "above the top step"),
        ("cpus>=256", "above the top step"),
        ("cuda>=14", "above the top step"),
        ("sm>=130", "above the top step"),
        ("foo>=3", "unknown requirement key"),
        ("mem==8g", "only '>='"),
        ("mem<8g", "only '>='"),
        ("gpu-mem>=24q", "bad size"),
        ("cuda>=12.x", "bad version"),
        ("gpu-mem>=", "cannot parse"),
        ("Bad Label!", "not a valid label"),
        ("", "empty"),
        ("cpus>=0", "always true"),
        ("x" * 64, "not a valid label"),
    ],
)
def test_compile_requirement_errors(requirement: str, fragment: str) -> None:
    with pytest.raises(RequirementError, match=fragment) as info:
        compile_requirement(requirement)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CiFanoutError)


def test_compile_requirements_keeps_strongest_step() -> None:
    got = compile_requirements(["gpu-mem>=16g", "gpu-mem>=40g", "gpu", "cuda>=12.0", "cuda>=12.4"])
    assert got == frozenset({"gpu-mem-ge-40g", "gpu", "cuda-ge-12.4"})


def test_every_step_compiles_to_itself() -> None:
    for ladder in LADDERS.values():
        for step in ladder.steps:
            unit = "g" if ladder.kind == "gb" else ""
            assert compile_requirement(f"{ladder.key}>={step}{unit}") == ladder.label(step)
