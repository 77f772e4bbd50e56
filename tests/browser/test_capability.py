"""Run-time capability matching: hardware never silently replaced by SwiftShader."""

from __future__ import annotations

import pytest

from ci_app.browser.capability import Capabilities, decide, needs_from
from ci_app.model.profile import WebGpuAdapter

SWIFTSHADER = Capabilities(
    browser_version="156.0.8078.114",
    webgpu_api=True,
    adapter=WebGpuAdapter(
        vendor="google", architecture="swiftshader", type="CPU", backend="vulkan", fallback=True
    ),
    features=frozenset({"timestamp-query", "subgroups"}),
    limits={"maxComputeWorkgroupStorageSize": 32768, "maxBufferSize": 1 << 30},
    webnn={"cpu": False, "gpu": False, "npu": False},
    webnn_error="NotSupportedError: WebNN is not supported on this platform.",
)
NVIDIA = Capabilities(
    browser_version="156.0.8078.114",
    webgpu_api=True,
    adapter=WebGpuAdapter(
        vendor="nvidia", architecture="ampere", type="discrete GPU", backend="vulkan"
    ),
    features=frozenset({"shader-f16", "timestamp-query"}),
    limits={"maxComputeWorkgroupStorageSize": 49152},
    webnn={"cpu": True, "gpu": True, "npu": False},
)
NO_ADAPTER = Capabilities(browser_version="156", webgpu_api=True)


def test_adapter_classes_and_descriptions() -> None:
    assert SWIFTSHADER.adapter_class == "google-swiftshader-fallback"
    assert not SWIFTSHADER.hardware
    assert SWIFTSHADER.describe() == "google swiftshader (fallback, CPU)"
    assert NVIDIA.adapter_class == "nvidia-ampere" and NVIDIA.hardware
    assert NO_ADAPTER.adapter_class == "no-webgpu" and NO_ADAPTER.describe() == "no WebGPU adapter"
    # a non-fallback adapter of type CPU is still software
    cpu = Capabilities(adapter=WebGpuAdapter(vendor="mesa", architecture="llvmpipe", type="CPU"))
    assert not cpu.hardware and cpu.adapter_class == "mesa-llvmpipe-fallback"


def test_needs_from_labels_and_marker() -> None:
    n = needs_from(["gpu-mem>=24g", "webgpu", "cpu-avx2"])
    assert n.webgpu and n.hardware and n.vendor is None
    sw = needs_from(["webgpu-sw"])
    assert sw.webgpu and not sw.hardware
    vendor = needs_from(["WebGPU-NVIDIA"])
    assert vendor.hardware and vendor.vendor == "nvidia"
    nn = needs_from(["webnn-gpu", "webnn"], features="shader-f16", limits={"maxBufferSize": 1})
    assert nn.webnn == ("gpu", "any") and nn.features == ("shader-f16",) and nn.webgpu
    assert not needs_from(["gpu-nvidia", "x64"]).any
    with pytest.raises(ValueError, match="non-negative"):
        needs_from([], limits={"maxBufferSize": -1})
    with pytest.raises(ValueError, match="non-negative"):
        needs_from([], limits={"maxBufferSize": "big"})


def test_hardware_test_on_a_fallback_adapter_is_never_run() -> None:
    needs = needs_from(["webgpu"])
    # the runner's label promised hardware: the label lied -> infrastructure error
    lied = decide(needs, SWIFTSHADER, frozenset({"webgpu", "x64"}))
    assert lied.verdict == "infra"
    assert "webgpu" in lied.reason and "google swiftshader (fallback, CPU)" in lied.reason
    # nothing promised (a developer's machine): skip, saying why
    local = decide(needs, SWIFTSHADER, frozenset())
    assert local.verdict == "skip"
    assert local.reason == (
        "needs a hardware WebGPU adapter; this runner's browser has google swiftshader "
        "(fallback, CPU)"
    )
    # a runner labelled only webgpu-sw did not promise hardware either
    assert decide(needs, SWIFTSHADER, frozenset({"webgpu-sw"})).verdict == "skip"
    assert decide(needs, NVIDIA, frozenset({"webgpu"})).verdict == "run"


def test_software_is_fine_only_when_the_test_says_so() -> None:
    sw = needs_from(["webgpu-sw"])
    assert decide(sw, SWIFTSHADER, frozenset({"webgpu-sw"})).verdict == "run"
    assert decide(sw, NVIDIA, frozenset()).verdict == "run"  # hardware is fine too
    no = decide(sw, NO_ADAPTER, frozenset({"webgpu-sw"}))
    assert no.verdict == "infra" and "a WebGPU adapter" in no.reason
    assert decide(sw, NO_ADAPTER, frozenset()).verdict == "skip"


def test_vendor_features_limits_and_webnn() -> None:
    assert decide(needs_from(["webgpu-nvidia"]), NVIDIA, frozenset()).verdict == "run"
    amd = decide(needs_from(["webgpu-amd"]), NVIDIA, frozenset({"webgpu", "webgpu-amd"}))
    assert amd.verdict == "infra" and "webgpu-amd" in amd.reason
    f16 = decide(needs_from(["webgpu-sw"], features=["shader-f16"]), SWIFTSHADER, frozenset())
    assert f16.verdict == "skip" and "shader-f16" in f16.reason
    # labels never promise features: a missing feature skips even where webgpu was promised
    assert (
        decide(
            needs_from([], features=["shader-f16"]), SWIFTSHADER, frozenset({"webgpu-sw"})
        ).verdict
        == "skip"
    )
    assert decide(needs_from([], features=["shader-f16"]), NVIDIA, frozenset()).verdict == "run"
    big = needs_from(["webgpu-sw"], limits={"maxComputeWorkgroupStorageSize": 49152})
    assert decide(big, NVIDIA, frozenset()).verdict == "run"
    small = decide(big, SWIFTSHADER, frozenset())
    assert small.verdict == "skip" and "32768" in small.reason
    unknown = decide(needs_from([], limits={"maxNothing": 1}), NVIDIA, frozenset())
    assert unknown.verdict == "skip" and "no such limit" in unknown.reason
    nn = needs_from(["webnn-gpu"])
    assert decide(nn, NVIDIA, frozenset()).verdict == "run"
    lied = decide(nn, SWIFTSHADER, frozenset({"webnn-gpu"}))
    assert lied.verdict == "infra" and "not supported on this platform" in lied.reason
    assert decide(nn, SWIFTSHADER, frozenset({"webnn-cpu"})).verdict == "skip"
    assert decide(needs_from(["webnn"]), NVIDIA, frozenset()).verdict == "run"


def test_plain_browser_tests_need_nothing() -> None:
    assert decide(needs_from([]), NO_ADAPTER, frozenset()).verdict == "run"
    assert decide(needs_from(["x64"]), None, frozenset()).verdict == "run"
    assert decide(needs_from(["webgpu"]), None, frozenset({"webgpu"})).verdict == "infra"
