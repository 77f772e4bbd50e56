"""Readable names for runner classes: ``gpu-nvidia · h100 · gpu-mem ≥ 80 GB`` instead of the
twenty comma-joined labels a runner class is keyed by (``ci_app.reporting.data.runner_class_of``).

A name is a *kind* (``gpu-nvidia``, ``gpu``, ``cpu``) followed by at most two facts read from
the label taxonomy (ladders as ``≥``, the strongest ISA, the GPU model, browser features).
Among other classes (:func:`class_names`), the facts chosen are the ones that *differ* between
them, so two classes on one page never read the same; alone (:func:`readable_class`), the most
telling facts are shown. Labels outside the taxonomy (``self-hosted``, a team's own tags) are
facts like any other. Pure: the full label set stays the key; this is only what people read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["SEP", "ClassFacts", "class_facts", "class_labels", "class_names", "readable_class"]

SEP = " · "
#: facts shown after the kind, at most
MAX_FACTS = 2
_LADDER = re.compile(r"^(cpus|mem|disk-free|gpus|gpu-mem|sm|cuda)-ge-([0-9.]+)(g?)$")
_ARCHES = ("x64", "arm64", "ppc64le", "s390x", "riscv64")
#: strongest first; the first one a class holds is its ISA fact
_ISA_ORDER = (
    "cpu-amx",
    "cpu-avx512-fp16",
    "cpu-avx512-bf16",
    "cpu-avx512-vnni",
    "cpu-avx512",
    "cpu-sve2",
    "cpu-sve",
    "cpu-avx2",
    "cpu-neon",
    "cpu-x86-64-v4",
    "cpu-x86-64-v3",
    "cpu-x86-64-v2",
)
_ISA_NAME = {
    "cpu-avx512-fp16": "avx512",
    "cpu-avx512-bf16": "avx512",
    "cpu-avx512-vnni": "avx512",
    "cpu-x86-64-v4": "x86-64-v4",
    "cpu-x86-64-v3": "x86-64-v3",
    "cpu-x86-64-v2": "x86-64-v2",
}
_GPU_VENDORS = ("gpu-nvidia", "gpu-amd", "gpu-intel")
#: facts in the order people look for them; ``other`` are labels outside the taxonomy
_SALIENCE = (
    "gpu-model",
    "gpu-mem",
    "gpus",
    "isa",
    "arch",
    "mem",
    "cpus",
    "webgpu",
    "webnn",
    "accel",
    "cuda",
    "mig",
    "gpu-arch",
    "sm",
    "other",
    "disk-free",
)
#: shown for a class alone (no others to tell it from), per kind
_ALONE_GPU = ("gpu-model", "gpu-mem", "other", "webgpu")
_ALONE_CPU = ("isa", "mem", "arch", "other", "webgpu", "webnn", "accel")


@dataclass(frozen=True, slots=True)
class ClassFacts:
    """What a runner class's labels say, as short texts keyed by fact."""

    kind: str | None  # gpu-nvidia | gpu | cpu; None when no taxonomy label is known
    facts: Mapping[str, str]
    labels: tuple[str, ...]


def class_labels(runner_class: str) -> tuple[str, ...]:
    """The labels of a runner class key (``a,b,c``); a runner name key is one label."""
    return tuple(x.strip() for x in runner_class.split(",") if x.strip())


def _ladder_text(key: str, step: str, unit: str) -> str:
    if unit:
        return f"{key} ≥ {step} GB"
    if key == "cpus":
        return f"≥ {step} CPUs"
    if key == "gpus":
        return f"≥ {step} GPUs"
    return f"{key} ≥ {step}"


def _step_key(step: str) -> tuple[int, ...]:
    return tuple(int(p) for p in step.split(".") if p.isdigit())


def class_facts(runner_class: str) -> ClassFacts:
    labels = class_labels(runner_class)
    facts: dict[str, str] = {}
    ladders: dict[str, tuple[tuple[int, ...], str, str]] = {}
    models: list[str] = []
    other: list[str] = []
    webnn: list[str] = []
    accel: list[str] = []
    known = False
    held = set(labels)
    for label in labels:
        m = _LADDER.match(label)
        if m:
            known = True
            key, step, unit = m.groups()
            k = _step_key(step)
            if key not in ladders or k > ladders[key][0]:
                ladders[key] = (k, step, unit)
        elif label.startswith("gpu-model-"):
            known = True
            models.append(label.removeprefix("gpu-model-"))
        elif label.startswith("gpu-arch-"):
            known = True
            facts["gpu-arch"] = label.removeprefix("gpu-arch-")
        elif label.startswith("webnn-"):
            known = True
            webnn.append(label)
        elif label.startswith("accel-"):
            known = True
            accel.append(label.removeprefix("accel-"))
        elif label in ("webgpu", "webgpu-sw"):
            known = True
            facts["webgpu"] = label
        elif label.startswith(("webgpu-", "sm_")) or label == "webnn":
            known = True  # vendor detail / implied by others: not worth a fact
        elif label in _ARCHES:
            known = True
            facts["arch"] = label
        elif label in ("gpu-mig",) or label.startswith("mig-"):
            known = True
            facts["mig"] = "MIG"
        elif label == "gpu" or label in _GPU_VENDORS or label in _ISA_ORDER:
            known = True
        else:
            other.append(label)
    for key, (_k, step, unit) in ladders.items():
        if key == "gpus" and step == "1":
            continue  # one GPU is what "gpu" already says
        if key == "cpus" and step == "1":
            continue
        facts[key] = _ladder_text(key, step, unit)
    if models:  # the family (h100) rather than the full slug (h100-80gb-hbm3)
        facts["gpu-model"] = min(models, key=lambda s: (len(s), s))
    isa = next((x for x in _ISA_ORDER if x in held), None)
    if isa is not None:
        facts["isa"] = _ISA_NAME.get(isa, isa.removeprefix("cpu-"))
    if webnn:
        facts["webnn"] = "webnn-" + "/".join(sorted(x.removeprefix("webnn-") for x in webnn))
    if accel:
        facts["accel"] = "/".join(sorted(accel))
    if other:
        facts["other"] = " ".join(sorted(other))
    kind: str | None = None
    if known:
        vendors = [v for v in _GPU_VENDORS if v in held]
        if vendors:
            kind = "+".join(vendors)
        elif "gpu" in held:
            kind = "gpu"
        else:
            kind = "cpu"
    return ClassFacts(kind=kind, facts=facts, labels=labels)


def _compose(cf: ClassFacts, keys: Iterable[str]) -> str:
    parts = [cf.facts[k] for k in keys if k in cf.facts]
    if cf.kind is None:
        return SEP.join(parts) or "default"
    return SEP.join([cf.kind, *parts])


def readable_class(runner_class: str, among: Iterable[str] = ()) -> str:
    """A short, readable name for ``runner_class``; with ``among`` (the other classes shown
    beside it), one that tells it apart from them."""
    others = [c for c in among if c != runner_class]
    if others:
        return class_names([runner_class, *others])[runner_class]
    cf = class_facts(runner_class)
    if cf.kind is None:
        return _compose(cf, ("other",))
    alone = _ALONE_GPU if cf.kind != "cpu" else _ALONE_CPU
    return _compose(cf, [k for k in alone if k in cf.facts][:MAX_FACTS])


def class_names(classes: Iterable[str]) -> dict[str, str]:
    """A distinct readable name for each runner class, chosen against the others.

    For each class: its kind, then up to :data:`MAX_FACTS` facts that differ from at least one
    other class (most telling first). Two names that still coincide get every differing fact;
    if even that cannot tell them apart (e.g. they differ only in a label's spelling), a short
    digest of the full label set is appended.
    """
    unique = sorted(set(classes))
    facts = {c: class_facts(c) for c in unique}
    if len(unique) <= 1:
        return {c: readable_class(c) for c in unique}
    names: dict[str, str] = {}
    differing: dict[str, list[str]] = {}
    for c in unique:
        cf = facts[c]
        diff = [
            k
            for k in _SALIENCE
            if any(facts[o].facts.get(k) != cf.facts.get(k) for o in unique if o != c)
        ]
        differing[c] = diff
        present = [k for k in diff if k in cf.facts]
        if present:
            names[c] = _compose(cf, present[:MAX_FACTS])
        else:  # it differs from the others by what it lacks: its kind and usual facts say so
            names[c] = readable_class(c)
    by_name: dict[str, list[str]] = {}
    for c, n in names.items():
        by_name.setdefault(n, []).append(c)
    for same in by_name.values():
        if len(same) < 2:
            continue
        for c in same:
            names[c] = _compose(facts[c], [k for k in differing[c] if k in facts[c].facts])
        again: dict[str, list[str]] = {}
        for c in same:
            again.setdefault(names[c], []).append(c)
        for group in again.values():
            if len(group) > 1:
                for c in group:
                    digest = hashlib.sha256(c.encode()).hexdigest()[:4]
                    names[c] = f"{names[c]} #{digest}"
    return names
