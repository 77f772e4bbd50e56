"""ResultSet v1: the standard, provider-neutral artifact one shard writes (``results.json``).

Pure data: frozen dataclasses, ``to_dict``/``from_dict`` for JSON, no I/O.
The JSON Schema lives beside this module in ``schemas/results.v1.json``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

SCHEMA_ID = "https://ci-fanout.dev/schemas/results.v1.json"
SCHEMA_VERSION = "ci-fanout/results/v1"


class Outcome(enum.StrEnum):
    """Final outcome of one test case; ``SEVERITY`` orders them for merging."""

    PASSED = "passed"
    SKIPPED = "skipped"
    FAILED = "failed"
    ERROR = "error"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.SKIPPED: 0, Outcome.PASSED: 1, Outcome.FAILED: 2, Outcome.ERROR: 3}


def most_severe(outcomes: Iterable[Outcome]) -> Outcome:
    """The most severe outcome (error > failed > passed > skipped); PASSED for none."""
    best: Outcome | None = None
    for o in outcomes:
        if best is None or o.severity > best.severity:
            best = o
    return best if best is not None else Outcome.PASSED


@dataclass(frozen=True, kw_only=True, slots=True)
class TestCase:
    """One test, after de-duplicating reruns: final outcome, ``retries`` extra attempts."""

    __test__ = False  # keep pytest from collecting this class

    id: str
    name: str
    outcome: Outcome
    suite: str | None = None
    classname: str | None = None
    file: str | None = None
    line: int | None = None
    duration_s: float = 0.0
    message: str | None = None
    details: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    retries: int = 0
    flaky: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "suite": self.suite,
            "classname": self.classname,
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "outcome": self.outcome.value,
            "duration_s": self.duration_s,
            "message": self.message,
            "details": self.details,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "retries": self.retries,
            "flaky": self.flaky,
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TestCase:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            outcome=Outcome(d["outcome"]),
            suite=d.get("suite"),
            classname=d.get("classname"),
            file=d.get("file"),
            line=d.get("line"),
            duration_s=float(d.get("duration_s") or 0.0),
            message=d.get("message"),
            details=d.get("details"),
            stdout=d.get("stdout"),
            stderr=d.get("stderr"),
            retries=int(d.get("retries") or 0),
            flaky=bool(d.get("flaky", False)),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """Counts over test cases. ``tests == passed + failed + errors + skipped``."""

    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    flaky: int = 0
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "flaky": self.flaky,
            "duration_s": round(self.duration_s, 6),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        return cls(
            tests=int(d.get("tests", 0)),
            passed=int(d.get("passed", 0)),
            failed=int(d.get("failed", 0)),
            errors=int(d.get("errors", 0)),
            skipped=int(d.get("skipped", 0)),
            flaky=int(d.get("flaky", 0)),
            duration_s=float(d.get("duration_s", 0.0)),
        )

    def __add__(self, other: Summary) -> Summary:
        return Summary(
            tests=self.tests + other.tests,
            passed=self.passed + other.passed,
            failed=self.failed + other.failed,
            errors=self.errors + other.errors,
            skipped=self.skipped + other.skipped,
            flaky=self.flaky + other.flaky,
            duration_s=self.duration_s + other.duration_s,
        )


def summarize(cases: Iterable[TestCase], duration_s: float | None = None) -> Summary:
    """Count outcomes; ``duration_s`` defaults to the sum of case durations."""
    counts = dict.fromkeys(Outcome, 0)
    flaky = 0
    total = 0.0
    n = 0
    for c in cases:
        n += 1
        counts[c.outcome] += 1
        flaky += c.flaky
        total += c.duration_s
    return Summary(
        tests=n,
        passed=counts[Outcome.PASSED],
        failed=counts[Outcome.FAILED],
        errors=counts[Outcome.ERROR],
        skipped=counts[Outcome.SKIPPED],
        flaky=flaky,
        duration_s=total if duration_s is None else duration_s,
    )


class SummaryCounter:
    """Incremental ``summarize`` for streaming parsers (no list of cases kept)."""

    __slots__ = ("_counts", "duration_s", "flaky")

    def __init__(self) -> None:
        self._counts = [0, 0, 0, 0]
        self.flaky = 0
        self.duration_s = 0.0

    def add(self, case: TestCase) -> None:
        self._counts[_SEVERITY[case.outcome]] += 1
        self.flaky += case.flaky
        self.duration_s += case.duration_s

    def add_counts(
        self, skipped: int, passed: int, failed: int, errors: int, flaky: int, duration_s: float
    ) -> None:
        """Add a batch counted elsewhere; ``duration_s`` is the new running total
        (summed in case order from this counter's total, so it is the same float)."""
        counts = self._counts
        counts[0] += skipped
        counts[1] += passed
        counts[2] += failed
        counts[3] += errors
        self.flaky += flaky
        self.duration_s = duration_s

    def summary(self, duration_s: float | None = None) -> Summary:
        skipped, passed, failed, errors = self._counts
        return Summary(
            tests=sum(self._counts),
            passed=passed,
            failed=failed,
            errors=errors,
            skipped=skipped,
            flaky=self.flaky,
            duration_s=self.duration_s if duration_s is None else duration_s,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Metric:
    """A benchmark or resource figure; ``direction`` says which way is better."""

    name: str
    value: float
    unit: str = ""
    direction: str = "lower"  # "lower" or "higher" is better

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "direction": self.direction,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metric:
        return cls(
            name=str(d["name"]),
            value=float(d["value"]),
            unit=str(d.get("unit", "")),
            direction=str(d.get("direction", "lower")),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Attachment:
    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attachment:
        return cls(path=str(d["path"]), sha256=str(d["sha256"]), bytes=int(d["bytes"]))


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportFile:
    """One input report: what it was detected as, what it held, or why it could not be read."""

    path: str
    format: str
    summary: Summary = field(default_factory=Summary)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    declared: Summary | None = None  # counts the file itself claims (suite attributes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "summary": self.summary.to_dict(),
            "declared": None if self.declared is None else self.declared.to_dict(),
            "error": self.error,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportFile:
        declared = d.get("declared")
        return cls(
            path=str(d["path"]),
            format=str(d["format"]),
            summary=Summary.from_dict(d.get("summary") or {}),
            error=d.get("error"),
            warnings=tuple(d.get("warnings") or ()),
            declared=None if declared is None else Summary.from_dict(declared),
        )


class RunIdentity(Protocol):
    """A run as its sources know it: a CI step's context, a run the store holds."""

    @property
    def run_id(self) -> str | None: ...
    @property
    def repo(self) -> str | None: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def pipeline_id(self) -> str | None: ...
    @property
    def commit(self) -> str | None: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def base_commit(self) -> str | None: ...
    @property
    def pr(self) -> int | None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInfo:
    """Where the results came from: run, shard, commit, branch, runner."""

    run_id: str | None = None
    shard_id: str | None = None
    repo: str | None = None
    provider: str | None = None
    pipeline_id: str | None = None
    job_url: str | None = None
    commit: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    pr: int | None = None
    runner_name: str | None = None
    runner_labels: tuple[str, ...] = ()
    profile_hash: str | None = None
    started_at: str | None = None  # ISO 8601
    finished_at: str | None = None

    @classmethod
    def of(
        cls,
        run: RunIdentity,
        *,
        shard_id: str | None = None,
        job_url: str | None = None,
        runner_name: str | None = None,
        runner_labels: tuple[str, ...] = (),
        started_at: str | None = None,
    ) -> RunInfo:
        """The identity results of ``run`` carry (the one builder from a run's source).

        The keywords are the shard's: ``started_at`` is when the shard ran, not the run."""
        return cls(
            run_id=run.run_id,
            shard_id=shard_id,
            repo=run.repo,
            provider=run.provider,
            pipeline_id=run.pipeline_id,
            job_url=job_url,
            commit=run.commit,
            branch=run.branch,
            base_commit=run.base_commit,
            pr=run.pr,
            runner_name=runner_name,
            runner_labels=runner_labels,
            started_at=started_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "shard_id": self.shard_id,
            "repo": self.repo,
            "provider": self.provider,
            "pipeline_id": self.pipeline_id,
            "job_url": self.job_url,
            "commit": self.commit,
            "branch": self.branch,
            "base_commit": self.base_commit,
            "pr": self.pr,
            "runner": {
                "name": self.runner_name,
                "labels": list(self.runner_labels),
                "profile_hash": self.profile_hash,
            },
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunInfo:
        runner = d.get("runner") or {}
        pr = d.get("pr")
        return cls(
            run_id=d.get("run_id"),
            shard_id=d.get("shard_id"),
            repo=d.get("repo"),
            provider=d.get("provider"),
            pipeline_id=d.get("pipeline_id"),
            job_url=d.get("job_url"),
            commit=d.get("commit"),
            branch=d.get("branch"),
            base_commit=d.get("base_commit"),
            pr=None if pr is None else int(pr),
            runner_name=runner.get("name"),
            runner_labels=tuple(runner.get("labels") or ()),
            profile_hash=runner.get("profile_hash"),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultSet:
    """One shard's standardised results. ``summary`` is derived from ``tests``."""

    run: RunInfo = field(default_factory=RunInfo)
    tests: tuple[TestCase, ...] = ()
    metrics: tuple[Metric, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    files: tuple[ReportFile, ...] = ()
    tool: str | None = None  # producing framework when known (e.g. "pytest")
    duration_s: float | None = None  # wall time when known; else sum of cases

    @property
    def summary(self) -> Summary:
        return summarize(self.tests, self.duration_s)

    @property
    def has_errors(self) -> bool:
        """True when some input file could not be parsed."""
        return any(f.error for f in self.files)

    def with_run(self, run: RunInfo) -> ResultSet:
        return replace(self, run=run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "$schema": SCHEMA_ID,
            "version": SCHEMA_VERSION,
            "tool": self.tool,
            "run": self.run.to_dict(),
            "summary": self.summary.to_dict(),
            "files": [f.to_dict() for f in self.files],
            "tests": [t.to_dict() for t in self.tests],
            "metrics": [m.to_dict() for m in self.metrics],
            "attachments": [a.to_dict() for a in self.attachments],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResultSet:
        version = d.get("version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"not a {SCHEMA_VERSION} document (version={version!r})")
        summary = d.get("summary") or {}
        return cls(
            run=RunInfo.from_dict(d.get("run") or {}),
            tests=tuple(TestCase.from_dict(t) for t in d.get("tests") or ()),
            metrics=tuple(Metric.from_dict(m) for m in d.get("metrics") or ()),
            attachments=tuple(Attachment.from_dict(a) for a in d.get("attachments") or ()),
            files=tuple(ReportFile.from_dict(f) for f in d.get("files") or ()),
            tool=d.get("tool"),
            duration_s=summary.get("duration_s"),
        )


def _fast_case_constructor() -> Callable[..., TestCase]:
    """A positional constructor for ``TestCase`` that skips the frozen ``__setattr__``.

    Parsers build millions of cases; the generated frozen ``__init__`` costs about
    twice as much. Field order matches ``TestCase.__slots__``.
    """
    setters = [getattr(TestCase, name).__set__ for name in TestCase.__slots__]
    (s_id, s_name, s_outcome, s_suite, s_classname, s_file, s_line, s_duration,
     s_message, s_details, s_stdout, s_stderr, s_retries, s_flaky) = setters  # fmt: skip
    new = object.__new__

    def new_case(
        id: str,
        name: str,
        outcome: Outcome,
        suite: str | None,
        classname: str | None,
        file: str | None,
        line: int | None,
        duration_s: float,
        message: str | None = None,
        details: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        retries: int = 0,
        flaky: bool = False,
    ) -> TestCase:
        case: TestCase = new(TestCase)
        s_id(case, id)
        s_name(case, name)
        s_outcome(case, outcome)
        s_suite(case, suite)
        s_classname(case, classname)
        s_file(case, file)
        s_line(case, line)
        s_duration(case, duration_s)
        s_message(case, message)
        s_details(case, details)
        s_stdout(case, stdout)
        s_stderr(case, stderr)
        s_retries(case, retries)
        s_flaky(case, flaky)
        return case

    return new_case


new_case: Callable[..., TestCase] = _fast_case_constructor()


def _json_encoders() -> tuple[Callable[[str], str], Callable[[float], str]]:
    import json.encoder

    enc = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # type: ignore[attr-defined]
    return enc, float.__repr__


_enc_str, _enc_float = _json_encoders()


_OUTCOME_JSON = {o: f'"{o.value}"' for o in Outcome}


def case_to_json(case: TestCase) -> str:
    """``json.dumps(case.to_dict())`` without the intermediate dict (ingest hot path)."""
    enc = _enc_str
    suite, classname, file = case.suite, case.classname, case.file
    message, details, stdout, stderr = case.message, case.details, case.stdout, case.stderr
    line = case.line
    duration = case.duration_s
    dur = _enc_float(duration) if math.isfinite(duration) else "0.0"
    return (
        f'{{"id":{enc(case.id)},"suite":{"null" if suite is None else enc(suite)},'
        f'"classname":{"null" if classname is None else enc(classname)},'
        f'"name":{enc(case.name)},"file":{"null" if file is None else enc(file)},'
        f'"line":{"null" if line is None else line},'
        f'"outcome":{_OUTCOME_JSON[case.outcome]},"duration_s":{dur},'
        f'"message":{"null" if message is None else enc(message)},'
        f'"details":{"null" if details is None else enc(details)},'
        f'"stdout":{"null" if stdout is None else enc(stdout)},'
        f'"stderr":{"null" if stderr is None else enc(stderr)},'
        f'"retries":{case.retries},"flaky":{"true" if case.flaky else "false"}}}'
    )


# -- synthetic shards of the accounting (every planned test ends reported exactly once) --------
#: message prefix of a skipped case the planner could not place (no runner has its hardware)
NOT_RUN_PREFIX = "not run: no runner with"
#: shard id under which those not-run cases are stored (no runner ran them)
NOT_RUN_SHARD = "unsatisfied"
#: message prefix of an error case for a planned test no shard reported (its shard died)
LOST_PREFIX = "lost:"
#: shard id under which lost cases are stored
LOST_SHARD = "lost"
#: shard ids that no runner ran; never a runner class, never test flakiness
SYNTHETIC_SHARDS = frozenset({NOT_RUN_SHARD, LOST_SHARD})
#: message prefix of an error case the infrastructure caused, not the test (a runner whose
#: label promised hardware its browser lacks, a browser that crashed again on the retry):
#: reported apart from failures, never counted as a failure or as flakiness of the test
INFRA_PREFIX = "infra:"


#: terminal escape sequences: CSI (colours, cursor), OSC (titles, hyperlinks), 2-byte escapes,
#: and CSI as pytest's JUnit writes it (ESC is not allowed in XML: ``#x1B[31m``)
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]|#x1[bB]\[[0-?]*[ -/]*[@-~]"
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes and other escape sequences (``PY_COLORS=1``,
    ``FORCE_COLOR``, pty runners)."""
    if "\x1b" not in text and "\x9b" not in text and "#x1" not in text:
        return text
    return _ANSI.sub("", text)
