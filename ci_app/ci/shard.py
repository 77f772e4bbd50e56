"""``ci-app ci shard``: run one shard's tests and normalise their reports.

The tests run in the ``python`` option's interpreter with a scrubbed environment (no ci-fanout or
provider credential; the run-scoped queue token, in queue mode, is handed over in a file the
plugin deletes once read). Writes ``<output-dir>/shard-<id>/results.json`` (atomically), a
standard ``junit.xml`` and ``status.json`` (exit code, signal, wall time: the report uses it to
say why tests of a dying shard were lost). A pytest command also keeps a journal (one line per
finished test): when the command dies before writing its report, the journal's results are
merged in, so only the test it was running is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ci_app.browser.record import merge_record_file, record_path_for
from ci_app.ci.journal import JOURNAL_FILE, merge_journal
from ci_app.ci.step import MATRIX_FILE, RESULTS_FILE, Step, globs, safe_id
from ci_app.ci.testenv import (
    is_pytest,
    plugin_args,
    plugin_dir,
    resolve_command,
    sandbox_env,
)
from ci_app.credentials import TOKEN_FILE_ENV
from ci_app.errors import ConfigError, InputError, ProviderError
from ci_app.matrix.planner import Matrix
from ci_app.model.results import Outcome, ResultSet

STATUS_FILE: Final = "status.json"


def _iso(epoch: float) -> str:
    """UTC, to the millisecond: the report's wall time is the shard's own end - start."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file and a rename: readers never see half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def exit_text(rc: int) -> str:
    """``-9`` → ``killed by signal 9 (SIGKILL)``; ``2`` → ``exited 2``."""
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "?"
        return f"killed by signal {-rc} ({name})"
    return f"exited {rc}"


def _matrix(step: Step) -> Matrix:
    path = step.output_dir / MATRIX_FILE
    try:
        return Matrix.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise InputError(f"{path}: {exc}; download the plan step's matrix artifact first") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not a ci-fanout matrix ({exc})") from exc


def _argv(
    step: Step,
    cmd: list[str],
    matrix: Matrix,
    shard_id: str,
    native: Path,
    queue: str | None,
    journal: Path | None = None,
) -> tuple[list[str], bool]:
    """The command line, and whether it is pytest (the plugin is loaded into it)."""
    matrix_path = step.output_dir / MATRIX_FILE
    shard = matrix.shard(shard_id)
    if any("{tests}" in c for c in cmd):
        if not step.vals.reports:
            raise ConfigError(
                "a test-command with {tests} must say where it writes its reports: set reports"
            )
        return [
            sys.executable,
            "-m",
            "ci_app",
            "shard",
            "run",
            "--matrix",
            str(matrix_path),
            "--shard",
            shard_id,
            "--labels",
            ",".join(shard.runs_on),
            *(["--queue", queue] if queue else []),
            "--",
            *cmd,
        ], False
    if is_pytest(cmd):
        return [
            *cmd,
            *plugin_args(),
            # option=value: pytest takes a bare path argument into its search for the ini
            # file (a matrix outside the project would pick another project's config)
            f"--fanout-matrix={matrix_path}",
            f"--fanout-shard={shard_id}",
            f"--junitxml={native}",
            "-o",
            "junit_family=xunit1",  # file= and line= attributes, for annotations
            *([f"--fanout-journal={journal}"] if journal else []),
            *([f"--fanout-queue={queue}"] if queue else []),
        ], True
    raise ConfigError(
        f"test-command {cmd[0]!r} is not pytest: put {{tests}} where the test ids go and set "
        "reports"
    )


def step_shard(step: Step) -> int:
    from ci_app.artifacts.export import write_junit
    from ci_app.artifacts.ingest import ingest_paths

    vals, ctx, io = step.vals, step.ctx, step.io
    shard_id = vals.shard or step.env.get("CI_FANOUT_SHARD", "")
    if not shard_id:
        raise ConfigError("ci-app ci shard needs the shard id: with: shard: the matrix's shard")
    matrix = _matrix(step)
    shard = matrix.shard(shard_id)
    shard_dir = step.output_dir / f"shard-{safe_id(shard_id)}"
    shard_dir.mkdir(parents=True, exist_ok=True)
    token = step.run_token
    queue = step.queue_url() if matrix.mode == "queue" and token else None
    if matrix.mode == "queue" and queue is None:
        io.annotate("warning", "queue mode without a run token: running the static slice")
    raw = shlex.split(vals.test_command)
    if not raw:
        raise ConfigError("test-command is empty")
    cmd = resolve_command(raw, step.test_python(), vals.python)
    native = shard_dir / "native-junit.xml"
    native.unlink(missing_ok=True)
    journal = shard_dir / JOURNAL_FILE
    journal.unlink(missing_ok=True)
    record_path_for(native).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ci-fanout-shard-") as tmp:
        argv, pytest_cmd = _argv(step, cmd, matrix, shard_id, native, queue, journal)
        extra = {"CI_FANOUT_LABELS": ",".join(shard.runs_on)}
        if token and queue:
            token_file = Path(tmp) / "queue-token"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token)
            extra[TOKEN_FILE_ENV] = str(token_file)
        plugin = plugin_dir(Path(tmp) / "plugin") if pytest_cmd else None
        env = sandbox_env({**os.environ, **step.env}, plugin, extra)
        with io.group(f"ci-fanout: shard {shard_id} ({len(shard.tests)} test(s))"):
            io.info("$ " + shlex.join(argv))
            started = time.time()
            t0 = time.monotonic()
            try:
                rc = subprocess.run(argv, cwd=step.workdir, env=env, check=False).returncode
            except OSError as exc:
                raise ConfigError(f"cannot run the test command {argv[0]!r}: {exc}") from exc
            wall = time.monotonic() - t0
    patterns = globs(vals.reports, step.workdir) if vals.reports else [str(native)]
    run = replace(
        ctx.run_info(shard_id, shard.runs_on),
        started_at=_iso(started),
        finished_at=_iso(started + wall),
    )
    results = replace(ingest_paths(patterns, run=run), duration_s=round(wall, 3))
    recovered = 0
    if rc not in (0, 1, 5) or not results.tests:
        # the command died (no report, or a partial one): keep what it finished
        results, recovered = merge_journal(
            results, journal, why=f"the test command {exit_text(rc)}"
        )
        if recovered:
            io.annotate(
                "warning",
                f"the test command {exit_text(rc)}; {recovered} finished test result(s) "
                "recovered from its journal",
                title=f"ci-fanout: shard {shard_id}",
            )
    if pytest_cmd:  # browser adapters, metrics, infrastructure retries (ci_app.browser)
        results = merge_record_file(results, record_path_for(native))
    results_path = shard_dir / RESULTS_FILE
    write_atomic(
        results_path, (json.dumps(results.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
    )
    with (shard_dir / "junit.xml").open("wb") as fh:
        write_junit(results, fh)
    status: dict[str, Any] = {
        "shard": shard_id,
        "exit_code": rc,
        "exit": exit_text(rc),
        "wall_s": round(wall, 3),
        "planned": len(shard.tests),
        "reported": len(results.tests),
        "recovered": recovered,
    }
    write_atomic(shard_dir / "status.json", (json.dumps(status) + "\n").encode("utf-8"))
    return _finish(step, shard_id, shard.runs_on, results, results_path, rc, wall)


def _finish(
    step: Step,
    shard_id: str,
    runs_on: tuple[str, ...],
    results: ResultSet,
    results_path: Path,
    rc: int,
    wall: float,
) -> int:
    io = step.io
    s = results.summary
    for f in results.files:
        if f.error:
            io.annotate("warning", f"{f.path}: {f.error}", title="ci-fanout: unreadable report")
    failed = [t for t in results.tests if t.outcome in (Outcome.FAILED, Outcome.ERROR)]
    for t in failed:
        io.annotate(
            "error",
            (t.message or "failed").strip()[:2000],
            file=_rel(t.file or _file_of(t.id), step),
            line=t.line,
            title=f"{t.id} ({shard_id})",
        )
    token = step.run_token
    if step.server and token:
        try:
            step.app(token).send_results(results.to_dict())
        except ProviderError as exc:
            io.annotate("warning", f"results not sent to the app: {exc}")
    line = (
        f"shard `{shard_id}` on `{', '.join(runs_on)}`: {s.tests} tests, {s.passed} passed, "
        f"{s.failed} failed, {s.errors} errors, {s.skipped} skipped in {wall:.0f}s"
    )
    io.append_summary(line)
    io.info("ci-fanout: " + line.replace("`", ""))
    died = rc < 0 or (rc not in (0, 1, 5) and not results.tests)
    conclusion = "failure" if failed or died else "success"
    io.set_output("conclusion", conclusion)
    io.set_output("report-json", str(results_path))
    if died:
        io.annotate(
            "error",
            f"the test command {exit_text(rc)} after reporting {len(results.tests)} test(s)",
            title=f"ci-fanout: shard {shard_id}",
        )
        return rc if rc > 0 else 1
    if failed and step.vals.fail_on == "failures":
        return 1
    return 0


def _file_of(test_id: str) -> str | None:
    """``tests/test_a.py::test_x`` → ``tests/test_a.py`` (pytest node ids)."""
    head = test_id.split("::", 1)[0]
    return head if "::" in test_id and "." in Path(head).name else None


def _rel(path: str | None, step: Step) -> str | None:
    """Annotation paths are relative to the repository root."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            return str(p.relative_to(step.ctx.root))
        return path
    wd = step.vals.working_directory.strip("/")
    return str(Path(wd) / p) if wd not in ("", ".") else path
