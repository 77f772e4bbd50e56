"""The planner: inventory + durations + runners (+ policies) -> Matrix.

Per requirement class the cheapest satisfying pool is chosen; classes that land in the same pool
are planned together. Per pool: estimates for that runner class, tests folded into units
(groups, dependency chains), a shard count from the data (or ``--shards``), and LPT plus local
improvement. In queue mode the same slices are the static fallback and the pool's units become
the queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from ci_app.errors import InputError, PlanningError
from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.inventory import Inventory
from ci_app.matrix.policies import PlanContext, Policy, PoolBudget, PoolWork, apply_policies
from ci_app.matrix.pools import Pool, Runner, assign_pools, default_cost, group_runners
from ci_app.matrix.sharding import (
    Unit,
    build_units,
    choose_shard_count,
    order_with_dependencies,
    partition,
)

if TYPE_CHECKING:  # imported where used: a static plan never loads the queue module
    from ci_app.matrix.queue import PoolSpec, QueueItem

__all__ = [
    "MATRIX_VERSION",
    "Matrix",
    "PlanOptions",
    "PoolPlan",
    "Shard",
    "absent_from_inventory",
    "plan_matrix",
]

MATRIX_VERSION = "ci-fanout/matrix/v1"

Mode = Literal["static", "queue"]


@dataclass(frozen=True, slots=True)
class Shard:
    """One CI job: where it runs and its tests (in queue mode: its fallback slice)."""

    id: str
    pool: str
    runs_on: tuple[str, ...]
    tests: tuple[str, ...]
    expected_seconds: float
    unknown_tests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pool": self.pool,
            "runs_on": list(self.runs_on),
            "tests": list(self.tests),
            "expected_seconds": round(self.expected_seconds, 3),
            "unknown_tests": self.unknown_tests,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Shard:
        return cls(
            id=str(d["id"]),
            pool=str(d.get("pool", "")),
            runs_on=tuple(str(x) for x in d.get("runs_on") or ()),
            tests=tuple(str(x) for x in d.get("tests") or ()),
            expected_seconds=float(d.get("expected_seconds") or 0.0),
            unknown_tests=int(d.get("unknown_tests") or 0),
        )


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """One pool's part of the plan."""

    key: str
    runs_on: tuple[str, ...]
    runners: int
    shards: int
    total_s: float
    expected_wall_s: float
    priority: int = 0
    queue: tuple[QueueItem, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "key": self.key,
            "runs_on": list(self.runs_on),
            "runners": self.runners,
            "shards": self.shards,
            "total_s": round(self.total_s, 3),
            "expected_wall_s": round(self.expected_wall_s, 3),
            "priority": self.priority,
        }
        if self.queue:
            d["queue"] = [
                {
                    "id": it.id,
                    "tests": list(it.test_ids),
                    "estimate_s": round(it.estimate_s, 6),
                    "unknown": it.unknown,
                }
                for it in self.queue
            ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolPlan:
        from ci_app.matrix.queue import QueueItem

        return cls(
            key=str(d["key"]),
            runs_on=tuple(str(x) for x in d.get("runs_on") or ()),
            runners=int(d.get("runners") or 0),
            shards=int(d.get("shards") or 0),
            total_s=float(d.get("total_s") or 0.0),
            expected_wall_s=float(d.get("expected_wall_s") or 0.0),
            priority=int(d.get("priority") or 0),
            queue=tuple(
                QueueItem(
                    id=str(q["id"]),
                    estimate_s=float(q.get("estimate_s") or 0.0),
                    tests=tuple(str(t) for t in q.get("tests") or ()),
                    unknown=bool(q.get("unknown", False)),
                )
                for q in d.get("queue") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Unsatisfied:
    """Tests whose requirements no online runner meets (planned with ``--unsatisfied report``)."""

    requires: tuple[str, ...]
    tests: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"requires": list(self.requires), "tests": list(self.tests), "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Any) -> Unsatisfied:
        if not isinstance(d, Mapping):
            raise InputError("matrix 'unsatisfied' entries must be objects")
        return cls(
            requires=tuple(str(x) for x in d.get("requires") or ()),
            tests=tuple(str(x) for x in d.get("tests") or ()),
            reason=str(d.get("reason") or ""),
        )


@dataclass(frozen=True, slots=True)
class Matrix:
    """The plan: shards to fan out to, per-pool summaries, warnings."""

    mode: Mode
    shards: tuple[Shard, ...]
    pools: tuple[PoolPlan, ...]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: tests no online runner can take (``--unsatisfied report``): not run, reported
    unsatisfied: tuple[Unsatisfied, ...] = ()

    def shard(self, shard_id: str) -> Shard:
        for s in self.shards:
            if s.id == shard_id:
                return s
        known = ", ".join(s.id for s in self.shards[:20])
        raise InputError(f"matrix has no shard {shard_id!r} (shards: {known})")

    def queue_specs(self) -> dict[str, PoolSpec]:
        """What a queue server needs for ``QueueState.create_run``."""
        from ci_app.matrix.queue import PoolSpec

        return {
            p.key: PoolSpec(p.queue, max(1, p.shards), frozenset(p.runs_on))
            for p in self.pools
            if p.queue
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MATRIX_VERSION,
            "mode": self.mode,
            "shards": [s.to_dict() for s in self.shards],
            "pools": [p.to_dict() for p in self.pools],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "unsatisfied": [u.to_dict() for u in self.unsatisfied],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Matrix:
        if not isinstance(d, Mapping) or not isinstance(d.get("shards"), list):
            raise InputError("not a ci-fanout matrix: expected an object with 'shards'")
        version = d.get("version", MATRIX_VERSION)
        if version != MATRIX_VERSION:
            raise InputError(f"unsupported matrix version {version!r}")
        mode = d.get("mode", "static")
        if mode not in ("static", "queue"):
            raise InputError(f"unknown matrix mode {mode!r}")
        return cls(
            mode=mode,
            shards=tuple(Shard.from_dict(s) for s in d["shards"]),
            pools=tuple(PoolPlan.from_dict(p) for p in d.get("pools") or ()),
            warnings=tuple(str(w) for w in d.get("warnings") or ()),
            notes=tuple(str(n) for n in d.get("notes") or ()),
            unsatisfied=tuple(Unsatisfied.from_dict(u) for u in d.get("unsatisfied") or ()),
        )


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """Planner knobs (CLI flags / ``[planner]`` config)."""

    mode: Mode = "static"
    shards: int | None = None  # per pool; None = choose from the data
    target_s: float | None = None
    setup_s: float = 30.0
    min_shard_s: float = 0.0
    gpu_for_cpu: bool = False
    #: "error": a class no runner satisfies fails the plan; "report": its tests are
    #: listed in ``Matrix.unsatisfied`` and everything else is planned
    on_unsatisfied: Literal["error", "report"] = "error"
    #: runs_on for tests without requirements when no runners are given
    default_runs_on: tuple[str, ...] = ("self-hosted",)
    #: shard ceiling per pool when no runner list bounds it
    max_shards: int = 64
    extra: Mapping[str, Any] = field(default_factory=dict)


def _implicit_pools(
    classes: Sequence[frozenset[str]], options: PlanOptions
) -> dict[frozenset[str], Pool]:
    """No runner list: one pool per requirement class, labelled with what it needs."""
    out: dict[frozenset[str], Pool] = {}
    taken: set[str] = set()
    for cls in sorted(classes, key=lambda c: (len(c), sorted(c))):
        labels = frozenset(options.default_runs_on) | cls
        base = "cpu" if not cls else ("gpu" if any(x.startswith("gpu") for x in cls) else "hw")
        key, n = base, 2
        while key in taken:
            key, n = f"{base}{n}", n + 1
        taken.add(key)
        out[cls] = Pool(key, labels, (), default_cost(labels))
    return out


def test_class(test_id: str) -> str | None:
    """``f.py::TestX`` for ``f.py::TestX::test_y[p]``; None for a test outside a class."""
    base = test_id.split("[", 1)[0]
    return base.rsplit("::", 1)[0] if base.count("::") >= 2 else None


def class_items(units: Sequence[Unit], *, cap_s: float) -> list[QueueItem]:
    """Queue items: a class's tests travel in one batch (its ``setup_class`` and class-scoped
    fixtures run once, as in a static slice, not once per batch that holds some of them),
    split into items of at most ``cap_s`` estimated seconds when the class is long. Other
    units (a test, a group, a dependency chain) are items of their own."""
    from ci_app.matrix.queue import QueueItem

    out: list[QueueItem] = []
    run: list[Unit] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            u = run[0]
            out.append(QueueItem(u.key, u.seconds, u.tests, u.unknown))
        else:
            tests = tuple(t for u in run for t in u.tests)
            out.append(
                QueueItem(
                    f"class:{run[0].tests[0]}",
                    sum(u.seconds for u in run),
                    tests,
                    any(u.unknown for u in run),
                )
            )
        run.clear()

    scope: str | None = None
    for u in units:
        here = test_class(u.tests[0]) if len(u.tests) == 1 else None
        if here is None or here != scope or sum(x.seconds for x in run) + u.seconds > cap_s:
            flush()
        scope = here
        if here is None:
            out.append(QueueItem(u.key, u.seconds, u.tests, u.unknown))
        else:
            run.append(u)
    flush()
    return out


_id = attrgetter("id")


def absent_from_inventory(inventory: Inventory, history: DurationHistory) -> list[str]:
    """Tests the duration history knows that the inventory does not hold, sorted."""
    return _absent(history, {t.id for t in inventory.tests})


def _absent(history: DurationHistory, present: Set[str]) -> list[str]:
    absent: set[str] = set()
    for durations in history.by_class.values():
        if not durations.keys() <= present:  # the usual: all planned, and no set to build
            absent.update(durations.keys() - present)
    return sorted(absent)


def plan_matrix(
    inventory: Inventory,
    history: DurationHistory,
    runners: Sequence[Runner] | None = None,
    options: PlanOptions | None = None,
    *,
    policies: Sequence[Policy] = (),
    ctx: PlanContext | None = None,
) -> Matrix:
    """Plan the run. Raises :class:`PlanningError` when no runner can take a requirement class."""
    opts = options or PlanOptions()
    context = ctx or PlanContext()
    if not inventory.tests:
        raise PlanningError("no tests to plan: the inventory is empty (check --tests/--collect)")
    if opts.shards is not None and opts.shards < 1:
        raise PlanningError(f"--shards must be >= 1, got {opts.shards}")
    classes = inventory.requirement_classes()
    counts = {c: len(ts) for c, ts in classes.items()}
    missing: dict[frozenset[str], str] | None = {} if opts.on_unsatisfied == "report" else None
    if runners is not None:
        assignment = assign_pools(
            classes,
            group_runners(runners),
            gpu_for_cpu=opts.gpu_for_cpu,
            counts=counts,
            unsatisfied=missing,
        )
    else:
        assignment = _implicit_pools(list(classes), opts)
    unsatisfied = tuple(
        Unsatisfied(tuple(sorted(cls)), tuple(t.id for t in classes[cls]), reason)
        for cls, reason in sorted((missing or {}).items(), key=lambda kv: sorted(kv[0]))
    )
    classes = {c: ts for c, ts in classes.items() if c in assignment}
    if not classes:
        raise PlanningError(
            "no test can run on the online runners: " + "; ".join(u.reason for u in unsatisfied)
        )

    position = dict(zip(map(_id, inventory.tests), range(len(inventory.tests)), strict=True))
    by_pool: dict[str, tuple[Pool, list[str]]] = {}
    merged: set[str] = set()  # pools that several requirement classes landed in
    for cls, specs in classes.items():
        pool = assignment[cls]
        if pool.key in by_pool:
            merged.add(pool.key)
        by_pool.setdefault(pool.key, (pool, []))[1].extend(map(_id, specs))
    groups = {t.id: t.group for t in inventory.tests if t.group is not None}
    depends = {t.id: t.depends_on for t in inventory.tests if t.depends_on}

    shards: list[Shard] = []
    pool_plans: list[PoolPlan] = []
    warnings: list[str] = []
    notes: list[str] = []
    for key in sorted(by_pool, key=lambda k: (by_pool[k][0].cost, k)):
        pool, ids = by_pool[key]
        if key in merged:  # one class's tests are in inventory order already
            ids.sort(key=position.__getitem__)
        est = history.estimate(ids, pool.labels)
        notes.extend(f"pool {key}: {n}" for n in est.notes)
        # Units (groups, dependency chains, and in queue mode the queue's items) only where
        # they may differ from the tests: a plain plan shards the tests themselves.
        units: list[Unit] | None = None
        if groups or depends or opts.mode == "queue":
            units = build_units(
                ids, est.seconds, groups=groups, depends_on=depends, unknown=est.unknown
            )
            keys, weights = [u.key for u in units], [u.seconds for u in units]
        else:
            keys, weights = ids, list(map(est.seconds.__getitem__, ids))
        total = sum(weights)
        longest = max(weights)
        capacity = pool.capacity or max(opts.max_shards, opts.shards or 0)
        budget = PoolBudget(key, capacity, capacity, opts.target_s)
        work = PoolWork(key, pool.labels, total, longest, len(keys), opts.setup_s)
        budget = apply_policies(policies, context, work, budget)
        warnings.extend(budget.warnings)
        if opts.shards is not None:
            k = min(opts.shards, len(keys))
            if budget.max_shards < capacity and k > budget.max_shards:
                k = budget.max_shards
        else:
            choice = choose_shard_count(
                total,
                longest,
                len(keys),
                capacity=budget.max_shards,
                target_s=budget.target_s,
                setup_s=opts.setup_s,
                min_shard_s=opts.min_shard_s,
            )
            k = choice.shards
            notes.append(f"pool {key}: {k} shard(s): " + "; ".join(choice.reasons))
            if not choice.deadline_met:
                warnings.append(f"pool {key}: " + choice.reasons[-1])
        searched: list[str] = []
        members, loads = partition(keys, weights, k, notes=searched)
        notes.extend(f"pool {key}: {n}" for n in searched)
        runs_on = tuple(pool.runs_on)
        n = 0
        for m, load in zip(members, loads, strict=True):
            if not m:
                continue
            n += 1
            if units is None or len(units) == len(ids):
                # every unit one test: unit i is ids[i], already in inventory order, with no
                # dependency inside the pool (it would have joined two tests into one unit)
                ordered = list(map(ids.__getitem__, sorted(m)))
            else:
                ordered = sorted((t for i in m for t in units[i].tests), key=position.__getitem__)
                if depends:
                    ordered = order_with_dependencies(ordered, position, depends)
            shards.append(
                Shard(
                    id=f"{key}-{n}",
                    pool=key,
                    runs_on=runs_on,
                    tests=tuple(ordered),
                    expected_seconds=load,
                    unknown_tests=sum(1 for t in ordered if t in est.unknown) if est.unknown else 0,
                )
            )
        queue: tuple[QueueItem, ...] = ()
        if units is not None and opts.mode == "queue":
            queue = tuple(class_items(units, cap_s=max(longest, total / (4 * max(1, n)))))
        pool_plans.append(
            PoolPlan(
                key=key,
                runs_on=runs_on,
                runners=pool.capacity,
                shards=n,
                total_s=total,
                expected_wall_s=max(loads, default=0.0),
                priority=budget.priority,
                queue=queue,
            )
        )
        if est.unknown:
            notes.append(f"pool {key}: {len(est.unknown)} test(s) without history")
    warnings.extend(f"not run: {len(u.tests)} test(s): {u.reason}" for u in unsatisfied)
    absent = _absent(history, position.keys())
    if absent:
        warnings.append(
            f"{len(absent)} test(s) in the duration history were not collected for this plan "
            f"(e.g. {', '.join(absent[:3])}); if they still exist, the plan collected with "
            "other pytest arguments than the shards run with (e.g. --doctest-modules): give "
            "the same ones (ci-app plan --pytest-args, or the test-command's arguments)"
        )
    return Matrix(
        opts.mode, tuple(shards), tuple(pool_plans), tuple(warnings), tuple(notes), unsatisfied
    )
