"""CPU facts from ``/proc/cpuinfo`` (0.2 ms; py-cpuinfo takes 1.3 s and adds nothing we label).

The kernel's flags are what the hypervisor exposes, which is what a test can use.
"""

from __future__ import annotations

from dataclasses import dataclass

# x86-64 micro-architecture levels (psABI), by /proc/cpuinfo flag names; ``abm`` is LZCNT.
X86_LEVELS: dict[int, frozenset[str]] = {
    2: frozenset({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}),
    3: frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    4: frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv8l": "aarch64",
}

_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x50": "APM",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0x69": "Intel",
    "0xc0": "Ampere",
}


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    vendor: str | None
    model: str | None
    flags: tuple[str, ...]
    logical: int  # processors listed
    physical: int | None  # distinct (physical id, core id) pairs, None if not listed


def normalize_arch(machine: str) -> str:
    m = machine.strip().lower()
    return _ARCH_ALIASES.get(m, m)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` (x86: ``flags``/``model name``; Arm: ``Features``/implementer)."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    vendor: str | None = None
    model: str | None = None
    flags: tuple[str, ...] = ()
    cores: set[tuple[str, str]] = set()
    logical = 0
    for block in blocks:
        kv: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                kv[key.strip().lower()] = value.strip()
        if "processor" in kv and kv["processor"].isdigit():
            logical += 1
        if vendor is None:
            vendor = kv.get("vendor_id") or _ARM_IMPLEMENTERS.get(
                kv.get("cpu implementer", "").lower()
            )
        if model is None:
            model = kv.get("model name") or kv.get("cpu model") or kv.get("hardware")
        if not flags:
            raw = kv.get("flags") or kv.get("features") or ""
            flags = tuple(sorted(set(raw.split())))
        if "physical id" in kv and "core id" in kv:
            cores.add((kv["physical id"], kv["core id"]))
    return CpuInfo(
        vendor=vendor,
        model=model,
        flags=flags,
        logical=logical,
        physical=len(cores) or None,
    )


def x86_64_level(arch: str, flags: tuple[str, ...] | frozenset[str]) -> int | None:
    """Highest x86-64 psABI level all of whose flags are present; None off x86-64."""
    if arch != "x86_64":
        return None
    have = set(flags)
    level = 1
    for n in (2, 3, 4):
        if X86_LEVELS[n] <= have:
            level = n
        else:
            break
    return level
