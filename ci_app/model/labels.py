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
from collections.abc import Iterable
from dataclasses import dataclass

from ci_app.errors import ConfigError

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
            note="cgroup-effective CPUs: min(affinity, ceil(quota))",
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
