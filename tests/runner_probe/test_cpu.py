"""/proc/cpuinfo parsing and x86-64 levels."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_probe.cpu import normalize_arch, parse_cpuinfo, x86_64_level

CPUINFO = Path(__file__).resolve().parents[1] / "data" / "probe" / "cpuinfo"


def load(name: str) -> str:
    return (CPUINFO / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("name", "vendor", "model", "level", "logical", "physical", "present", "missing"),
    [
        (
            "amd-epyc-zen5-vm",
            "AuthenticAMD",
            "AMD EPYC",
            4,
            2,
            2,
            {"avx512f", "avx2"},
            {"amx_tile"},
        ),
        ("amd-epyc-v3-vm", "AuthenticAMD", "AMD EPYC", 3, 2, 2, {"avx2", "fma"}, {"avx512f"}),
        (
            "intel-xeon-sapphire-rapids",
            "GenuineIntel",
            "Intel(R) Xeon(R) Platinum 8480+",
            4,
            4,
            4,
            {"amx_tile", "avx512_fp16"},
            set(),
        ),
    ],
)
def test_x86(
    name: str,
    vendor: str,
    model: str,
    level: int,
    logical: int,
    physical: int,
    present: set[str],
    missing: set[str],
) -> None:
    info = parse_cpuinfo(load(name))
    assert info.vendor == vendor
    assert info.model == model
    assert info.logical == logical
    assert info.physical == physical
    assert present <= set(info.flags)
    assert not missing & set(info.flags)
    assert x86_64_level("x86_64", info.flags) == level


def test_arm_graviton() -> None:
    info = parse_cpuinfo(load("aws-graviton3"))
    assert info.vendor == "ARM"
    assert {"asimd", "sve"} <= set(info.flags)
    assert info.logical == 4
    assert info.physical is None
    assert x86_64_level("aarch64", info.flags) is None


def test_levels_need_every_flag() -> None:
    v2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    assert x86_64_level("x86_64", frozenset(v2)) == 2
    assert x86_64_level("x86_64", frozenset(v2 - {"popcnt"})) == 1
    # AVX-512 without the v3 set does not make v4
    assert x86_64_level("x86_64", frozenset(v2 | {"avx512f", "avx512bw"})) == 2


@pytest.mark.parametrize(
    ("raw", "arch"), [("AMD64", "x86_64"), ("arm64", "aarch64"), ("x86_64", "x86_64")]
)
def test_normalize_arch(raw: str, arch: str) -> None:
    assert normalize_arch(raw) == arch
