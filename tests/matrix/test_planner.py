from __future__ import annotations

import json

import pytest
import yaml

from ci_app.errors import ConfigError, PlanningError
from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.inventory import (
    Inventory,
    TestSpec,
    apply_rules,
    inventory_from_ids,
    rules_from_config,
)
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.matrix.policies import PlanContext, QuotaPolicy
from ci_app.matrix.pools import runners_from_json
from ci_app.matrix.render import render, render_github, render_gitlab

from .conftest import load_durations

RUNNERS = runners_from_json(
    [{"name": f"cpu{i}", "labels": ["self-hosted", "x64"]} for i in range(4)]
    + [
        {"name": f"gpu{i}", "labels": ["self-hosted", "x64", "gpu", "gpu-nvidia", "gpu-mem-ge-24g"]}
        for i in range(2)
    ]
)


def inventory() -> Inventory:
    tests = [TestSpec(f"tests/test_cpu.py::test_{i}") for i in range(20)]
    tests += [
        TestSpec(f"tests/gpu/test_g.py::test_{i}", ("gpu-nvidia", "gpu-mem>=20g")) for i in range(6)
    ]
    tests += [
        TestSpec("tests/test_db.py::test_a", group="db"),
        TestSpec("tests/test_db.py::test_b", group="db"),
        TestSpec("tests/test_dep.py::test_second", depends_on=("tests/test_dep.py::test_first",)),
        TestSpec("tests/test_dep.py::test_first"),
    ]
    return Inventory(tuple(tests))


def history() -> DurationHistory:
    d = {f"tests/test_cpu.py::test_{i}": float(i + 1) for i in range(20)}
    d |= {f"tests/gpu/test_g.py::test_{i}": 30.0 for i in range(6)}
    d |= {"tests/test_db.py::test_a": 5.0, "tests/test_db.py::test_b": 5.0}
    return DurationHistory.single(d)


def test_hardware_pools_groups_dependencies_unknowns() -> None:
    m = plan_matrix(inventory(), history(), RUNNERS, PlanOptions(shards=3, setup_s=0))
    by_pool: dict[str, list[str]] = {}
    for s in m.shards:
        by_pool.setdefault(s.pool, []).extend(s.tests)
        assert s.tests, "no empty shards"
    assert set(by_pool) == {"cpu", "gpu"}
    assert all("/gpu/" in t for t in by_pool["gpu"])
    assert not any("/gpu/" in t for t in by_pool["cpu"])
    gpu_shard = next(s for s in m.shards if s.pool == "gpu")
    assert "gpu-mem-ge-24g" in gpu_shard.runs_on and "gpu-nvidia" in gpu_shard.runs_on
    all_tests = [t for s in m.shards for t in s.tests]
    assert sorted(all_tests) == sorted(inventory().ids)
    home = {t: s.id for s in m.shards for t in s.tests}
    assert home["tests/test_db.py::test_a"] == home["tests/test_db.py::test_b"]
    dep_shard = m.shard(home["tests/test_dep.py::test_first"])
    assert home["tests/test_dep.py::test_second"] == dep_shard.id
    assert dep_shard.tests.index("tests/test_dep.py::test_first") < dep_shard.tests.index(
        "tests/test_dep.py::test_second"
    )
    assert sum(s.unknown_tests for s in m.shards) == 2
    assert any("without history" in n for n in m.notes)


def test_missing_hardware_is_a_planning_error() -> None:
    inv = Inventory((TestSpec("t::big", ("gpu-mem>=80g",)),))
    with pytest.raises(PlanningError, match="gpu-mem-ge-80g"):
        plan_matrix(inv, history(), RUNNERS)
    with pytest.raises(PlanningError, match="empty"):
        plan_matrix(Inventory(()), history(), RUNNERS)
    with pytest.raises(ConfigError, match="t::bad"):
        plan_matrix(Inventory((TestSpec("t::bad", ("gpu-mem==3",)),)), history(), RUNNERS)


def test_shard_count_from_capacity_and_policies() -> None:
    m = plan_matrix(inventory(), history(), RUNNERS, PlanOptions(setup_s=0))
    assert len([s for s in m.shards if s.pool == "gpu"]) <= 2  # two GPU runners
    ctx = PlanContext(repo="org/x")
    m = plan_matrix(
        inventory(),
        history(),
        RUNNERS,
        PlanOptions(setup_s=0),
        policies=[QuotaPolicy({"max": {"cpu": 1}})],
        ctx=ctx,
    )
    assert len([s for s in m.shards if s.pool == "cpu"]) == 1
    assert any("quota" in w for w in m.warnings)


def test_queue_mode_matrix_round_trips_and_renders() -> None:
    m = plan_matrix(inventory(), history(), RUNNERS, PlanOptions(mode="queue", shards=2))
    again = Matrix.from_dict(json.loads(render(m, "json")))
    assert again == m
    specs = again.queue_specs()
    assert set(specs) == {"cpu", "gpu"}
    assert specs["gpu"].labels == frozenset(next(p.runs_on for p in m.pools if p.key == "gpu"))
    assert sum(len(it.test_ids) for s in specs.values() for it in s.items) == len(inventory().tests)
    gh = render_github(m)
    assert [e["shard"] for e in gh["include"]] == [s.id for s in m.shards]
    assert gh["include"][0]["runs-on"] == list(m.shards[0].runs_on)
    gl = yaml.safe_load(render_gitlab(m))
    job = gl[f"shard {m.shards[-1].id}"]
    assert job["tags"] == list(m.shards[-1].runs_on)
    assert "--fanout-queue" in job["script"][0] and m.shards[-1].id in job["script"][0]


def test_large_real_plan_is_balanced() -> None:
    d = load_durations("conda-linux.json")
    m = plan_matrix(
        inventory_from_ids(sorted(d)), DurationHistory.single(d), None, PlanOptions(shards=16)
    )
    loads = [s.expected_seconds for s in m.shards]
    assert max(loads) <= max(sum(d.values()) / 16, *d.values()) * 1.001


def test_config_rules() -> None:
    cfg = {
        "planner": {
            "rules": [
                {"path": "tests/gpu/*", "requires": ["gpu-nvidia"]},
                {"id": r"::TestSlow::", "group": "class"},
                {"path": "tests/db/*", "group": "file"},
            ]
        }
    }
    inv = inventory_from_ids(
        ["tests/gpu/test_a.py::t", "tests/x.py::TestSlow::a", "tests/db/test_q.py::t", "# c", ""]
    )
    out = apply_rules(inv, rules_from_config(cfg))
    assert [t.requirements for t in out.tests] == [("gpu-nvidia",), (), ()]
    assert [t.group for t in out.tests] == [
        None,
        "class:tests/x.py::TestSlow",
        "file:tests/db/test_q.py",
    ]
    with pytest.raises(ConfigError, match="perhaps you meant 'requires'"):
        rules_from_config({"planner": {"rules": [{"path": "x", "require": ["a"]}]}})
