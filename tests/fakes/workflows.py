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
shard jobs (artifacts on the fake), then a Pipeline Hook back to the app, which collects through
the API (following the bridge to the child pipeline) and posts the MR note.

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
            kill_if_asked(marker, state.killed)
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


# ------------------------------------------------------------------------------- GitLab
@dataclass
class PipelineRun:
    """What happened in one emulated GitLab pipeline (for assertions and failure messages)."""

    pipeline_id: int
    pr: int | None
    sha: str
    variables: dict[str, str] = field(default_factory=dict)
    child_id: int | None = None
    matrix: dict[str, Any] = field(default_factory=dict)
    child_yaml: dict[str, Any] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)  # shard -> exit code
    runner_of: dict[str, str] = field(default_factory=dict)  # shard -> runner description
    killed: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard -> results.json
    job_env: dict[str, dict[str, str]] = field(default_factory=dict)  # job name -> its CI_* env
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class GitLabPipeline:
    """Emulates the pipeline ``.gitlab-ci-template.yml`` runs when the app creates one on
    :class:`~tests.fakes.gitlab.FakeGitLab` (``dispatch-workflow``): the ``ci-fanout-plan``
    job (``ci-app ci plan``, queue mode against the app) writes ``child-pipeline.yml``; the
    ``ci-fanout-shards`` bridge triggers it as a child pipeline whose shard jobs (one
    ``ci-app ci shard`` process each, all at once, on the runner the job's ``tags:`` pick) pull
    from the app's queue; every job's ``artifacts: paths:`` are attached to it on the fake; then
    a Pipeline Hook (``X-Gitlab-Token``) for the parent pipeline goes back to the app, which
    collects through the API (following the bridge), ingests and posts the MR note.

    The pipeline is a branch pipeline created through the API, as GitLab makes it: the app's
    variables ``pr`` and ``sha`` reach the jobs, no ``CI_MERGE_REQUEST_*`` variables do, and
    the Pipeline Hook carries no ``merge_request``. The template's ``.post`` report job is not
    run: with the app server, the app reports."""

    PROJECT_ID = 42
    PLAN_JOB = "ci-fanout-plan"
    BRIDGE = "ci-fanout-shards"

    def __init__(
        self,
        fake: Any,  # tests.fakes.gitlab.FakeGitLab (not imported: keeps the GitHub path light)
        *,
        project: Path,
        work: Path,
        project_path: str,
        app_url: str,
        app_token: str,
        hook_token: str,
        gitlab_token: str,
        runners: list[dict[str, Any]],
        test_command: str,
        env: Mapping[str, str] | None = None,
        kill_marker: Path | None = None,
    ) -> None:
        self.fake = fake
        self.project = project
        self.work = work
        self.project_path = project_path
        #: as GitHubWorkflow's: a test asks for its runner's test process to be SIGKILLed
        self.kill_marker = kill_marker
        self.app_url = app_url
        self.app_token = app_token
        self.hook_token = hook_token
        self.gitlab_token = gitlab_token
        self.runners = runners
        self.test_command = test_command
        #: project CI/CD variables: every job of every pipeline sees them
        self.env = dict(env or {})
        self.runs: dict[int, PipelineRun] = {}
        self.webhooks: list[tuple[str, int]] = []  # (event, HTTP status)
        self._job_ids = iter(range(70_000, 80_000))
        fake.on_pipeline = self._on_pipeline

    # -- trigger --------------------------------------------------------------------------
    def _on_pipeline(self, pipeline: dict[str, Any], body: dict[str, Any]) -> None:
        variables = dict(pipeline.get("variables") or {})
        sha = variables.get("sha") or pipeline["sha"]
        pipeline["sha"] = sha
        pipeline["status"] = "running"
        pr = variables.get("pr", "")
        state = PipelineRun(
            pipeline_id=int(pipeline["id"]),
            pr=int(pr) if pr.isdigit() else None,
            sha=sha,
            variables=variables,
        )
        self.runs[state.pipeline_id] = state
        thread = threading.Thread(target=self._run, args=(pipeline, state), daemon=True)
        thread.start()

    def wait(self, count: int, timeout: float) -> list[PipelineRun]:
        """Wait until ``count`` pipelines were created and have finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = list(self.runs.values())
            if len(runs) >= count and all(r.done.is_set() for r in runs):
                return runs
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.runs)} pipeline(s) created, wanted {count} finished")

    def _run(self, pipeline: dict[str, Any], state: PipelineRun) -> None:
        try:
            self._jobs(pipeline, state)
        except Exception:
            state.error = traceback.format_exc()
        finally:
            state.done.set()

    # -- the jobs -------------------------------------------------------------------------
    def _ci_env(
        self,
        pipeline: dict[str, Any],
        state: PipelineRun,
        job: str,
        job_dir: Path,
        extra: Mapping[str, str],
    ) -> dict[str, str]:
        """GitLab's predefined variables for one job, the pipeline's variables (parent
        pipeline only: GitLab does not forward them to a child by default), the project's
        CI/CD variables and the job's (``extra``), later ones winning."""
        job_id = next(self._job_ids)
        server = self.fake.url
        predefined = {
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_SERVER_URL": server,
            "CI_API_V4_URL": f"{server}/api/v4",
            "CI_PROJECT_ID": str(self.PROJECT_ID),
            "CI_PROJECT_PATH": self.project_path,
            "CI_PROJECT_DIR": str(job_dir),
            "CI_DEFAULT_BRANCH": "main",
            "CI_PIPELINE_ID": str(pipeline["id"]),
            "CI_PIPELINE_IID": str(pipeline["iid"]),
            "CI_PIPELINE_SOURCE": str(pipeline["source"]),
            "CI_COMMIT_SHA": state.sha,
            "CI_COMMIT_REF_NAME": str(pipeline["ref"]),
            "CI_COMMIT_BRANCH": str(pipeline["ref"]),
            "CI_JOB_ID": str(job_id),
            "CI_JOB_NAME": job,
            "CI_JOB_URL": f"https://gitlab.test/{self.project_path}/-/jobs/{job_id}",
        }
        variables = {} if pipeline["source"] == "parent_pipeline" else state.variables
        env = clean_env({**predefined, **variables, **self.env, **extra})
        state.job_env[job] = {k: v for k, v in env.items() if k.startswith("CI_")}
        return env

    def _template_variables(self) -> dict[str, str]:
        """What the template's ``.ci-fanout-base`` variables become with the inputs the
        example pipeline gives (kebab-case inputs -> CI_FANOUT_* variables)."""
        return {
            "CI_FANOUT_COLLECT": "tests",
            "CI_FANOUT_RUNNERS": json.dumps(self.runners),
            "CI_FANOUT_MODE": "queue",
            "CI_FANOUT_SHARDS": str(len(self.runners)),
            "CI_FANOUT_SETUP_SECONDS": "1",
            "CI_FANOUT_SERVER_URL": self.app_url,
            "CI_FANOUT_TEST_COMMAND": self.test_command,
            "CI_FANOUT_FAIL_ON": "never",
            "CI_FANOUT_CACHE": "false",
            "CI_FANOUT_OUTPUT_DIR": ARTIFACT,
            "CI_FANOUT_ARTIFACT_NAME": ARTIFACT,
        }

    def _jobs(self, pipeline: dict[str, Any], state: PipelineRun) -> None:
        ci = [sys.executable, "-m", "ci_app", "ci"]
        root = self.work / f"pipeline-{pipeline['id']}"
        secrets = {
            "CI_FANOUT_SERVER_TOKEN": self.app_token,  # masked CI/CD variables of the project
            "GITLAB_TOKEN": self.gitlab_token,
            "CI_FANOUT_DEMO_STATE": str(root / "state"),  # the sample project's flaky test
        }
        # .pre: ci-fanout-plan
        plan_dir = root / self.PLAN_JOB
        shutil.copytree(self.project, plan_dir)
        env = self._ci_env(
            pipeline, state, self.PLAN_JOB, plan_dir, {**self._template_variables(), **secrets}
        )
        plan_log = root / "plan.log"
        with plan_log.open("wb") as log:
            rc = subprocess.run(
                [*ci, "plan"],
                cwd=plan_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            ).returncode
        out = plan_dir / ARTIFACT
        plan_files = {
            f"{ARTIFACT}/{p.relative_to(out).as_posix()}": p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
        with self.fake._lock:
            self.fake.add_job(
                pipeline,
                self.PLAN_JOB,
                status="success" if rc == 0 else "failed",
                files=plan_files or None,
            )
        if rc != 0:
            raise RuntimeError(f"plan exited {rc}:\n{plan_log.read_text()[-3000:]}")
        import yaml  # PyYAML: a project dependency

        state.matrix = json.loads((out / "matrix.json").read_text())
        state.child_yaml = yaml.safe_load((out / "child-pipeline.yml").read_text())
        # test: ci-fanout-shards (trigger: include: artifact: child-pipeline.yml)
        with self.fake._lock:
            child = self.fake.add_child(pipeline, self.BRIDGE)
            child["sha"] = state.sha
            child["status"] = "running"
        state.child_id = int(child["id"])
        child_vars = {str(k): str(v) for k, v in (state.child_yaml.get("variables") or {}).items()}
        procs: list[tuple[str, ShardProc, dict[str, Any]]] = []
        for name, job in state.child_yaml.items():
            if not isinstance(job, dict) or "script" not in job:
                continue
            script = " ".join(job["script"])
            if "ci_app ci shard" not in script:
                raise RuntimeError(f"child job {name!r} does not run ci-app ci shard: {script}")
            job_vars = {str(k): str(v) for k, v in (job.get("variables") or {}).items()}
            runner = self._runner_for(job.get("tags") or [])
            job_dir = root / f"job-{safe_job(name)}"
            shutil.copytree(self.project, job_dir)
            # needs: pipeline: $PARENT_PIPELINE_ID, job: ci-fanout-plan -> the plan's artifacts
            for rel, data in plan_files.items():
                dest = job_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            env = self._ci_env(
                child,
                state,
                name,
                job_dir,
                {
                    "PARENT_PIPELINE_ID": str(pipeline["id"]),
                    **child_vars,
                    **secrets,
                    **job_vars,
                    "CI_RUNNER_DESCRIPTION": runner["name"],
                    "CI_RUNNER_TAGS": json.dumps(runner["labels"]),
                },
            )
            shard = job_vars.get("CI_FANOUT_SHARD", name)
            log_path = root / f"shard-{safe_job(shard)}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [*ci, "shard"], cwd=job_dir, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append((name, ShardProc(shard, runner["name"], proc, log_path), job))
        self._watch([sp for _n, sp, _j in procs], state)
        failed = False
        for name, sp, job in procs:
            state.shards[sp.shard] = sp.proc.returncode
            state.runner_of[sp.shard] = sp.runner
            job_dir = root / f"job-{safe_job(name)}"
            files: dict[str, bytes] = {}
            for pattern in job.get("artifacts", {}).get("paths", []):
                base = job_dir / pattern
                for p in sorted(base.rglob("*") if base.is_dir() else [base]):
                    if p.is_file():
                        files[p.relative_to(job_dir).as_posix()] = p.read_bytes()
            junit = job.get("artifacts", {}).get("reports", {}).get("junit")
            if junit and f"{junit}" not in files:
                raise RuntimeError(f"{name}: artifacts:reports:junit {junit} was not written")
            for rel, data in files.items():
                if rel.endswith("/results.json"):
                    state.results[sp.shard] = json.loads(data)
            ok = sp.proc.returncode == 0
            failed = failed or not ok
            with self.fake._lock:
                self.fake.add_job(
                    child,
                    name,
                    status="success" if ok else "failed",
                    tags=list(job.get("tags") or []),
                    files=files or None,  # artifacts: when: always
                )
        status = "failed" if failed else "success"
        with self.fake._lock:
            child["status"] = status
            for bridge in pipeline["bridges"]:
                bridge["status"] = status  # strategy: depend
                bridge["downstream_pipeline"]["status"] = status
            pipeline["status"] = status
        self._hook("Pipeline Hook", self._pipeline_payload(pipeline, state))

    def _runner_for(self, tags: list[str]) -> dict[str, Any]:
        """The first runner (round robin among those that fit) whose tags cover the job's."""
        fits = [r for r in self.runners if set(tags) <= set(r["labels"])]
        if not fits:
            raise RuntimeError(f"no runner has the tags {tags}")
        self._turn = getattr(self, "_turn", -1) + 1
        return fits[self._turn % len(fits)]

    def _watch(self, procs: list[ShardProc], state: PipelineRun) -> None:
        deadline = time.monotonic() + 180
        while any(sp.proc.poll() is None for sp in procs):
            if time.monotonic() > deadline:
                for sp in procs:
                    with contextlib.suppress(ProcessLookupError):
                        sp.proc.kill()
                raise TimeoutError("shard jobs still running after 180 s")
            kill_if_asked(self.kill_marker, state.killed)
            time.sleep(0.05)

    # -- the webhook ----------------------------------------------------------------------
    def _pipeline_payload(self, pipeline: dict[str, Any], state: PipelineRun) -> dict[str, Any]:
        with self.fake._lock:
            builds = [
                {
                    "id": self.fake.jobs[j]["id"],
                    "stage": self.fake.jobs[j]["stage"],
                    "name": self.fake.jobs[j]["name"],
                    "status": self.fake.jobs[j]["status"],
                }
                for j in pipeline["job_ids"]
            ]
        return {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": pipeline["id"],
                "iid": pipeline["iid"],
                "ref": pipeline["ref"],
                "tag": False,
                "sha": state.sha,
                "source": pipeline["source"],
                "status": pipeline["status"],
                "stages": [".pre", "test"],
                "variables": [{"key": k, "value": v} for k, v in state.variables.items()],
            },
            "merge_request": None,  # an API-created branch pipeline belongs to no MR
            "project": {
                "id": self.PROJECT_ID,
                "path_with_namespace": self.project_path,
                "default_branch": "main",
            },
            "builds": builds,
        }

    def _hook(self, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        status, answer = post_json(
            f"{self.app_url}/webhooks/gitlab",
            body,
            {
                "X-Gitlab-Event": event,
                "X-Gitlab-Token": self.hook_token,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            },
        )
        self.webhooks.append((event, status))
        if status != 202:
            raise RuntimeError(f"{event} answered {status}: {answer[:300]!r}")


def kill_if_asked(marker: Path | None, killed: list[str]) -> None:
    """SIGKILL the test process that wrote ``<pid> <runner>`` to ``marker`` (once)."""
    if marker is None or killed or not marker.exists():
        return
    text = marker.read_text().split()
    if len(text) == 2:  # fully written
        pid, runner = int(text[0]), text[1]
        os.kill(pid, signal.SIGKILL)  # the runner's test process dies mid-batch
        killed.append(runner)


def safe_job(name: str) -> str:
    """A job name usable as a directory name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
