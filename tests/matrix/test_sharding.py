from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_split.algorithms import Algorithms

from ci_app.errors import PlanningError
from ci_app.matrix.sharding import (
    SEARCH_SKIP_MIN_ITEMS,
    build_units,
    choose_shard_count,
    lower_bound,
    lpt,
    order_with_dependencies,
    partition,
)

from .conftest import load_durations


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __str__(self) -> str:
        return self.nodeid


def _lsd_makespan(d: dict[str, float], k: int) -> float:
    items: list[Any] = [_Item(t) for t in sorted(d)]
    groups = Algorithms.least_duration.value(k, items, d)
    return max(g.duration for g in groups)


@pytest.mark.parametrize("name", ["pgmpy.json", "conda-linux.json", "conda-windows.json"])
def test_never_worse_than_pytest_split_least_duration(name: str) -> None:
    d = load_durations(name)
    names = sorted(d)
    w = [d[n] for n in names]
    ratios = []
    for k in (2, 3, 5, 8, 13, 16, 21, 32, 64):
        members, loads = partition(names, w, k)
        assert sorted(i for m in members for i in m) == list(range(len(names)))
        assert max(loads) <= _lsd_makespan(d, k) + 1e-9
        lb = lower_bound(w, k)
        assert max(loads) >= lb - 1e-9
        ratios.append(max(loads) / lb)
    assert math.exp(sum(map(math.log, ratios)) / len(ratios)) <= 1.001


def test_lpt_matches_pytest_split_exactly() -> None:
    d = load_durations("pgmpy.json")
    names = sorted(d)
    _, loads = lpt(names, [d[n] for n in names], 7)
    assert max(loads) == pytest.approx(_lsd_makespan(d, 7), rel=1e-12)


def test_local_search_improves_a_known_lpt_weakness() -> None:
    # Classic LPT counter-example: {3,3,2,2,2} into 2 shards -> LPT 7, optimum 6.
    names = list("abcde")
    w = [3.0, 3.0, 2.0, 2.0, 2.0]
    _, lpt_loads = lpt(names, w, 2)
    _, loads = partition(names, w, 2)
    assert max(lpt_loads) == 7.0
    assert max(loads) == 6.0


def test_local_search_skipped_only_on_a_large_input_lpt_already_balances() -> None:
    # many tiny items after a few larger ones: LPT ends within a millionth of the bound
    w = [2.0, 1.5, 1.5, 1.0] + [1e-7 * (1 + i % 3) for i in range(SEARCH_SKIP_MIN_ITEMS - 4)]
    names = [f"t{i:06d}" for i in range(len(w))]
    notes: list[str] = []
    members, loads = partition(names, w, 4, notes=notes)
    assert max(loads) <= lower_bound(w, 4) * (1 + 1e-6)
    assert (members, loads) == lpt(names, w, 4)  # kept exactly as LPT made it
    assert len(notes) == 1 and notes[0].endswith("local search skipped")
    # one item fewer: below the size where skipping pays, the same input is searched
    fewer: list[str] = []
    partition(names[:-1], w[:-1], 4, notes=fewer)
    assert len(fewer) == 1 and fewer[0].startswith("local search: makespan")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=9),
)
def test_partition_properties(weights: list[float], k: int) -> None:
    names = [f"t{i}" for i in range(len(weights))]
    members, loads = partition(names, weights, k)
    assert sorted(i for m in members for i in m) == list(range(len(weights)))
    for m, load in zip(members, loads, strict=True):
        assert load == pytest.approx(sum(weights[i] for i in m), abs=1e-6)
    _, lpt_loads = lpt(names, weights, k)
    assert max(loads) <= max(lpt_loads) + 1e-9
    assert max(loads) >= lower_bound(weights, k) - 1e-9


def test_groups_and_dependencies_become_units() -> None:
    tests = ["a::1", "a::2", "b::1", "b::2", "c::1"]
    secs = dict.fromkeys(tests, 1.0)
    units = build_units(
        tests, secs, groups={"a::1": "db", "b::2": "db"}, depends_on={"c::1": ["b::1"]}
    )
    by_test = {t: u for u in units for t in u.tests}
    assert by_test["a::1"] is by_test["b::2"]
    assert by_test["a::1"].seconds == 2.0
    assert by_test["c::1"] is by_test["b::1"]
    assert by_test["a::2"].tests == ("a::2",)
    assert sorted(t for u in units for t in u.tests) == sorted(tests)


def test_dependency_order_and_cycles() -> None:
    pos = {"x": 0, "y": 1, "z": 2}
    assert order_with_dependencies(["x", "y", "z"], pos, {"x": ["z"]}) == ["y", "z", "x"]
    with pytest.raises(PlanningError, match="cycle"):
        order_with_dependencies(["x", "y"], pos, {"x": ["y"], "y": ["x"]})


def test_shard_count_choice() -> None:
    # longest test bounds the wall: more than ceil(total/longest) shards cannot help
    c = choose_shard_count(530.0, 221.0, 1196, capacity=64, setup_s=30)
    assert c.shards == 3
    # no empty shards
    assert choose_shard_count(100.0, 1.0, 5, capacity=64).shards <= 5
    # minimum useful shard size
    assert choose_shard_count(100.0, 1.0, 100, capacity=64, min_shard_s=30).shards == 3
    # target met with the fewest shards
    c = choose_shard_count(1000.0, 10.0, 500, capacity=64, target_s=130, setup_s=30)
    assert c.shards == 10 and c.deadline_met
    # impossible target: best effort, flagged
    c = choose_shard_count(1000.0, 200.0, 500, capacity=64, target_s=100)
    assert not c.deadline_met and c.expected_wall_s == 200.0
    assert choose_shard_count(0.0, 0.0, 0, capacity=4).shards == 0


def test_partition_of_zero_weights_notes_the_search() -> None:
    """Found by make demo: tests with no known duration (all weights 0) divided by a zero
    lower bound when the plan's notes were written."""
    notes: list[str] = []
    members, loads = partition([f"t{i}" for i in range(9)], [0.0] * 9, 4, notes=notes)
    assert sorted(i for m in members for i in m) == list(range(9))
    assert loads == [0.0] * 4
    assert notes == ["local search: makespan x 1.0000000 -> x 1.0000000 of the lower bound"]
