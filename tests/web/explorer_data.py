"""A store with what the test explorer must show: twelve main-branch runs on two runner
classes (a GPU box and an AVX-512 box), then a pull request run with a new failure, a flaky
test, a hardware-specific failure, a slowed test, a not-run and a lost test, and a test id
built to break HTML and URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_app.model.results import LOST_SHARD, NOT_RUN_SHARD, SCHEMA_VERSION, ResultSet
from ci_app.store import Store

REPO = "octo/app"
GPU = ("x64", "gpu", "gpu-nvidia", "gpu-mem-ge-24g", "gpu-model-rtx-4090", "mem-ge-64g")
CPU = ("x64", "cpu-avx2", "cpu-avx512", "mem-ge-16g", "cpus-ge-8")
PASSING = [f"tests/test_m.py::t{k}" for k in range(6)]
FLAKY = "tests/test_m.py::flaky"
GPU_ONLY = "tests/test_g.py::gpu_only"
SLOW = "tests/test_m.py::slow"
NEW_FAIL = "tests/test_m.py::t1"
NOT_RUN = "tests/test_g.py::needs_h100"
LOST = "tests/test_m.py::lost_one"
#: hostile: markup, a path that browsers would normalise, query and fragment characters
EVIL = "tests/evil.py::test_x[<script>alert(1)</script>/../../a?b=1#c %2F 'q\"]"
MAIN_RUNS = 12
PR_RUN = "pr-9"
OOM = "RuntimeError: CUDA error: out of memory\nTried to allocate 2.00 GiB"


def _case(test_id: str, outcome: str, duration: float = 0.05, **kw: Any) -> dict[str, Any]:
    return {
        "id": test_id,
        "name": test_id.rsplit("::", 1)[-1],
        "outcome": outcome,
        "duration_s": duration,
        "file": test_id.split("::", 1)[0],
        **kw,
    }


def _doc(
    run_id: str,
    shard: str,
    labels: tuple[str, ...],
    tests: list[dict[str, Any]],
    *,
    branch: str,
    commit: str,
    pr: int | None = None,
    base_commit: str | None = None,
    runner: str | None = None,
    job_url: str | None = None,
) -> ResultSet:
    return ResultSet.from_dict(
        {
            "version": SCHEMA_VERSION,
            "run": {
                "run_id": run_id,
                "shard_id": shard,
                "repo": REPO,
                "provider": "github",
                "commit": commit,
                "branch": branch,
                "pr": pr,
                "base_commit": base_commit,
                "runner": {"name": runner, "labels": list(labels)},
                "job_url": job_url,
            },
            "tests": tests,
            "tool": "pytest",
        }
    )


def main_commit(i: int) -> str:
    return f"{i:02d}aa" + "0" * 36


@dataclass(frozen=True)
class Explorer:
    pr_run: str = PR_RUN
    base_run: str = f"main-{MAIN_RUNS - 1}"


def populate_explorer(store: Store) -> Explorer:
    for i in range(MAIN_RUNS):
        run, commit = f"main-{i}", main_commit(i)
        cpu = [_case(t, "passed") for t in PASSING]
        # flaky: isolated failures at runs 3 and 7 (the GPU box passed at those commits),
        # and a pass after a retry at run 9
        if i in (3, 7):
            cpu.append(_case(FLAKY, "failed", message="AssertionError: timing"))
        else:
            cpu.append(_case(FLAKY, "passed", retries=1 if i == 9 else 0, flaky=i == 9))
        cpu.append(_case(SLOW, "passed", 1.0 if i < 6 else 2.0))
        cpu.append(_case(EVIL, "passed"))
        cpu.append(_case(GPU_ONLY, "passed"))
        gpu = [_case(t, "passed") for t in PASSING[:2]]
        gpu.append(_case(FLAKY, "passed"))
        gpu.append(
            _case(GPU_ONLY, "failed", message=OOM, line=42) if i >= 8 else _case(GPU_ONLY, "passed")
        )
        store.results.ingest(
            _doc(run, "cpu", CPU, cpu, branch="main", commit=commit, runner="cpu-box")
        )
        store.results.ingest(
            _doc(run, "gpu", GPU, gpu, branch="main", commit=commit, runner="gpu-box")
        )
    base = main_commit(MAIN_RUNS - 1)
    head = "feedbeef" + "0" * 32
    pr: dict[str, Any] = {"branch": "feature/x", "commit": head, "pr": 9, "base_commit": base}
    cpu = [_case(t, "passed") for t in PASSING if t != NEW_FAIL]
    cpu.append(
        _case(
            NEW_FAIL,
            "failed",
            message="AssertionError: assert 2 == 3\n  where 2 = add(1, 1)",
            line=17,
        )
    )
    cpu.append(_case(FLAKY, "passed", retries=1, flaky=True))
    cpu.append(_case(SLOW, "passed", 3.5))
    cpu.append(_case(EVIL, "failed", message="<b>bold</b> @team #1 [x](javascript:alert(1))"))
    cpu.append(_case(GPU_ONLY, "passed"))
    gpu = [_case(PASSING[0], "passed"), _case(GPU_ONLY, "failed", message=OOM, line=42)]
    store.results.ingest(
        _doc(PR_RUN, "cpu", CPU, cpu, runner="cpu-box", job_url="javascript:alert(1)", **pr)
    )
    store.results.ingest(_doc(PR_RUN, "gpu", GPU, gpu, runner="gpu-box", **pr))
    not_run = _case(
        NOT_RUN, "skipped", 0.0, message="not run: no runner with [gpu-mem-ge-80g, gpu-nvidia]"
    )
    store.results.ingest(_doc(PR_RUN, NOT_RUN_SHARD, (), [not_run], **pr))
    lost = _case(LOST, "error", 0.0, message="lost: shard cpu-2 died (runner went away)")
    store.results.ingest(_doc(PR_RUN, LOST_SHARD, (), [lost], **pr))
    return Explorer()
