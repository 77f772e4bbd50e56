"""The CI steps on a project with browser tests: plan routes them by their hw labels, the shard
step merges the pool's record into results.json, the report shows the Browser section."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from ci_app.ci import run_step
from ci_app.ciout import CiOutput
from tests.ci.test_steps import _github_env, _outputs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUITE = """
import os
from pathlib import Path

import pytest

STATE = Path(os.environ["SUITE_STATE"])


@pytest.mark.hw("webgpu-sw")
def test_gflops(browser_page, record_metric):
    assert browser_page.evaluate("async () => !!(await navigator.gpu.requestAdapter())")
    record_metric("gflops", 3.5, unit="GFLOP/s", higher_is_better=True)


@pytest.mark.hw("webgpu-sw")
def test_survives_a_crash(browser_page, browser_pool):
    marker = STATE / "crashed"
    if not marker.exists():
        marker.write_text("1")
        browser_pool.kill_renderer(browser_page)
    assert browser_page.evaluate("() => 2 + 2") == 4


@pytest.mark.hw("webgpu")
def test_needs_hardware(browser_page):
    raise AssertionError("never planned on a software-only runner")


def test_plain():
    assert True
"""


def test_plan_shard_report_with_browser_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_b.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "runners.json").write_text(
        json.dumps([{"name": "lab", "labels": ["self-hosted", "x64", "webgpu-sw"]}])
    )
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("SUITE_STATE", str(tmp_path / "state"))
    env = _github_env(
        tmp_path,
        CI_FANOUT_COLLECT="tests",
        CI_FANOUT_RUNNERS="runners.json",
        CI_FANOUT_TEST_COMMAND=f"{sys.executable} -m pytest -q",
        CI_FANOUT_PUBLISH="none",
    )
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    include = json.loads(_outputs(tmp_path / "github_output")["matrix"])["include"]
    assert [tuple(e["runs_on"]) for e in include] == [("self-hosted", "webgpu-sw", "x64")]
    (entry,) = include
    shard_env = {**env, "CI_FANOUT_SHARD": entry["shard"]}
    (tmp_path / "github_output").write_text("")
    assert run_step("shard", shard_env, io=CiOutput(shard_env, stream=log)) == 0, log.getvalue()
    results_path = Path(_outputs(tmp_path / "github_output")["report-json"])
    results = json.loads(results_path.read_text())
    outcomes = {t["name"]: (t["outcome"], t["flaky"]) for t in results["tests"]}
    assert outcomes == {
        "test_gflops": ("passed", False),
        "test_survives_a_crash": ("passed", False),
        "test_plain": ("passed", False),
    }
    metrics = {m["name"]: m for m in results["metrics"]}
    sw = "browser/google-swiftshader-fallback"
    gflops = metrics[f"{sw}/gflops/tests/test_b.py::test_gflops"]
    assert gflops["value"] == 3.5 and gflops["direction"] == "higher"
    assert f"{sw}/infra.renderer-crash/tests/test_b.py::test_survives_a_crash" in metrics
    dest = tmp_path / "ci-fanout" / "results" / f"ci-fanout-results-{entry['shard']}"
    dest.mkdir(parents=True)
    (dest / "results.json").write_text(results_path.read_text())
    (tmp_path / "github_output").write_text("")
    run_step("report", env, io=CiOutput(env, stream=log))
    comment = (tmp_path / "ci-fanout" / "report" / "comment.md").read_text()
    assert "### 🌐 Browser tests per WebGPU adapter" in comment
    assert "| `google-swiftshader-fallback` | Chromium " in comment
    assert "`gflops` (higher is better)" in comment
    assert "`tests/test_b.py::test_survives_a_crash` on `google-swiftshader-fallback`" in comment
    assert "Flaky" not in comment
    # the hardware test was never planned on the software-only runner
    assert "`tests/test_b.py::test_needs_hardware` — no runner with `webgpu`" in comment
