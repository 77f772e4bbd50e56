"""Runner pools: live runners grouped by label set, and requirement classes matched to pools.

Each requirement class (the compiled labels a test needs) goes to the *cheapest* pool whose
labels include all of them. A class that needs no GPU never goes to a pool with a GPU unless
``gpu_for_cpu`` is set, so CPU tests neither wait for nor occupy scarce GPU runners. A class no
online runner satisfies is a :class:`~ci_app.errors.PlanningError` naming the missing labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_app.errors import InputError, PlanningError

__all__ = [
    "SCARCE_PREFIXES",
    "Pool",
    "Runner",
    "assign_pools",
    "default_cost",
    "group_runners",
    "runners_from_json",
]

#: Labels that mark a scarce runner (accelerators): avoided for classes that do not need them.
SCARCE_PREFIXES = ("gpu", "sm", "cuda", "webgpu", "webnn", "npu", "tpu", "gaudi", "neuron", "fpga")
#: ...except a software WebGPU adapter (SwiftShader): any machine with Chromium has one
NOT_SCARCE = frozenset({"webgpu-sw"})


def _is_scarce(label: str) -> bool:
    if label in NOT_SCARCE:
        return False
    return any(label == p or label.startswith((p + "-", p + "_")) for p in SCARCE_PREFIXES)


def default_cost(labels: frozenset[str]) -> float:
    """Relative cost of one runner: scarce hardware is expensive, more labels a bit more."""
    scarce = sum(1 for lb in labels if _is_scarce(lb))
    return 1.0 + (100.0 if scarce else 0.0) + 0.01 * len(labels)


@dataclass(frozen=True, slots=True)
class Runner:
    """A live runner as the registry sees it."""

    name: str
    labels: frozenset[str]
    online: bool = True
    cost: float | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """Runners with identical labels; ``key`` is stable across plans for the same label set."""

    key: str
    labels: frozenset[str]
    runners: tuple[str, ...]
    cost: float

    @property
    def capacity(self) -> int:
        return len(self.runners)

    @property
    def runs_on(self) -> list[str]:
        return sorted(self.labels)


def runners_from_json(doc: Any) -> list[Runner]:
    """``[{name, labels, online?, cost?}]`` or ``{"runners": [...]}`` (the registry's export)."""
    entries = doc.get("runners") if isinstance(doc, Mapping) else doc
    if not isinstance(entries, list):
        raise InputError("runners file must be a list of {name, labels} or {'runners': [...]}")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping) or "labels" not in e:
            raise InputError(f"runner #{i + 1} needs 'labels' (a list of label strings)")
        labels = e["labels"]
        if isinstance(labels, str) or not isinstance(labels, list):
            raise InputError(f"runner #{i + 1}: 'labels' must be a list of strings")
        status = str(e.get("status", "online")).lower()
        out.append(
            Runner(
                name=str(e.get("name") or f"runner-{i + 1}"),
                labels=frozenset(str(x).lower() for x in labels),
                online=bool(e.get("online", status not in ("offline", "unhealthy"))),
                cost=None if e.get("cost") is None else float(e["cost"]),
            )
        )
    return out


def _pool_key(labels: frozenset[str], taken: set[str]) -> str:
    scarce = sorted(lb for lb in labels if _is_scarce(lb))
    base = "gpu" if any(s.startswith("gpu") for s in scarce) else (scarce[0] if scarce else "cpu")
    key = base
    n = 2
    while key in taken:
        key = f"{base}{n}"
        n += 1
    taken.add(key)
    return key


def group_runners(runners: Iterable[Runner]) -> list[Pool]:
    """Online runners grouped by label set, cheapest pool first (stable keys: cpu, gpu, gpu2...)."""
    groups: dict[frozenset[str], list[Runner]] = {}
    for r in runners:
        if r.online:
            groups.setdefault(r.labels, []).append(r)
    ordered = sorted(
        groups.items(),
        key=lambda kv: (
            min(r.cost if r.cost is not None else default_cost(kv[0]) for r in kv[1]),
            len(kv[0]),
            sorted(kv[0]),
        ),
    )
    taken: set[str] = set()
    pools = []
    for labels, rs in ordered:
        cost = min(r.cost if r.cost is not None else default_cost(labels) for r in rs)
        pools.append(
            Pool(_pool_key(labels, taken), labels, tuple(sorted(r.name for r in rs)), cost)
        )
    return pools


def assign_pools(
    classes: Iterable[frozenset[str]],
    pools: Sequence[Pool],
    *,
    gpu_for_cpu: bool = False,
    counts: Mapping[frozenset[str], int] | None = None,
    unsatisfied: dict[frozenset[str], str] | None = None,
) -> dict[frozenset[str], Pool]:
    """Map each requirement class to the cheapest satisfying pool; error names what is missing.

    With an ``unsatisfied`` dict, classes no pool can take are recorded there (class ->
    reason) instead of failing the plan, so their tests can be reported as not run.
    """
    out: dict[frozenset[str], Pool] = {}
    problems: list[str] = []
    for cls in sorted(classes, key=sorted):
        before = len(problems)
        wants_scarce = any(_is_scarce(lb) for lb in cls)
        fits = [p for p in pools if cls <= p.labels]
        n = (counts or {}).get(cls)
        who = f"{n} test(s)" if n is not None else "tests"
        if not gpu_for_cpu and not wants_scarce:
            plain = [p for p in fits if not any(_is_scarce(lb) for lb in p.labels)]
            if fits and not plain:
                problems.append(
                    f"only accelerator pools ({', '.join(p.key for p in fits)}) can run the "
                    f"{who} needing [{', '.join(sorted(cls))}]; add a CPU runner or allow "
                    "it with --gpu-for-cpu"
                )
                if unsatisfied is not None:
                    unsatisfied[cls] = problems.pop()
                continue
            fits = plain
        if fits:
            out[cls] = min(fits, key=lambda p: (p.cost, len(p.labels), p.key))
            continue
        if pools:
            closest = min(pools, key=lambda p: (len(cls - p.labels), p.cost))
            missing = sorted(cls - closest.labels)
            problems.append(
                f"no online runner has labels [{', '.join(sorted(cls))}] needed by {who}; "
                f"closest pool {closest.key!r} lacks [{', '.join(missing)}]"
            )
        else:
            problems.append(f"no online runners at all for [{', '.join(sorted(cls))}] ({who})")
        if unsatisfied is not None and len(problems) > before:
            unsatisfied[cls] = problems.pop()
    if problems:
        raise PlanningError(
            "; ".join(problems)
            + ". Register a runner with these labels (runner-probe) or relax the requirement."
        )
    return out
