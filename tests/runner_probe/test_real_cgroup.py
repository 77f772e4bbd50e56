"""The probe inside a REAL cgroup with a 0.5-CPU quota, 512 MiB and one CPU (issue 3 'done when').

Needs root and a writable cgroup filesystem (v1 cpu/memory/cpuset hierarchies or a cgroup2
root with the cpu and memory controllers); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CG = Path("/sys/fs/cgroup")
HALF_CPU = 50000
PERIOD = 100000
LIMIT = 512 * 2**20


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@contextlib.contextmanager
def v1_cgroup(name: str) -> Iterator[list[Path]]:
    dirs = [CG / c / name for c in ("cpu", "memory", "cpuset")]
    try:
        for d in dirs:
            d.mkdir()
        _write(dirs[0] / "cpu.cfs_period_us", str(PERIOD))
        _write(dirs[0] / "cpu.cfs_quota_us", str(HALF_CPU))
        _write(dirs[1] / "memory.limit_in_bytes", str(LIMIT))
        _write(dirs[2] / "cpuset.mems", (CG / "cpuset" / "cpuset.mems").read_text().strip())
        cpus = sorted(os.sched_getaffinity(0))
        _write(dirs[2] / "cpuset.cpus", str(cpus[-1]))
    except OSError as exc:
        for d in dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
        pytest.skip(f"cannot create a v1 cgroup here: {exc}")
    try:
        yield [d / "cgroup.procs" for d in dirs]
    finally:
        for d in dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


@contextlib.contextmanager
def v2_cgroup(name: str) -> Iterator[list[Path]]:
    d = CG / name
    try:
        enabled = (CG / "cgroup.subtree_control").read_text().split()
        missing = {"cpu", "memory", "cpuset"} - set(enabled)
        if missing:  # never change the host's controller setup from a test
            pytest.skip(f"cgroup2 root does not delegate {sorted(missing)}")
        d.mkdir()
        _write(d / "cpu.max", f"{HALF_CPU} {PERIOD}")
        _write(d / "memory.max", str(LIMIT))
        cpus = sorted(os.sched_getaffinity(0))
        _write(d / "cpuset.cpus", str(cpus[-1]))
    except OSError as exc:
        with contextlib.suppress(OSError):
            d.rmdir()
        pytest.skip(f"cannot create a v2 cgroup here: {exc}")
    try:
        yield [d / "cgroup.procs"]
    finally:
        with contextlib.suppress(OSError):
            d.rmdir()


def test_detect_inside_a_real_half_cpu_512m_cgroup() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a cgroup")
    name = f"ci-fanout-probe-test-{os.getpid()}"
    if (CG / "cpu" / "cgroup.procs").exists():
        ctx = v1_cgroup(name)
    elif (CG / "cgroup.controllers").exists():
        ctx = v2_cgroup(name)
    else:
        pytest.skip("no cgroup v1 cpu hierarchy nor cgroup2 root at /sys/fs/cgroup")
    with ctx as procs:
        # the shell moves itself into the cgroup, then becomes the probe
        moves = "; ".join(f"echo $$ > {p}" for p in procs)
        proc = subprocess.run(
            [
                "sh",
                "-c",
                f'{moves}; exec "$0" -m runner_probe detect --json --no-browser',
                sys.executable,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["cpu"]["quota"] == 0.5
    assert doc["cpu"]["effective"] == 1
    assert doc["cpu"]["affinity"] == 1
    assert doc["memory"]["limit_bytes"] == LIMIT
    assert doc["memory"]["effective_bytes"] == LIMIT
    assert "cpus-ge-1" in doc["labels"] and "cpus-ge-2" not in doc["labels"]
    assert not [x for x in doc["labels"] if x.startswith("mem-ge-")]
