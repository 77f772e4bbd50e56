"""NVML collector against fake NVML modules shaped like real boxes."""

from __future__ import annotations

import pytest

from ci_app.model.profile import Status
from runner_probe.nvidia import arch_for, collect_nvidia, sample_gpu_load, select_visible
from tests.runner_probe.fakenvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    FakeNvml,
)

H100_MEM = 81559 * 2**20  # what NVML reports for an "80GB" H100


def test_h100_box() -> None:
    fake = FakeNvml.load("h100x8")
    nvidia, gpus = collect_nvidia(fake, {})
    assert nvidia.status is Status.OK
    assert nvidia.driver_version == "550.54.15"
    assert nvidia.cuda_driver_version == "12.4"
    assert len(gpus) == 8
    assert [g.index for g in gpus] == list(range(8))
    g = gpus[0]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.memory_bytes == H100_MEM
    assert g.compute_capability == "9.0"
    assert g.arch == "hopper"
    assert g.brand == "tesla"
    assert g.pci_bus_id == "00000000:18:00.0"
    # NOT_SUPPORTED power limit: null field, GPU kept
    assert g.power_limit_w is None
    assert g.mig is not None and g.mig.current is False
    assert fake.initialized == 0  # init and shutdown balanced


def test_mig_box() -> None:
    nvidia, gpus = collect_nvidia(FakeNvml.load("a100-mig"), {})
    assert nvidia.cuda_driver_version == "12.2"
    assert len(gpus) == 2
    mig = gpus[0].mig
    assert mig is not None and mig.current and mig.pending
    # slot 4 is unpopulated (NOT_FOUND) and skipped
    assert [d.profile for d in mig.devices] == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    assert [d.slices for d in mig.devices] == [3, 2, 1, 1]
    assert mig.devices[2].memory_bytes == 9728 * 2**20
    assert gpus[0].power_limit_w == 400.0
    assert gpus[1].mig is not None and gpus[1].mig.current is False and gpus[1].mig.pending


@pytest.mark.parametrize("value", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_no_driver_is_absent(value: int) -> None:
    nvidia, gpus = collect_nvidia(FakeNvml(init_error=value), {})
    assert nvidia.status is Status.ABSENT
    assert gpus == ()


def test_not_installed_is_absent() -> None:
    nvidia, gpus = collect_nvidia(None, {})
    assert nvidia.status is Status.ABSENT
    assert "nvidia-ml-py" in (nvidia.error or "")
    assert gpus == ()


def test_other_init_error_is_error() -> None:
    nvidia, _ = collect_nvidia(FakeNvml(init_error=NVML_ERROR_NO_PERMISSION), {})
    assert nvidia.status is Status.ERROR


def test_lost_gpu_mid_probe_is_error_and_shuts_down() -> None:
    fake = FakeNvml.load("h100x8", fail={"nvmlDeviceGetMemoryInfo": NVML_ERROR_GPU_IS_LOST})
    nvidia, gpus = collect_nvidia(fake, {})
    assert nvidia.status is Status.ERROR
    assert "lost" in (nvidia.error or "").lower()
    assert gpus == ()
    assert fake.initialized == 0


def test_field_no_permission_is_null() -> None:
    fake = FakeNvml.load("h100x8", fail={"nvmlDeviceGetUUID": NVML_ERROR_NO_PERMISSION})
    nvidia, gpus = collect_nvidia(fake, {})
    assert nvidia.status is Status.OK
    assert len(gpus) == 8
    assert all(g.uuid is None for g in gpus)


def test_non_cuda_device_is_skipped() -> None:
    fake = FakeNvml.load("h100x8")
    fake.spec["devices"][7] = dict(fake.spec["devices"][7], cc=[0, 0], name="NVIDIA NPU")
    _, gpus = collect_nvidia(fake, {})
    assert len(gpus) == 7


@pytest.mark.parametrize(
    ("spec", "indices"),
    [
        ("0,3", [0, 3]),
        ("3,0", [3, 0]),
        ("", []),
        ("1,99,2", [1]),  # like CUDA: stop at the first invalid token
        ("-1", []),
        ("GPU-8a1f3c2e-0000-4000-8000-000000000005", [5]),
        ("GPU-8a1f3c2e-0000-4000-8000-000000000006,2", [6, 2]),
        ("GPU-8a1f3c2e", []),  # ambiguous prefix matches nothing
    ],
)
def test_cuda_visible_devices(spec: str, indices: list[int]) -> None:
    nvidia, gpus = collect_nvidia(FakeNvml.load("h100x8"), {"CUDA_VISIBLE_DEVICES": spec})
    assert [g.index for g in gpus] == indices
    assert nvidia.visible_devices == spec


def test_cuda_visible_mig_uuid() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "MIG-33333333-0000-4000-8000-000000000000"}
    _, gpus = collect_nvidia(FakeNvml.load("a100-mig"), env)
    assert len(gpus) == 1
    assert gpus[0].mig is not None
    assert [d.profile for d in gpus[0].mig.devices] == ["1g.10gb"]


def test_select_visible_unset_is_everything() -> None:
    sel = select_visible(None, ["GPU-a", "GPU-b"], {})
    assert sel.gpus == (0, 1)


@pytest.mark.parametrize(
    ("cc", "nvml_arch", "arch"),
    [
        ((7, 0), None, "volta"),
        ((7, 5), None, "turing"),
        ((8, 0), None, "ampere"),
        ((8, 6), None, "ampere"),
        ((8, 9), None, "ada"),
        ((9, 0), None, "hopper"),
        ((10, 0), None, "blackwell"),
        ((12, 0), None, "blackwell"),
        (None, 9, "hopper"),
        (None, None, None),
    ],
)
def test_arch_for(cc: tuple[int, int] | None, nvml_arch: int | None, arch: str | None) -> None:
    assert arch_for(cc, nvml_arch) == arch


def test_sample_gpu_load() -> None:
    fake = FakeNvml.load("a100-mig")
    _, gpus = collect_nvidia(fake, {})
    load = sample_gpu_load(fake, gpus)
    assert load == [
        {
            "index": 0,
            "uuid": "GPU-5b2e9d10-0000-4000-8000-00000000a100",
            "utilization_percent": None,  # NOT_SUPPORTED under MIG
            "memory_used_bytes": 0,
        },
        {
            "index": 1,
            "uuid": "GPU-5b2e9d10-0000-4000-8000-00000000a101",
            "utilization_percent": 12.0,
            "memory_used_bytes": 2147483648,
        },
    ]
    assert fake.initialized == 0
    assert sample_gpu_load(FakeNvml(init_error=12), gpus) == []
