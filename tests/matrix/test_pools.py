from __future__ import annotations

import pytest

from ci_app.errors import InputError, PlanningError
from ci_app.matrix.pools import Pool, Runner, assign_pools, group_runners, runners_from_json

RUNNERS = [
    {"name": "cpu-a", "labels": ["self-hosted", "x64", "mem-ge-16g"]},
    {"name": "cpu-b", "labels": ["self-hosted", "x64", "mem-ge-16g"]},
    {"name": "big", "labels": ["self-hosted", "x64", "mem-ge-16g", "mem-ge-64g"]},
    {
        "name": "h100",
        "labels": ["self-hosted", "x64", "mem-ge-16g", "gpu", "gpu-nvidia", "gpu-mem-ge-24g"],
    },
    {"name": "dead", "labels": ["self-hosted", "x64", "gpu-mem-ge-80g"], "status": "offline"},
]


def pools() -> list[Pool]:
    return group_runners(runners_from_json(RUNNERS))


def test_grouping_keys_and_offline_runners() -> None:
    ps = pools()
    assert [p.key for p in ps] == ["cpu", "cpu2", "gpu"]
    assert ps[0].runners == ("cpu-a", "cpu-b") and ps[0].capacity == 2
    assert all("dead" not in p.runners for p in ps)


def test_cheapest_satisfying_pool_and_cpu_never_on_gpu() -> None:
    ps = pools()
    cpu = frozenset[str]()
    big = frozenset({"mem-ge-64g"})
    gpu = frozenset({"gpu-nvidia", "gpu-mem-ge-24g"})
    out = assign_pools([cpu, big, gpu], ps)
    assert out[cpu].key == "cpu"
    assert out[big].key == "cpu2"
    assert out[gpu].key == "gpu"


def test_only_gpu_runners_need_opt_in() -> None:
    only_gpu = [p for p in pools() if p.key == "gpu"]
    with pytest.raises(PlanningError, match="gpu-for-cpu"):
        assign_pools([frozenset()], only_gpu)
    assert assign_pools([frozenset()], only_gpu, gpu_for_cpu=True)[frozenset()].key == "gpu"


def test_missing_labels_are_named() -> None:
    need = frozenset({"gpu-nvidia", "gpu-mem-ge-80g"})
    with pytest.raises(PlanningError) as err:
        assign_pools([need], pools(), counts={need: 3})
    msg = str(err.value)
    assert "gpu-mem-ge-80g" in msg and "3 test(s)" in msg and "closest pool 'gpu'" in msg


def test_runner_file_validation() -> None:
    with pytest.raises(InputError):
        runners_from_json([{"name": "x"}])
    with pytest.raises(InputError):
        runners_from_json({"runners": [{"labels": "gpu"}]})
    r = runners_from_json({"runners": [{"labels": ["X64"], "cost": 3}]})
    assert r == [Runner("runner-1", frozenset({"x64"}), True, 3.0)]
