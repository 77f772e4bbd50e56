"""GPU tests: the planner sends them to runners labelled gpu-nvidia + gpu-mem-ge-24g."""

import pytest


@pytest.mark.hw("gpu-nvidia", "gpu-mem>=24g")
def test_large_kernel() -> None:
    pytest.importorskip("pynvml")
