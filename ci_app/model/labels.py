"""The label taxonomy: ONE table in code, profile -> labels, requirement -> label.

CI labels are exact-match sets (GitHub ``runs-on``, GitLab ``tags``) without ``>=``, so
numeric facts are published as *threshold ladders*: a runner publishes ``X-ge-T`` for every
step ``T`` its value meets, and a requirement ``X>=v`` compiles to the smallest step ``T >= v``
(``gpu-mem>=20g`` -> ``gpu-mem-ge-24g``, held by every runner with at least 24 GB).

Sizes are decimal GB (10**9 bytes): an "80GB" H100 reports 81559 MiB = 79.65 GiB = 85.52 GB,
so a GiB-based ``>= 80`` would wrongly reject it.

This module is pure (no I/O). ``docs/labels.md`` is generated from it by
:func:`render_labels_markdown`; a test keeps the two equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ci_app.errors import ConfigError
from ci_app.model.profile import (
    Accelerators,
    Browser,
    Cpu,
    Disk,
    Gpu,
    HardwareProfile,
    Memory,
    Nvidia,
    Status,
)

SCHEME = "hwlabels-v1"
"""Version stamp of this taxonomy (bump when the mapping changes incompatibly)."""

LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
"""Valid label: lowercase, starts alphanumeric, ``[a-z0-9._-]``, at most 63 characters.

It is the intersection of what GitHub runner labels, GitLab tags and Kubernetes label names
(ARC mirrors runner labels onto pods) accept.
"""

GB = 10**9


class RequirementError(ConfigError, ValueError):
    """A requirement that no label (or ladder step) can express.

    A ``ValueError`` for callers that treat it as bad input, and a ``ConfigError`` (exit code 2)
    so the CLI reports it as a user error.
    """


def is_valid_label(label: str) -> bool:
    """True if ``label`` matches :data:`LABEL_RE`."""
    return LABEL_RE.fullmatch(label) is not None


# ---------------------------------------------------------------------------------------------
# Ladders
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ladder:
    """A threshold ladder: ``<prefix>-ge-<step><suffix>`` for every step a value meets.

    ``key`` is the requirement name (``gpu-mem`` in ``gpu-mem>=24g``); ``steps`` are the step
    tokens as they appear in labels (``"24"``, ``"12.4"``); ``kind`` says how to read a
    requirement value: ``"gb"`` (size, decimal GB, unit suffix ``g`` in labels), ``"count"``
    (integer), ``"version"`` (dotted ``major.minor``).
    """

    key: str
    kind: str
    steps: tuple[str, ...]
    source: str
    note: str = ""

    @property
    def suffix(self) -> str:
        return "g" if self.kind == "gb" else ""

    def label(self, step: str) -> str:
        return f"{self.key}-ge-{step}{self.suffix}"

    def step_values(self) -> tuple[tuple[int, ...], ...]:
        return tuple(_step_value(self.kind, s) for s in self.steps)

    def labels_for(self, value: float | tuple[int, ...] | None) -> list[str]:
        """Every step label met by ``value`` (a number, or a version tuple)."""
        if value is None:
            return []
        v = _as_key(self.kind, value)
        return [
            self.label(s) for s, sv in zip(self.steps, self.step_values(), strict=True) if sv <= v
        ]

    def compile(self, value: float | tuple[int, ...]) -> str:
        """The smallest step at or above ``value``; :class:`RequirementError` past the top."""
        v = _as_key(self.kind, value)
        for s, sv in zip(self.steps, self.step_values(), strict=True):
            if sv >= v:
                return self.label(s)
        top = self.label(self.steps[-1])
        raise RequirementError(
            f"requirement {self.key}>={_fmt_key(self.kind, v)} is above the top step of the "
            f"{self.key} ladder ({top}); no runner label can express it — match it app-side "
            f"from the stored profile, or extend the ladder in ci_app/model/labels.py"
        )


def _step_value(kind: str, step: str) -> tuple[int, ...]:
    if kind == "version":
        return tuple(int(p) for p in step.split("."))
    # sizes and counts compare as integer thousandths so 0.5 GB or 1.5 CPUs stay exact
    return (round(float(step) * 1000),)


def _as_key(kind: str, value: float | tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, tuple):
        if kind != "version":
            raise TypeError(f"a {kind} ladder takes a number, not {value!r}")
        return value + (0,) * max(0, 2 - len(value))
    if kind == "version":
        raise TypeError(f"a version ladder takes a tuple, not {value!r}")
    # integer thousandths, floored: a measured value only meets steps it truly reaches
    return (math.floor(value * 1000 + 1e-6),)


def _fmt_key(kind: str, key: tuple[int, ...]) -> str:
    if kind == "version":
        return ".".join(str(p) for p in key)
    v = key[0] / 1000
    text = f"{v:g}"
    return text + ("g" if kind == "gb" else "")


LADDERS: dict[str, Ladder] = {
    ladder.key: ladder
    for ladder in (
        Ladder(
            key="cpus",
            kind="count",
            steps=("1", "2", "4", "8", "16", "32", "64", "128"),
            source="cpu.effective",
            note="cgroup-effective CPUs: min(affinity, cpuset, ceil(quota))",
        ),
        Ladder(
            key="mem",
            kind="gb",
            steps=tuple(
                str(s) for s in (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
            ),
            source="memory.effective_bytes",
            note="min(MemTotal, cgroup limit), decimal GB",
        ),
        Ladder(
            key="disk-free",
            kind="gb",
            steps=("10", "50", "100", "200", "500"),
            source="disk.free_bytes",
            note="free space of the runner work folder; volatile",
        ),
        Ladder(
            key="gpus",
            kind="count",
            steps=("1", "2", "4", "8"),
            source="gpus[] (MIG devices count when MIG is on)",
            note="number of usable GPUs after CUDA_VISIBLE_DEVICES",
        ),
        Ladder(
            key="gpu-mem",
            kind="gb",
            steps=tuple(str(s) for s in (8, 12, 16, 24, 32, 40, 48, 80, 96, 141, 180)),
            source="min(gpus[].memory_bytes) (MIG: smallest MIG device)",
            note="minimum over GPUs, decimal GB",
        ),
        Ladder(
            key="sm",
            kind="count",
            steps=("70", "75", "80", "86", "89", "90", "100", "120"),
            source="min(gpus[].compute_capability)",
            note="compute capability x10 (9.0 -> 90), minimum over GPUs",
        ),
        Ladder(
            key="cuda",
            kind="version",
            steps=("11.8", "12.0", "12.2", "12.4", "12.6", "12.8", "13.0"),
            source="nvidia.cuda_driver_version",
            note="highest CUDA version the driver supports",
        ),
    )
}

# Requirement spellings accepted for a ladder key (after lower-casing, ``_`` -> ``-``).
_KEY_ALIASES: dict[str, str] = {
    "cpu": "cpus",
    "cpus": "cpus",
    "mem": "mem",
    "memory": "mem",
    "ram": "mem",
    "disk": "disk-free",
    "disk-free": "disk-free",
    "gpus": "gpus",
    "gpu-count": "gpus",
    "gpu-mem": "gpu-mem",
    "gpu-memory": "gpu-mem",
    "vram": "gpu-mem",
    "sm": "sm",
    "cc": "sm",
    "compute-capability": "sm",
    "cuda": "cuda",
}

_REQ_RE = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*(>=|=>|==|<=|>|<|=)\s*([0-9][0-9a-z.]*)\s*$")
_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-z]*)$")
_SIZE_UNITS: dict[str, float] = {
    "": GB,
    "g": GB,
    "gb": GB,
    "t": 1000 * GB,
    "tb": 1000 * GB,
    "m": 10**6,
    "mb": 10**6,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
    "mi": 2**20,
    "mib": 2**20,
}


def _parse_size_gb(text: str, raw: str) -> float:
    m = _SIZE_RE.fullmatch(text)
    if m is None or m.group(2) not in _SIZE_UNITS:
        raise RequirementError(
            f"bad size {text!r} in requirement {raw!r}: use a number with a unit g/gb (decimal), "
            f"gib, t/tb, m/mb — e.g. 'gpu-mem>=24g'"
        )
    return float(m.group(1)) * _SIZE_UNITS[m.group(2)] / GB


def _parse_count(text: str, raw: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RequirementError(
            f"bad number {text!r} in requirement {raw!r}: e.g. 'cpus>=8'"
        ) from None


def _parse_version(text: str, raw: str) -> tuple[int, ...]:
    if re.fullmatch(r"[0-9]+(\.[0-9]+){0,2}", text) is None:
        raise RequirementError(f"bad version {text!r} in requirement {raw!r}: e.g. 'cuda>=12.4'")
    # the driver's CUDA version is major.minor; a 12.4 driver runs any 12.4.x runtime
    parts = tuple(int(p) for p in text.split("."))
    return (*parts, 0)[:2]


def compile_requirement(requirement: str) -> str:
    """Compile one requirement to the single label a runner must hold.

    - ``"gpu-mem>=20g"`` -> ``"gpu-mem-ge-24g"`` (smallest ladder step at or above the value);
      sizes are decimal GB (``g``/``gb``; ``gib`` and ``t``/``tb``/``m``/``mb`` also accepted);
    - ``"mem>=64g"`` -> ``"mem-ge-64g"``, ``"cpus>=8"`` -> ``"cpus-ge-8"``,
      ``"gpus>=2"`` -> ``"gpus-ge-2"``, ``"cuda>=12.4"`` -> ``"cuda-ge-12.4"``,
      ``"sm>=80"`` (or ``"sm>=8.0"``) -> ``"sm-ge-80"``;
    - a plain label (``"gpu-nvidia"``, ``"cpu-avx512"``, ``"webgpu"``) passes through,
      lower-cased, with ``cpu:avx512``-style colons turned into hyphens.

    Raises :class:`RequirementError` for unknown ladder keys, other operators (``==``, ``<``),
    values above a ladder's top step, and strings that are not valid labels.
    """
    raw = requirement
    text = requirement.strip().lower()
    if not text:
        raise RequirementError("empty requirement")
    m = _REQ_RE.fullmatch(text)
    if m is None:
        if any(op in text for op in "<>="):
            raise RequirementError(
                f"cannot parse requirement {raw!r}: expected '<key>>=<value>' "
                f"(keys: {', '.join(sorted(LADDERS))}) or a plain label"
            )
        label = text.replace(":", "-").replace(" ", "-")
        if not is_valid_label(label):
            raise RequirementError(
                f"requirement {raw!r} is not a valid label: labels match {LABEL_RE.pattern}"
            )
        return label
    key_text, op, value_text = m.groups()
    key = _KEY_ALIASES.get(key_text.replace("_", "-"))
    if key is None:
        raise RequirementError(
            f"unknown requirement key {key_text!r} in {raw!r}: ladders exist for "
            f"{', '.join(sorted(LADDERS))}"
        )
    if op not in (">=", "=>"):
        raise RequirementError(
            f"operator {op!r} in {raw!r} cannot be expressed with CI labels: only '>=' compiles "
            f"to a ladder label; match exact or upper bounds app-side from the profile"
        )
    ladder = LADDERS[key]
    if ladder.kind == "gb":
        return ladder.compile(_parse_size_gb(value_text, raw))
    if ladder.kind == "version":
        return ladder.compile(_parse_version(value_text, raw))
    number = _parse_count(value_text, raw)
    if key == "sm" and number < 20:  # "sm>=8.0" is compute capability notation
        number = round(number * 10, 3)
    if number <= 0:
        raise RequirementError(f"requirement {raw!r} is always true; drop it")
    return ladder.compile(number)


def compile_requirements(requirements: Iterable[str]) -> frozenset[str]:
    """Compile several requirements; keep only the strongest step per ladder.

    ``["gpu-mem>=16g", "gpu-mem>=40g", "gpu"]`` -> ``{"gpu-mem-ge-40g", "gpu"}`` (a runner with
    the 40 GB step also has the 16 GB one, so the weaker label adds nothing).
    """
    labels = {compile_requirement(r) for r in requirements}
    return frozenset(_drop_weaker_steps(labels))


def ladder_step(label: str) -> tuple[Ladder, int] | None:
    """``(ladder, step index)`` if ``label`` is a ladder label, else None."""
    for ladder in LADDERS.values():
        for i, step in enumerate(ladder.steps):
            if ladder.label(step) == label:
                return ladder, i
    return None


def _drop_weaker_steps(labels: set[str]) -> set[str]:
    best: dict[str, int] = {}
    for label in labels:
        hit = ladder_step(label)
        if hit is not None:
            ladder, i = hit
            best[ladder.key] = max(best.get(ladder.key, -1), i)
    keep: set[str] = set()
    for label in labels:
        hit = ladder_step(label)
        if hit is None or best[hit[0].key] == hit[1]:
            keep.add(label)
    return keep


# ---------------------------------------------------------------------------------------------
# Profile -> labels: the table
# ---------------------------------------------------------------------------------------------

# Sources, as named in reconcile: a label whose source is in ``error`` is never removed.
SOURCES = ("cpu", "memory", "disk", "nvidia", "accelerators", "browser")

_ARCH_LABELS = {
    "x86_64": "x64",
    "aarch64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# raw kernel flag -> label (NFD-style names, normalised to our syntax)
_ISA_LABELS: dict[str, str] = {
    "avx2": "cpu-avx2",
    "avx512f": "cpu-avx512",
    "avx512_vnni": "cpu-avx512-vnni",
    "avx512_bf16": "cpu-avx512-bf16",
    "avx512_fp16": "cpu-avx512-fp16",
    "amx_tile": "cpu-amx",
    "asimd": "cpu-neon",
    "sve": "cpu-sve",
    "sve2": "cpu-sve2",
}
_ACCEL_KINDS = ("npu", "tpu", "gaudi", "neuron", "fpga")
_GPU_FAMILY_RE = re.compile(r"^[a-z]{1,2}[0-9]{1,4}[a-z]?$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")


def gpu_model_labels(name: str | None) -> list[str]:
    """``NVIDIA H100 80GB HBM3`` -> ``gpu-model-h100-80gb-hbm3`` and ``gpu-model-h100``."""
    if not name:
        return []
    text = re.sub(r"^(nvidia|amd|intel)\s+", "", name.strip(), flags=re.IGNORECASE)
    slug = _slug(text)
    if not slug:
        return []
    out = [f"gpu-model-{slug}"[:63].rstrip("-.")]
    first = slug.split("-")[0]
    if first != slug and _GPU_FAMILY_RE.fullmatch(first):
        out.append(f"gpu-model-{first}")
    return out


def _cc_value(cc: str | None) -> float | None:
    if not cc:
        return None
    major, _, minor = cc.partition(".")
    try:
        return int(major) * 10 + int(minor or 0)
    except ValueError:
        return None


def _usable_gpus(profile: HardwareProfile) -> list[tuple[Gpu, list[int | None]]]:
    """Each GPU with the memory sizes of the CUDA devices it offers (MIG devices when MIG is on)."""
    out: list[tuple[Gpu, list[int | None]]] = []
    for g in profile.gpus:
        if g.mig is not None and g.mig.current:
            out.append((g, [d.memory_bytes for d in g.mig.devices]))
        else:
            out.append((g, [g.memory_bytes]))
    return out


def _labels_arch(p: HardwareProfile) -> list[str]:
    label = _ARCH_LABELS.get(p.cpu.arch)
    return [label] if label else []


def _labels_x86_level(p: HardwareProfile) -> list[str]:
    level = p.cpu.x86_64_level or 0
    return [f"cpu-x86-64-v{n}" for n in (2, 3, 4) if n <= level]


def _labels_isa(p: HardwareProfile) -> list[str]:
    flags = set(p.cpu.flags)
    return sorted({label for flag, label in _ISA_LABELS.items() if flag in flags})


def _labels_cpus(p: HardwareProfile) -> list[str]:
    return LADDERS["cpus"].labels_for(p.cpu.effective or None)


def _labels_mem(p: HardwareProfile) -> list[str]:
    return LADDERS["mem"].labels_for(p.memory.effective_bytes / GB or None)


def _labels_disk(p: HardwareProfile) -> list[str]:
    if p.disk.status is not Status.OK:
        return []
    return LADDERS["disk-free"].labels_for(p.disk.free_bytes / GB)


def _labels_gpu_vendor(p: HardwareProfile) -> list[str]:
    out = {f"gpu-{g.vendor}" for g in p.gpus if g.vendor}
    if p.gpus:
        out.add("gpu")
    out |= {
        f"gpu-{a.vendor}"
        for a in p.accelerators.devices
        if a.kind == "gpu" and a.vendor in ("amd", "intel")
    }
    return sorted(out)


def _labels_gpu_count(p: HardwareProfile) -> list[str]:
    n = sum(len(sizes) for _, sizes in _usable_gpus(p))
    return LADDERS["gpus"].labels_for(n or None)


def _labels_gpu_mem(p: HardwareProfile) -> list[str]:
    sizes = [s for _, ss in _usable_gpus(p) for s in ss]
    if not sizes or any(s is None for s in sizes):
        return []  # an unknown size cannot vouch for a step
    return LADDERS["gpu-mem"].labels_for(min(s for s in sizes if s is not None) / GB)


def _labels_sm(p: HardwareProfile) -> list[str]:
    ccs = [_cc_value(g.compute_capability) for g in p.gpus]
    known = [c for c in ccs if c is not None]
    out = {f"sm_{int(c)}" for c in known}
    if known and len(known) == len(ccs):
        out |= set(LADDERS["sm"].labels_for(min(known)))
    return sorted(out)


def _labels_gpu_arch(p: HardwareProfile) -> list[str]:
    return sorted({f"gpu-arch-{g.arch}" for g in p.gpus if g.arch})


def _labels_gpu_model(p: HardwareProfile) -> list[str]:
    return sorted({label for g in p.gpus for label in gpu_model_labels(g.name)})


def _labels_mig(p: HardwareProfile) -> list[str]:
    out: set[str] = set()
    for g in p.gpus:
        if g.mig is not None and g.mig.current:
            out.add("gpu-mig")
            out |= {f"mig-{d.profile}" for d in g.mig.devices if d.profile}
    return sorted(label for label in out if is_valid_label(label))


def _labels_cuda(p: HardwareProfile) -> list[str]:
    v = p.nvidia.cuda_driver_version
    if not v or not p.gpus:
        return []
    try:
        key = tuple(int(x) for x in v.split(".")[:2])
    except ValueError:
        return []
    return LADDERS["cuda"].labels_for(key)


def _labels_accel(p: HardwareProfile) -> list[str]:
    return sorted({f"accel-{a.kind}" for a in p.accelerators.devices if a.kind in _ACCEL_KINDS})


def _labels_webgpu(p: HardwareProfile) -> list[str]:
    b = p.browser
    if b.status is not Status.OK or b.webgpu is None or b.webgpu.adapter is None:
        return []
    a = b.webgpu.adapter
    if not a.fallback and (a.type or "").strip().lower() != "cpu":
        out = ["webgpu"]
        vendor = _slug(a.vendor or "")
        if vendor and is_valid_label(f"webgpu-{vendor}") and vendor != "sw":
            out.append(f"webgpu-{vendor}")
        return out
    return ["webgpu-sw"]


def _labels_webnn(p: HardwareProfile) -> list[str]:
    b = p.browser
    if b.status is not Status.OK or b.webnn is None:
        return []
    devices = [d for d in ("cpu", "gpu", "npu") if getattr(b.webnn, d) is True]
    return ["webnn", *(f"webnn-{d}" for d in devices)] if devices else []


@dataclass(frozen=True, kw_only=True)
class LabelRule:
    """One row of the taxonomy: which labels, from which facts, by which rule."""

    labels: str  # as documented
    source: str  # one of SOURCES
    field: str  # profile field(s) read
    rule: str
    pattern: str  # regex every label of this row matches (ownership)
    derive: Callable[[HardwareProfile], list[str]]


def _ladder_pattern(key: str) -> str:
    ladder = LADDERS[key]
    steps = "|".join(re.escape(s) for s in ladder.steps)
    return rf"{re.escape(key)}-ge-(?:{steps}){ladder.suffix}"


def _ladder_doc(key: str) -> str:
    ladder = LADDERS[key]
    return f"`{key}-ge-{{{','.join(ladder.steps)}}}{ladder.suffix}`"


LABEL_TABLE: tuple[LabelRule, ...] = (
    LabelRule(
        labels="`x64`, `arm64`, `ppc64le`, `s390x`, `riscv64`",
        source="cpu",
        field="cpu.arch",
        rule="machine architecture",
        pattern="x64|arm64|ppc64le|s390x|riscv64",
        derive=_labels_arch,
    ),
    LabelRule(
        labels="`cpu-x86-64-v2`, `cpu-x86-64-v3`, `cpu-x86-64-v4`",
        source="cpu",
        field="cpu.x86_64_level",
        rule="every psABI level the CPU meets (a v4 CPU also has v2 and v3)",
        pattern="cpu-x86-64-v[234]",
        derive=_labels_x86_level,
    ),
    LabelRule(
        labels=", ".join(f"`{v}`" for v in sorted(set(_ISA_LABELS.values()))),
        source="cpu",
        field="cpu.flags",
        rule=", ".join(f"`{k}`→`{v}`" for k, v in _ISA_LABELS.items()),
        pattern="|".join(re.escape(v) for v in sorted(set(_ISA_LABELS.values()))),
        derive=_labels_isa,
    ),
    LabelRule(
        labels=_ladder_doc("cpus"),
        source="cpu",
        field="cpu.effective",
        rule="ladder on cgroup-effective CPUs: min(affinity, cpuset, ceil(quota))",
        pattern=_ladder_pattern("cpus"),
        derive=_labels_cpus,
    ),
    LabelRule(
        labels=_ladder_doc("mem"),
        source="memory",
        field="memory.effective_bytes",
        rule="ladder, decimal GB, on min(MemTotal, cgroup limit)",
        pattern=_ladder_pattern("mem"),
        derive=_labels_mem,
    ),
    LabelRule(
        labels=_ladder_doc("disk-free"),
        source="disk",
        field="disk.free_bytes",
        rule="ladder, decimal GB, free space of the work folder (volatile)",
        pattern=_ladder_pattern("disk-free"),
        derive=_labels_disk,
    ),
    LabelRule(
        labels="`gpu`, `gpu-nvidia`, `gpu-amd`, `gpu-intel`",
        source="nvidia",
        field="gpus[].vendor, accelerators.devices[kind=gpu]",
        rule="`gpu` = at least one compute GPU in `gpus[]` (v1: NVIDIA via NVML); "
        "`gpu-<vendor>` per vendor, AMD/Intel display devices from PCI give only `gpu-<vendor>`",
        pattern="gpu|gpu-(?:nvidia|amd|intel)",
        derive=_labels_gpu_vendor,
    ),
    LabelRule(
        labels=_ladder_doc("gpus"),
        source="nvidia",
        field="len(gpus) (MIG devices when MIG is on)",
        rule="ladder on the number of CUDA devices after `CUDA_VISIBLE_DEVICES`",
        pattern=_ladder_pattern("gpus"),
        derive=_labels_gpu_count,
    ),
    LabelRule(
        labels=_ladder_doc("gpu-mem"),
        source="nvidia",
        field="min(gpus[].memory_bytes) (MIG: smallest MIG device)",
        rule="ladder, decimal GB, on the minimum over GPUs; none if any size is unknown",
        pattern=_ladder_pattern("gpu-mem"),
        derive=_labels_gpu_mem,
    ),
    LabelRule(
        labels="`sm_90`, …; " + _ladder_doc("sm"),
        source="nvidia",
        field="gpus[].compute_capability",
        rule="`sm_XY` for every GPU (union); ladder on the minimum",
        pattern=r"sm_[0-9]{2,3}|" + _ladder_pattern("sm"),
        derive=_labels_sm,
    ),
    LabelRule(
        labels="`gpu-arch-{volta,turing,ampere,ada,hopper,blackwell,…}`",
        source="nvidia",
        field="gpus[].arch",
        rule="union over GPUs (from compute capability, else NVML's architecture)",
        pattern=r"gpu-arch-[a-z0-9]+",
        derive=_labels_gpu_arch,
    ),
    LabelRule(
        labels="`gpu-model-h100-80gb-hbm3`, `gpu-model-h100`, …",
        source="nvidia",
        field="gpus[].name",
        rule="name without the vendor word, slugged; plus the family token (`h100`, `a10g`, "
        "`l4`) when the name has more words; union",
        pattern=r"gpu-model-[a-z0-9][a-z0-9.-]*",
        derive=_labels_gpu_model,
    ),
    LabelRule(
        labels="`gpu-mig`, `mig-1g.10gb`, …",
        source="nvidia",
        field="gpus[].mig",
        rule="when MIG mode is on: `gpu-mig` and one label per MIG profile present",
        pattern=r"gpu-mig|mig-[0-9]+g\.[0-9]+gb",
        derive=_labels_mig,
    ),
    LabelRule(
        labels=_ladder_doc("cuda"),
        source="nvidia",
        field="nvidia.cuda_driver_version",
        rule="ladder on the highest CUDA version the driver supports (only with a GPU)",
        pattern=_ladder_pattern("cuda"),
        derive=_labels_cuda,
    ),
    LabelRule(
        labels=", ".join(f"`accel-{k}`" for k in _ACCEL_KINDS),
        source="accelerators",
        field="accelerators.devices[].kind",
        rule="other accelerators found on PCI (class 0x0b40 / 0x12)",
        pattern="accel-(?:" + "|".join(_ACCEL_KINDS) + ")",
        derive=_labels_accel,
    ),
    LabelRule(
        labels="`webgpu`, `webgpu-<vendor>`, `webgpu-sw`",
        source="browser",
        field="browser.webgpu.adapter",
        rule="`webgpu` (+ vendor) only for a non-fallback adapter whose type is not CPU; "
        "a fallback (SwiftShader) adapter gives `webgpu-sw` only",
        pattern=r"webgpu|webgpu-[a-z0-9][a-z0-9.-]*",
        derive=_labels_webgpu,
    ),
    LabelRule(
        labels="`webnn`, `webnn-cpu`, `webnn-gpu`, `webnn-npu`",
        source="browser",
        field="browser.webnn",
        rule="only after `navigator.ml.createContext({deviceType})` succeeded",
        pattern="webnn|webnn-(?:cpu|gpu|npu)",
        derive=_labels_webnn,
    ),
)

OWNED_LABEL_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(rf"(?:{rule.pattern})") for rule in LABEL_TABLE
)
"""Regexes (use ``fullmatch``) of every label this app may add or remove."""


def is_owned_label(label: str) -> bool:
    """True if ``label`` belongs to our vocabulary (case-insensitive, as CI labels are)."""
    low = label.lower()
    return any(p.fullmatch(low) for p in OWNED_LABEL_PATTERNS)


def label_source(label: str) -> str | None:
    """The profile source (:data:`SOURCES`) a label of ours comes from; None if not ours."""
    low = label.lower()
    for rule, pattern in zip(LABEL_TABLE, OWNED_LABEL_PATTERNS, strict=True):
        if pattern.fullmatch(low):
            return rule.source
    return None


def source_status(profile: HardwareProfile, source: str) -> Status:
    """Status of one source section of ``profile``."""
    sections: dict[str, Cpu | Memory | Disk | Nvidia | Accelerators | Browser] = {
        "cpu": profile.cpu,
        "memory": profile.memory,
        "disk": profile.disk,
        "nvidia": profile.nvidia,
        "accelerators": profile.accelerators,
        "browser": profile.browser,
    }
    return sections[source].status


def derive_labels(profile: HardwareProfile) -> tuple[str, ...]:
    """Every label the profile earns, sorted. All are valid and owned (tested)."""
    out: set[str] = set()
    for rule in LABEL_TABLE:
        out.update(rule.derive(profile))
    return tuple(sorted((label for label in out if is_valid_label(label)), key=natural_key))


def natural_key(label: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key with numbers compared as numbers: ``mem-ge-4g`` before ``mem-ge-16g``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"([0-9]+)", label)
        if part
    )


def render_labels_markdown() -> str:
    """``docs/labels.md``, generated from :data:`LABEL_TABLE` and :data:`LADDERS`."""
    lines = [
        "# Runner labels (hwlabels-v1)",
        "",
        "<!-- generated by ci_app.model.labels.render_labels_markdown(); do not edit by hand:",
        "     python -c 'from ci_app.model.labels import render_labels_markdown as r; "
        'print(r(), end="")\' > docs/labels.md -->',
        "",
        "CI labels are exact-match sets (GitHub `runs-on`, GitLab `tags`) without `>=`, so",
        "numeric facts are *threshold ladders*: a runner publishes `X-ge-T` for every step `T` it",
        "meets, and a requirement `X>=v` compiles to the smallest step `T >= v`. Sizes are",
        'decimal GB (10^9 bytes): an "80GB" H100 reports 81559 MiB = 85.52 GB.',
        f"Every label matches `{LABEL_RE.pattern}`. Scheme stamp: `{SCHEME}`.",
        "",
        "## Labels",
        "",
        "| labels | source | from | rule |",
        "|---|---|---|---|",
    ]
    for rule in LABEL_TABLE:
        lines.append(f"| {rule.labels} | {rule.source} | `{rule.field}` | {rule.rule} |")
    lines += [
        "",
        "## Ladders and requirements",
        "",
        "| requirement | steps | label | from |",
        "|---|---|---|---|",
    ]
    for ladder in LADDERS.values():
        unit = "g" if ladder.kind == "gb" else ""
        example_value = ladder.steps[min(2, len(ladder.steps) - 1)]
        example = f"{ladder.key}>={example_value}{unit}"
        lines.append(
            f"| `{example}` | {', '.join(ladder.steps)} | `{compile_requirement(example)}` "
            f"| `{ladder.source}` ({ladder.note}) |"
        )
    lines += [
        "",
        "`compile_requirement()` examples:",
        "",
        "| requirement | label |",
        "|---|---|",
    ]
    for req in (
        "gpu-mem>=20g",
        "mem>=64g",
        "cpus>=8",
        "gpus>=2",
        "cuda>=12.4",
        "sm>=80",
        "sm>=8.6",
        "gpu-mem>=24gib",
        "gpu-nvidia",
        "cpu:avx512",
        "webgpu",
    ):
        lines.append(f"| `{req}` | `{compile_requirement(req)}` |")
    lines += [
        "",
        "A requirement above a ladder's top step (e.g. `gpu-mem>=200g`), an unknown key or an",
        "operator other than `>=` raises `RequirementError`: match those app-side from the",
        "stored profile.",
        "",
        "## Ownership",
        "",
        "The app adds and removes only labels matching the patterns above",
        "(`ci_app.model.labels.is_owned_label`); labels an admin set by hand are never touched.",
        "A label is removed only after several consecutive probes lack it, and never while its",
        "source reports `error`.",
        "",
    ]
    return "\n".join(lines)
