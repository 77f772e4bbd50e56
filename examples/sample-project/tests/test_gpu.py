import pytest


@pytest.mark.hw("gpu-nvidia", "gpu-mem>=24g")
def test_matmul_on_gpu() -> None:
    import pynvml  # only reached on a runner the planner matched to the labels

    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetCount() >= 1
