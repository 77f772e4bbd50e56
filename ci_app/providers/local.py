"""Local provider: shards run as subprocesses on this machine; results are "posted" as files.

The embedded default behind ``make demo`` and for a small team with one box. One runner,
``local`` (or one per name in the ``runners`` setting: the runner processes of ``make demo``,
which register with the app like any runner), whose labels come from the local probe
(``runner_probe.detect`` + ``ci_app.model.labels.derive_labels``) when available, else from
the ``labels`` setting.
The forge side writes the sticky comment to ``<out>/comment-<number>-<kind>.md`` (rewritten in
place), check runs to ``check-run-<name>.json``, statuses to ``statuses.jsonl`` and images as files.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.errors import ConfigError, ProviderError
from ci_app.providers import budget
from ci_app.providers.base import (
    DEFAULT_KIND,
    CheckRunPayload,
    CheckRunRef,
    CommentRef,
    CommitStatus,
    DispatchRequest,
    DispatchResult,
    ImageRef,
    JobInfo,
    JobState,
    Provider,
    RunnerInfo,
)
from ci_app.providers.download import safe_name

log = logging.getLogger(__name__)

NAME = "local"
RUNNER_ID = "local"


def probe_labels() -> frozenset[str] | None:
    """Labels of this machine from the local probe, or ``None`` if the probe is unavailable."""
    try:
        from ci_app.model.labels import derive_labels
        from runner_probe.detect import detect
    except ImportError:
        return None
    try:
        return frozenset(derive_labels(detect()))
    except Exception:  # a probe failure must not break the demo; config labels apply then
        log.warning("local probe failed; using configured labels", exc_info=True)
        return None


class LocalProvider:
    """CI server + runner admin + forge on the local filesystem."""

    name = NAME

    def __init__(
        self,
        *,
        work_dir: Path,
        out_dir: Path,
        labels: frozenset[str] | None = None,
        use_probe: bool = True,
        runners: tuple[str, ...] = (),
    ) -> None:
        self.work_dir = work_dir.resolve()  # absolute: file URIs and subprocess cwd
        self.out_dir = out_dir.resolve()
        self._configured = labels
        self._use_probe = use_probe
        self._labels: set[str] | None = None
        #: named runners of this machine, each with its own label set (synced by the app)
        self._runners = runners
        self._runner_labels: dict[str, set[str]] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    # -- runner admin ------------------------------------------------------------------------
    def _current_labels(self) -> set[str]:
        if self._labels is None:
            found = probe_labels() if self._use_probe else None
            self._labels = set(found if found is not None else (self._configured or ()))
        return self._labels

    def _labels_of(self, runner_id: str) -> set[str]:
        if runner_id == RUNNER_ID and not self._runners:
            return self._current_labels()
        if runner_id not in self._runners:
            raise ProviderError(
                f"no runner {runner_id!r}", provider=NAME, operation="labels", status=404
            )
        return self._runner_labels.setdefault(runner_id, set(self._current_labels()))

    def list_runners(self) -> list[RunnerInfo]:
        busy = any(p.poll() is None for p in self._procs.values())
        if self._runners:
            return [
                RunnerInfo(id=n, name=n, labels=frozenset(self._labels_of(n)), busy=busy)
                for n in self._runners
            ]
        return [
            RunnerInfo(
                id=RUNNER_ID,
                name=os.uname().nodename if hasattr(os, "uname") else RUNNER_ID,
                labels=frozenset(self._current_labels()),
                busy=busy,
            )
        ]

    def add_label(self, runner_id: str, label: str) -> None:
        self._labels_of(runner_id).add(label)

    def remove_label(self, runner_id: str, label: str) -> None:
        self._labels_of(runner_id).discard(label)

    # -- CI server ---------------------------------------------------------------------------
    def dispatch(self, request: DispatchRequest) -> DispatchResult:
        """Run ``request.target`` (a command line; ``{python}`` = this interpreter) in
        ``<work>/<run id>/`` with the inputs as ``CI_FANOUT_*`` environment variables; files the
        shard writes under ``$CI_FANOUT_ARTIFACTS`` are its artifacts."""
        if not request.target:
            raise ConfigError("local: dispatch needs the shard command (target)")
        run_id = f"{safe_name(request.shard_id, 'shard')}-{time.time_ns()}"
        run_dir = self.work_dir / run_id
        artifacts = run_dir / "artifacts"
        artifacts.mkdir(parents=True)
        argv = [sys.executable if a == "{python}" else a for a in shlex.split(request.target)]
        env = dict(os.environ)
        env.update(
            {
                "CI_FANOUT_SHARD": request.shard_id,
                "CI_FANOUT_REF": request.ref,
                "CI_FANOUT_ARTIFACTS": str(artifacts),
                **{
                    f"CI_FANOUT_INPUT_{k.upper().replace('-', '_')}": str(v)
                    for k, v in request.inputs.items()
                },
            }
        )
        log_path = run_dir / "log.txt"
        try:
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(
                    argv, cwd=run_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT
                )
        except OSError as exc:
            raise ProviderError(
                f"cannot start {argv[0]!r}: {exc}", provider=NAME, operation="dispatch"
            ) from exc
        with self._lock:
            self._procs[run_id] = proc
        (run_dir / "shard.json").write_text(
            json.dumps({"shard": request.shard_id, "ref": request.ref, "argv": argv}), "utf-8"
        )
        return DispatchResult(run_id=run_id, url=log_path.as_uri())

    def _proc(self, run_id: str) -> subprocess.Popen[bytes]:
        with self._lock:
            proc = self._procs.get(run_id)
        if proc is None:
            raise ProviderError(
                f"no local run {run_id!r}", provider=NAME, operation="run", status=404
            )
        return proc

    def list_jobs(self, run_id: str) -> list[JobInfo]:
        code = self._proc(run_id).poll()
        if code is None:
            state = JobState.RUNNING
        elif code == 0:
            state = JobState.SUCCESS
        elif code < 0:
            state = JobState.CANCELLED
        else:
            state = JobState.FAILURE
        shard = json.loads((self.work_dir / run_id / "shard.json").read_text("utf-8"))["shard"]
        return [
            JobInfo(
                id=run_id,
                name=shard,
                state=state,
                url=(self.work_dir / run_id / "log.txt").as_uri(),
                runner=RUNNER_ID,
                labels=tuple(sorted(self._current_labels())),
            )
        ]

    def wait(self, run_id: str, timeout: float | None = None) -> JobState:
        self._proc(run_id).wait(timeout)
        return self.list_jobs(run_id)[0].state

    def fetch_artifacts(
        self, run_id: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS
    ) -> list[Path]:
        source = self.work_dir / run_id / "artifacts"
        if not source.is_dir():
            raise ProviderError(
                f"no local run {run_id!r}", provider=NAME, operation="artifacts", status=404
            )
        saved = []
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            if path.stat().st_size > limits.max_file_bytes:
                log.warning("artifact %s skipped: over the size cap", path)
                continue
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            saved.append(target)
        return saved

    def cancel(self, run_id: str) -> None:
        proc = self._proc(run_id)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- forge (files) -----------------------------------------------------------------------
    def upsert_comment(self, number: int, body: str, *, kind: str = DEFAULT_KIND) -> CommentRef:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"comment-{number}-{safe_name(kind)}.md"
        created = not path.exists()
        path.write_text(budget.ensure_marker(body, kind), encoding="utf-8")
        return CommentRef(id=path.name, url=path.as_uri(), created=created)

    def publish_check_run(self, payload: CheckRunPayload) -> CheckRunRef:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"check-run-{safe_name(payload.name)}.json"
        data: dict[str, Any] = asdict(payload)
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return CheckRunRef(
            id=path.name, url=path.as_uri(), requests=1, annotations_sent=len(payload.annotations)
        )

    def set_commit_status(self, status: CommitStatus) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / "statuses.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(status), default=str) + "\n")

    def upload_image(self, filename: str, data: bytes) -> ImageRef | None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / safe_name(filename, "chart.png")
        path.write_bytes(data)
        return ImageRef(url=path.name, markdown=f"![{path.stem}]({path.name})")


def from_settings(settings: Mapping[str, str]) -> Provider:
    """Settings: ``work_dir`` (default ``.ci-fanout/local``), ``out_dir`` (default ``out``),
    ``labels`` (space/comma separated; used when the probe is unavailable or ``probe=0``),
    ``runners`` (space/comma separated runner names; default one runner, ``local``)."""
    raw = settings.get("labels", "").replace(",", " ").split()
    names = tuple(dict.fromkeys(settings.get("runners", "").replace(",", " ").split()))
    provider = LocalProvider(
        work_dir=Path(settings.get("work_dir") or ".ci-fanout/local"),
        out_dir=Path(settings.get("out_dir") or "out"),
        labels=frozenset(raw) if raw else None,
        use_probe=settings.get("probe", "1") not in ("0", "false", "no"),
        runners=names,
    )
    return Provider(name=NAME, forge=provider, ci=provider, runners=provider)
