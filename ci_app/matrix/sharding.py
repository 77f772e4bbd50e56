"""Static duration-balanced sharding: LPT plus local improvement, groups, dependencies, shard count.

Measured on real duration files (``docs/planner.md``), plain LPT (longest processing time first,
each item to the least-loaded shard) is within 0.2 % of the lower bound; a short move/swap local
search on the heaviest shard closes most of the rest. The LPT pass reproduces pytest-split's
``least_duration`` tie-breaking exactly (sort by name, then stable by duration descending, heap of
``(load, shard index)``), so the local search, which only ever lowers the makespan, guarantees a
result no worse than pytest-split on every input.

Everything here works on plain lists of floats and indices so that 100 000 tests x 64 shards
plans in well under a second in pure Python.
"""

from __future__ import annotations

import heapq
import math
import operator
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from itertools import islice

from ci_app.errors import PlanningError

__all__ = [
    "SEARCH_SKIP_MIN_ITEMS",
    "SEARCH_SKIP_REL",
    "ShardCountChoice",
    "Unit",
    "build_units",
    "choose_shard_count",
    "lower_bound",
    "lpt",
    "order_with_dependencies",
    "partition",
]


def lower_bound(weights: Iterable[float], k: int) -> float:
    """``max(sum / k, longest item)``: no split into ``k`` shards can finish earlier."""
    ws = weights if isinstance(weights, list | tuple) else list(weights)
    total = sum(ws)
    return max(total / k, max(ws, default=0.0)) if k > 0 else total


def lpt(
    names: Sequence[str], weights: Sequence[float], k: int
) -> tuple[list[list[int]], list[float]]:
    """Longest processing time first, with pytest-split ``least_duration``'s tie-breaking.

    Returns ``(members, loads)``: item indices per shard (in assignment order) and shard loads.
    """
    if k < 1:
        raise PlanningError(f"shard count must be >= 1, got {k}")
    n = len(names)
    if all(map(operator.le, names, islice(names, 1, n))):  # already in name order (the usual)
        by_name: Iterable[int] = range(n)
    else:
        by_name = sorted(range(n), key=names.__getitem__)
    order = sorted(by_name, key=weights.__getitem__, reverse=True)
    members: list[list[int]] = [[] for _ in range(k)]
    loads = [0.0] * k
    heap: list[tuple[float, int]] = [(0.0, i) for i in range(k)]
    heapreplace = heapq.heapreplace  # pop the least loaded shard and push it back, in one call
    for idx in order:
        load, shard = heap[0]
        load += weights[idx]
        members[shard].append(idx)
        loads[shard] = load
        heapreplace(heap, (load, shard))
    return members, loads


def _improve(
    weights: Sequence[float],
    members: list[list[int]],
    loads: list[float],
    bound: float,
    *,
    max_rounds: int,
    candidates: int = 8,
    rel_tol: float = 1e-9,
) -> None:
    """Move/swap local search on the heaviest shard, in place; never raises the makespan.

    Each accepted step strictly lowers the heaviest shard's load while keeping both touched
    shards strictly below the old maximum, so (makespan, number of shards at the makespan)
    decreases lexicographically and the loop terminates.
    """
    k = len(loads)
    if k < 2:
        return
    # Per shard, built when the search first looks at it: its items sorted by (weight, index),
    # and their weights in the same order, for bisecting.
    items: dict[int, list[int]] = {}
    keys: dict[int, list[float]] = {}
    weight = weights.__getitem__

    def sorted_items(s: int) -> tuple[list[int], list[float]]:
        got = items.get(s)
        if got is None:
            got = items[s] = sorted(sorted(members[s]), key=weight)  # stable: ties by index
            keys[s] = list(map(weight, got))
        return got, keys[s]

    for _ in range(max_rounds):
        h = max(range(k), key=loads.__getitem__)
        top = loads[h]
        if top <= bound * (1.0 + rel_tol):
            return
        hs, hw = sorted_items(h)
        n_h = len(hw)
        others = sorted((o for o in range(k) if o != h), key=loads.__getitem__)[:candidates]
        best: tuple[int, int, int] | None = None  # (a_pos, o, b_pos); b_pos -1: a move
        best_d = math.inf  # distance of the best exchange from the ideal gap / 2
        for o in others:
            gap = top - loads[o]
            if gap <= top * rel_tol:
                break
            half = gap / 2.0
            # move: a in h with 0 < a < gap, closest to gap/2
            pos = bisect_left(hw, half)
            for p in (pos - 1, pos):
                if 0 <= p < n_h:
                    a = hw[p]
                    if 0.0 < a < gap and abs(a - half) < best_d:
                        best, best_d = (p, o, -1), abs(a - half)
            # swap: a in h, b in o with 0 < a - b < gap, a - b closest to gap/2
            for bp, b in enumerate(sorted_items(o)[1]):
                pos = bisect_left(hw, b + half)
                if pos > 0:
                    diff = hw[pos - 1] - b
                    if 0.0 < diff < gap and abs(diff - half) < best_d:
                        best, best_d = (pos - 1, o, bp), abs(diff - half)
                if pos < n_h:
                    diff = hw[pos] - b
                    if 0.0 < diff < gap and abs(diff - half) < best_d:
                        best, best_d = (pos, o, bp), abs(diff - half)
            if best_d <= gap * 0.05:
                break  # near-ideal exchange found on a light shard; do not scan further
        if best is None:
            return
        p, o, bp = best
        os_, ow = sorted_items(o)
        ai = hs.pop(p)
        a = hw.pop(p)
        if bp >= 0:
            bi = os_.pop(bp)
            b = ow.pop(bp)
            members[o].remove(bi)
            members[h].append(bi)
            _insert(hs, hw, bi, b)
            loads[o] -= b
            loads[h] += b
        members[h].remove(ai)
        members[o].append(ai)
        _insert(os_, ow, ai, a)
        loads[h] -= a
        loads[o] += a


def _insert(items: list[int], keys: list[float], item: int, weight: float) -> None:
    """Insert ``item`` into a shard's items sorted by (weight, index), and its weight."""
    at = bisect_left(keys, weight)
    while at < len(keys) and keys[at] == weight and items[at] < item:
        at += 1
    items.insert(at, item)
    keys.insert(at, weight)


#: On :data:`SEARCH_SKIP_MIN_ITEMS` items or more, LPT within this fraction of the lower bound
#: is kept as it is: the local search could shave less than a millionth (3.6 ms of an
#: hour-long shard), and on 100 000 tests it costs half as much again as LPT itself. Many
#: small tests is exactly where LPT lands this close. Smaller inputs are always searched: it
#: costs a millisecond or two there (the real suites measured have at most 3 600 tests).
SEARCH_SKIP_REL = 1e-6
SEARCH_SKIP_MIN_ITEMS = 10_000


def _ratio(load: float, bound: float) -> float:
    """``load`` over the lower bound; 1 when both are zero (tests with no known duration)."""
    if bound > 0:
        return load / bound
    return 1.0 if load <= 0 else float("inf")


def partition(
    names: Sequence[str],
    weights: Sequence[float],
    k: int,
    *,
    improve: bool = True,
    max_rounds: int | None = None,
    notes: list[str] | None = None,
) -> tuple[list[list[int]], list[float]]:
    """Split items into ``k`` shards minimising the makespan: LPT, then local improvement.

    The result is never worse than pytest-split's ``least_duration`` on the same input.
    Shards may be empty when ``k`` exceeds the item count; callers drop them. On large inputs
    the local search is skipped when LPT is within :data:`SEARCH_SKIP_REL` of the lower bound;
    ``notes``, when given, receives a line saying which happened.
    """
    if len(names) != len(weights):
        raise PlanningError("names and weights differ in length")
    members, loads = lpt(names, weights, k)
    if improve and len(names) > k:
        bound = lower_bound(weights, k)
        top = max(loads)
        if len(names) >= SEARCH_SKIP_MIN_ITEMS and top <= bound * (1.0 + SEARCH_SKIP_REL):
            if notes is not None:
                notes.append(
                    f"LPT within {SEARCH_SKIP_REL:g} of the lower bound "
                    f"(x {_ratio(top, bound):.7f}): local search skipped"
                )
        else:
            rounds = max_rounds if max_rounds is not None else 4 * k + 16
            _improve(weights, members, loads, bound, max_rounds=rounds)
            if notes is not None:
                notes.append(
                    f"local search: makespan x {_ratio(top, bound):.7f} -> "
                    f"x {_ratio(max(loads), bound):.7f} "
                    "of the lower bound"
                )
    return members, loads


# --------------------------------------------------------------------------------------------
# Units: groups that must stay together, dependencies folded into groups


@dataclass(frozen=True, slots=True)
class Unit:
    """An indivisible piece of work: one test, or a declared group / dependency chain."""

    key: str
    tests: tuple[str, ...]
    seconds: float
    unknown: bool = False


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # keep the lexicographically smaller root: deterministic group keys
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def build_units(
    tests: Sequence[str],
    seconds: Mapping[str, float],
    *,
    groups: Mapping[str, str] | None = None,
    depends_on: Mapping[str, Sequence[str]] | None = None,
    unknown: Iterable[str] = (),
) -> list[Unit]:
    """Fold tests into units: one declared group, or tests linked by ``depends_on``, stay together.

    A dependency on a test outside the inventory is ignored (pytest-dependency then skips the
    dependent test, exactly as it would without sharding). Units keep inventory order inside.
    """
    unknown_set = unknown if isinstance(unknown, Set) else set(unknown)
    if not groups and not depends_on:  # fast path: every test is its own unit
        return [Unit(t, (t,), seconds[t], t in unknown_set) for t in tests]
    groups = groups or {}
    depends_on = depends_on or {}
    present = set(tests)
    uf = _UnionFind()
    group_first: dict[str, str] = {}
    for t in tests:
        g = groups.get(t)
        if g is not None:
            first = group_first.setdefault(g, t)
            if first != t:
                uf.union(first, t)
        for dep in depends_on.get(t, ()):
            if dep in present:
                uf.union(dep, t)
    if not uf.parent:  # nothing joined: every test is its own unit
        return [Unit(t, (t,), seconds[t], t in unknown_set) for t in tests]
    members: dict[str, list[str]] = {}
    for t in tests:
        members.setdefault(uf.find(t), []).append(t)
    units: list[Unit] = []
    for root, ts in members.items():
        key = groups.get(root) or (root if len(ts) == 1 else f"group:{root}")
        units.append(
            Unit(
                key=key,
                tests=tuple(ts),
                seconds=sum(seconds[t] for t in ts),
                unknown=any(t in unknown_set for t in ts),
            )
        )
    return units


def order_with_dependencies(
    tests: Sequence[str], position: Mapping[str, int], depends_on: Mapping[str, Sequence[str]]
) -> list[str]:
    """Order one shard's tests by inventory position, moving each dependency before its dependents.

    Kahn's algorithm with a position-keyed heap; a dependency cycle is a planning error.
    """
    inside = set(tests)
    indeg = dict.fromkeys(tests, 0)
    children: dict[str, list[str]] = {}
    for t in tests:
        for dep in depends_on.get(t, ()):
            if dep in inside and dep != t:
                indeg[t] += 1
                children.setdefault(dep, []).append(t)
    heap = [(position.get(t, 0), t) for t in tests if indeg[t] == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, t = heapq.heappop(heap)
        out.append(t)
        for c in children.get(t, ()):
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, (position.get(c, 0), c))
    if len(out) != len(tests):
        stuck = sorted(t for t, d in indeg.items() if d > 0)[:5]
        raise PlanningError(
            f"dependency cycle among tests {', '.join(stuck)}; remove the circular depends_on"
        )
    return out


# --------------------------------------------------------------------------------------------
# How many shards


@dataclass(frozen=True, slots=True)
class ShardCountChoice:
    """The chosen shard count and the reasoning the CLI prints."""

    shards: int
    expected_wall_s: float
    reasons: tuple[str, ...] = field(default=())
    deadline_met: bool = True


def choose_shard_count(
    total_s: float,
    longest_s: float,
    n_units: int,
    *,
    capacity: int,
    target_s: float | None = None,
    setup_s: float = 0.0,
    min_shard_s: float = 0.0,
    slack: float = 0.10,
) -> ShardCountChoice:
    """Pick K from the data: target wall time, pool capacity, per-shard set-up, minimum shard size.

    ``wall(K) = setup + max(total / K, longest)`` (LPT is within a fraction of a percent of that
    bound on real data). With a target, the smallest K whose wall meets it; without one, the
    smallest K within ``slack`` of the best achievable wall (more shards only burn set-up time).
    Never more shards than units (no empty shards), than ``total / min_shard_s``, or than
    ``ceil(total / longest)`` (beyond that the longest unit is the bound).
    """
    reasons: list[str] = []
    if n_units <= 0:
        return ShardCountChoice(0, 0.0, ("no tests",))
    cap = max(1, capacity)
    limit = min(cap, n_units)
    if limit < cap:
        reasons.append(f"{n_units} units cap the shard count")
    if longest_s > 0:
        useful = max(1, math.ceil(total_s / longest_s - 1e-9))
        if useful < limit:
            limit = useful
            reasons.append(f"longest unit {longest_s:.1f}s bounds the wall beyond {useful} shards")
    if min_shard_s > 0 and total_s > 0:
        by_size = max(1, int(total_s // min_shard_s))
        if by_size < limit:
            limit = by_size
            reasons.append(f"minimum shard size {min_shard_s:g}s allows {by_size} shards")

    def wall(k: int) -> float:
        return setup_s + max(total_s / k, longest_s)

    best_k = min(range(1, limit + 1), key=lambda k: (wall(k), k))
    best = wall(best_k)
    if target_s is not None:
        for k in range(1, limit + 1):
            if wall(k) <= target_s:
                return ShardCountChoice(k, wall(k), (*reasons, f"target {target_s:g}s"))
        reasons.append(
            f"target {target_s:g}s cannot be met: best is {best:.0f}s with {best_k} shards"
        )
        return ShardCountChoice(best_k, best, tuple(reasons), deadline_met=False)
    for k in range(1, limit + 1):
        if wall(k) <= best * (1.0 + slack):
            return ShardCountChoice(k, wall(k), (*reasons, f"within {slack:.0%} of best wall"))
    return ShardCountChoice(best_k, best, tuple(reasons))  # pragma: no cover - loop always returns
