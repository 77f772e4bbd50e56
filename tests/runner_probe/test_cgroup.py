"""cgroup reader on fixture trees: v1, v2, hybrid, nested limits, namespaces, cpusets."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_probe.cgroup import (
    count_cpuset,
    effective_cpus,
    memory_usage_bytes,
    parse_mountinfo,
    parse_proc_cgroup,
    read_cgroup_limits,
)

CASES = Path(__file__).resolve().parents[1] / "data" / "probe" / "cgroup"
MIB = 2**20


@pytest.mark.parametrize(
    ("case", "versions", "memory", "quota", "cpuset", "effective"),
    [
        # measured Debian 12 hybrid host: cgroup2 mounted but owning only hugetlb -> v1
        ("v1-nolimits", {"cpu": 1, "memory": 1, "cpuset": 1}, None, None, 2, 2),
        ("v1-half-cpu", {"cpu": 1, "memory": 1, "cpuset": 1}, 512 * MIB, 0.5, 1, 1),
        ("v1-nested", {"cpu": 1, "memory": 1, "cpuset": 1}, 1024 * MIB, 2.0, 8, 2),
        ("v2-nested", {"cpu": 2, "memory": 2, "cpuset": 2}, 4096 * MIB, 4.0, 8, 4),
        ("v2-namespace", {"cpu": 2, "memory": 2, "cpuset": 2}, 2048 * MIB, 1.5, 4, 2),
        ("v2-invisible-path", {"cpu": 2, "memory": 2, "cpuset": 2}, 3072 * MIB, 2.5, None, 3),
        ("v2-half-cpu", {"cpu": 2, "memory": 2, "cpuset": 2}, 512 * MIB, 0.5, 1, 1),
        ("v2-cpuset-one", {"cpu": 2, "memory": 2, "cpuset": 2}, None, None, 1, 1),
    ],
)
def test_fixture_trees(
    case: str,
    versions: dict[str, int],
    memory: int | None,
    quota: float | None,
    cpuset: int | None,
    effective: int,
) -> None:
    limits = read_cgroup_limits(CASES / case)
    assert limits.versions == versions
    assert limits.memory_limit_bytes == memory
    assert limits.cpu_quota == quota
    assert limits.cpuset_cpus == cpuset
    assert effective_cpus(8, limits.cpu_quota, limits.cpuset_cpus) == effective


def test_v1_nested_walks_up_without_memory_stat() -> None:
    limits = read_cgroup_limits(CASES / "v1-nested")
    # the container directory itself is unlimited; the pod above it is not
    assert limits.paths["memory"] == "/sys/fs/cgroup/memory/pod/ctr"
    assert limits.memory_limit_bytes == 1024 * MIB
    # min along the path: child 3.0 CPUs under a parent of 2.0
    assert limits.cpu_quota == 2.0


def test_namespace_path_not_visible_falls_back_to_mount_point() -> None:
    limits = read_cgroup_limits(CASES / "v2-invisible-path")
    assert limits.paths["memory"] == "/sys/fs/cgroup"
    assert limits.memory_limit_bytes == 3 * 1024 * MIB


def test_empty_root_has_no_limits(tmp_path: Path) -> None:
    limits = read_cgroup_limits(tmp_path)
    assert limits.versions == {}
    assert limits.memory_limit_bytes is None
    assert limits.cpu_quota is None


def test_parse_mountinfo_unescapes_and_filters() -> None:
    text = (
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "32 31 0:29 /ns /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n"
        "23 1 8:1 / / rw - ext4 /dev/vda rw\n"
        "garbage\n"
    )
    mounts = parse_mountinfo(text)
    assert [m.fstype for m in mounts] == ["cgroup2", "cgroup"]
    assert mounts[1].mount_point == "/sys/fs/cgroup/cpu x"
    assert mounts[1].root == "/ns"
    assert mounts[1].controllers == frozenset({"cpu", "cpuacct"})


def test_parse_proc_cgroup() -> None:
    v1, v2 = parse_proc_cgroup("4:memory:/a\n1:cpu,cpuacct:/b\n0::/c\nbad\n")
    assert v1 == {"memory": "/a", "cpu": "/b", "cpuacct": "/b"}
    assert v2 == "/c"


@pytest.mark.parametrize(
    ("text", "n"),
    [("0-3,8,10-11", 7), ("5", 1), ("", None), (None, None), ("x-y", None), ("0-1,", 2)],
)
def test_count_cpuset(text: str | None, n: int | None) -> None:
    assert count_cpuset(text) == n


@pytest.mark.parametrize(
    ("affinity", "quota", "cpuset", "expected"),
    [
        (2, 0.5, None, 1),  # a half-CPU quota still runs one worker
        (2, None, 1, 1),
        (64, 4.0, None, 4),
        (64, 4.2, None, 5),
        (2, 16.0, None, 2),
        (0, None, None, 1),
    ],
)
def test_effective_cpus(
    affinity: int, quota: float | None, cpuset: int | None, expected: int
) -> None:
    assert effective_cpus(affinity, quota, cpuset) == expected


@pytest.mark.parametrize(
    ("case", "file", "value"),
    [
        ("v1-half-cpu", "sys/fs/cgroup/memory/probe/memory.usage_in_bytes", 123456789),
        ("v2-half-cpu", "sys/fs/cgroup/runner.slice/probe.scope/memory.current", 987654321),
    ],
)
def test_memory_usage(tmp_path: Path, case: str, file: str, value: int) -> None:
    import shutil

    root = tmp_path / case
    shutil.copytree(CASES / case, root)
    limits = read_cgroup_limits(root)
    assert memory_usage_bytes(limits, root) is None  # not in the fixture yet
    (root / file).write_text(f"{value}\n")
    assert memory_usage_bytes(limits, root) == value
