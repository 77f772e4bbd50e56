"""Run-time capability matching: what a test asks for against the adapter a browser really has.

Pure. The planner routes a test by its ``hw`` labels (``webgpu`` for a hardware adapter,
``webgpu-sw`` when software is fine, ``webgpu-<vendor>``, ``webnn-<device>``); this module
checks, before the test gets a page, that the browser it would run in lives up to them:

* met: the test runs;
* not met, and the runner's labels for this job (``CI_FANOUT_LABELS``) promised it: the label
  lied — an **infrastructure error** (``infra: label-mismatch: …``), never a pass and never a
  test failure;
* not met, nothing promised (a developer's machine, a job without the label): a **skip** that
  says what was asked and what the browser has.

A test that asked for hardware is never run on a fallback (SwiftShader) adapter. Features
(``shader-f16``) and limits are not in the label taxonomy, so missing ones skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ci_app.model.browser import adapter_class
from ci_app.model.profile import WebGpuAdapter

Verdict = Literal["run", "skip", "infra"]
WEBNN_DEVICES = ("cpu", "gpu", "npu")


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What one launched browser offers (from the probe's detection script)."""

    browser_version: str | None = None
    webgpu_api: bool = False
    adapter: WebGpuAdapter | None = None
    features: frozenset[str] = frozenset()
    limits: Mapping[str, int] = field(default_factory=dict)
    webnn: Mapping[str, bool] = field(default_factory=dict)
    webnn_error: str | None = None

    @property
    def hardware(self) -> bool:
        """A hardware adapter: present, not a fallback, and not of type ``CPU``."""
        a = self.adapter
        return a is not None and not a.fallback and (a.type or "").strip().lower() != "cpu"

    @property
    def adapter_class(self) -> str:
        a = self.adapter
        if a is None:
            return adapter_class(None, None, fallback=False, present=False)
        return adapter_class(a.vendor, a.architecture, fallback=not self.hardware)

    def describe(self) -> str:
        """``google swiftshader (fallback, CPU)`` or ``no WebGPU adapter``."""
        a = self.adapter
        if a is None:
            return "no WebGPU adapter"
        name = " ".join(x for x in (a.vendor, a.architecture) if x) or "unknown adapter"
        notes = [x for x in ("fallback" if a.fallback else "", a.type or "") if x]
        return f"{name} ({', '.join(notes)})" if notes else name

    def to_dict(self) -> dict[str, Any]:
        a = self.adapter
        return {
            "browser_version": self.browser_version,
            "adapter_class": self.adapter_class,
            "hardware": self.hardware,
            "adapter": None if a is None else a.to_dict(),
            "features": sorted(self.features),
            "limits": dict(self.limits),
            "webnn": dict(self.webnn),
        }


def capabilities_from_detect(raw: Mapping[str, Any], version: str | None) -> Capabilities:
    """Capabilities from the probe's ``DETECT_JS`` result (``runner_probe.browser``)."""
    from runner_probe.browser import PassResult, summarize_passes

    browser = summarize_passes([PassResult("pool", (), raw, 0.0)], version=version, executable="")
    gpu, nn = browser.webgpu, browser.webnn
    return Capabilities(
        browser_version=version,
        webgpu_api=bool(gpu and gpu.api),
        adapter=gpu.adapter if gpu else None,
        features=frozenset(gpu.features) if gpu else frozenset(),
        limits=dict(gpu.limits) if gpu else {},
        webnn={d: bool(getattr(nn, d)) for d in WEBNN_DEVICES} if nn else {},
        webnn_error=nn.error if nn else None,
    )


@dataclass(frozen=True, kw_only=True)
class Needs:
    """What a test asks of its browser, from its ``hw`` labels and ``browser`` marker."""

    webgpu: bool = False  # some adapter (``webgpu-sw``: software is fine)
    hardware: bool = False  # a hardware adapter (``webgpu``, ``webgpu-<vendor>``)
    vendor: str | None = None
    features: tuple[str, ...] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    webnn: tuple[str, ...] = ()  # devices; ``("any",)`` for a bare ``webnn``

    @property
    def any(self) -> bool:
        return self.webgpu or bool(self.webnn) or bool(self.features) or bool(self.limits)


def needs_from(
    hw_labels: Iterable[str],
    *,
    features: Sequence[str] = (),
    limits: Mapping[str, Any] | None = None,
) -> Needs:
    """Read the browser part of a test's requirements; other labels are ignored.

    Raises ``ValueError`` for a malformed ``features``/``limits`` value.
    """
    webgpu = hardware = False
    vendor: str | None = None
    webnn: list[str] = []
    for raw in hw_labels:
        label = str(raw).strip().lower()
        if label == "webgpu":
            webgpu = hardware = True
        elif label == "webgpu-sw":
            webgpu = True
        elif label.startswith("webgpu-"):
            webgpu = hardware = True
            vendor = label[len("webgpu-") :]
        elif label == "webnn":
            webnn.append("any")
        elif label.startswith("webnn-") and label[len("webnn-") :] in WEBNN_DEVICES:
            webnn.append(label[len("webnn-") :])
    if isinstance(features, str):
        features = [features]
    feats = tuple(str(f) for f in features)
    lim: dict[str, int] = {}
    for k, v in (limits or {}).items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ValueError(f"limit {k!r} must be a non-negative number, not {v!r}")
        lim[str(k)] = int(v)
    if feats or lim:
        webgpu = True
    return Needs(
        webgpu=webgpu,
        hardware=hardware,
        vendor=vendor,
        features=feats,
        limits=lim,
        webnn=tuple(dict.fromkeys(webnn)),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def _unmet(promised_by: Iterable[str], promised: frozenset[str], what: str, has: str) -> Decision:
    lied = sorted(set(promised_by) & promised)
    if lied:
        return Decision(
            "infra",
            f"the runner's label {', '.join(lied)} promised {what}, but its browser has {has}",
        )
    return Decision("skip", f"needs {what}; this runner's browser has {has}")


def decide(needs: Needs, caps: Capabilities | None, promised: frozenset[str]) -> Decision:
    """Run, skip, or fail as infrastructure — see the module docstring."""
    if not needs.any:
        return Decision("run")
    if caps is None:
        return _unmet(
            ["webgpu", "webgpu-sw"] if needs.webgpu else [], promised, "a browser", "none"
        )
    has = caps.describe()
    if needs.webgpu and caps.adapter is None:
        promised_by = ["webgpu", "webgpu-sw"]
        if needs.vendor:
            promised_by.append(f"webgpu-{needs.vendor}")
        return _unmet(promised_by, promised, "a WebGPU adapter", has)
    if needs.hardware and not caps.hardware:
        promised_by = ["webgpu"] + ([f"webgpu-{needs.vendor}"] if needs.vendor else [])
        return _unmet(promised_by, promised, "a hardware WebGPU adapter", has)
    if needs.vendor:
        vendor = (caps.adapter.vendor if caps.adapter else None) or ""
        if needs.vendor not in vendor.lower().replace(" ", "-"):
            return _unmet([f"webgpu-{needs.vendor}"], promised, f"a {needs.vendor} adapter", has)
    missing = [f for f in needs.features if f not in caps.features]
    if missing:
        return Decision(
            "skip", f"needs WebGPU feature(s) {', '.join(missing)}; the adapter {has} lacks them"
        )
    for key, want in needs.limits.items():
        got = caps.limits.get(key)
        if got is None or got < want:
            return Decision(
                "skip",
                f"needs WebGPU limit {key} >= {want}; the adapter {has} has "
                f"{'no such limit' if got is None else got}",
            )
    for device in needs.webnn:
        ok = any(caps.webnn.values()) if device == "any" else caps.webnn.get(device, False)
        if not ok:
            label = "webnn" if device == "any" else f"webnn-{device}"
            what = "a WebNN context" if device == "any" else f"a WebNN {device} context"
            why = "no WebNN context" + (f" ({caps.webnn_error[:200]})" if caps.webnn_error else "")
            return _unmet([label], promised, what, why)
    return Decision("run")


__all__ = [
    "Capabilities",
    "Decision",
    "Needs",
    "capabilities_from_detect",
    "decide",
    "needs_from",
]
