"""A fake ``pynvml`` module driven by a JSON box description (tests/data/probe/nvml/*.json).

It mirrors nvidia-ml-py's surface as used by runner_probe.nvidia: ``NVMLError`` whose
constructor maps an error value to its subclass (``NVMLError_LibraryNotFound`` for 12, …),
functions named as in the real module, handles as opaque objects. A field given as the string
``"NOT_SUPPORTED"`` raises ``NVMLError_NotSupported``; a ``null`` MIG slot raises NOT_FOUND.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    _by_value: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        target = cls._by_value.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {
            NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
            NVML_ERROR_NOT_SUPPORTED: "Not Supported",
            NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        }.get(self.value, f"NVML error {self.value}")


def _subclass(name: str, value: int) -> type[NVMLError]:
    cls = type(name, (NVMLError,), {})
    NVMLError._by_value[value] = cls
    return cls


NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _subclass("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)

DATA = Path(__file__).resolve().parents[1] / "data" / "probe" / "nvml"


class FakeNvml:
    """Module-like object; ``FakeNvml.load("h100x8")`` or ``FakeNvml(init_error=12)``."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_BRAND_UNKNOWN = 0
    NVML_BRAND_QUADRO = 1
    NVML_BRAND_TESLA = 2
    NVML_BRAND_NVS = 3
    NVML_BRAND_GEFORCE = 5

    def __init__(
        self,
        spec: dict[str, Any] | None = None,
        *,
        init_error: int | None = None,
        fail: dict[str, int] | None = None,
    ) -> None:
        self.spec = spec or {"devices": []}
        self.init_error = init_error
        self.fail = fail or {}  # function name -> error value raised on every call
        self.initialized = 0
        self.calls: list[str] = []

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> FakeNvml:
        spec = json.loads((DATA / f"{name}.json").read_text())
        return cls(spec, **kwargs)

    # -- helpers ---------------------------------------------------------------------------
    def _enter(self, fn: str) -> None:
        self.calls.append(fn)
        if fn in self.fail:
            raise NVMLError(self.fail[fn])
        if fn != "nvmlInit" and self.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    @staticmethod
    def _value(value: Any) -> Any:
        if value == "NOT_SUPPORTED":
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def _dev(self, handle: Any) -> dict[str, Any]:
        return handle.spec  # type: ignore[no-any-return]

    # -- system ----------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return str(self._value(self.spec.get("driver_version", "NOT_SUPPORTED")))

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return int(self._value(self.spec.get("cuda_driver_version", "NOT_SUPPORTED")))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return int(self._value(self.spec.get("cuda_driver_version", "NOT_SUPPORTED")))

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return str(self._value(self.spec.get("nvml_version", "NOT_SUPPORTED")))

    # -- devices ---------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.spec["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        return SimpleNamespace(spec=self.spec["devices"][index], mig=False)

    def nvmlDeviceGetName(self, h: Any) -> str:
        self._enter("nvmlDeviceGetName")
        return str(self._value(self._dev(h)["name"]))

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        self._enter("nvmlDeviceGetUUID")
        return str(self._value(self._dev(h)["uuid"]))

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        self._enter("nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=self._value(self._dev(h)["bus_id"]))

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo")
        d = self._dev(h)
        total = int(self._value(d["memory_total"]))
        used = int(d.get("memory_used", 0))
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetCudaComputeCapability(self, h: Any) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability")
        major, minor = self._value(self._dev(h)["cc"])
        return int(major), int(minor)

    def nvmlDeviceGetArchitecture(self, h: Any) -> int:
        self._enter("nvmlDeviceGetArchitecture")
        return int(self._value(self._dev(h).get("arch", "NOT_SUPPORTED")))

    def nvmlDeviceGetBrand(self, h: Any) -> int:
        self._enter("nvmlDeviceGetBrand")
        return int(self._value(self._dev(h).get("brand", "NOT_SUPPORTED")))

    def nvmlDeviceGetPowerManagementLimit(self, h: Any) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit")
        return int(self._value(self._dev(h).get("power_limit_mw", "NOT_SUPPORTED")))

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:
        self._enter("nvmlDeviceGetMigMode")
        return list(self._value(self._dev(h).get("mig_mode", "NOT_SUPPORTED")))

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount")
        return len(self._dev(h).get("mig_devices", []))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, index: int) -> Any:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex")
        slot = self._dev(h).get("mig_devices", [])[index]
        if slot is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return SimpleNamespace(spec=slot, mig=True)

    def nvmlDeviceGetAttributes(self, h: Any) -> Any:
        self._enter("nvmlDeviceGetAttributes")
        return SimpleNamespace(gpuInstanceSliceCount=self._dev(h).get("slices", 0))

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self._value(self._dev(h).get("utilization", 0)), memory=0)
