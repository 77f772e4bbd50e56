"""Collect a :class:`HardwareProfile`: each source timed, none allowed to fail the probe.

Collectors read from an injectable ``root`` (``/proc``, ``/sys``, ``/etc`` under it) and an
injectable environment and NVML module, so tests run them on fixture trees.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ci_app.model.profile import (
    Browser,
    Cpu,
    Disk,
    HardwareProfile,
    Host,
    Memory,
    ProbeError,
    ProbeInfo,
    Status,
)
from runner_probe import __version__
from runner_probe.cgroup import CgroupLimits, effective_cpus, read_cgroup_limits
from runner_probe.cpu import normalize_arch, parse_cpuinfo, x86_64_level
from runner_probe.nvidia import collect_nvidia, import_nvml
from runner_probe.pci import collect_accelerators

T = TypeVar("T")

_IMPORT = object()  # sentinel: import pynvml for real


@dataclass(frozen=True, kw_only=True)
class DetectOptions:
    root: Path = Path("/")
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    nvml: Any = _IMPORT  # a pynvml-like module, None for "not installed", or import it
    browser: bool = False
    browser_executable: str | None = None
    browser_timeout_s: float = 15.0
    disk_path: str | None = None
    affinity: int | None = None  # override len(sched_getaffinity) (tests)
    logical: int | None = None  # override os.cpu_count() (tests)
    physical: int | None = None
    machine: str | None = None  # override platform.machine() (tests)
    hostname: str | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def detect_container(root: Path, env: Mapping[str, str]) -> str | None:
    """Best-effort container runtime name; None on bare metal or a VM."""
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run/.containerenv").exists():
        return "podman"
    if env.get("container"):
        return env["container"]
    cgroup = _read(root / "proc/1/cgroup") or ""
    for marker, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("lxc", "lxc")):
        if marker in cgroup:
            return name
    return None


def os_release(root: Path) -> str | None:
    text = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    if not text:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values.get("PRETTY_NAME") or values.get("NAME")


def meminfo_total(root: Path) -> int | None:
    text = _read(root / "proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def collect_host(opts: DetectOptions, limits: CgroupLimits) -> Host:
    return Host(
        status=Status.OK,
        hostname=opts.hostname or socket.gethostname(),
        os=platform.system().lower(),
        os_release=os_release(opts.root),
        kernel=platform.release() or None,
        container=detect_container(opts.root, opts.env),
        cgroup=dict(limits.versions),
    )


def collect_cpu(opts: DetectOptions, limits: CgroupLimits) -> Cpu:
    arch = normalize_arch(opts.machine or platform.machine())
    text = _read(opts.root / "proc/cpuinfo")
    info = parse_cpuinfo(text or "")
    logical = opts.logical or os.cpu_count() or info.logical or 1
    if opts.affinity is not None:
        affinity = opts.affinity
    elif hasattr(os, "sched_getaffinity"):
        affinity = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        affinity = logical
    physical = opts.physical or info.physical
    if physical is None and opts.root == Path("/"):
        import psutil

        physical = psutil.cpu_count(logical=False)
    return Cpu(
        status=Status.OK if text is not None else Status.ERROR,
        error=None if text is not None else "cannot read /proc/cpuinfo",
        arch=arch,
        vendor=info.vendor,
        model=info.model,
        x86_64_level=x86_64_level(arch, info.flags),
        logical=logical,
        physical=physical,
        affinity=affinity,
        quota=limits.cpu_quota,
        effective=effective_cpus(affinity, limits.cpu_quota, limits.cpuset_cpus),
        flags=info.flags,
    )


def collect_memory(opts: DetectOptions, limits: CgroupLimits) -> Memory:
    total = meminfo_total(opts.root)
    if total is None and opts.root == Path("/"):
        import psutil

        total = int(psutil.virtual_memory().total)
    if total is None:
        return Memory(status=Status.ERROR, error="cannot read MemTotal from /proc/meminfo")
    limit = limits.memory_limit_bytes
    return Memory(
        status=Status.OK,
        total_bytes=total,
        limit_bytes=limit,
        effective_bytes=min(total, limit) if limit is not None else total,
    )


def collect_disk(path: str) -> Disk:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return Disk(status=Status.ERROR, error=str(exc), path=path)
    return Disk(status=Status.OK, path=path, total_bytes=usage.total, free_bytes=usage.free)


def _timed(timings: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round((time.perf_counter() - t0) * 1000, 2)


def detect(opts: DetectOptions | None = None) -> HardwareProfile:
    """Collect the whole profile. Never raises for a failing source: it becomes ``error``."""
    opts = opts or DetectOptions()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    errors: list[ProbeError] = []

    def guarded(name: str, fn: Callable[[], T], fallback: Callable[[str], T]) -> T:
        try:
            return _timed(timings, name, fn)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            errors.append(ProbeError(source=name, error=message))
            return fallback(message)

    limits = guarded("cgroup", lambda: read_cgroup_limits(opts.root), lambda _m: CgroupLimits())
    host = guarded(
        "host",
        lambda: collect_host(opts, limits),
        lambda m: Host(status=Status.ERROR, error=m, hostname=socket.gethostname()),
    )
    cpu = guarded(
        "cpu", lambda: collect_cpu(opts, limits), lambda m: Cpu(status=Status.ERROR, error=m)
    )
    memory = guarded(
        "memory",
        lambda: collect_memory(opts, limits),
        lambda m: Memory(status=Status.ERROR, error=m),
    )
    disk_path = opts.disk_path or opts.env.get("CI_FANOUT_DISK_PATH") or str(Path.cwd())
    disk = guarded(
        "disk", lambda: collect_disk(disk_path), lambda m: Disk(status=Status.ERROR, error=m)
    )
    nvml = import_nvml() if opts.nvml is _IMPORT else opts.nvml
    nvidia, gpus = _timed(timings, "nvml", lambda: collect_nvidia(nvml, opts.env))
    accelerators = _timed(timings, "pci", lambda: collect_accelerators(opts.root))
    if opts.browser:
        from runner_probe.browser import probe_browser

        browser, browser_timings = probe_browser(
            opts.browser_executable, timeout_s=opts.browser_timeout_s
        )
        timings.update(browser_timings)
    else:
        browser = Browser(status=Status.ABSENT, error="not probed (--no-browser)")
    for name, section in (
        ("host", host),
        ("cpu", cpu),
        ("memory", memory),
        ("disk", disk),
        ("nvml", nvidia),
        ("pci", accelerators),
        ("browser", browser),
    ):
        status, error = getattr(section, "status", None), getattr(section, "error", None)
        if status == Status.ERROR and error and not any(e.source == name for e in errors):
            errors.append(ProbeError(source=name, error=str(error)))
    timings["total"] = round((time.perf_counter() - t_start) * 1000, 2)
    return HardwareProfile(
        probe=ProbeInfo(
            version=__version__,
            collected_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            timings_ms=timings,
            errors=tuple(errors),
        ),
        host=host,
        cpu=cpu,
        memory=memory,
        disk=disk,
        nvidia=nvidia,
        gpus=gpus,
        accelerators=accelerators,
        browser=browser,
    )
