"""The per-test record and its merge into results.json: metrics, infra outcomes, hostile input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ci_app.browser.record import (
    FORMAT,
    VERSION,
    RecordWriter,
    merge_record,
    merge_record_file,
    read_record,
    record_path_for,
)
from ci_app.model.results import Outcome, ResultSet, TestCase

T1 = "tests/test_webgpu.py::test_matmul"
T2 = "tests/test_webgpu.py::test_crash"
T3 = "tests/test_webgpu.py::test_lying_label"
T4 = "tests/test_math.py::test_plain"
CAPS = {
    "adapter_class": "google-swiftshader-fallback",
    "adapter": {"vendor": "google", "architecture": "swiftshader", "fallback": True},
    "hardware": False,
    "browser_version": "156.0.8078.114",
}


def case(test_id: str, outcome: Outcome, **kw: Any) -> TestCase:
    return TestCase(id=test_id, name=test_id.rsplit("::", 1)[-1], outcome=outcome, **kw)


def written(tmp_path: Path) -> Path:
    """A record as the plugin writes it for four typical tests."""
    w = RecordWriter(record_path_for(tmp_path / "out" / "native-junit.xml"))
    w.start_attempt(T1)
    w.set_adapter(T1, CAPS)
    w.timing(T1, "launch_ms", 900.0)
    w.timing(T1, "context_ms", 2.5)
    w.timing(T1, "context_ms", 1.5)
    w.timing(T1, "compile_ms", 30.0, keep="max")
    w.timing(T1, "compile_ms", 12.0, keep="max")
    w.metric(T1, "gflops", 1.25, unit="GFLOP/s", higher=True)
    w.metric(T1, "gflops", 1.5, unit="GFLOP/s", higher=True)  # the last value counts
    # crashed on the first attempt, passed on the retry
    w.start_attempt(T2)
    w.set_adapter(T2, CAPS)
    w.timing(T2, "context_ms", 99.0)
    w.infra(T2, "renderer-crash", "the page's renderer process crashed")
    w.start_attempt(T2)
    w.timing(T2, "context_ms", 3.0)
    # the runner's label lied: infrastructure error
    w.start_attempt(T3)
    w.set_adapter(T3, CAPS)
    w.infra(T3, "label-mismatch", "the runner's label webgpu promised a hardware adapter")
    w.start_attempt(T4)
    w.metric(T4, "rows_per_s", 1e6, higher=True)
    w.pool = {"launch_ms": [900.0, 1100.0], "capabilities": CAPS}
    w.flush()
    assert w.path is not None and w.path.name == "native-junit.browser.json"
    return w.path


def test_writer_and_merge(tmp_path: Path) -> None:
    path = written(tmp_path)
    doc, error = read_record(path)
    assert error is None and doc is not None and doc["version"] == VERSION
    rs = ResultSet(
        tests=(
            case(T1, Outcome.PASSED),
            case(T2, Outcome.PASSED, flaky=True, retries=1),  # pytest-rerunfailures' view
            case(T3, Outcome.ERROR, message='failed on setup with "InfraError: ..."'),
            case(T4, Outcome.PASSED),
        )
    )
    merged = merge_record_file(rs, path)
    by_id = {c.id: c for c in merged.tests}
    assert by_id[T2].outcome is Outcome.PASSED and not by_id[T2].flaky  # infra, not flaky
    assert by_id[T2].retries == 1
    lied = by_id[T3]
    assert lied.outcome is Outcome.ERROR
    assert lied.message == (
        "infra: label-mismatch: the runner's label webgpu promised a hardware adapter"
    )
    assert lied.details is not None and "failed on setup" in lied.details
    metrics = {m.name: m for m in merged.metrics}
    cls = "browser/google-swiftshader-fallback"
    assert metrics[f"{cls}/gflops/{T1}"].value == 1.5
    assert metrics[f"{cls}/gflops/{T1}"].direction == "higher"
    assert metrics[f"{cls}/gflops/{T1}"].unit == "GFLOP/s"
    assert metrics[f"{cls}/context_ms/{T1}"].value == 4.0
    assert metrics[f"{cls}/compile_ms/{T1}"].value == 30.0
    assert metrics[f"{cls}/launch_ms/{T1}"].value == 900.0
    assert metrics[f"{cls}/context_ms/{T2}"].value == 3.0  # the last attempt's
    assert metrics[f"{cls}/infra.renderer-crash/{T2}"].value == 1.0
    assert metrics[f"{cls}/infra.label-mismatch/{T3}"].value == 1.0
    assert metrics[f"test/rows_per_s/{T4}"].value == 1e6  # a test without a browser
    assert metrics[f"{cls}/launch_ms/*"].value == 1000.0
    assert metrics[f"{cls}/chromium/*"].value == 156.0
    assert not merged.files  # nothing to warn about


def test_infra_never_turns_a_failure_into_a_pass_or_a_pass_into_an_error(
    tmp_path: Path,
) -> None:
    doc = json.loads(written(tmp_path).read_text())
    rs = ResultSet(tests=(case(T3, Outcome.PASSED), case(T2, Outcome.FAILED, message="boom")))
    merged = {c.id: c for c in merge_record(rs, doc).tests}
    assert merged[T3].outcome is Outcome.PASSED  # inconsistent record: the report wins
    # T2's last attempt had no infra event: its failure is the test's own
    assert merged[T2].outcome is Outcome.FAILED and merged[T2].message == "boom"


def test_crashed_again_on_the_retry_is_an_infra_error() -> None:
    doc = {
        "version": VERSION,
        "tests": {
            T2: {
                "attempts": 2,
                "adapter_class": "google-swiftshader-fallback",
                "infra": [
                    {"kind": "renderer-crash", "detail": "crashed", "attempt": 1},
                    {"kind": "hung", "detail": "no answer within 5 s", "attempt": 2},
                ],
            }
        },
    }
    rs = ResultSet(tests=(case(T2, Outcome.FAILED, message="Target crashed", flaky=True),))
    (c,) = merge_record(rs, doc).tests
    assert c.outcome is Outcome.ERROR and not c.flaky
    assert c.message == (
        "infra: hung: no answer within 5 s (again on the retry on a fresh browser; 1 earlier)"
    )


def test_a_genuinely_flaky_test_stays_flaky() -> None:
    """Three attempts, one infra crash and one real failure before the pass: still flaky."""
    doc = {
        "version": VERSION,
        "tests": {T2: {"attempts": 3, "infra": [{"kind": "gpu-lost", "attempt": 1}]}},
    }
    rs = ResultSet(tests=(case(T2, Outcome.PASSED, flaky=True, retries=2),))
    (c,) = merge_record(rs, doc).tests
    assert c.flaky


def test_hostile_records_lose_nothing(tmp_path: Path) -> None:
    rs = ResultSet(tests=(case(T1, Outcome.FAILED, message="real failure"),))
    hostile: dict[str, Any] = {
        "version": VERSION,
        "pool": {"launch_ms": "fast", "capabilities": {"browser_version": "x" * 100}},
        "tests": {
            T1: {
                "attempts": "many",
                "adapter_class": "../../etc",
                "timings": {"context_ms": float("nan"), "compile_ms": -5, "bogus_ms": 1},
                "metrics": [
                    {"name": "g flops", "value": 1},
                    {"name": "ok", "value": True},
                    {"name": "fine", "value": 2.0, "unit": "u" * 100, "direction": "sideways"},
                    "not a dict",
                ],
                "infra": [{"kind": "meteor", "attempt": 1}, {"kind": "hung", "attempt": "1"}],
            },
            "": {"attempts": 1},
            "x": "not a dict",
        },
    }
    merged = merge_record(rs, hostile, source="r.json")
    (c,) = merged.tests
    assert c.outcome is Outcome.FAILED and c.message == "real failure"  # nothing applied
    # the bad adapter class makes every metric of that test a warning, never a bad name
    assert merged.metrics == ()
    (f,) = merged.files
    assert f.format == FORMAT and f.error is None and f.warnings
    assert all(len(w) <= 300 for w in f.warnings)
    ok = dict(hostile["tests"][T1], adapter_class="google-swiftshader-fallback")
    merged = merge_record(rs, {"version": VERSION, "tests": {T1: ok}})
    names = {m.name: m for m in merged.metrics}
    fine = names[f"browser/google-swiftshader-fallback/fine/{T1}"]
    assert fine.direction == "lower" and len(fine.unit) == 32
    assert all(math.isfinite(m.value) for m in merged.metrics)
    assert len(names) == 1


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "is not JSON"),
        (b'{"version": "other"}', "is not a ci-fanout/browser-record/v1 document"),
        (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),
    ],
)
def test_unusable_files_become_error_entries(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "x.browser.json"
    path.write_bytes(content)
    rs = ResultSet(tests=(case(T1, Outcome.PASSED),))
    merged = merge_record_file(rs, path)
    assert merged.tests == rs.tests
    (f,) = merged.files
    assert f.format == FORMAT and f.error is not None and error in f.error


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    rs = ResultSet(tests=(case(T1, Outcome.PASSED),))
    assert merge_record_file(rs, tmp_path / "none.json") is rs
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(17 * 1024 * 1024)
    (f,) = merge_record_file(rs, big).files
    assert f.error is not None and "over the" in f.error


def test_writer_refuses_bad_metrics() -> None:
    w = RecordWriter(None)
    with pytest.raises(ValueError, match="bad metric name"):
        w.metric(T1, "has space", 1.0)
    with pytest.raises(ValueError, match="finite number"):
        w.metric(T1, "x", float("inf"))
    with pytest.raises(ValueError, match="finite number"):
        w.metric(T1, "x", "1")  # type: ignore[arg-type]
    for i in range(50):
        w.metric(T1, f"m{i}", 1.0)
    with pytest.raises(ValueError, match="more than 50"):
        w.metric(T1, "m50", 1.0)
    w.flush()  # no path: nothing written, no error
