"""Pool settings: defaults, then ``CI_FANOUT_BROWSER_*`` environment variables, then options.

The environment is passed in as a mapping (never read at import time); the result is a frozen
keyword-only dataclass; an unknown ``CI_FANOUT_BROWSER_*`` variable fails with "Perhaps you
meant …". The pool size comes from the runner's *effective* resources (cgroup CPU quota and
memory limit, not the host's totals), like the probe's ladders.
"""

from __future__ import annotations

import difflib
import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from ci_app.errors import ConfigError

Mode = Literal["auto", "hardware", "software"]

DEFAULT_EXECUTABLE: Final = "/usr/bin/chromium"
#: memory budget of one warm browser with a WebGPU page (browser, GPU and renderer processes)
PER_BROWSER_BYTES: Final = 750 * 10**6
#: more warm browsers than this buys nothing for one pytest process
MAX_POOL_SIZE: Final = 4
ENV_PREFIX: Final = "CI_FANOUT_BROWSER_"
#: environment variables that say "this is a CI job" (a missing browser is then an error)
CI_MARKERS: Final = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "TF_BUILD")


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    executable: str = DEFAULT_EXECUTABLE
    #: warm browsers at most (each launched on first need)
    size: int = 1
    #: ``auto``: the hardware flag set first when a GPU device node exists, else software
    mode: Mode = "auto"
    extra_flags: tuple[str, ...] = ()
    #: seconds for one page call (navigation, a bounded evaluate, a compute job)
    timeout_s: float = 30.0
    launch_timeout_s: float = 30.0
    #: seconds a health check may take before the page counts as hung
    health_timeout_s: float = 5.0
    #: tests served by one context before it is replaced by a fresh one
    recycle_after: int = 50
    #: crash log read by ``runner-probe``'s heartbeat (None: do not record)
    health_path: Path | None = None
    #: labels the runner holds for this job (``CI_FANOUT_LABELS``): what it promised
    promised: frozenset[str] = field(default_factory=frozenset)
    #: running in CI: a missing browser fails the test instead of skipping it
    ci: bool = False


_KNOWN: Final = {
    "EXECUTABLE": "executable",
    "POOL_SIZE": "size",
    "MODE": "mode",
    "FLAGS": "extra_flags",
    "TIMEOUT": "timeout_s",
    "RECYCLE": "recycle_after",
    "HEALTH": "health_path",
    "RECORD": "",  # read by the plugin: where the per-test record goes
}
#: every ``CI_FANOUT_BROWSER_*`` variable (listed in :mod:`ci_app.options.env`)
ENV_NAMES: Final = tuple(ENV_PREFIX + k for k in _KNOWN)


def pool_size(cpus: int, memory_bytes: int | None, *, per_browser: int = PER_BROWSER_BYTES) -> int:
    """Warm browsers for a runner: at most one per effective CPU, and half the effective
    memory at :data:`PER_BROWSER_BYTES` each (the tests need the other half); 1 to 4."""
    n = max(1, cpus)
    if memory_bytes is not None and memory_bytes > 0:
        n = min(n, max(1, (memory_bytes // 2) // per_browser))
    return max(1, min(MAX_POOL_SIZE, n))


def effective_resources() -> tuple[int, int | None]:
    """(effective CPUs, effective memory bytes) of this process: affinity, cgroup quota and
    cpuset, cgroup memory limit (``runner_probe.cgroup``)."""
    from runner_probe.cgroup import effective_cpus, read_cgroup_limits

    limits = read_cgroup_limits()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    cpus = effective_cpus(affinity, limits.cpu_quota, limits.cpuset_cpus)
    memory: int | None
    try:
        import psutil

        memory = int(psutil.virtual_memory().total)
    except Exception:
        memory = None
    if limits.memory_limit_bytes is not None:
        memory = min(memory, limits.memory_limit_bytes) if memory else limits.memory_limit_bytes
    return cpus, memory


def default_health_path(env: Mapping[str, str]) -> Path:
    """Where shards record browser crashes and the heartbeat reads them."""
    explicit = env.get(ENV_PREFIX + "HEALTH")
    if explicit:
        return Path(explicit)
    state = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME") or "~").expanduser() / ".local" / "state"
    )
    return Path(state) / "ci-fanout" / "browser-health.jsonl"


def _number(env: Mapping[str, str], key: str, kind: type[float] | type[int], low: float) -> float:
    raw = env[ENV_PREFIX + key].strip()
    try:
        value = float(raw) if kind is float else int(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{key}={raw!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"{ENV_PREFIX}{key}={raw!r} must be at least {low:g}")
    return value


def config_from_env(
    env: Mapping[str, str], *, resources: tuple[int, int | None] | None = None
) -> PoolConfig:
    """The pool settings for this job. ``resources`` (CPUs, memory) defaults to this
    process's effective ones; unknown ``CI_FANOUT_BROWSER_*`` names are an error."""
    for name in env:
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :] not in _KNOWN:
            close = difflib.get_close_matches(
                name, [ENV_PREFIX + k for k in _KNOWN], n=1, cutoff=0.6
            )
            hint = f"; perhaps you meant {close[0]}" if close else ""
            raise ConfigError(f"unknown setting {name}{hint}")
    cfg = PoolConfig()
    changes: dict[str, object] = {}
    if env.get(ENV_PREFIX + "EXECUTABLE"):
        changes["executable"] = env[ENV_PREFIX + "EXECUTABLE"]
    if env.get(ENV_PREFIX + "POOL_SIZE"):
        changes["size"] = min(16, int(_number(env, "POOL_SIZE", int, 1)))
    else:
        cpus, memory = resources if resources is not None else effective_resources()
        changes["size"] = pool_size(cpus, memory)
    mode = env.get(ENV_PREFIX + "MODE", "").strip().lower()
    if mode:
        if mode not in ("auto", "hardware", "software"):
            raise ConfigError(f"{ENV_PREFIX}MODE={mode!r}: expected auto, hardware or software")
        changes["mode"] = mode
    if env.get(ENV_PREFIX + "FLAGS"):
        try:
            flags = tuple(shlex.split(env[ENV_PREFIX + "FLAGS"]))
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}FLAGS: {exc}") from None
        bad = [f for f in flags if not f.startswith("--")]
        if bad:
            raise ConfigError(f"{ENV_PREFIX}FLAGS: {bad[0]!r} is not a --switch")
        changes["extra_flags"] = flags
    if env.get(ENV_PREFIX + "TIMEOUT"):
        changes["timeout_s"] = _number(env, "TIMEOUT", float, 1)
    if env.get(ENV_PREFIX + "RECYCLE"):
        changes["recycle_after"] = int(_number(env, "RECYCLE", int, 1))
    changes["health_path"] = default_health_path(env)
    changes["promised"] = frozenset(
        x.strip().lower() for x in env.get("CI_FANOUT_LABELS", "").split(",") if x.strip()
    )
    changes["ci"] = any(
        env.get(k, "").strip().lower() not in ("", "0", "false", "no") for k in CI_MARKERS
    )
    return replace(cfg, **changes)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_EXECUTABLE",
    "ENV_NAMES",
    "MAX_POOL_SIZE",
    "PER_BROWSER_BYTES",
    "PoolConfig",
    "config_from_env",
    "default_health_path",
    "effective_resources",
    "pool_size",
]
