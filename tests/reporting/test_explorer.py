"""The test page's pure views: what each row means, strips, rates, verdicts, failure messages
with the commit each started at, duration series with change points (and a PR run beside)."""

from __future__ import annotations

from typing import Any

import pytest

from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD
from ci_app.reporting.explorer import TestRows, cell_state, summarise_test

CPU, GPU = "cpu-avx512,x64", "gpu-nvidia,x64"


def rows(*entries: dict[str, Any]) -> TestRows:
    """Rows from dicts (defaults: main branch, passed, 1 s, CPU class); seq = position."""
    cols: dict[str, list[Any]] = {k: [] for k in TestRows.__dataclass_fields__}
    for i, e in enumerate(entries):
        run = e.get("run", f"r{e.get('seq', i)}")
        d = {
            "seq": e.get("seq", i),
            "run_id": run,
            "branch": "main",
            "pr": None,
            "commit": f"c{e.get('seq', i):03d}",
            "started_at": None,
            "shard_id": "s1",
            "runner_class": CPU,
            "runner_name": "box",
            "outcome": "passed",
            "duration_s": 1.0,
            "retries": 0,
            "flaky": False,
            "message": None,
            "file": "t.py",
            "line": 3,
            "infra": False,
        } | {k: v for k, v in e.items() if k != "run"}
        for k, col in cols.items():
            col.append(d[k])
    return TestRows(**cols)


@pytest.mark.parametrize(
    ("args", "state"),
    [
        (("passed", "s1", None, False), "passed"),
        (("passed", "s1", None, True), "retried"),
        (("failed", "s1", "boom", False), "failed"),
        (("error", "s1", "boom", False, True), "infra"),
        (("error", LOST_SHARD, "lost: shard died", False), "lost"),
        (("skipped", NOT_RUN_SHARD, "not run: no runner with [gpu]", False), "not-run"),
        (("skipped", "s1", "not run: no runner with [gpu]", False), "not-run"),
        (("skipped", "s1", "skip", False), "skipped"),
        (("weird", "s1", None, False), "skipped"),
    ],
)
def test_cell_state(args: tuple[Any, ...], state: str) -> None:
    assert cell_state(*args) == state


def test_strips_rates_and_verdicts_per_branch_and_class() -> None:
    entries: list[dict[str, Any]] = []
    for i in range(10):
        entries.append({"seq": i, "runner_class": CPU})
        gpu_fail = i >= 6
        entries.append(
            {
                "seq": i,
                "runner_class": GPU,
                "shard_id": "s2",
                "outcome": "failed" if gpu_fail else "passed",
                "message": f"OOM at step {i}\ntrace" if gpu_fail else None,
            }
        )
    entries.append({"seq": 10, "branch": "feat", "pr": 3, "outcome": "failed", "message": "x"})
    s = summarise_test("t::a", rows(*entries), strip_runs=5)
    assert s.branches == ("main", "feat")
    main = [st for st in s.strips if st.branch == "main"]
    assert [st.runner_class for st in main] == [CPU, GPU]
    gpu = main[1]
    assert len(gpu.cells) == 5 and [c.state for c in gpu.cells] == ["passed"] + ["failed"] * 4
    assert gpu.rates.runs == 10 and gpu.rates.pass_rate == 0.6 and gpu.rates.flips == 1
    assert gpu.cells[-1].message == "OOM at step 9" and gpu.cells[-1].run_id == "r9"
    assert main[0].rates.pass_rate == 1.0 and main[0].rates.flip_rate == 0.0
    assert [st.pr_runs for st in s.strips if st.branch == "feat"] == [True]
    verdicts = dict(s.verdicts)
    assert verdicts["main"].verdict == "hardware_specific"
    assert verdicts["main"].since_commit == "c006" and verdicts["main"].runner_classes == (GPU,)
    # a run fails if any of its shards failed: 6 passing runs of 11
    assert s.overall.runs == 11 and s.overall.passed == 6 and s.latest_state == "failed"
    assert dict(s.by_class)[GPU].failures == 4 and dict(s.by_class)[CPU].failures == 1


def test_messages_grouped_by_first_line_with_the_commit_each_started_at() -> None:
    s = summarise_test(
        "t::a",
        rows(
            {"outcome": "failed", "message": "E1\nlong trace"},
            {},
            {"outcome": "failed", "message": "E2", "runner_class": GPU},
            {"outcome": "failed", "message": "E1"},
            {"outcome": "error", "message": None},
            {"outcome": "error", "message": "infra", "infra": True},  # not held against it
        ),
    )
    assert [(g.message, g.count, g.first_commit, g.last_commit) for g in s.messages] == [
        ("(no message)", 1, "c004", "c004"),
        ("E1", 2, "c000", "c003"),
        ("E2", 1, "c002", "c002"),
    ]
    e1 = s.messages[1]
    assert e1.full == "E1\nlong trace" and e1.runner_classes == (CPU,)


def test_lost_and_not_run_rows_are_no_outcome_of_the_test() -> None:
    s = summarise_test(
        "t::a",
        rows(
            {},
            {"outcome": "error", "shard_id": LOST_SHARD, "message": "lost: died"},
            {"outcome": "skipped", "shard_id": NOT_RUN_SHARD, "message": "not run: no runner"},
        ),
    )
    assert s.overall.runs == 1 and s.overall.failures == 0
    nobody = [st for st in s.strips if st.runner_class == "(no runner)"]
    assert [c.state for c in nobody[0].cells] == ["lost", "not-run"]
    assert s.verdicts == ()


def test_duration_change_point_and_a_pr_run_beside_the_base_branch() -> None:
    entries: list[dict[str, Any]] = [
        {"seq": i, "duration_s": 1.0 + 0.01 * (i % 3) if i < 12 else 2.0 + 0.01 * (i % 3)}
        for i in range(24)
    ]
    entries.append({"seq": 24, "branch": "feat", "pr": 1, "duration_s": 3.0, "run": "pr"})
    s = summarise_test("t::a", rows(*entries))
    (series,) = s.durations
    assert series.branch == "main" and len(series.values) == 24 and series.highlight is None
    (cp,) = series.change_points
    assert cp.index == 12 and series.commits[cp.index] == "c012"
    assert 0.95 < cp.change < 1.05
    with_pr = summarise_test("t::a", rows(*entries), run="pr").durations[0]
    assert len(with_pr.values) == 25 and with_pr.highlight == 24 and with_pr.values[-1] == 3.0
    assert [c.index for c in with_pr.change_points] == [12]  # found on main's own series
    feat = summarise_test("t::a", rows(*entries), duration_branch="feat").durations[0]
    assert feat.branch == "feat" and feat.values == (3.0,) and feat.change_points == ()
    # an unknown branch falls back to the base branch; a short series has no change point
    assert summarise_test("t::a", rows(*entries), duration_branch="nope").duration_branch == "main"
    assert summarise_test("t::a", rows(*entries[:9])).durations[0].change_points == ()
