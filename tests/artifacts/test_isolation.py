"""One bad input never costs good data (issue 14 item 3).

Each damaged member, document or file becomes one error entry; the good inputs
beside it (even in the same zip) are kept; the output file is always valid JSON
and is replaced atomically; non-regular files are refused instead of hanging.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ci_app.artifacts import ingest as ingest_module
from ci_app.artifacts.resultset import iter_result_members
from ci_app.cli import main
from ci_app.store import open_store

from .hostile import DAMAGE, GOOD_XML, OTHER_XML, damaged_zip, deep_json, results_json


def _ingest(tmp_path: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out = tmp_path / "results.json"
    assert main(["ingest", *map(str, inputs), "-o", str(out), "-q", *extra]) == 0
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))  # always valid JSON
    return doc


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_zip_member_is_one_error_entry(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(damaged_zip(kind, ("first.xml", GOOD_XML), ("second.xml", GOOD_XML * 1)))
    doc = _ingest(tmp_path, good, bad)
    by_path = {Path(f["path"]).name: f for f in doc["files"]}
    assert by_path["good.xml"]["error"] is None
    assert by_path["bad.zip!first.xml"]["error"] is None  # the good member of the bad zip
    second = by_path["bad.zip!second.xml"]
    assert second["error"] is not None and DAMAGE[kind][1] in second["error"]
    assert second["summary"]["tests"] == 0  # nothing read from damaged bytes
    assert doc["summary"]["tests"] == 3  # 1 from good.xml + 2 from first.xml


@pytest.mark.parametrize("key", ["passes", "stats"])
def test_json_nested_100k_deep_is_an_error_entry(tmp_path: Path, key: str) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    deep = tmp_path / "deep.json"
    deep.write_bytes(deep_json(100_000, key))
    doc = _ingest(tmp_path, good, deep)
    errors = {Path(f["path"]).name: f["error"] for f in doc["files"]}
    assert errors["good.xml"] is None
    assert errors["deep.json"] is not None
    assert "nested" in errors["deep.json"] or "not a known" in errors["deep.json"]
    assert doc["summary"]["tests"] == 1


def test_a_bare_deep_json_line_is_an_error_entry(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    doc = _ingest(tmp_path, deep, good)
    assert doc["summary"]["tests"] == 1
    assert [f["error"] is None for f in doc["files"]] == [False, True]


def test_deep_xml_is_an_error_entry(tmp_path: Path) -> None:
    deep = tmp_path / "deep.xml"
    deep.write_bytes(
        b"<testsuites>" + b"<testsuite>" * 50_000 + b"</testsuite>" * 50_000 + b"</testsuites>"
    )
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    doc = _ingest(tmp_path, deep, good)
    errors = {Path(f["path"]).name: f["error"] for f in doc["files"]}
    assert errors["good.xml"] is None
    assert errors["deep.xml"] is not None and "depth" in errors["deep.xml"].lower()


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(_ingest(tmp_path, fifo, good)))
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader so the test process can end
        with fifo.open("wb"):
            pass
        worker.join(5)
        pytest.fail("ingest blocked on a FIFO")
    errors = {Path(f["path"]).name: f["error"] for f in result["files"]}
    assert "not a regular file" in (errors["pipe.xml"] or "")
    assert result["summary"]["tests"] == 1


def test_device_files_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    doc = _ingest(tmp_path, Path("/dev/zero"), good)
    assert "not a regular file" in doc["files"][0]["error"]
    assert doc["summary"]["tests"] == 1


def test_output_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(OTHER_XML)
    out = tmp_path / "results.json"
    out.write_text('{"old": true}\n', encoding="utf-8")
    real = ingest_module.ingest_to_json

    def dies_half_way(paths: Any, stream: Any, **kw: Any) -> Any:
        stream.write('{"$schema": "half a document')
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr("ci_app.commands.ingest.ingest_to_json", dies_half_way)
    assert main(["ingest", str(good), "-o", str(out), "-q"]) == 130
    assert json.loads(out.read_text(encoding="utf-8")) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.xml", "results.json"]
    monkeypatch.setattr("ci_app.commands.ingest.ingest_to_json", real)
    assert main(["ingest", str(good), "-o", str(out), "-q"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["summary"]["tests"] == 1


def test_ingest_db_stores_in_batches_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ci_app.store import database, ingest

    report = tmp_path / "many.xml"
    cases = "".join(f'<testcase classname="c" name="t{i}"/>' for i in range(10_000))
    report.write_text(f'<testsuite name="s" tests="10000">{cases}</testsuite>', encoding="utf-8")
    appended: list[int] = []
    real_insert = database.insert_csv

    def spy(con: Any, table: str, path: str, *args: Any, **kwargs: Any) -> None:
        if table == "test_results":
            appended.append(len(Path(path).read_text(encoding="utf-8").splitlines()))
        real_insert(con, table, path, *args, **kwargs)

    monkeypatch.setattr(ingest, "insert_csv", spy)
    monkeypatch.setattr(ingest.ShardWriter.__init__, "__defaults__", (300, 4 << 20))
    dbfile = tmp_path / "h.duckdb"
    args = ["ingest", str(report), "--db", str(dbfile), "--run-id", "r1", "--shard-id", "s1", "-q"]
    assert main(args) == 0
    assert len(appended) >= 3 and max(appended) <= 4096  # never the whole file at once
    assert main(args) == 0  # the same shard again stores nothing
    with open_store(str(dbfile)) as store:
        rows = store.results.cases(["r1"], details=False)
        assert len(rows.test_id) == 10_000
        meta = store.results.run("r1")
        assert meta is not None


def test_rows_of_a_shard_that_died_mid_ingest_are_replaced(tmp_path: Path) -> None:
    from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase

    run = RunInfo(run_id="r1", shard_id="s1")
    cases = [TestCase(id=f"t{i}", name=f"t{i}", outcome=Outcome.PASSED) for i in range(10)]
    with open_store(str(tmp_path / "h.duckdb")) as store:
        died = store.results.shard_writer(run)
        died.add(cases[:5])
        died._flush()  # rows are in, but no shard row: the process died here
        assert store.results.ingest_stream(ResultSet(run=run), [cases[:6], cases[6:]]) == 10
        assert len(store.results.cases(["r1"], details=False).test_id) == 10


def test_result_members_of_a_zip_are_isolated(tmp_path: Path) -> None:
    artifact = tmp_path / "shards.zip"
    artifact.write_bytes(
        damaged_zip(
            "bad-crc",
            ("s1/results.json", results_json("r", "s1", ["a", "b"])),
            ("s2/results.json", results_json("r", "s2", ["c"]) * 1),
        )
    )
    deep = tmp_path / "deep" / "results.json"
    deep.parent.mkdir()
    deep.write_bytes(
        b'{"version": "ci-fanout/results/v1", "run": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    shaped = tmp_path / "shaped" / "results.json"
    shaped.parent.mkdir()
    doc = json.loads(results_json("r", "s3", ["d"]))
    doc["tests"][0]["name"] = {"nested": [1, 2]}
    shaped.write_text(json.dumps(doc), encoding="utf-8")
    members = list(iter_result_members([artifact, deep, shaped]))
    assert [m.path.rsplit("!", 1)[-1] for m in members[:2]] == [
        "s1/results.json",
        "s2/results.json",
    ]
    good, crc, nested, wrong = members
    assert good.error is None and [c.id for c in good.cases()] == ["a", "b"]
    assert good.head is not None and good.head.run.shard_id == "s1"
    assert crc.error is not None and "CRC" in crc.error
    assert nested.error is not None and "nested" in nested.error
    assert wrong.error is not None and "name must be a string" in wrong.error


def test_a_large_results_member_is_streamed(tmp_path: Path) -> None:
    import tracemalloc

    from .hostile import zip_bytes

    ids = [f"tests/test_{i}.py::test_{i}" for i in range(100_000)]
    artifact = tmp_path / "big.zip"
    artifact.write_bytes(zip_bytes([("results.json", results_json("r", "s", ids))]))
    (member,) = iter_result_members([artifact])
    tracemalloc.start()
    count = 0
    for batch in member.batches(1000):
        count += len(batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 100_000 and member.tests == 100_000
    assert peak < 8 * 1024 * 1024  # one batch, not the 10 MB document or 100k cases


def test_a_huge_declared_skip_count_is_capped(tmp_path: Path) -> None:
    # found by the native/reference differential fuzz: a claimed count is not a test list
    report = tmp_path / "claims.xml"
    report.write_text(
        '<testsuites><testsuite name="s" tests="1000000000" skipped="1000000000">'
        '<testcase classname="c" name="t"><skipped/></testcase></testsuite></testsuites>',
        encoding="utf-8",
    )
    doc = _ingest(tmp_path, report)
    assert doc["summary"]["tests"] == 1001
    assert "1,000 are counted" in doc["files"][0]["warnings"][0]
