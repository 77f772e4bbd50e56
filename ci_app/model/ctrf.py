"""ResultSet v1 <-> CTRF (Common Test Report Format, ctrf.io), both ways. Pure, no I/O.

CTRF has no ``error`` status, one ``suite`` list instead of suite/classname,
integer milliseconds, and stdout/stderr as lists of lines. What CTRF cannot
hold goes into its ``extra`` extension points, so that
``ctrf_to_resultset(resultset_to_ctrf(rs)) == rs``:

* per test ``extra``: ``id``, ``classname``, ``suite`` (our string),
  ``outcome`` (``error`` is exported as status ``failed``), exact ``duration_s``;
* ``results.extra.ci_fanout``: run metadata, input files, metrics, attachments,
  wall time.

Reading foreign CTRF (no ``extra``): ``pending`` is skipped, ``other`` is an
error (CTRF uses it for interrupted/unknown results, which did not pass),
``suite`` lists are joined with `` > ``, the last suite element becomes the
classname, and ids are ``suite::name`` made unique with ``#2``, ``#3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ci_app.model.results import (
    Attachment,
    Metric,
    Outcome,
    ReportFile,
    ResultSet,
    RunInfo,
    TestCase,
)

CTRF_SPEC_VERSION = "0.0.0"
GENERATED_BY = "ci-fanout"
_EXTRA_KEY = "ci_fanout"

_TO_STATUS = {
    Outcome.PASSED: "passed",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "failed",
    Outcome.SKIPPED: "skipped",
}
_FROM_STATUS = {
    "passed": Outcome.PASSED,
    "failed": Outcome.FAILED,
    "skipped": Outcome.SKIPPED,
    "pending": Outcome.SKIPPED,
    "other": Outcome.ERROR,
}


class CtrfError(ValueError):
    """The document is not usable CTRF (message says which field)."""


# -- ResultSet -> CTRF ------------------------------------------------------


def resultset_to_ctrf(rs: ResultSet) -> dict[str, Any]:
    """A CTRF document (valid against the official schema) for ``rs``."""
    summary = rs.summary
    start = _epoch_ms(rs.run.started_at)
    stop = _epoch_ms(rs.run.finished_at)
    duration_ms = round(summary.duration_s * 1000)
    if start is None or stop is None or stop < start:
        start, stop = 0, duration_ms
    results: dict[str, Any] = {
        "tool": {"name": rs.tool or GENERATED_BY},
        "summary": {
            "tests": summary.tests,
            "passed": summary.passed,
            "failed": summary.failed + summary.errors,
            "skipped": summary.skipped,
            "pending": 0,
            "other": 0,
            "flaky": summary.flaky,
            "start": start,
            "stop": stop,
            "duration": duration_ms,
            "extra": {"errors": summary.errors},
        },
        "tests": [_test_to_ctrf(t) for t in rs.tests],
        "extra": {
            _EXTRA_KEY: {
                "run": rs.run.to_dict(),
                "files": [f.to_dict() for f in rs.files],
                "metrics": [m.to_dict() for m in rs.metrics],
                "attachments": [a.to_dict() for a in rs.attachments],
                "duration_s": rs.duration_s,
                "tool": rs.tool,
            }
        },
    }
    env = _environment(rs.run)
    if env:
        results["environment"] = env
    doc: dict[str, Any] = {
        "reportFormat": "CTRF",
        "specVersion": CTRF_SPEC_VERSION,
        "generatedBy": GENERATED_BY,
        "results": results,
    }
    if rs.run.run_id:
        doc["runId"] = rs.run.run_id
    return doc


def _test_to_ctrf(t: TestCase) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name or "(unnamed)",
        "status": _TO_STATUS[t.outcome],
        "duration": round(t.duration_s * 1000),
    }
    if t.suite is not None or t.classname is not None:
        parts = [p for p in (t.suite, t.classname) if p]
        if len(parts) == 2 and parts[0] == parts[1]:
            parts = parts[:1]
        if parts:
            out["suite"] = parts
    if t.message is not None:
        out["message"] = t.message
    if t.details is not None:
        out["trace"] = t.details
    if t.file is not None:
        out["filePath"] = t.file
    if t.line is not None:
        out["line"] = t.line
    if t.retries:
        out["retries"] = t.retries
    if t.flaky:
        out["flaky"] = True
    if t.stdout is not None:
        out["stdout"] = t.stdout.split("\n")
    if t.stderr is not None:
        out["stderr"] = t.stderr.split("\n")
    if t.outcome is Outcome.ERROR:
        out["rawStatus"] = "error"
    out["extra"] = {
        "id": t.id,
        "name": t.name,
        "suite": t.suite,
        "classname": t.classname,
        "outcome": t.outcome.value,
        "duration_s": t.duration_s,
    }
    return out


def _environment(run: RunInfo) -> dict[str, Any]:
    env: dict[str, Any] = {
        "commit": run.commit,
        "branchName": run.branch,
        "buildUrl": run.job_url,
        "buildId": run.pipeline_id,
        "repositoryName": run.repo,
        "shardId": run.shard_id or None,
    }
    return {k: v for k, v in env.items() if v is not None}


def _epoch_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return round(moment.timestamp() * 1000)


# -- CTRF -> ResultSet ------------------------------------------------------


def ctrf_to_resultset(d: Mapping[str, Any]) -> ResultSet:
    """Read a CTRF document (ours or any producer's); raises ``CtrfError``."""
    if not isinstance(d, Mapping):
        raise CtrfError("a CTRF document is a JSON object")
    results = d.get("results")
    if not isinstance(results, Mapping):
        raise CtrfError("CTRF document has no 'results' object")
    tests = results.get("tests")
    if not isinstance(tests, list):
        raise CtrfError("CTRF 'results.tests' must be a list")
    extra = results.get("extra")
    ours = extra.get(_EXTRA_KEY) if isinstance(extra, Mapping) else None
    ours = ours if isinstance(ours, Mapping) else {}
    try:
        cases = _cases(tests)
        tool_obj = results.get("tool")
        tool = tool_obj.get("name") if isinstance(tool_obj, Mapping) else None
        if ours:
            return ResultSet(
                run=RunInfo.from_dict(ours.get("run") or {}),
                tests=cases,
                metrics=tuple(Metric.from_dict(m) for m in ours.get("metrics") or ()),
                attachments=tuple(Attachment.from_dict(a) for a in ours.get("attachments") or ()),
                files=tuple(ReportFile.from_dict(f) for f in ours.get("files") or ()),
                tool=ours.get("tool"),
                duration_s=ours.get("duration_s"),
            )
        return ResultSet(
            run=_run_from_ctrf(d, results),
            tests=cases,
            tool=str(tool) if tool else None,
            duration_s=_duration_s(results.get("summary")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CtrfError):
            raise
        raise CtrfError(f"malformed CTRF document: {type(exc).__name__}: {exc}") from None


def _cases(tests: list[Any]) -> tuple[TestCase, ...]:
    seen: dict[str, int] = {}
    out: list[TestCase] = []
    for i, raw in enumerate(tests):
        if not isinstance(raw, Mapping):
            raise CtrfError(f"results.tests[{i}] is not an object")
        case = _case_from_ctrf(raw, i)
        unique = _unique(seen, case.id)
        if unique != case.id:
            case = TestCase.from_dict({**case.to_dict(), "id": unique})
        out.append(case)
    return tuple(out)


def _unique(seen: dict[str, int], base: str) -> str:
    n = seen.get(base, 0) + 1
    seen[base] = n
    if n == 1:
        return base
    candidate = f"{base}#{n}"
    while candidate in seen:
        n += 1
        candidate = f"{base}#{n}"
    seen[base] = n
    seen[candidate] = 1
    return candidate


def _case_from_ctrf(t: Mapping[str, Any], index: int) -> TestCase:
    status = t.get("status")
    if status not in _FROM_STATUS:
        raise CtrfError(f"results.tests[{index}].status {status!r} is not a CTRF status")
    raw_extra = t.get("extra")
    extra: Mapping[str, Any] = raw_extra if isinstance(raw_extra, Mapping) else {}
    outcome = _FROM_STATUS[status]
    if extra.get("outcome") in {o.value for o in Outcome}:
        outcome = Outcome(extra["outcome"])
    elif t.get("rawStatus") == "error" and outcome is Outcome.FAILED:
        outcome = Outcome.ERROR
    suites = t.get("suite")
    if isinstance(suites, str):
        suites = [suites]
    suites = [str(s) for s in suites] if isinstance(suites, list) else []
    if "suite" in extra or "classname" in extra:
        suite, classname = extra.get("suite"), extra.get("classname")
    else:
        suite = " > ".join(suites) if suites else None
        classname = suites[-1] if suites else None
    name = str(extra["name"]) if isinstance(extra.get("name"), str) else str(t.get("name") or "")
    duration_s = extra.get("duration_s")
    if not isinstance(duration_s, int | float):
        duration_s = float(t.get("duration") or 0) / 1000.0
    line = t.get("line")
    case_id = extra.get("id")
    if not isinstance(case_id, str):
        prefix = suite
        case_id = f"{prefix}::{name}" if prefix else name
    return TestCase(
        id=case_id,
        name=name,
        outcome=outcome,
        suite=suite,
        classname=classname,
        file=_opt_str(t.get("filePath")),
        line=line if isinstance(line, int) and not isinstance(line, bool) else None,
        duration_s=float(duration_s),
        message=_opt_str(t.get("message")),
        details=_opt_str(t.get("trace")),
        stdout=_lines(t.get("stdout")),
        stderr=_lines(t.get("stderr")),
        retries=int(t.get("retries") or 0),
        flaky=bool(t.get("flaky", False)),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _lines(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _duration_s(summary: Any) -> float | None:
    if not isinstance(summary, Mapping):
        return None
    start, stop = summary.get("start"), summary.get("stop")
    if (
        isinstance(start, int | float)
        and isinstance(stop, int | float)
        and start > 0
        and stop >= start
    ):
        return (stop - start) / 1000.0
    duration = summary.get("duration")
    if isinstance(duration, int | float):
        return float(duration) / 1000.0
    return None


def _run_from_ctrf(d: Mapping[str, Any], results: Mapping[str, Any]) -> RunInfo:
    env = results.get("environment")
    env = env if isinstance(env, Mapping) else {}
    return RunInfo(
        run_id=_opt_str(d.get("runId")),
        shard_id=_opt_str(env.get("shardId")),
        repo=_opt_str(env.get("repositoryName")),
        pipeline_id=_opt_str(env.get("buildId")),
        job_url=_opt_str(env.get("buildUrl")),
        commit=_opt_str(env.get("commit")),
        branch=_opt_str(env.get("branchName")),
    )
