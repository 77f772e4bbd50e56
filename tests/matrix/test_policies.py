from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pytest

from ci_app.errors import ConfigError
from ci_app.matrix.policies import (
    ENTRY_POINT_GROUP,
    DeadlinePolicy,
    FairSharePolicy,
    PlanContext,
    Policy,
    PoolBudget,
    PoolWork,
    PriorityPolicy,
    QuotaPolicy,
    apply_policies,
    load_policies,
)

WORK = PoolWork("gpu", frozenset({"gpu", "gpu-nvidia"}), total_s=4000.0, longest_s=100.0, units=500)
BUDGET = PoolBudget("gpu", capacity=8, max_shards=8)


def test_builtins_are_installed_as_entry_points() -> None:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"priority", "quota", "fair-share", "deadline"} <= names
    loaded = load_policies()
    assert [p.name for p in loaded] == ["priority", "quota", "fair-share", "deadline"]
    assert all(isinstance(p, Policy) for p in loaded)


class OnlyTwo:
    name = "only-two"

    def __init__(self, config: Any) -> None:
        self.n = int(config.get("n", 2))

    def adjust(self, ctx: PlanContext, work: PoolWork, budget: PoolBudget) -> PoolBudget:
        return PoolBudget(budget.pool, budget.capacity, min(budget.max_shards, self.n))


def test_third_party_policy_through_the_same_interface() -> None:
    ep = EntryPoint("only-two", f"{__name__}:OnlyTwo", ENTRY_POINT_GROUP)
    (p,) = load_policies(["only-two"], {"only-two": {"n": 3}}, eps=[ep])
    assert apply_policies([p], PlanContext(), WORK, BUDGET).max_shards == 3
    with pytest.raises(ConfigError, match="unknown policy 'nope'"):
        load_policies(["nope"], eps=[ep])


def test_priority() -> None:
    p = PriorityPolicy({"labels": {"urgent": 50}, "repos": {"org/core": 5}})
    main = p.adjust(PlanContext(repo="org/core", default_branch=True), WORK, BUDGET)
    pr = p.adjust(PlanContext(repo="org/x", labels=frozenset({"urgent"})), WORK, BUDGET)
    plain = p.adjust(PlanContext(repo="org/x"), WORK, BUDGET)
    assert main.priority == 105 and pr.priority == 50 and plain.priority == 0


def test_quota_counts_runners_in_use() -> None:
    q = QuotaPolicy({"max": {"gpu": 4}, "repos": {"org/big": {"gpu": 6}}})
    ctx = PlanContext(repo="org/x", usage={"gpu": {"org/x": 1}})
    b = q.adjust(ctx, WORK, BUDGET)
    assert b.max_shards == 3 and "quota" in b.warnings[0]
    assert q.adjust(PlanContext(repo="org/big"), WORK, BUDGET).max_shards == 6
    cpu = PoolWork("cpu", frozenset({"x64"}), 10, 1, 10)
    assert q.adjust(ctx, cpu, PoolBudget("cpu", 8, 8)).max_shards == 8


def test_fair_share() -> None:
    f = FairSharePolicy({"weights": {"org/a": 3}})
    alone = f.adjust(PlanContext(repo="org/a"), WORK, BUDGET)
    assert alone.max_shards == 8
    shared = f.adjust(PlanContext(repo="org/a", usage={"gpu": {"org/b": 4}}), WORK, BUDGET)
    assert shared.max_shards == 6  # 8 * 3 / (3 + 1)
    other = f.adjust(PlanContext(repo="org/b", usage={"gpu": {"org/a": 6}}), WORK, BUDGET)
    assert other.max_shards == 2
    with pytest.raises(ConfigError):
        FairSharePolicy({"by": "planet"})


def test_deadline_tightens_target_and_warns_when_impossible() -> None:
    d = DeadlinePolicy()
    ok = d.adjust(PlanContext(now=0, deadline=1200), WORK, BUDGET)
    assert ok.target_s == 1200 and not ok.warnings
    late = d.adjust(PlanContext(now=0, deadline=300), WORK, BUDGET)
    assert late.target_s == 300 and "needs at least 500s" in late.warnings[0]
    assert d.adjust(PlanContext(), WORK, BUDGET) == BUDGET
