"""Accelerators other than NVIDIA GPUs, from ``/sys/bus/pci/devices`` (as NFD's PCI source).

Classes scanned: display (0x03), co-processor (0x0b40), processing accelerator (0x12).
NVIDIA devices are left to NVML. Display devices of vendors that make no compute GPUs (BMC
VGA such as ASPEED, hypervisor adapters) are ignored.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ci_app.model.profile import Accelerator, Accelerators, Status

NVIDIA = "0x10de"

# PCI vendor id -> (short vendor name, kind for non-display classes)
_VENDORS: dict[str, tuple[str, str]] = {
    "0x1002": ("amd", "npu"),
    "0x1022": ("amd", "npu"),
    "0x8086": ("intel", "npu"),
    "0x1da3": ("habana", "gaudi"),
    "0x1d0f": ("aws", "neuron"),
    "0x1ae0": ("google", "tpu"),
    "0x10ee": ("xilinx", "fpga"),
    "0x1172": ("altera", "fpga"),
    "0x1e52": ("tenstorrent", "npu"),
    "0x17cb": ("qualcomm", "npu"),
    "0x1f2c": ("graphcore", "npu"),
}
_GPU_VENDORS = frozenset({"0x1002", "0x8086"})


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip().lower()
    except OSError:
        return ""


def _kind(pci_class: str, vendor: str) -> str | None:
    """Accelerator kind, or None when the device is not of interest."""
    if vendor == NVIDIA:
        return None
    if pci_class.startswith("0x03"):
        return "gpu" if vendor in _GPU_VENDORS else None
    if pci_class.startswith(("0x0b40", "0x12")):
        return _VENDORS.get(vendor, ("", "other"))[1]
    return None


def collect_accelerators(root: Path = Path("/")) -> Accelerators:
    """Scan ``<root>/sys/bus/pci/devices``; ``absent`` when nothing of interest is there."""
    base = root / "sys/bus/pci/devices"
    if not base.is_dir():
        return Accelerators(status=Status.ABSENT, error="no /sys/bus/pci (not Linux, or hidden)")
    groups: dict[tuple[str, str, str, str | None, str], list[str]] = defaultdict(list)
    try:
        entries = sorted(base.iterdir())
    except OSError as exc:
        return Accelerators(status=Status.ERROR, error=str(exc))
    for dev in entries:
        pci_class = _read(dev / "class")
        vendor = _read(dev / "vendor")
        device = _read(dev / "device")
        if not (pci_class and vendor and device):
            continue
        kind = _kind(pci_class, vendor)
        if kind is None:
            continue
        driver_link = dev / "driver"
        driver = driver_link.readlink().name if driver_link.is_symlink() else None
        groups[(vendor, device, pci_class, driver, kind)].append(dev.name)
    devices = tuple(
        Accelerator(
            kind=kind,
            vendor=_VENDORS.get(vendor, (None, ""))[0],
            pci_vendor=vendor,
            pci_device=device,
            pci_class=pci_class,
            driver=driver,
            count=len(addrs),
            pci_addresses=tuple(addrs),
        )
        for (vendor, device, pci_class, driver, kind), addrs in sorted(groups.items(), key=str)
    )
    return Accelerators(status=Status.OK if devices else Status.ABSENT, devices=devices)
