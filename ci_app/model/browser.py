"""How browser-test facts travel in a ResultSet: metric names, adapter classes, infra kinds.

A browser test's performance record (its adapter, its timings, the metrics it reports and the
infrastructure retries it needed) reaches ``results.json``, the store, the trends and the
comment as ordinary :class:`~ci_app.model.results.Metric` rows whose *names* carry the
structure, so no schema changes anywhere downstream:

``browser/<adapter class>/<metric>/<scope>``

* ``<adapter class>``: :func:`adapter_class` — vendor and architecture of the WebGPU adapter
  the test ran on, ``-fallback`` for a software adapter (``google-swiftshader-fallback``), or
  ``no-webgpu``; a hardware and a software run of the same test never share a series;
* ``<metric>``: what a test reported with ``record_metric`` (``gflops``), a timing the pool
  measured (:data:`TIMINGS`), or ``infra.<kind>`` (:data:`INFRA_KINDS`, a count);
* ``<scope>``: the pytest node id, or :data:`POOL_SCOPE` for the shard's pool figures.

The test id is last so it may contain ``/``; class and metric never do. Pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "browser/"
#: scope of the figures that belong to the shard's pool, not to one test
POOL_SCOPE: Final = "*"
#: adapter class of a browser without any WebGPU adapter
NO_WEBGPU: Final = "no-webgpu"
#: timings the pool measures per test (ms, lower is better): launching a browser (only the test
#: that needed a new one), a fresh page or context, and WGSL pipeline compilation
TIMINGS: Final = ("launch_ms", "context_ms", "compile_ms")
#: pool figures (scope ``*``): mean launch time, Chromium major version
POOL_FIGURES: Final = ("launch_ms", "chromium")
#: infrastructure events a browser test can meet; each is retried once on a fresh browser
INFRA_KINDS: Final = (
    "renderer-crash",  # the page's renderer process died (killed, OOM, crash)
    "browser-exit",  # the whole browser process went away
    "gpu-lost",  # the WebGPU device was lost (GPU process crash, driver reset)
    "hung",  # the page stopped answering within the pool's deadline
    "launch",  # no browser could be started
    "label-mismatch",  # the runner's label promised a capability its browser lacks
)
INFRA_METRIC_PREFIX: Final = "infra."

_CLASS_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,80}$")
_METRIC_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def _slug(text: str | None) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", (text or "").lower()).strip("-.")


def adapter_class(
    vendor: str | None, architecture: str | None, *, fallback: bool, present: bool = True
) -> str:
    """``google-swiftshader-fallback``, ``nvidia-ampere``, ``no-webgpu``: what a result is
    comparable with. Unknown vendor/architecture become ``unknown``."""
    if not present:
        return NO_WEBGPU
    parts = [_slug(vendor) or "unknown"]
    arch = _slug(architecture)
    if arch:
        parts.append(arch)
    if fallback:
        parts.append("fallback")
    return "-".join(parts)[:80].strip("-.") or "unknown"


def metric_name(adapter: str, metric: str, scope: str) -> str:
    """The stored name of one browser figure; raises ``ValueError`` on a malformed part."""
    if not _CLASS_RE.fullmatch(adapter):
        raise ValueError(f"bad adapter class {adapter!r}")
    if not _METRIC_RE.fullmatch(metric):
        raise ValueError(
            f"bad metric name {metric!r}: use 1-80 of letters, digits and _ . : - (e.g. 'gflops')"
        )
    if not scope:
        raise ValueError("empty metric scope")
    return f"{PREFIX}{adapter}/{metric}/{scope}"


@dataclass(frozen=True, slots=True)
class BrowserMetricName:
    adapter: str
    metric: str
    scope: str

    @property
    def is_pool(self) -> bool:
        return self.scope == POOL_SCOPE

    @property
    def infra_kind(self) -> str | None:
        """``renderer-crash`` for ``infra.renderer-crash``; None for other metrics."""
        if self.metric.startswith(INFRA_METRIC_PREFIX):
            return self.metric[len(INFRA_METRIC_PREFIX) :]
        return None

    @property
    def is_timing(self) -> bool:
        return self.metric in TIMINGS

    @property
    def describes_runner(self) -> bool:
        """A figure the pool measured (launch, context and compile times, retries, versions)
        rather than one the test reported: trended and shown, but never flagged as a
        regression of the change (on a shared CI machine they are mostly noise)."""
        return self.is_pool or self.infra_kind is not None or self.is_timing


def parse_metric_name(name: str) -> BrowserMetricName | None:
    """The parts of a browser metric name; None for any other metric (or a malformed one)."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX) :].split("/", 2)
    if len(parts) != 3:
        return None
    adapter, metric, scope = parts
    if not (_CLASS_RE.fullmatch(adapter) and _METRIC_RE.fullmatch(metric) and scope):
        return None
    return BrowserMetricName(adapter, metric, scope)


__all__ = [
    "INFRA_KINDS",
    "INFRA_METRIC_PREFIX",
    "NO_WEBGPU",
    "POOL_FIGURES",
    "POOL_SCOPE",
    "PREFIX",
    "TIMINGS",
    "BrowserMetricName",
    "adapter_class",
    "metric_name",
    "parse_metric_name",
]
