"""cgroup v1/v2 limits: the CPUs and memory a process here may really use.

``os.cpu_count()``, ``psutil.cpu_count()`` and ``psutil.virtual_memory().total`` report the
*host* inside a container; tools that trust them oversubscribe containerised runners. This
reader follows what the kernel enforces:

1. ``/proc/self/mountinfo`` -> the ``cgroup`` (v1) and ``cgroup2`` mounts;
2. ``/proc/self/cgroup`` -> this process's path per hierarchy;
3. per controller, v2 only if the v2 root lists it in ``cgroup.controllers`` (a mounted
   cgroup2 does not make a host v2: hybrid hosts mount an empty one);
4. walk from the process's directory up to the mount root, taking the minimum limit along the
   path (a pod limit above a container without one still applies). Under a cgroup namespace
   the ancestors above the namespace root are invisible, and a path not visible in the mount
   falls back to the mount point.

Every path is under an injectable ``root`` so tests run on fixture trees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

UNLIMITED = 2**60
"""Values at or above this are "no limit" (v1 writes 9223372036854771712 for unlimited)."""


@dataclass(frozen=True, kw_only=True)
class CgroupLimits:
    versions: dict[str, int] = field(default_factory=dict)  # controller -> 1 | 2
    memory_limit_bytes: int | None = None
    cpu_quota: float | None = None  # in CPUs (quota / period), None = unlimited
    cpuset_cpus: int | None = None  # CPUs in the effective cpuset, None = unknown
    paths: dict[str, str] = field(default_factory=dict)  # controller -> directory read


@dataclass(frozen=True)
class _Mount:
    root: str  # path inside the hierarchy that is mounted
    mount_point: str
    fstype: str  # cgroup | cgroup2
    controllers: frozenset[str]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _under(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


def parse_mountinfo(text: str) -> list[_Mount]:
    """cgroup and cgroup2 mounts from ``/proc/self/mountinfo`` text."""
    mounts: list[_Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        fstype = rest[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        opts = set(rest[2].split(",")) | set(fields[5].split(",") if len(fields) > 5 else ())
        controllers = frozenset(o for o in opts if fstype == "cgroup" and o in _V1_CONTROLLERS)
        mounts.append(
            _Mount(
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=fstype,
                controllers=controllers,
            )
        )
    return mounts


_V1_CONTROLLERS = frozenset({"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices"})


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(text):
        octal = text[i + 1 : i + 4]
        if text[i] == "\\" and len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``(v1 controller -> path, v2 path)`` from ``/proc/self/cgroup`` text."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
            continue
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v1, v2


def _dir_for(root: Path, mount: _Mount, path: str) -> Path:
    """Directory of ``path`` (as listed in /proc/self/cgroup) inside ``mount``.

    Under a cgroup namespace the path may not lie below the mount's root, or not exist in
    this mount namespace; the mount point itself is then our cgroup.
    """
    base = _under(root, mount.mount_point)
    rel: str | None
    if mount.root in ("/", ""):
        rel = path
    elif path == mount.root or path.startswith(mount.root.rstrip("/") + "/"):
        rel = path[len(mount.root) :]
    else:
        rel = None
    if rel is not None:
        candidate = base / rel.lstrip("/")
        if candidate.is_dir():
            return candidate
    return base


def _ancestors(directory: Path, top: Path) -> list[Path]:
    """``directory`` and each parent up to and including ``top``."""
    out = [directory]
    cur = directory
    while cur != top and top in cur.parents:
        cur = cur.parent
        out.append(cur)
    return out


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _limit(value: int | None) -> int | None:
    return None if value is None or value < 0 or value >= UNLIMITED else value


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def count_cpuset(text: str | None) -> int | None:
    """Number of CPUs in a cpuset list like ``0-3,8,10-11``; None when empty/unreadable."""
    if not text:
        return None
    n = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            n += (int(hi) - int(lo) + 1) if hi else 1
        except ValueError:
            return None
    return n or None


def _v2_memory(dirs: list[Path]) -> int | None:
    best: float | None = None
    for d in dirs:
        raw = _read(d / "memory.max")
        if raw is not None and raw != "max":
            best = _min(best, _limit(_int(raw)))
    return None if best is None else int(best)


def _v2_cpu(dirs: list[Path]) -> float | None:
    best: float | None = None
    for d in dirs:
        raw = _read(d / "cpu.max")
        if not raw:
            continue
        quota, _, period = raw.partition(" ")
        if quota == "max":
            continue
        q, p = _int(quota), _int(period or "100000")
        if q is not None and p:
            best = _min(best, q / p)
    return best


def _v1_memory(dirs: list[Path]) -> int | None:
    best: float | None = None
    stat = _read(dirs[0] / "memory.stat")
    if stat:
        for line in stat.splitlines():
            key, _, value = line.partition(" ")
            if key == "hierarchical_memory_limit":
                best = _min(best, _limit(_int(value)))
    for d in dirs:
        best = _min(best, _limit(_int(_read(d / "memory.limit_in_bytes"))))
    return None if best is None else int(best)


def _v1_cpu(dirs: list[Path]) -> float | None:
    best: float | None = None
    for d in dirs:
        q = _int(_read(d / "cpu.cfs_quota_us"))
        p = _int(_read(d / "cpu.cfs_period_us"))
        if q is not None and q > 0 and p:
            best = _min(best, q / p)
    return best


def read_cgroup_limits(root: Path = Path("/")) -> CgroupLimits:
    """Read this process's cgroup limits from the tree under ``root`` (``/`` live)."""
    mounts = parse_mountinfo(_read(_under(root, "/proc/self/mountinfo")) or "")
    v1_paths, v2_path = parse_proc_cgroup(_read(_under(root, "/proc/self/cgroup")) or "")
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    v2_controllers: set[str] = set()
    if v2_mount is not None and v2_path is not None:
        listed = _read(_under(root, v2_mount.mount_point) / "cgroup.controllers") or ""
        v2_controllers = set(listed.split())

    versions: dict[str, int] = {}
    paths: dict[str, str] = {}
    memory: int | None = None
    quota: float | None = None
    cpuset: int | None = None

    for controller in ("cpu", "memory", "cpuset"):
        if v2_mount is not None and v2_path is not None and controller in v2_controllers:
            top = _under(root, v2_mount.mount_point)
            d = _dir_for(root, v2_mount, v2_path)
            versions[controller] = 2
            paths[controller] = "/" + str(d.relative_to(root))
            dirs = _ancestors(d, top)
            if controller == "memory":
                memory = _v2_memory(dirs)
            elif controller == "cpu":
                quota = _v2_cpu(dirs)
            else:
                cpuset = count_cpuset(_read(d / "cpuset.cpus.effective"))
            continue
        mount = next((m for m in mounts if controller in m.controllers), None)
        if mount is None or controller not in v1_paths:
            continue
        top = _under(root, mount.mount_point)
        d = _dir_for(root, mount, v1_paths[controller])
        versions[controller] = 1
        paths[controller] = "/" + str(d.relative_to(root))
        dirs = _ancestors(d, top)
        if controller == "memory":
            memory = _v1_memory(dirs)
        elif controller == "cpu":
            quota = _v1_cpu(dirs)
        else:
            cpuset = count_cpuset(_read(d / "cpuset.effective_cpus") or _read(d / "cpuset.cpus"))
    return CgroupLimits(
        versions=versions,
        memory_limit_bytes=memory,
        cpu_quota=None if quota is None else round(quota, 4),
        cpuset_cpus=cpuset,
        paths=paths,
    )


def effective_cpus(affinity: int, quota: float | None, cpuset: int | None = None) -> int:
    """``min(affinity, cpuset, ceil(quota))``, at least 1: a 0.5-CPU quota still runs 1 worker."""
    n = affinity if affinity > 0 else 1
    if cpuset:
        n = min(n, cpuset)
    if quota is not None and quota > 0:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def memory_usage_bytes(limits: CgroupLimits, root: Path = Path("/")) -> int | None:
    """Memory charged to our cgroup (v2 ``memory.current``, v1 ``memory.usage_in_bytes``)."""
    path = limits.paths.get("memory")
    if path is None:
        return None
    d = _under(root, path)
    name = "memory.current" if limits.versions.get("memory") == 2 else "memory.usage_in_bytes"
    return _int(_read(d / name))
