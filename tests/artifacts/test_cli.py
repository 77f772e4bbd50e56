"""``ci-app ingest`` and ``ci-app export`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_app.cli import main

DATA = Path(__file__).parent.parent / "data"
REPORTS = DATA / "reports" / "publish-unit-test-result-action" / "junit-xml"


def test_ingest_writes_results_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    code = main(
        ["ingest", str(REPORTS / "pytest" / "junit.fail.xml"), "--output", str(out),
         "--run-id", "r1", "--shard-id", "s1", "--commit", "abc", "--branch", "main",
         "--runner-labels", "x64, gpu-nvidia", "--pipeline-id", "77", "--pr", "5",
         "--timestamp", "2026-01-02T03:04:05+00:00"]
    )  # fmt: skip
    assert code == 0  # a failing test is not a failing ingest
    doc = json.loads(out.read_text())
    assert doc["version"] == "ci-fanout/results/v1"
    assert doc["summary"]["tests"] == 5 and doc["summary"]["failed"] == 1
    assert doc["run"]["runner"]["labels"] == ["x64", "gpu-nvidia"]
    assert doc["run"]["commit"] == "abc"
    run = {k: doc["run"][k] for k in ("run_id", "shard_id", "pipeline_id", "pr", "started_at")}
    assert run == {
        "run_id": "r1",
        "shard_id": "s1",
        "pipeline_id": "77",
        "pr": 5,
        "started_at": "2026-01-02T03:04:05+00:00",
    }
    err = capsys.readouterr().err
    assert "5 tests: 3 passed, 1 failed, 0 errors, 1 skipped" in err


def test_ingest_directory_glob_and_broken_file_is_still_success(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code = main(["ingest", str(REPORTS / "pytest" / "*.xml"), "-o", str(out), "-q"])
    doc = json.loads(out.read_text())
    assert code == 0
    broken = [f for f in doc["files"] if f["error"]]
    assert [Path(f["path"]).name for f in broken] == ["corrupt-xml.xml"]
    assert doc["summary"]["tests"] == sum(f["summary"]["tests"] for f in doc["files"])


def test_ingest_fails_only_when_nothing_is_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("nonsense")
    assert main(["ingest", str(bad), "-o", str(tmp_path / "r.json")]) == 3
    assert "could be read" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing.xml"), "-o", str(tmp_path / "r.json")]) == 3


def test_export_junit_round_trips(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    main(["ingest", str(DATA / "junit" / "surefire-flaky.xml"), "-o", str(results), "-q"])
    xml = tmp_path / "out.xml"
    assert main(["export", "--junit", str(results), "-o", str(xml)]) == 0
    again = tmp_path / "again.json"
    main(["ingest", str(xml), "-o", str(again), "-q"])
    first, second = json.loads(results.read_text()), json.loads(again.read_text())
    assert first["summary"] == second["summary"]
    assert [(t["name"], t["outcome"], t["retries"], t["flaky"]) for t in first["tests"]] == [
        (t["name"], t["outcome"], t["retries"], t["flaky"]) for t in second["tests"]
    ]


def test_export_rejects_a_non_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "x.json"
    other.write_text('{"a": 1}')
    assert main(["export", "--junit", str(other)]) == 3
    assert "not a ci-fanout results.json" in capsys.readouterr().err
