"""Flaky verdicts: evidence kinds, and what must never be called flaky."""

from __future__ import annotations

from ci_app.reporting.data import HistoryRows
from ci_app.reporting.flaky import FLAKY, HARDWARE, REGRESSION, classify_history, flaky_tests


def _hist(rows: list[tuple[str, str, int, str, bool, bool]]) -> HistoryRows:
    """rows: (test, runner class, commit index, outcome, retried-flaky, infra)."""
    classes = sorted({r[1] for r in rows})
    ordered = sorted(rows, key=lambda r: (r[2], classes.index(r[1])))
    return HistoryRows(
        test_id=[r[0] for r in ordered],
        runner_class=[r[1] for r in ordered],
        seq=[r[2] * 10 + classes.index(r[1]) for r in ordered],
        run_id=[f"run-{r[2]}-{r[1]}" for r in ordered],
        commit=[f"c{r[2]:03d}" for r in ordered],
        outcome=[r[3] for r in ordered],
        flaky=[r[4] for r in ordered],
        infra=[r[5] for r in ordered],
    )


def _stream(
    test: str,
    rclass: str,
    outcomes: str,
    *,
    retried: set[int] | None = None,
    infra: set[int] | None = None,
) -> list[tuple[str, str, int, str, bool, bool]]:
    """'.'=pass, 'F'=fail, 'E'=error for consecutive commits."""
    code = {".": "passed", "F": "failed", "E": "error"}
    return [
        (test, rclass, i, code[c], i in (retried or set()), i in (infra or set()))
        for i, c in enumerate(outcomes)
    ]


def test_retry_evidence_is_flaky_high() -> None:
    v = classify_history(_hist(_stream("t", "a", "....", retried={2})))["t"]
    assert v.verdict == FLAKY and v.confidence == "high"
    assert v.evidence[0].kind == "retry" and "retry" in v.evidence[0].describe()


def test_same_commit_pass_and_fail_is_flaky() -> None:
    rows = [*_stream("t", "a", "...."), ("t", "a", 2, "failed", False, False)]
    v = classify_history(_hist(rows))["t"]
    assert v.verdict == FLAKY and v.evidence[0].kind == "same_commit"


def test_isolated_failure_corroborated_by_other_runner() -> None:
    rows = _stream("t", "a", "....F....") + _stream("t", "b", ".........")
    v = classify_history(_hist(rows))["t"]
    assert v.verdict == FLAKY and v.confidence == "medium"
    stats = {s.runner_class: s for s in v.stats}
    assert stats["a"].failures == 1 and stats["a"].flips == 2
    assert abs(stats["a"].flip_rate - 0.25) < 1e-9


def test_one_commit_regression_on_all_runners_is_not_flaky() -> None:
    # the commit broke it everywhere and the next commit fixed it
    rows = _stream("t", "a", "....F....") + _stream("t", "b", "....F....")
    v = classify_history(_hist(rows))["t"]
    assert v.verdict != FLAKY


def test_single_runner_single_isolated_failure_is_not_enough() -> None:
    assert classify_history(_hist(_stream("t", "a", "...F....")))["t"].verdict != FLAKY
    v = classify_history(_hist(_stream("t", "a", "..F....F...")))["t"]
    assert v.verdict == FLAKY and v.confidence == "low"


def test_persistent_failure_is_regression_with_since_commit() -> None:
    rows = _stream("t", "a", "....FFFF") + _stream("t", "b", "....FFFF")
    v = classify_history(_hist(rows))["t"]
    assert v.verdict == REGRESSION and v.since_commit == "c004"


def test_regression_beats_old_flaky_evidence() -> None:
    rows = _stream("t", "a", "..........FFF", retried={2}) + _stream("t", "b", "..........FFF")
    assert classify_history(_hist(rows))["t"].verdict == REGRESSION


def test_runner_specific_failure_is_hardware_specific() -> None:
    rows = _stream("t", "gpu", "..FFFFFF") + _stream("t", "cpu", "........")
    v = classify_history(_hist(rows))["t"]
    assert v.verdict == HARDWARE and v.runner_classes == ("gpu",)


def test_infra_errors_never_count() -> None:
    rows = _stream("t", "a", "...E...E..", infra={3, 7}) + _stream(
        "u", "a", "...E...E..", infra={3, 7}
    )
    assert classify_history(_hist(rows)) == {}


def test_flaky_tests_sorted_and_filtered() -> None:
    rows = _stream("hi", "a", "....", retried={1}) + _stream("lo", "a", "..F....F...")
    verdicts = classify_history(_hist(rows))
    assert [v.test_id for v in flaky_tests(verdicts)] == ["hi", "lo"]
    assert [v.test_id for v in flaky_tests(verdicts, min_confidence="high")] == ["hi"]
    d = verdicts["hi"].to_dict()
    assert d["verdict"] == "flaky" and d["evidence"][0]["kind"] == "retry"
