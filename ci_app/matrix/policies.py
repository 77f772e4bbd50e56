"""Scheduling policies as plugins (entry-point group ``ci_fanout.policies``).

A policy sees who is asking (:class:`PlanContext`), one pool's work (:class:`PoolWork`) and the
budget decided so far (:class:`PoolBudget`), and returns an adjusted budget: fewer shards
(quotas, fair share), a tighter target wall time (deadline), a priority, warnings. Policies run
in order, each on the previous one's result. The built-ins are registered in the same
entry-point group as third-party ones (their names are reserved: a plugin cannot replace them)::

    [project.entry-points."ci_fanout.policies"]
    priority = "ci_app.matrix.policies:PriorityPolicy"

An entry point names a factory ``(config: Mapping[str, Any]) -> Policy``; ``config`` is the
policy's table from ``ci-fanout.toml`` (``[policies.<name>]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ci_app.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeadlinePolicy",
    "FairSharePolicy",
    "PlanContext",
    "Policy",
    "PoolBudget",
    "PoolWork",
    "PriorityPolicy",
    "QuotaPolicy",
    "apply_policies",
    "load_policies",
]

ENTRY_POINT_GROUP = "ci_fanout.policies"


@dataclass(frozen=True, slots=True)
class PlanContext:
    """Who is planning, and what else is using the runners right now."""

    repo: str = ""
    ref: str = ""
    default_branch: bool = False
    team: str | None = None
    labels: frozenset[str] = frozenset()  # PR/MR labels
    now: float = 0.0  # epoch seconds
    deadline: float | None = None  # epoch seconds by which the run should finish
    #: pool key -> {repo: runners of that pool it holds now}
    usage: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolWork:
    """One pool's share of the run."""

    pool: str
    labels: frozenset[str]
    total_s: float
    longest_s: float
    units: int
    setup_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PoolBudget:
    """What the planner may use in one pool; policies only ever narrow it."""

    pool: str
    capacity: int
    max_shards: int
    target_s: float | None = None
    priority: int = 0
    warnings: tuple[str, ...] = ()

    def warn(self, message: str) -> PoolBudget:
        return replace(self, warnings=(*self.warnings, message))


@runtime_checkable
class Policy(Protocol):
    """A scheduling policy. ``name`` appears in warnings and the plan's JSON."""

    name: str

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget: ...


# ---------------------------------------------------------------------------------------------
# Built-ins


class PriorityPolicy:
    """Priority for the queue and dispatch: default branch first, then by PR labels and repo.

    Config: ``default_branch`` (points, default 100), ``labels`` ({label: points}),
    ``repos`` ({repo: points}).
    """

    name = "priority"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = config or {}
        self.default_branch = int(cfg.get("default_branch", 100))
        self.labels = {str(k): int(v) for k, v in (cfg.get("labels") or {}).items()}
        self.repos = {str(k): int(v) for k, v in (cfg.get("repos") or {}).items()}

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget:
        p = budget.priority
        if ctx.default_branch:
            p += self.default_branch
        p += sum(v for k, v in self.labels.items() if k in ctx.labels)
        p += self.repos.get(ctx.repo, 0)
        return replace(budget, priority=p)


class QuotaPolicy:
    """At most N runners of a pool per repo (``[policies.quota] max = {"gpu": 4}``).

    Keys are pool keys or labels (a key that is a label applies to every pool holding it);
    ``repos`` overrides per repo: ``{"org/big": {"gpu": 8}}``. Runners the repo already holds
    in that pool (``ctx.usage``) count against the quota.
    """

    name = "quota"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = config or {}
        self.default = {str(k): int(v) for k, v in (cfg.get("max") or {}).items()}
        self.repos = {
            str(r): {str(k): int(v) for k, v in m.items()}
            for r, m in (cfg.get("repos") or {}).items()
        }

    def _limit(self, repo: str, work: PoolWork) -> int | None:
        table = {**self.default, **self.repos.get(repo, {})}
        hits = [v for k, v in table.items() if k == work.pool or k in work.labels]
        return min(hits) if hits else None

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget:
        limit = self._limit(ctx.repo, work)
        if limit is None:
            return budget
        held = ctx.usage.get(work.pool, {}).get(ctx.repo, 0)
        allowed = max(1, limit - held)
        if allowed < budget.max_shards:
            budget = replace(budget, max_shards=allowed).warn(
                f"quota: {ctx.repo or 'this repo'} may use {limit} runner(s) of pool "
                f"{work.pool!r} ({held} in use): at most {allowed} shard(s)"
            )
        return budget


class FairSharePolicy:
    """Share a contended pool across repos (or teams) by weight.

    With ``n`` other repos holding runners of the pool, this run gets about
    ``capacity * weight / total weight`` of it. Config: ``weights`` ({repo or team: weight},
    default 1), ``by`` ("repo" or "team"), ``pools`` (keys or labels it applies to; default:
    every pool).
    """

    name = "fair-share"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = config or {}
        self.weights = {str(k): float(v) for k, v in (cfg.get("weights") or {}).items()}
        self.by = str(cfg.get("by", "repo"))
        if self.by not in ("repo", "team"):
            raise ConfigError(f"[policies.fair-share] by must be 'repo' or 'team', not {self.by!r}")
        pools = cfg.get("pools")
        self.pools = None if pools is None else {str(p) for p in pools}

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget:
        if self.pools is not None and not (self.pools & ({work.pool} | work.labels)):
            return budget
        users = {k for k, v in ctx.usage.get(work.pool, {}).items() if v > 0}
        me = (ctx.team or ctx.repo) if self.by == "team" else ctx.repo
        users.discard(me)
        if not users:
            return budget
        w_me = self.weights.get(me, 1.0)
        w_all = w_me + sum(self.weights.get(u, 1.0) for u in users)
        share = max(1, math.floor(budget.capacity * w_me / w_all))
        if share < budget.max_shards:
            budget = replace(budget, max_shards=share).warn(
                f"fair share: pool {work.pool!r} is shared with {len(users)} other "
                f"{self.by}(s); using {share} of {budget.capacity} runner(s)"
            )
        return budget


class DeadlinePolicy:
    """Finish by ``ctx.deadline``: tighten the target wall time; warn when it cannot be met."""

    name = "deadline"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        cfg = config or {}
        self.margin_s = float(cfg.get("margin_s", 0.0))

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget:
        if ctx.deadline is None:
            return budget
        available = ctx.deadline - ctx.now - self.margin_s
        target = available if budget.target_s is None else min(budget.target_s, available)
        budget = replace(budget, target_s=max(target, 0.0))
        k = max(1, min(budget.max_shards, work.units))
        best = work.setup_s + max(work.total_s / k, work.longest_s)
        if best > available:
            why = (
                f"the longest test alone takes {work.longest_s:.0f}s"
                if work.longest_s + work.setup_s > available
                else f"{budget.max_shards} shard(s) are allowed"
            )
            budget = budget.warn(
                f"deadline: pool {work.pool!r} needs at least {best:.0f}s but only "
                f"{max(available, 0):.0f}s are left ({why})"
            )
        return budget


BUILTINS: dict[str, Callable[[Mapping[str, Any]], Policy]] = {
    "priority": PriorityPolicy,
    "quota": QuotaPolicy,
    "fair-share": FairSharePolicy,
    "deadline": DeadlinePolicy,
}

#: Order applied when no policy list is given: narrow first, deadline last (it reports).
DEFAULT_ORDER = ("priority", "quota", "fair-share", "deadline")


def load_policies(
    names: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    eps: Iterable[EntryPoint] | None = None,
) -> list[Policy]:
    """Instantiate policies by name: built-in names mean the built-ins, other names are looked
    up in the ``ci_fanout.policies`` entry points.

    An installed plugin cannot replace a built-in by registering its name (it would silently
    change every repo's quotas), and the default list needs no entry-point scan at all.
    ``names=None`` loads :data:`DEFAULT_ORDER`. Unknown names fail with the known ones listed.
    ``eps`` replaces the installed entry points (tests).
    """
    wanted = list(DEFAULT_ORDER if names is None else names)
    found: dict[str, EntryPoint] = {}
    if any(name not in BUILTINS for name in wanted):
        if eps is None:
            from importlib.metadata import entry_points

            eps = entry_points(group=ENTRY_POINT_GROUP)
        found = {ep.name: ep for ep in eps}
    out: list[Policy] = []
    for name in wanted:
        factory: Callable[[Mapping[str, Any]], Any]
        if name in BUILTINS:
            factory = BUILTINS[name]
        elif name in found:
            factory = found[name].load()
        else:
            known = ", ".join(sorted(set(found) | set(BUILTINS)))
            raise ConfigError(f"unknown policy {name!r}; known policies: {known}")
        policy = factory((config or {}).get(name, {}))
        if not isinstance(policy, Policy):
            raise ConfigError(f"policy {name!r} does not implement adjust(ctx, work, budget)")
        out.append(policy)
    return out


def apply_policies(
    policies: Sequence[Policy], ctx: PlanContext, work: PoolWork, budget: PoolBudget
) -> PoolBudget:
    for p in policies:
        budget = p.adjust(ctx, work, budget)
    return budget
