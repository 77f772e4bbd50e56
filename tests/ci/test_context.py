"""A run's identity, as its results carry it: one builder (RunInfo.of) for every source."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ci_app.ci.context import CiContext
from ci_app.model.results import RunInfo
from ci_app.reporting.data import RunMeta

#: the identity every source knows
EXPECTED = RunInfo(
    run_id="1234",
    repo="acme/widgets",
    provider="github",
    pipeline_id="99",
    commit="c0ffee",
    branch="feature/x",
    base_commit="bada55",
    pr=7,
)


def test_a_ci_step_context_carries_its_runner_and_job(tmp_path: Path) -> None:
    ctx = CiContext(
        provider="github",
        run_id="1234",
        root=tmp_path,
        repo="acme/widgets",
        pipeline_id="99",
        commit="c0ffee",
        branch="feature/x",
        base_branch="main",
        base_commit="bada55",
        pr=7,
        job_url="https://ci/job/1",
        runner_name="lab-01",
    )
    assert ctx.run_info("gpu-1", ["gpu", "x64"]) == replace(
        EXPECTED,
        shard_id="gpu-1",
        job_url="https://ci/job/1",
        runner_name="lab-01",
        runner_labels=("gpu", "x64"),
    )


def test_a_stored_run_carries_its_identity_only() -> None:
    meta = RunMeta(
        run_id="1234",
        seq=3,
        repo="acme/widgets",
        provider="github",
        pipeline_id="99",
        commit="c0ffee",
        branch="feature/x",
        base_commit="bada55",
        pr=7,
        started_at="2026-01-01T00:00:00",
    )
    assert RunInfo.of(meta, shard_id="queue-recovered") == replace(
        EXPECTED, shard_id="queue-recovered"
    )
    assert RunInfo.of(meta) == EXPECTED  # no shard; the run's start is not the shard's
