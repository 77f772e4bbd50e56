"""Regenerate the cgroup fixture trees (run from the repository root).

Each case is a fake filesystem root: proc/self/{mountinfo,cgroup} + sys/fs/cgroup/....
Shapes follow real hosts: Debian 12 hybrid v1 (measured), a Kubernetes pod on cgroup v2,
a container with a private cgroup namespace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent / "cgroup"
UNLIMITED_V1 = "9223372036854771712"

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def w(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text if text.endswith("\n") else text + "\n")


def v1_case(name: str, cg: str, files: dict[str, str]) -> None:
    root = HERE / name
    w(root, "proc/self/mountinfo", V1_MOUNTINFO)
    w(
        root,
        "proc/self/cgroup",
        f"9:name=systemd:/\n8:pids:/\n4:memory:{cg}\n3:cpuset:{cg}\n2:cpuacct:/\n1:cpu:{cg}\n0::/\n",
    )
    w(root, "sys/fs/cgroup/unified/cgroup.controllers", "hugetlb")
    for rel, text in files.items():
        w(root, rel, text)


def v2_case(name: str, cg: str, files: dict[str, str], mountinfo: str = V2_MOUNTINFO) -> None:
    root = HERE / name
    w(root, "proc/self/mountinfo", mountinfo)
    w(root, "proc/self/cgroup", f"0::{cg}\n")
    w(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc")
    for rel, text in files.items():
        w(root, rel, text)


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    m, c, s = "sys/fs/cgroup/memory", "sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuset"
    # 1. the measured Debian 12 VM: hybrid, no limits (memory cgroup path set by the sandbox)
    v1_case(
        "v1-nolimits",
        "/process_api/0995",
        {
            f"{m}/process_api/0995/memory.limit_in_bytes": UNLIMITED_V1,
            f"{m}/process_api/0995/memory.stat": f"cache 0\nhierarchical_memory_limit {UNLIMITED_V1}",
            f"{m}/memory.limit_in_bytes": UNLIMITED_V1,
            f"{c}/cpu.cfs_quota_us": "-1",
            f"{c}/cpu.cfs_period_us": "100000",
            f"{s}/cpuset.cpus": "0-1",
            f"{s}/cpuset.effective_cpus": "0-1",
        },
    )
    # 2. v1 cgroup with 0.5 CPU, 512 MiB, cpuset of one CPU
    v1_case(
        "v1-half-cpu",
        "/probe",
        {
            f"{m}/probe/memory.limit_in_bytes": "536870912",
            f"{m}/probe/memory.stat": "cache 0\nhierarchical_memory_limit 536870912",
            f"{m}/memory.limit_in_bytes": UNLIMITED_V1,
            f"{c}/probe/cpu.cfs_quota_us": "50000",
            f"{c}/probe/cpu.cfs_period_us": "100000",
            f"{c}/cpu.cfs_quota_us": "-1",
            f"{c}/cpu.cfs_period_us": "100000",
            f"{s}/probe/cpuset.cpus": "1",
            f"{s}/cpuset.cpus": "0-1",
        },
    )
    # 3. v1 nested: the parent (pod) limits, the child (container) does not; no memory.stat,
    #    so only the walk up the path finds the 1 GiB limit
    v1_case(
        "v1-nested",
        "/pod/ctr",
        {
            f"{m}/pod/ctr/memory.limit_in_bytes": UNLIMITED_V1,
            f"{m}/pod/memory.limit_in_bytes": "1073741824",
            f"{m}/memory.limit_in_bytes": UNLIMITED_V1,
            f"{c}/pod/ctr/cpu.cfs_quota_us": "300000",
            f"{c}/pod/ctr/cpu.cfs_period_us": "100000",
            f"{c}/pod/cpu.cfs_quota_us": "200000",
            f"{c}/pod/cpu.cfs_period_us": "100000",
            f"{c}/cpu.cfs_quota_us": "-1",
            f"{c}/cpu.cfs_period_us": "100000",
            f"{s}/pod/ctr/cpuset.cpus": "0-7",
        },
    )
    # 4. v2 Kubernetes pod: container memory.max=max under a 4 GiB pod; cpu.max 4 CPUs
    g = "sys/fs/cgroup"
    v2_case(
        "v2-nested",
        "/kubepods/pod1/ctr",
        {
            f"{g}/kubepods/pod1/ctr/memory.max": "max",
            f"{g}/kubepods/pod1/memory.max": "4294967296",
            f"{g}/kubepods/memory.max": "max",
            f"{g}/kubepods/pod1/ctr/cpu.max": "400000 100000",
            f"{g}/kubepods/pod1/cpu.max": "max 100000",
            f"{g}/kubepods/pod1/ctr/cpuset.cpus.effective": "0-7",
        },
    )
    # 5. v2 with a private cgroup namespace: /proc/self/cgroup says 0::/, the mount is ours
    v2_case(
        "v2-namespace",
        "/",
        {
            f"{g}/memory.max": "2147483648",
            f"{g}/cpu.max": "150000 100000",
            f"{g}/cpuset.cpus.effective": "0-3",
        },
    )
    # 6. v2 namespace whose path is not visible in this mount namespace: fall back to the mount
    v2_case(
        "v2-invisible-path",
        "/system.slice/docker-abc.scope",
        {
            f"{g}/memory.max": "3221225472",
            f"{g}/cpu.max": "250000 100000",
        },
    )
    # 7. v2 with 0.5 CPU, 512 MiB and a cpuset of one CPU
    v2_case(
        "v2-half-cpu",
        "/runner.slice/probe.scope",
        {
            f"{g}/runner.slice/probe.scope/memory.max": "536870912",
            f"{g}/runner.slice/probe.scope/cpu.max": "50000 100000",
            f"{g}/runner.slice/probe.scope/cpuset.cpus.effective": "3",
            f"{g}/runner.slice/memory.max": "max",
            f"{g}/runner.slice/cpu.max": "max 100000",
        },
    )
    # 8. v2 cpuset of 1, no quota
    v2_case(
        "v2-cpuset-one",
        "/pinned",
        {
            f"{g}/pinned/cpuset.cpus.effective": "5",
            f"{g}/pinned/cpu.max": "max 100000",
            f"{g}/pinned/memory.max": "max",
        },
    )
    # 9. bare-metal cgroup v2 host (the process in the root cgroup): 224 CPUs, no limits
    v2_case("v2-host", "/", {f"{g}/cpuset.cpus.effective": "0-223"})


if __name__ == "__main__":
    main()
