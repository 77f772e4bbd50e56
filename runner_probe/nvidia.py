"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``).

- No driver: ``nvmlInit()`` raises ``NVMLError_LibraryNotFound`` (or ``DriverNotLoaded``) in
  under a millisecond; that is status ``absent`` ("no NVIDIA GPU"), not an error.
- NVML ignores ``CUDA_VISIBLE_DEVICES``; a runner pinned to some GPUs must only advertise
  those, so :func:`select_visible` filters the same way CUDA does (indices, ``GPU-``/``MIG-``
  UUIDs or unique prefixes, stopping at the first token that matches nothing).
- Each per-field call is wrapped: NOT_SUPPORTED (GeForce power limits, MIG mode on non-MIG
  GPUs, …) makes that one field null and keeps the GPU.

The module is passed in (``nvml``) so tests drive a fake shaped like a real box.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ci_app.model.profile import Gpu, Mig, MigDevice, Nvidia, Status

T = TypeVar("T")

NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13

_ABSENT_ERRORS = frozenset({NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED})
# A field that fails with one of these is reported as null; the GPU is kept.
_FIELD_ERRORS = frozenset(
    {
        NVML_ERROR_INVALID_ARGUMENT,
        NVML_ERROR_NOT_SUPPORTED,
        NVML_ERROR_NO_PERMISSION,
        NVML_ERROR_NOT_FOUND,
        NVML_ERROR_FUNCTION_NOT_FOUND,
    }
)

# compute capability major (and minor where it matters) -> architecture; our own table, since
# GFD's lacks Blackwell and NVML's enum lags new parts.
_ARCH_BY_CC: dict[tuple[int, int | None], str] = {
    (3, None): "kepler",
    (5, None): "maxwell",
    (6, None): "pascal",
    (7, 0): "volta",
    (7, 2): "volta",
    (7, 5): "turing",
    (8, 9): "ada",
    (8, None): "ampere",
    (9, None): "hopper",
    (10, None): "blackwell",
    (11, None): "blackwell",
    (12, None): "blackwell",
}
_ARCH_BY_NVML = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}
_MIG_PROFILE_RE = re.compile(r"(\d+g\.\d+gb)", re.IGNORECASE)


def arch_for(cc: tuple[int, int] | None, nvml_arch: int | None = None) -> str | None:
    if cc is not None:
        major, minor = cc
        hit = _ARCH_BY_CC.get((major, minor)) or _ARCH_BY_CC.get((major, None))
        if hit:
            return hit
    if nvml_arch is not None:
        return _ARCH_BY_NVML.get(nvml_arch)
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _error_value(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


@dataclass
class _Ctx:
    nvml: Any

    def is_nvml_error(self, exc: BaseException) -> bool:
        err = getattr(self.nvml, "NVMLError", None)
        return isinstance(err, type) and isinstance(exc, err)

    def field(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Call one getter; null on NOT_SUPPORTED-like errors or a missing binding."""
        try:
            return fn(*args)
        except AttributeError:
            return None
        except Exception as exc:
            if self.is_nvml_error(exc) and _error_value(exc) in _FIELD_ERRORS:
                return None
            raise


@dataclass(frozen=True)
class VisibleSelection:
    """What ``CUDA_VISIBLE_DEVICES`` lets CUDA see: GPU indices, and MIG UUIDs per GPU."""

    gpus: tuple[int, ...]
    mig_uuids: Mapping[int, frozenset[str]]  # GPU index -> only these MIG devices


def select_visible(
    spec: str | None, uuids: Sequence[str | None], mig_uuids: Mapping[int, Sequence[str]]
) -> VisibleSelection:
    """Apply ``CUDA_VISIBLE_DEVICES`` to NVML's device list.

    ``spec`` None: everything. Tokens: an index (NVML/PCI order — set
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA agrees), a ``GPU-…`` or ``MIG-…`` UUID or a
    unique prefix of one. Like CUDA, enumeration stops at the first token matching nothing.
    """
    every = tuple(range(len(uuids)))
    if spec is None:
        return VisibleSelection(every, {})
    picked: list[int] = []
    migs: dict[int, set[str]] = {}
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            break
        if token.isdigit() or (token.startswith("-") and token[1:].isdigit()):
            i = int(token)
            if not 0 <= i < len(uuids):
                break
            if i not in picked:
                picked.append(i)
            continue
        if token.upper().startswith("MIG-"):
            owner = [
                (g, u)
                for g, us in mig_uuids.items()
                for u in us
                if u.lower().startswith(token.lower())
            ]
            if len(owner) != 1:
                break
            g, u = owner[0]
            migs.setdefault(g, set()).add(u)
            if g not in picked:
                picked.append(g)
            continue
        matches = [i for i, u in enumerate(uuids) if u and u.lower().startswith(token.lower())]
        if len(matches) != 1:
            break
        if matches[0] not in picked:
            picked.append(matches[0])
    return VisibleSelection(tuple(picked), {g: frozenset(us) for g, us in migs.items()})


def _mig_devices(ctx: _Ctx, handle: Any) -> list[tuple[str | None, MigDevice]]:
    nvml = ctx.nvml
    count = ctx.field(lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(handle)) or 0
    out: list[tuple[str | None, MigDevice]] = []
    for j in range(int(count)):
        mh = ctx.field(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, j)
        if mh is None:
            continue  # unpopulated slot (NOT_FOUND)
        uuid = _opt_text(ctx.field(nvml.nvmlDeviceGetUUID, mh))
        name = _opt_text(ctx.field(nvml.nvmlDeviceGetName, mh))
        mem_info = ctx.field(nvml.nvmlDeviceGetMemoryInfo, mh)
        mem = int(mem_info.total) if mem_info is not None else None
        attrs = ctx.field(nvml.nvmlDeviceGetAttributes, mh)
        slices = getattr(attrs, "gpuInstanceSliceCount", None) if attrs is not None else None
        m = _MIG_PROFILE_RE.search(name or "")
        profile = m.group(1).lower() if m else None
        out.append(
            (
                uuid,
                MigDevice(
                    index=len(out),
                    uuid=uuid,
                    profile=profile,
                    memory_bytes=mem,
                    slices=int(slices) if slices is not None else None,
                ),
            )
        )
    return out


def _gpu(ctx: _Ctx, index: int, handle: Any) -> tuple[Gpu, list[tuple[str | None, MigDevice]]]:
    nvml = ctx.nvml
    name = ctx.field(lambda: _text(nvml.nvmlDeviceGetName(handle)))
    uuid = ctx.field(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    bus = ctx.field(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
    mem = ctx.field(lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total))
    cc_raw = ctx.field(lambda: tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle)))
    cc = (int(cc_raw[0]), int(cc_raw[1])) if cc_raw else None
    nvml_arch = ctx.field(lambda: int(nvml.nvmlDeviceGetArchitecture(handle)))
    brand_raw = ctx.field(lambda: int(nvml.nvmlDeviceGetBrand(handle)))
    brand = _brand_name(nvml, brand_raw)
    power_mw = ctx.field(lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle))
    mode = ctx.field(lambda: nvml.nvmlDeviceGetMigMode(handle))
    mig: Mig | None = None
    migs: list[tuple[str | None, MigDevice]] = []
    if mode is not None:
        current, pending = bool(mode[0]), bool(mode[1])
        if current:
            migs = _mig_devices(ctx, handle)
        mig = Mig(current=current, pending=pending, devices=tuple(d for _, d in migs))
    gpu = Gpu(
        vendor="nvidia",
        index=index,
        uuid=uuid,
        name=name,
        pci_bus_id=bus,
        memory_bytes=mem,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        arch=arch_for(cc, nvml_arch),
        brand=brand,
        mig=mig,
        power_limit_w=round(power_mw / 1000, 3) if power_mw is not None else None,
    )
    return gpu, migs


def _brand_name(nvml: Any, brand: int | None) -> str | None:
    if brand is None:
        return None
    for name in dir(nvml):
        if (
            name.startswith("NVML_BRAND_")
            and getattr(nvml, name) == brand
            and name != "NVML_BRAND_COUNT"
        ):
            return name.removeprefix("NVML_BRAND_").lower()
    return str(brand)


def _cuda_version(raw: int | None) -> str | None:
    if not raw:
        return None
    return f"{raw // 1000}.{raw % 1000 // 10}"


def import_nvml() -> Any | None:
    """The ``pynvml`` module from nvidia-ml-py, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def collect_nvidia(nvml: Any | None, env: Mapping[str, str]) -> tuple[Nvidia, tuple[Gpu, ...]]:
    """NVIDIA section and GPUs. Never raises: failures become ``status=error``."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if nvml is None:
        return Nvidia(
            status=Status.ABSENT, error="nvidia-ml-py is not installed", visible_devices=visible
        ), ()
    ctx = _Ctx(nvml)
    try:
        nvml.nvmlInit()
    except Exception as exc:
        if ctx.is_nvml_error(exc) and _error_value(exc) in _ABSENT_ERRORS:
            return Nvidia(status=Status.ABSENT, error=str(exc), visible_devices=visible), ()
        return Nvidia(status=Status.ERROR, error=f"nvmlInit: {exc}", visible_devices=visible), ()
    try:
        driver = ctx.field(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        cuda_raw = ctx.field(lambda: int(nvml.nvmlSystemGetCudaDriverVersion_v2()))
        if cuda_raw is None:
            cuda_raw = ctx.field(lambda: int(nvml.nvmlSystemGetCudaDriverVersion()))
        nvml_version = ctx.field(lambda: _text(nvml.nvmlSystemGetNVMLVersion()))
        count = int(nvml.nvmlDeviceGetCount())
        found: list[tuple[Gpu, list[tuple[str | None, MigDevice]]]] = []
        for i in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            found.append(_gpu(ctx, i, handle))
        selection = select_visible(
            visible,
            [g.uuid for g, _ in found],
            {g.index: [u for u, _ in migs if u] for g, migs in found if migs},
        )
        gpus: list[Gpu] = []
        for i in selection.gpus:
            gpu, migs = found[i]
            if gpu.compute_capability == "0.0":
                continue  # not a CUDA device (e.g. an NPU listed by NVML)
            only = selection.mig_uuids.get(i)
            if only is not None and gpu.mig is not None:
                kept = tuple(d for u, d in migs if u in only)
                gpu = _replace_mig(
                    gpu, Mig(current=gpu.mig.current, pending=gpu.mig.pending, devices=kept)
                )
            gpus.append(gpu)
        nvidia = Nvidia(
            status=Status.OK,
            driver_version=driver,
            cuda_driver_version=_cuda_version(cuda_raw),
            nvml_version=nvml_version,
            visible_devices=visible,
        )
        return nvidia, tuple(gpus)
    except Exception as exc:
        return Nvidia(
            status=Status.ERROR, error=f"{type(exc).__name__}: {exc}", visible_devices=visible
        ), ()
    finally:
        with contextlib.suppress(Exception):  # shutdown failures must not fail the probe
            nvml.nvmlShutdown()


def _replace_mig(gpu: Gpu, mig: Mig) -> Gpu:
    from dataclasses import replace

    return replace(gpu, mig=mig)


def sample_gpu_load(nvml: Any | None, gpus: Sequence[Gpu]) -> list[dict[str, Any]]:
    """Utilisation and memory in use per advertised GPU, for heartbeats; [] on any failure."""
    if nvml is None or not gpus:
        return []
    ctx = _Ctx(nvml)
    out: list[dict[str, Any]] = []
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        for gpu in gpus:
            h = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
            rates = ctx.field(nvml.nvmlDeviceGetUtilizationRates, h)
            util = rates.gpu if rates is not None else None
            mem_info = ctx.field(nvml.nvmlDeviceGetMemoryInfo, h)
            used = int(mem_info.used) if mem_info is not None else None
            out.append(
                {
                    "index": gpu.index,
                    "uuid": gpu.uuid,
                    "utilization_percent": None if util is None else float(util),
                    "memory_used_bytes": used,
                }
            )
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    return out
