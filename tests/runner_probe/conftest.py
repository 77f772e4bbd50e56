"""Fixtures for the runner probe: fake host roots assembled from tests/data/probe pieces."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_app.model.profile import Browser, Disk, HardwareProfile, ProbeInfo, Status
from runner_probe.detect import DetectOptions, detect
from tests.runner_probe.fakenvml import FakeNvml

PROBE_DATA = Path(__file__).resolve().parents[1] / "data" / "probe"

GIB = 2**30


def make_root(
    tmp: Path,
    *,
    cgroup: str = "v1-nolimits",
    cpuinfo: str = "amd-epyc-v3-vm",
    mem_total_bytes: int = 25276510208,
    os_release: str = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
) -> Path:
    """A fake ``/``: a cgroup case, a cpuinfo file, /proc/meminfo and /etc/os-release."""
    root = Path(tempfile.mkdtemp(prefix=f"root-{cgroup}-", dir=tmp))
    shutil.copytree(PROBE_DATA / "cgroup" / cgroup, root, dirs_exist_ok=True)
    (root / "proc" / "cpuinfo").write_text((PROBE_DATA / "cpuinfo" / f"{cpuinfo}.txt").read_text())
    (root / "proc" / "meminfo").write_text(
        f"MemTotal:       {mem_total_bytes // 1024} kB\nMemFree:        1024 kB\n"
    )
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "os-release").write_text(os_release)
    return root


FIXED_DISK = Disk(
    status=Status.OK, path="/work", total_bytes=270_553_174_016, free_bytes=84_017_864_704
)


def fixed(profile: HardwareProfile, *, browser: Browser | None = None) -> HardwareProfile:
    """Pin the volatile parts (disk, clock, timings) so labels and snapshots are stable."""
    return dataclasses.replace(
        profile,
        disk=FIXED_DISK,
        probe=ProbeInfo(version="test", collected_at="2026-01-01T00:00:00+00:00"),
        browser=browser if browser is not None else profile.browser,
    )


ProfileFactory = Callable[..., HardwareProfile]


@pytest.fixture
def profile_for(tmp_path: Path) -> ProfileFactory:
    """Build a profile of a fake host: ``profile_for(cgroup=..., cpuinfo=..., nvml="h100x8")``."""

    def build(
        *,
        cgroup: str = "v1-nolimits",
        cpuinfo: str = "amd-epyc-v3-vm",
        mem_total_bytes: int = 25276510208,
        nvml: str | FakeNvml | None = None,
        affinity: int = 2,
        machine: str = "x86_64",
        env: dict[str, str] | None = None,
        browser: Browser | None = None,
    ) -> HardwareProfile:
        root = make_root(tmp_path, cgroup=cgroup, cpuinfo=cpuinfo, mem_total_bytes=mem_total_bytes)
        fake = FakeNvml.load(nvml) if isinstance(nvml, str) else nvml
        if fake is None:
            fake = FakeNvml(init_error=12)
        opts = DetectOptions(
            root=root,
            env=env or {},
            nvml=fake,
            affinity=affinity,
            logical=affinity,
            machine=machine,
            hostname="lab-runner-01",
            disk_path=str(tmp_path),
        )
        return fixed(detect(opts), browser=browser)

    return build
