"""PCI accelerator scan on a fake /sys tree."""

from __future__ import annotations

import os
from pathlib import Path

from ci_app.model.profile import Status
from runner_probe.pci import collect_accelerators

DEVICES = [
    # address, class, vendor, device, driver
    ("0000:03:00.0", "0x030000", "0x1a03", "0x2000", "ast"),  # BMC VGA: ignored
    ("0000:18:00.0", "0x030200", "0x10de", "0x2330", "nvidia"),  # NVIDIA: left to NVML
    ("0000:1a:00.0", "0x038000", "0x1002", "0x74a1", "amdgpu"),  # MI300X
    ("0000:1b:00.0", "0x038000", "0x1002", "0x74a1", "amdgpu"),
    ("0000:00:0b.0", "0x120000", "0x8086", "0x7e4c", "intel_vpu"),  # Meteor Lake NPU
    ("0000:4c:00.0", "0x120000", "0x1da3", "0x1020", None),  # Gaudi2, no driver bound
    ("0000:00:03.0", "0x020000", "0x1af4", "0x1041", "virtio-pci"),  # NIC: ignored
]


def make_tree(root: Path) -> None:
    base = root / "sys" / "bus" / "pci" / "devices"
    for addr, cls, vendor, device, driver in DEVICES:
        d = base / addr
        d.mkdir(parents=True)
        (d / "class").write_text(cls + "\n")
        (d / "vendor").write_text(vendor + "\n")
        (d / "device").write_text(device + "\n")
        if driver:
            os.symlink(f"../../../bus/pci/drivers/{driver}", d / "driver")


def test_scan(tmp_path: Path) -> None:
    make_tree(tmp_path)
    acc = collect_accelerators(tmp_path)
    assert acc.status is Status.OK
    got = {(a.kind, a.vendor, a.pci_device, a.driver, a.count) for a in acc.devices}
    assert got == {
        ("gpu", "amd", "0x74a1", "amdgpu", 2),
        ("npu", "intel", "0x7e4c", "intel_vpu", 1),
        ("gaudi", "habana", "0x1020", None, 1),
    }
    amd = next(a for a in acc.devices if a.kind == "gpu")
    assert amd.pci_addresses == ("0000:1a:00.0", "0000:1b:00.0")


def test_no_pci_is_absent(tmp_path: Path) -> None:
    assert collect_accelerators(tmp_path).status is Status.ABSENT


def test_only_uninteresting_devices_is_absent(tmp_path: Path) -> None:
    base = tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:00:03.0"
    base.mkdir(parents=True)
    for name, value in (("class", "0x020000"), ("vendor", "0x1af4"), ("device", "0x1041")):
        (base / name).write_text(value)
    acc = collect_accelerators(tmp_path)
    assert acc.status is Status.ABSENT
    assert acc.devices == ()
