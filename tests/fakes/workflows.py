"""The fakes "run" CI pipelines: local processes play the hosted runners.

:class:`GitHubWorkflow` hooks a :class:`~tests.fakes.github.FakeGitHub`: on each
``workflow_dispatch`` it runs, in a thread, what ``examples/github`` + ``action.yml`` run on
GitHub — ``ci-app ci plan`` (queue mode against the app), then one ``ci-app ci shard`` process
per matrix shard, all at once, pulling from the app's queue — stores every shard's output
directory as the run's artifact zip (``<artifact-name>-results-<shard>``, as
``actions/upload-artifact`` would) and sends signed ``workflow_job`` / ``workflow_run``
(completed) webhooks back to the app.

:class:`GitLabPipeline` does the same for a merge request on a
:class:`~tests.fakes.gitlab.FakeGitLab`: the parent pipeline's plan job, the child pipeline of
shard jobs (artifacts on the fake), then the template's report job (``ci-app ci report``, which
reads the child pipeline through the API and posts the MR note).

Both only use the real entry points (``python -m ci_app ci …``) as subprocesses, with the
environment the CI would give them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.github import FakeGitHub, FakeRun

ARTIFACT = "ci-fanout"


def github_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment: this one without CI/forge variables of the outer run."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "RUNNER_", "PYTEST_"))
        and k not in ("CI", "GITLAB_TOKEN")
    }
    base.update(extra)
    return base


@dataclass
class ShardProc:
    shard: str
    runner: str
    proc: subprocess.Popen[bytes]
    log: Path
    killed: bool = False


@dataclass
class WorkflowRun:
    """What happened in one emulated run (for assertions and failure messages)."""

    run_id: int
    pr: int | None
    sha: str
    matrix: dict[str, Any] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)  # shard -> exit code
    runner_of: dict[str, str] = field(default_factory=dict)  # shard -> runner name
    killed: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard -> results.json
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class GitHubWorkflow:
    """Emulates the dispatched ``ci.yml`` run on :class:`FakeGitHub` (see the module doc)."""

    def __init__(
        self,
        fake: FakeGitHub,
        *,
        project: Path,
        work: Path,
        repo: str,
        app_url: str,
        app_token: str,
        webhook_secret: str,
        runners: list[dict[str, Any]],
        test_command: str,
        env: Mapping[str, str] | None = None,
        kill_marker: Path | None = None,
    ) -> None:
        self.fake = fake
        self.project = project
        self.work = work
        self.repo = repo
        self.app_url = app_url
        self.app_token = app_token
        self.webhook_secret = webhook_secret
        self.runners = runners
        self.test_command = test_command
        self.env = dict(env or {})
        #: file a test writes ``<pid> <runner>`` to (atomically) when it wants its shard killed:
        #: the emulator SIGKILLs that pytest process, as a runner dying mid-batch would
        self.kill_marker = kill_marker
        self.runs: dict[int, WorkflowRun] = {}
        self.webhooks: list[tuple[str, int]] = []  # (event, HTTP status)
        fake.on_dispatch = self._on_dispatch

    # -- dispatch -------------------------------------------------------------------------
    def _on_dispatch(self, run: FakeRun, body: dict[str, Any]) -> None:
        inputs = dict(body.get("inputs") or {})
        run.head_sha = str(inputs.get("sha") or run.head_sha)
        run.jobs.clear()
        pr = int(inputs["pr"]) if str(inputs.get("pr") or "").isdigit() else None
        state = WorkflowRun(run_id=run.id, pr=pr, sha=run.head_sha)
        self.runs[run.id] = state
        thread = threading.Thread(
            target=self._run, args=(run, str(body.get("ref") or "main"), state), daemon=True
        )
        thread.start()

    def wait(self, count: int, timeout: float) -> list[WorkflowRun]:
        """Wait until ``count`` runs were dispatched and have finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = list(self.runs.values())
            if len(runs) >= count and all(r.done.is_set() for r in runs):
                return runs
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.runs)} run(s) dispatched, wanted {count} finished")

    # -- the workflow ---------------------------------------------------------------------
    def _run(self, run: FakeRun, ref: str, state: WorkflowRun) -> None:
        try:
            self._steps(run, ref, state)
        except Exception:
            state.error = traceback.format_exc()
        finally:
            state.done.set()

    def _github_env(self, wdir: Path, run: FakeRun, ref: str, job: str) -> dict[str, str]:
        event = wdir / "event.json"
        if not event.exists():  # workflow_dispatch: the event carries the inputs only
            event.write_text(
                json.dumps(
                    {
                        "inputs": {"pr": str(self.runs[run.id].pr or ""), "sha": run.head_sha},
                        "ref": f"refs/heads/{ref}",
                        "repository": {"full_name": self.repo, "default_branch": "main"},
                    }
                )
            )
        return clean_env(
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": "workflow_dispatch",
                "GITHUB_EVENT_PATH": str(event),
                "GITHUB_RUN_ID": str(run.id),
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_REPOSITORY": self.repo,
                "GITHUB_WORKSPACE": str(wdir),
                "GITHUB_SHA": run.head_sha,
                "GITHUB_REF_NAME": ref,
                "GITHUB_SERVER_URL": "https://github.example",
                "GITHUB_OUTPUT": str(wdir / f"{job}.output"),
                "GITHUB_STEP_SUMMARY": str(wdir / f"{job}.summary.md"),
                "CI_FANOUT_COLLECT": "tests",
                "CI_FANOUT_RUNNERS": json.dumps(self.runners),
                "CI_FANOUT_MODE": "queue",
                "CI_FANOUT_SHARDS": str(len(self.runners)),
                "CI_FANOUT_SETUP_SECONDS": "1",
                "CI_FANOUT_SERVER_URL": self.app_url,
                "CI_FANOUT_SERVER_TOKEN": self.app_token,
                "CI_FANOUT_TEST_COMMAND": self.test_command,
                "CI_FANOUT_FAIL_ON": "never",
                "CI_FANOUT_CACHE": "false",
                "CI_FANOUT_DEMO_STATE": str(wdir / "state"),
                **self.env,
            }
        )

    def _steps(self, run: FakeRun, ref: str, state: WorkflowRun) -> None:
        wdir = self.work / f"run-{run.id}"
        shutil.copytree(self.project, wdir)
        ci = [sys.executable, "-m", "ci_app", "ci"]
        plan_log = wdir / "plan.log"
        with plan_log.open("wb") as log:
            rc = subprocess.run(
                [*ci, "plan"],
                cwd=wdir,
                env=self._github_env(wdir, run, ref, "plan"),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            ).returncode
        if rc != 0:
            raise RuntimeError(f"plan exited {rc}:\n{plan_log.read_text()[-3000:]}")
        matrix_path = wdir / ARTIFACT / "matrix.json"
        state.matrix = json.loads(matrix_path.read_text())
        self._artifact(run, f"{ARTIFACT}-matrix", {"matrix.json": matrix_path.read_bytes()})
        procs: list[ShardProc] = []
        for i, shard in enumerate(s["id"] for s in state.matrix["shards"]):
            runner = self.runners[i % len(self.runners)]["name"]
            env = self._github_env(wdir, run, ref, f"shard-{shard}")
            env.update({"CI_FANOUT_SHARD": shard, "RUNNER_NAME": runner})
            log_path = wdir / f"shard-{shard}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [*ci, "shard"], cwd=wdir, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append(ShardProc(shard, runner, proc, log_path))
            with self.fake._lock:
                run.jobs.append(
                    {
                        "id": 90_000 + run.id * 10 + i,
                        "name": f"shard ({shard})",
                        "labels": ["self-hosted", "linux", "x64"],
                        "runner_name": runner,
                    }
                )
        self._watch(procs, state)
        for sp in procs:
            state.shards[sp.shard] = sp.proc.returncode
            state.runner_of[sp.shard] = sp.runner
            out = wdir / ARTIFACT / f"shard-{sp.shard}"
            files = {p.name: p.read_bytes() for p in sorted(out.glob("*")) if p.is_file()}
            if "results.json" in files:
                state.results[sp.shard] = json.loads(files["results.json"])
            if files:  # upload-artifact with if-no-files-found: warn
                self._artifact(run, f"{ARTIFACT}-results-{sp.shard}", files)
        with self.fake._lock:
            run.polls = 2  # the fake's runs API now says completed
        for job in list(run.jobs):
            self._webhook("workflow_job", self._job_payload(run, job))
        self._webhook("workflow_run", self._run_payload(run, ref, state))

    def _watch(self, procs: list[ShardProc], state: WorkflowRun) -> None:
        deadline = time.monotonic() + 180
        marker = self.kill_marker
        while any(sp.proc.poll() is None for sp in procs):
            if time.monotonic() > deadline:
                for sp in procs:
                    with contextlib.suppress(ProcessLookupError):
                        sp.proc.kill()
                raise TimeoutError("shards still running after 180 s")
            if marker is not None and marker.exists() and not state.killed:
                text = marker.read_text().split()
                if len(text) == 2:  # "<pid> <runner>" fully written
                    pid, runner = int(text[0]), text[1]
                    os.kill(pid, signal.SIGKILL)  # the runner's test process dies mid-batch
                    state.killed.append(runner)
            time.sleep(0.05)

    # -- artifacts and webhooks -----------------------------------------------------------
    def _artifact(self, run: FakeRun, name: str, files: dict[str, bytes]) -> None:
        with self.fake._lock:
            self.fake.add_artifact(run, name, files)

    def _job_payload(self, run: FakeRun, job: dict[str, Any]) -> dict[str, Any]:
        return {
            "action": "completed",
            "workflow_job": {
                "id": job["id"],
                "run_id": run.id,
                "name": job["name"],
                "status": "completed",
                "conclusion": "success",
                "head_sha": run.head_sha,
                "labels": job["labels"],
                "runner_name": job["runner_name"],
            },
            "repository": {"full_name": self.repo},
        }

    def _run_payload(self, run: FakeRun, ref: str, state: WorkflowRun) -> dict[str, Any]:
        prs = []
        if state.pr is not None:
            prs.append(
                {
                    "number": state.pr,
                    "head": {"ref": ref, "sha": run.head_sha},
                    "base": {"ref": "main", "sha": "0" * 40},
                }
            )
        failed = any(code not in (0,) for code in state.shards.values())
        return {
            "action": "completed",
            "workflow_run": {
                "id": run.id,
                "name": "CI",
                "event": "workflow_dispatch",
                "head_sha": run.head_sha,
                "head_branch": ref,
                "status": "completed",
                "conclusion": "failure" if failed else "success",
                "pull_requests": prs,
            },
            "repository": {"full_name": self.repo},
        }

    def _webhook(self, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        status, answer = post_json(
            f"{self.app_url}/webhooks/github",
            body,
            {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": github_signature(body, self.webhook_secret),
            },
        )
        self.webhooks.append((event, status))
        if status != 202:
            raise RuntimeError(f"{event} webhook answered {status}: {answer[:300]!r}")
