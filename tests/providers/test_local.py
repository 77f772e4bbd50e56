"""Local provider: shards as subprocesses, labels from the probe or config, forge as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_app.errors import ProviderError
from ci_app.providers import local
from ci_app.providers.base import CheckRunPayload, DispatchRequest, JobState, get_provider
from ci_app.providers.local import LocalProvider

SHARD = (
    "{python} -c \"import os, pathlib; d = pathlib.Path(os.environ['CI_FANOUT_ARTIFACTS']); "
    "(d / 'results.json').write_text(os.environ['CI_FANOUT_SHARD'] + ':' + os.environ['CI_FANOUT_INPUT_TESTS'])\""
)


def make(tmp_path: Path, **kwargs: object) -> LocalProvider:
    options: dict[str, object] = {
        "work_dir": tmp_path / "work",
        "out_dir": tmp_path / "out",
        "labels": frozenset({"x64", "cpus-ge-2"}),
        "use_probe": False,
    }
    options.update(kwargs)
    return LocalProvider(**options)  # type: ignore[arg-type]


def test_shard_runs_as_subprocess_and_leaves_artifacts(tmp_path: Path) -> None:
    provider = make(tmp_path)
    run = provider.dispatch(
        DispatchRequest(shard_id="s1", ref="main", target=SHARD, inputs={"tests": "a,b"})
    )
    assert run.run_id is not None
    assert provider.wait(run.run_id, timeout=60) is JobState.SUCCESS
    (job,) = provider.list_jobs(run.run_id)
    assert job.name == "s1" and job.labels == ("cpus-ge-2", "x64")
    (path,) = provider.fetch_artifacts(run.run_id, tmp_path / "collected")
    assert path.read_text() == "s1:a,b"


def test_failure_and_cancel_states(tmp_path: Path) -> None:
    provider = make(tmp_path)
    bad = provider.dispatch(
        DispatchRequest(shard_id="bad", ref="main", target="{python} -c 'raise SystemExit(3)'")
    )
    assert bad.run_id and provider.wait(bad.run_id, timeout=60) is JobState.FAILURE
    slow = provider.dispatch(
        DispatchRequest(
            shard_id="slow", ref="main", target="{python} -c 'import time; time.sleep(30)'"
        )
    )
    assert slow.run_id and provider.list_jobs(slow.run_id)[0].state is JobState.RUNNING
    provider.cancel(slow.run_id)
    assert provider.list_jobs(slow.run_id)[0].state is JobState.CANCELLED
    with pytest.raises(ProviderError):
        provider.list_jobs("nope")


def test_labels_from_probe_when_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "probe_labels", lambda: frozenset({"gpu", "x64"}))
    provider = make(tmp_path, use_probe=True)
    provider.add_label("local", "custom")
    provider.remove_label("local", "gpu")
    (runner,) = provider.list_runners()
    assert runner.labels == {"x64", "custom"}
    monkeypatch.setattr(local, "probe_labels", lambda: None)
    (runner,) = make(tmp_path, use_probe=True).list_runners()
    assert runner.labels == {"x64", "cpus-ge-2"}  # config fallback


def test_forge_writes_files_and_edits_comment_in_place(tmp_path: Path) -> None:
    provider = get_provider(
        "local", {"out_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "w"), "probe": "0"}
    )
    forge = provider.forge
    assert forge is not None
    assert forge.upsert_comment(1, "v1").created
    assert not forge.upsert_comment(1, "v2").created
    assert (tmp_path / "out" / "comment-1-tests.md").read_text().endswith("\nv2")
    forge.publish_check_run(CheckRunPayload(name="ci", head_sha="a", title="t", summary="s"))
    assert (tmp_path / "out" / "check-run-ci.json").exists()
    image = forge.upload_image("trend.png", b"png")
    assert image is not None and (tmp_path / "out" / "trend.png").read_bytes() == b"png"


def test_named_runners_keep_their_own_labels(tmp_path: Path) -> None:
    """``runners``: the local runner processes (make demo's local-1, local-2) are runners of
    their own, each with labels the app syncs (the probe's labels to start with)."""
    provider = get_provider(
        "local",
        {
            "out_dir": str(tmp_path / "out"),
            "work_dir": str(tmp_path / "w"),
            "probe": "0",
            "labels": "x64",
            "runners": "local-1 local-2,local-1",
        },
    )
    admin = provider.runners
    assert admin is not None
    assert [(r.id, r.name, r.labels) for r in admin.list_runners()] == [
        ("local-1", "local-1", frozenset({"x64"})),
        ("local-2", "local-2", frozenset({"x64"})),
    ]
    admin.add_label("local-1", "mem-ge-8g")
    admin.remove_label("local-2", "x64")
    assert {r.id: r.labels for r in admin.list_runners()} == {
        "local-1": {"x64", "mem-ge-8g"},
        "local-2": set(),
    }
    with pytest.raises(ProviderError):
        admin.add_label("local", "x")  # the default runner is not one of them
