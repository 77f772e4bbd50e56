"""HardwareProfile v1: what a runner probe saw on one machine.

Raw facts only (labels are derived from them in :mod:`ci_app.model.labels`); units in field
names (``_bytes``, ``_w``, ``_ms``). Every source section carries a :class:`Status` so that
"no GPU" (``absent``) differs from "the GPU check failed" (``error``).

Pure data: frozen dataclasses with ``to_dict``/``from_dict`` for JSON, no I/O. The JSON Schema
lives beside this module in ``schemas/profile.v1.json``; bump :data:`SCHEMA_VERSION` on a
breaking change (new optional fields are not breaking).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

SCHEMA_ID = "https://ci-fanout.dev/schemas/profile.v1.json"
SCHEMA_VERSION = 1


class Status(enum.StrEnum):
    """Outcome of one probe source."""

    OK = "ok"
    ABSENT = "absent"  # the thing is not there (no driver, no browser): a fact, not a failure
    ERROR = "error"  # the check itself failed: keep previous labels, report degraded


class _Json:
    """Generic ``to_dict``/``from_dict`` for the frozen dataclasses below.

    Encoding: dataclass -> dict (every field, ``None`` kept), tuple -> list, enum -> value.
    Decoding follows the type hints; unknown keys are ignored (forward compatible), missing
    keys take the field default.
    """

    __slots__ = ()
    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        out = _encode(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return typing.cast(Self, _decode(cls, d))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _hints_of(cls: type) -> dict[str, Any]:
    cache = _Json._hints
    if cls not in cache:
        cache[cls] = typing.get_type_hints(cls)
    return cache[cls]


def _decode(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        for a in non_none:
            try:
                return _decode(a, value)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{value!r} matches none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_decode(item, v) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {value!r}")
        args = typing.get_args(tp)
        vt = args[1] if args else Any
        return {str(k): _decode(vt, v) for k, v in value.items()}
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object for {tp.__name__}, got {value!r}")
        hints = _hints_of(tp)
        kwargs = {
            f.name: _decode(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value
        }
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected a boolean, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    raise TypeError(f"cannot decode {tp!r}")  # pragma: no cover - a missing case is a bug


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeError(_Json):
    """One source that failed, with its message (the probe itself still succeeded)."""

    source: str
    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeInfo(_Json):
    version: str
    collected_at: str  # ISO 8601, UTC
    timings_ms: dict[str, float] = field(default_factory=dict)
    errors: tuple[ProbeError, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Host(_Json):
    status: Status = Status.OK
    error: str | None = None
    hostname: str = ""
    os: str = ""  # linux / windows / darwin
    os_release: str | None = None  # PRETTY_NAME of /etc/os-release
    kernel: str | None = None
    container: str | None = None  # docker / podman / kubernetes / lxc / … ; None on bare metal
    cgroup: dict[str, int] = field(default_factory=dict)  # controller -> 1 | 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Cpu(_Json):
    status: Status = Status.OK
    error: str | None = None
    arch: str = ""  # x86_64 / aarch64 / ppc64le / s390x / riscv64
    vendor: str | None = None
    model: str | None = None
    x86_64_level: int | None = None  # 1..4, None off x86
    uarch: str | None = None
    logical: int = 0  # host logical CPUs (os.cpu_count: NOT cgroup-aware)
    physical: int | None = None
    affinity: int = 0  # len(sched_getaffinity): cpuset-aware
    quota: float | None = None  # cgroup CPU quota in CPUs (cpu.max / cfs_quota), None = unlimited
    effective: int = 0  # min(affinity, ceil(quota)): what a test runner may use
    flags: tuple[str, ...] = ()  # raw kernel flags (x86 "flags", Arm "Features")


@dataclass(frozen=True, kw_only=True, slots=True)
class Memory(_Json):
    status: Status = Status.OK
    error: str | None = None
    total_bytes: int = 0  # MemTotal (host total inside a container)
    limit_bytes: int | None = None  # cgroup limit, None = unlimited
    effective_bytes: int = 0  # min(total, limit)


@dataclass(frozen=True, kw_only=True, slots=True)
class Disk(_Json):
    status: Status = Status.OK
    error: str | None = None
    path: str = ""
    total_bytes: int = 0
    free_bytes: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Nvidia(_Json):
    status: Status = Status.ABSENT
    error: str | None = None
    driver_version: str | None = None  # "550.54.15"
    cuda_driver_version: str | None = None  # "12.4": highest CUDA the driver supports
    nvml_version: str | None = None
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES as seen (None = unset)


@dataclass(frozen=True, kw_only=True, slots=True)
class MigDevice(_Json):
    index: int
    uuid: str | None = None  # "MIG-…"
    profile: str | None = None  # "1g.10gb"
    memory_bytes: int | None = None
    slices: int | None = None  # GPU instance slice count


@dataclass(frozen=True, kw_only=True, slots=True)
class Mig(_Json):
    current: bool | None = None  # None: NOT_SUPPORTED (not a MIG-capable GPU)
    pending: bool | None = None
    devices: tuple[MigDevice, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Gpu(_Json):
    vendor: str  # nvidia / amd / intel
    index: int
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    memory_bytes: int | None = None
    compute_capability: str | None = None  # "9.0"
    arch: str | None = None  # hopper, ampere, …
    gfx_target: str | None = None  # AMD: gfx942
    brand: str | None = None
    mig: Mig | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Accelerator(_Json):
    """A PCI device class of interest other than NVIDIA GPUs (NVML covers those)."""

    kind: str  # gpu / npu / tpu / gaudi / neuron / fpga / other
    vendor: str | None = None  # amd / intel / habana / aws / google / … when known
    pci_vendor: str = ""  # "0x1002"
    pci_device: str = ""
    pci_class: str = ""  # "0x030000"
    driver: str | None = None
    count: int = 1
    pci_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Accelerators(_Json):
    status: Status = Status.ABSENT
    error: str | None = None
    devices: tuple[Accelerator, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class WebGpuAdapter(_Json):
    vendor: str | None = None
    architecture: str | None = None
    device: str | None = None
    description: str | None = None
    type: str | None = None  # "discrete GPU" / "integrated GPU" / "CPU" / …
    backend: str | None = None  # vulkan / d3d12 / metal
    fallback: bool = False  # isFallbackAdapter: a software (SwiftShader) adapter


@dataclass(frozen=True, kw_only=True, slots=True)
class WebGpu(_Json):
    api: bool = False  # 'gpu' in navigator (proves nothing by itself)
    adapter: WebGpuAdapter | None = None
    features: tuple[str, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class WebNn(_Json):
    api: bool = False  # 'ml' in navigator
    cpu: bool | None = None  # createContext({deviceType}) succeeded
    gpu: bool | None = None
    npu: bool | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Browser(_Json):
    status: Status = Status.ABSENT
    error: str | None = None
    engine: str | None = None  # chromium
    version: str | None = None
    executable: str | None = None
    flags: tuple[str, ...] = ()  # extra flags of the pass that produced this result
    webgpu: WebGpu | None = None
    webnn: WebNn | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HardwareProfile(_Json):
    probe: ProbeInfo
    host: Host
    cpu: Cpu
    memory: Memory
    disk: Disk
    nvidia: Nvidia = field(default_factory=Nvidia)
    gpus: tuple[Gpu, ...] = ()
    accelerators: Accelerators = field(default_factory=Accelerators)
    browser: Browser = field(default_factory=Browser)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = _encode(self)
        assert isinstance(d, dict)
        return {"$schema": SCHEMA_ID, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"HardwareProfile schema_version {version!r} is not supported "
                f"(this build reads {SCHEMA_VERSION}); upgrade ci-fanout"
            )
        return typing.cast(Self, _decode(cls, d))

    def fingerprint(self) -> str:
        """sha256 over the facts, excluding volatile ones (timings, clock, free disk).

        Heartbeats send the full profile only when this changes.
        """
        d = self.to_dict()
        d["probe"] = {"version": self.probe.version}
        d["disk"] = {k: v for k, v in d["disk"].items() if k != "free_bytes"}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()
