"""Browser tests: the planner sends them to runners whose probe found a hardware WebGPU adapter."""

import pytest


@pytest.mark.hw("webgpu")
def test_webgpu_adapter() -> None:
    pytest.importorskip("playwright")
