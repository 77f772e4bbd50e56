"""Pool settings: the browser pool's options (:mod:`ci_app.options.browser`: defaults →
``[browser]`` in ``ci-fanout.toml`` → ``CI_FANOUT_BROWSER_*`` → flags) with what the runner
says about itself: its effective resources, the labels it promised, whether this is CI.

The environment is passed in as a mapping (never read at import time); the result is a frozen
keyword-only dataclass. The pool size comes from the runner's *effective* resources (cgroup CPU
quota and memory limit, not the host's totals), like the probe's ladders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ci_app.options.browser import BrowserOptions, Mode, resolve

_DEFAULTS: Final = BrowserOptions()
DEFAULT_EXECUTABLE: Final = _DEFAULTS.executable
#: memory budget of one warm browser with a WebGPU page (browser, GPU and renderer processes)
PER_BROWSER_BYTES: Final = 750 * 10**6
#: more warm browsers than this buys nothing for one pytest process
MAX_POOL_SIZE: Final = 4
#: a ``pool-size`` the user sets is capped here
MAX_EXPLICIT_POOL_SIZE: Final = 16
#: environment variables that say "this is a CI job" (a missing browser is then an error)
CI_MARKERS: Final = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "TF_BUILD")


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    executable: str = DEFAULT_EXECUTABLE
    #: warm browsers at most (each launched on first need)
    size: int = 1
    #: ``auto``: the hardware flag set first when a GPU device node exists, else software
    mode: Mode = _DEFAULTS.mode
    extra_flags: tuple[str, ...] = ()
    #: seconds for one page call (navigation, a bounded evaluate, a compute job)
    timeout_s: float = _DEFAULTS.timeout
    launch_timeout_s: float = 30.0
    #: seconds a health check may take before the page counts as hung
    health_timeout_s: float = 5.0
    #: tests served by one context before it is replaced by a fresh one
    recycle_after: int = _DEFAULTS.recycle
    #: crash log read by ``runner-probe``'s heartbeat (None: do not record)
    health_path: Path | None = None
    #: labels the runner holds for this job (``CI_FANOUT_LABELS``): what it promised
    promised: frozenset[str] = field(default_factory=frozenset)
    #: running in CI: a missing browser fails the test instead of skipping it
    ci: bool = False


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


def default_health_path(env: Mapping[str, str], options: BrowserOptions | None = None) -> Path:
    """Where shards record browser crashes and the heartbeat reads them: the ``health`` option
    (``options``; default: the environment's), else under ``$XDG_STATE_HOME``."""
    explicit = (options if options is not None else resolve(env)).health
    if explicit:
        return Path(explicit)
    state = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME") or "~").expanduser() / ".local" / "state"
    )
    return Path(state) / "ci-fanout" / "browser-health.jsonl"


def config_from_env(
    env: Mapping[str, str],
    *,
    resources: tuple[int, int | None] | None = None,
    options: BrowserOptions | None = None,
) -> PoolConfig:
    """The pool settings for this job. ``options`` defaults to the environment's alone
    (:func:`ci_app.options.browser.resolve`: unknown ``CI_FANOUT_BROWSER_*`` names are an
    error); ``resources`` (CPUs, memory) to this process's effective ones."""
    opts = options if options is not None else resolve(env)
    if opts.pool_size is not None:
        size = min(MAX_EXPLICIT_POOL_SIZE, opts.pool_size)
    else:
        cpus, memory = resources if resources is not None else effective_resources()
        size = pool_size(cpus, memory)
    return PoolConfig(
        executable=opts.executable,
        size=size,
        mode=opts.mode,
        extra_flags=opts.launch_flags,
        timeout_s=opts.timeout,
        recycle_after=opts.recycle,
        health_path=default_health_path(env, opts),
        promised=frozenset(
            x.strip().lower() for x in env.get("CI_FANOUT_LABELS", "").split(",") if x.strip()
        ),
        ci=any(env.get(k, "").strip().lower() not in ("", "0", "false", "no") for k in CI_MARKERS),
    )


__all__ = [
    "DEFAULT_EXECUTABLE",
    "MAX_POOL_SIZE",
    "PER_BROWSER_BYTES",
    "PoolConfig",
    "config_from_env",
    "default_health_path",
    "effective_resources",
    "pool_size",
]
