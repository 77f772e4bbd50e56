"""The pytest plugin, ``ci-app plan`` and ``ci-app shard run`` end to end (subprocesses, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ci_app.cli import main
from ci_app.matrix import queue_api
from ci_app.matrix.queue import QueueConfig

from .conftest import DURATIONS, QueueServer

SUITE = """
import os, pytest

LOG = os.environ["RUN_LOG"]

@pytest.fixture(scope="session")
def expensive():
    with open(LOG + ".setup", "a") as f:
        f.write("x\\n")
    yield

def _log(request):
    with open(LOG, "a") as f:
        f.write(request.node.nodeid + "\\n")

@pytest.mark.parametrize("i", range(12))
def test_cpu(i, expensive, request):
    _log(request)

@pytest.mark.hw("gpu-nvidia", "gpu-mem>=20g")
def test_gpu(expensive, request):
    _log(request)

@pytest.mark.xdist_group("db")
def test_db_a(request):
    _log(request)

@pytest.mark.xdist_group(name="db")
def test_db_b(request):
    _log(request)

@pytest.mark.dependency(depends=["test_db_a"])
def test_after(request):
    _log(request)
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    dependency: pytest-dependency\n")
    return tmp_path


def pytest_run(suite: Path, *args: str, log: str = "run.log") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=suite,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "RUN_LOG": str(suite / log)},
        timeout=120,
        check=False,
    )


def ran(suite: Path, log: str = "run.log") -> list[str]:
    p = suite / log
    return p.read_text().split() if p.exists() else []


def test_inventory_reads_markers(suite: Path) -> None:
    r = pytest_run(suite, "--collect-only", "--fanout-inventory", "inv.json")
    assert r.returncode == 0, r.stdout + r.stderr
    inv = {t["id"]: t for t in json.loads((suite / "inv.json").read_text())["tests"]}
    assert len(inv) == 16
    assert inv["test_suite.py::test_gpu"]["requirements"] == ["gpu-nvidia", "gpu-mem>=20g"]
    assert (
        inv["test_suite.py::test_db_a"]["group"] == inv["test_suite.py::test_db_b"]["group"] == "db"
    )
    assert inv["test_suite.py::test_after"]["depends_on"] == ["test_suite.py::test_db_a"]
    assert ran(suite) == []


def test_plugin_is_inert_without_options(suite: Path) -> None:
    r = pytest_run(suite)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(ran(suite)) == 16 and "ci-fanout" not in r.stdout


def _plan(suite: Path, mode: str, shards: int = 2) -> Any:
    assert (
        main(
            [
                "plan",
                "--inventory",
                str(suite / "inv.json"),
                "--shards",
                str(shards),
                "--mode",
                mode,
                "--output",
                str(suite / "m.json"),
            ]
        )
        == 0
    )
    return json.loads((suite / "m.json").read_text())


def test_plan_collect_and_static_shard_selection(
    suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(suite)
    monkeypatch.setenv("RUN_LOG", str(suite / "collect.log"))
    assert main(["plan", "--collect", str(suite), "--shards", "2", "--output", "m.json"]) == 0
    m = json.loads((suite / "m.json").read_text())
    pools = {s["pool"] for s in m["shards"]}
    assert pools == {"cpu", "gpu"}  # the hw marker put test_gpu in its own pool
    seen: list[str] = []
    for i, shard in enumerate(m["shards"]):
        log = f"s{i}.log"
        r = pytest_run(suite, "--fanout-matrix", "m.json", "--fanout-shard", shard["id"], log=log)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ran(suite, log) == shard["tests"]  # exactly the slice, in planned order
        seen += ran(suite, log)
    assert sorted(seen) == sorted({t for s in m["shards"] for t in s["tests"]})
    assert len(seen) == 16
    r = pytest_run(suite, "--fanout-matrix", "m.json", "--fanout-shard", "nope")
    assert r.returncode != 0 and "no shard 'nope'" in r.stdout + r.stderr


def test_queue_mode_in_one_session(suite: Path, queue_server: QueueServer) -> None:
    assert pytest_run(suite, "--collect-only", "--fanout-inventory", "inv.json").returncode == 0
    assert (
        main(
            [
                "plan",
                "--inventory",
                str(suite / "inv.json"),
                "--shards",
                "2",
                "--mode",
                "queue",
                "--output",
                str(suite / "m.json"),
            ]
        )
        == 0
    )
    matrix = json.loads((suite / "m.json").read_text())
    queue_api.handle_create(
        queue_server.state, "run1", matrix, time.time(), QueueConfig(pull_overhead_s=0.01)
    )
    url = queue_server.url("run1")
    # r0 is a GPU runner (serves the gpu pool first, then helps with cpu); r1 is CPU-only
    pool_labels = [
        next(p["runs_on"] for p in matrix["pools"] if p["key"] == "gpu"),
        next(p["runs_on"] for p in matrix["pools"] if p["key"] == "cpu"),
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--fanout-queue",
                url,
                "--fanout-runner",
                f"r{i}",
            ],
            cwd=suite,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **__import__("os").environ,
                "RUN_LOG": str(suite / "q.log"),
                "CI_FANOUT_LABELS": ",".join(labels),
            },
        )
        for i, labels in enumerate(pool_labels)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = ran(suite, "q.log")
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 16  # each test exactly once
    results = queue_server.state.results("run1")
    assert len(results) == 16 and {r.outcome for r in results.values()} == {"passed"}
    leases = [b for a, b in queue_server.requests if a == "lease"]
    assert {b["runner"] for b in leases} == {"r0", "r1"}
    gpu_lease = next(
        b
        for a, b in queue_server.requests
        if a == "complete" and any(r["id"] == "test_suite.py::test_gpu" for r in b["results"])
    )
    assert gpu_lease["lease_id"].startswith("run1/gpu/")
    # session fixture set up once per pytest process, not once per batch
    assert len((suite / "q.log.setup").read_text().split()) <= 2
    assert queue_api.handle_progress(queue_server.state, "run1")["done"] is True


def test_queue_unreachable_falls_back_to_static_slice(suite: Path, dead_url: str) -> None:
    assert pytest_run(suite, "--collect-only", "--fanout-inventory", "inv.json").returncode == 0
    m = _plan(suite, "queue")
    shard = m["shards"][0]
    r = pytest_run(
        suite,
        "--fanout-queue",
        dead_url,
        "--fanout-matrix",
        "m.json",
        "--fanout-shard",
        shard["id"],
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running the static slice instead" in r.stdout
    assert ran(suite) == shard["tests"]


def test_shard_run_pulls_batches_and_falls_back(
    suite: Path, queue_server: QueueServer, dead_url: str
) -> None:
    assert pytest_run(suite, "--collect-only", "--fanout-inventory", "inv.json").returncode == 0
    m = _plan(suite, "queue")
    queue_api.handle_create(queue_server.state, "run2", m, time.time())
    out = suite / "cmd.log"
    cmd = [
        sys.executable,
        "-c",
        f"import sys; open({str(out)!r}, 'a').write('\\n'.join(sys.argv[1:]) + '\\n')",
        "{tests}",
    ]
    rc = main(
        [
            "shard",
            "run",
            "--queue",
            queue_server.url("run2"),
            "--labels",
            ",".join(m["pools"][-1]["runs_on"]) + ",self-hosted",
            "--",
            *cmd,
        ]
    )
    assert rc == 0
    lines = out.read_text().split()
    assert len(lines) == 16 and len(set(lines)) == 16
    out.unlink()
    shard = m["shards"][0]
    rc = main(
        [
            "shard",
            "run",
            "--queue",
            dead_url,
            "--matrix",
            str(suite / "m.json"),
            "--shard",
            shard["id"],
            "--",
            *cmd,
        ]
    )
    assert rc == 0
    assert out.read_text().split() == shard["tests"]


def test_plan_simulate_prints_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    pair = json.loads((DURATIONS / "conda-linux-pair.json").read_text())
    hist = {"durations": pair["versions"][0]["durations"]}
    actual = {"durations": pair["versions"][1]["durations"]}
    tmp = Path(__import__("tempfile").mkdtemp())
    (tmp / "h.json").write_text(json.dumps(hist))
    (tmp / "a.json").write_text(json.dumps(actual))
    ratios = {}
    for mode in ("static", "queue"):
        assert (
            main(
                [
                    "plan",
                    "--durations",
                    str(tmp / "h.json"),
                    "--shards",
                    "8",
                    "--simulate",
                    str(tmp / "a.json"),
                    "--mode",
                    mode,
                ]
            )
            == 0
        )
        last = capsys.readouterr().out.strip().splitlines()[-1]
        doc = json.loads(last)
        assert set(doc) == {"makespan_s", "lower_bound_s", "ratio"}
        assert doc["ratio"] >= 1.0
        ratios[mode] = doc["ratio"]
    assert ratios["queue"] <= ratios["static"]
    assert (
        main(
            [
                "plan",
                "--durations",
                str(tmp / "h.json"),
                "--shards",
                "8",
                "--simulate",
                str(tmp / "a.json"),
                "--noise",
                "0.3",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ratio"] >= 1.0
    assert main(["plan", "--simulate", str(tmp / "a.json")]) == 2  # needs --durations


def test_plan_reads_junit_durations(tmp_path: Path) -> None:
    (tmp_path / "report.xml").write_text(
        '<testsuite name="s" tests="3">'
        '<testcase classname="tests.test_a" name="test_slow" file="tests/test_a.py" time="30"/>'
        '<testcase classname="tests.test_a" name="test_mid" file="tests/test_a.py" time="20"/>'
        '<testcase classname="tests.test_a" name="test_fast" file="tests/test_a.py" time="10"/>'
        "</testsuite>"
    )
    from ci_app.commands.plan import load_history

    hist = load_history([str(tmp_path / "report.xml")])
    (known,) = hist.by_class.values()
    assert sorted(known.values()) == [10.0, 20.0, 30.0]
    ids = sorted(known, key=known.__getitem__)
    (tmp_path / "tests.txt").write_text("\n".join(ids))
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "plan",
                "--durations",
                str(tmp_path / "report.xml"),
                "--tests",
                str(tmp_path / "tests.txt"),
                "--shards",
                "2",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    shards = json.loads(out.read_text())["shards"]
    assert sorted(s["expected_seconds"] for s in shards) == [30.0, 30.0]
