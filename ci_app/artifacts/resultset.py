"""Our own ``results.json`` (ResultSet v1), read back as a stream with bounded memory.

Two readers share one streaming core:

* ``parse_resultset_json`` — the ``ci-fanout`` format of ``ci-app ingest`` (merge
  shards, re-ingest artifacts). Ids stay as written (made unique if a hand-edited
  file repeats one); the file's ``summary`` is what it declares; input files that
  had failed to parse when it was written are repeated as warnings.
* ``iter_result_members`` — every ``results.json`` in artifact zips (or loose
  files), one ``ResultsMember`` each: the server's collect job and the CI report
  step use it. A bad member (damaged, encrypted, over a cap, not JSON, nested too
  deeply, a test of the wrong shape) is one member with an ``error``; the other
  members of the same zip are still read.

A document is read twice, never whole: pass one (``ijson`` events) checks every
value's type and the nesting depth and collects everything but the tests (small);
pass two streams the tests (``ijson.items``). So a member either fails before any
of its tests is handed out, or every test in it is good.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import ijson  # type: ignore[import-untyped]

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.cases import CaseBuilder
from ci_app.artifacts.ingest import is_dir_member, member_problem, open_member, open_zip
from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.model.results import (
    SCHEMA_VERSION,
    Attachment,
    Metric,
    Outcome,
    ReportFile,
    ResultSet,
    RunInfo,
    Summary,
    TestCase,
    new_case,
)

RESULTS_FILE = "results.json"
#: Deepest nesting outside the tests (the run's ``runner`` object is 3 levels deep).
MAX_DEPTH = 32

_OUTCOMES = {o.value: o for o in Outcome}
_STR_OR_NULL = ("suite", "classname", "file", "message", "details", "stdout", "stderr")
_NUMBER = frozenset({"number", "integer", "double"})


@dataclass(frozen=True, slots=True)
class ResultsHead:
    """Everything in a results.json but its tests, plus the tests' count."""

    resultset: ResultSet  # run, metrics, attachments, files, tool, duration; no tests
    declared: Summary | None
    tests: int


def _bad(where: str, message: str) -> ReportParseError:
    return ReportParseError(f"not a usable ci-fanout results.json: {where}: {message}")


class _HeadBuilder:
    """Builds the non-test parts from ``ijson`` events; checks the tests' shapes."""

    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        self.stack: list[Any] = []
        self.keys: list[str | None] = []
        self.tests = 0
        self._test_keys: set[str] = set()
        self._field: str | None = None

    # -- the tests array: checked, counted, not kept ------------------------------------
    def test_event(self, prefix: str, event: str, value: Any) -> None:
        if prefix == "tests":
            if event not in ("start_array", "end_array", "null"):
                raise _bad("tests", "must be an array")
            return
        if prefix == "tests.item":
            if event == "start_map":
                self._test_keys = set()
            elif event == "map_key":
                self._field = value
                self._test_keys.add(value)
            elif event == "end_map":
                self.tests += 1
                missing = {"id", "name", "outcome"} - self._test_keys
                if missing:
                    raise _bad(f"test {self.tests}", f"missing {', '.join(sorted(missing))}")
            else:
                raise _bad(f"test {self.tests + 1}", "must be an object")
            return
        # a value of one field (prefix "tests.item.FIELD[...]")
        field = prefix[len("tests.item.") :]
        if "." in field:
            return  # inside an unknown field's object or array: ignored like the field
        _check_field(self.tests + 1, field, event, value)

    # -- everything else: built (small) ---------------------------------------------------
    def event(self, event: str, value: Any) -> None:
        if event == "map_key":
            self.keys[-1] = value
            return
        if event in ("start_map", "start_array"):
            if len(self.stack) >= MAX_DEPTH:
                raise ReportParseError(
                    f"results.json is nested deeper than {MAX_DEPTH} levels; not read"
                )
            new: Any = {} if event == "start_map" else []
            if self.stack:
                self._put(new)
            self.stack.append(new)
            self.keys.append(None)
            return
        if event in ("end_map", "end_array"):
            done = self.stack.pop()
            self.keys.pop()
            if not self.stack and isinstance(done, dict):
                self.top.update(done)
            return
        self._put(value)

    def _put(self, value: Any) -> None:
        parent = self.stack[-1]
        if isinstance(parent, list):
            parent.append(value)
        else:
            parent[self.keys[-1]] = value


def _check_field(n: int, field: str, event: str, value: Any) -> None:
    where = f"test {n}"
    if field in ("id", "name"):
        if event != "string":
            raise _bad(where, f"{field} must be a string")
    elif field == "outcome":
        if event != "string" or value not in _OUTCOMES:
            raise _bad(where, f"outcome must be one of {', '.join(_OUTCOMES)}")
    elif field in _STR_OR_NULL:
        if event not in ("string", "null"):
            raise _bad(where, f"{field} must be a string or null")
    elif field in ("line", "retries"):
        if event == "null":
            return
        if event not in _NUMBER or not isinstance(value, int) or isinstance(value, bool):
            raise _bad(where, f"{field} must be an integer")
        if not -(2**31) <= value < 2**31:
            raise _bad(where, f"{field} is out of range")
    elif field == "duration_s":
        if event not in (*_NUMBER, "null"):
            raise _bad(where, "duration_s must be a number")
    elif field == "flaky" and event not in ("boolean", "null"):
        raise _bad(where, "flaky must be true or false")


def _events(stream: BinaryIO) -> Iterator[tuple[str, str, Any]]:
    try:
        yield from ijson.parse(stream, use_float=True)
    except ijson.IncompleteJSONError as exc:
        raise ReportParseError(f"results.json is not valid JSON: {exc}") from None
    except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
        raise ReportParseError(f"results.json is not valid JSON: {exc}") from None


def read_head(stream: BinaryIO) -> ResultsHead:
    """Pass one: check the whole document, return all but its tests."""
    builder = _HeadBuilder()
    test_event = builder.test_event
    event = builder.event
    root = True
    for prefix, kind, value in _events(stream):
        if root:
            if kind != "start_map":
                raise ReportParseError("results.json must be a JSON object")
            root = False
        if prefix == "tests" or prefix.startswith("tests."):
            test_event(prefix, kind, value)
        elif not (kind == "map_key" and value == "tests" and prefix == ""):
            event(kind, value)
    if root:
        raise ReportParseError("empty results.json")
    doc = builder.top
    version = doc.get("version")
    if version != SCHEMA_VERSION:
        raise ReportParseError(f"not a {SCHEMA_VERSION} document (version={str(version)[:80]!r})")
    try:
        summary = doc.get("summary")
        declared = Summary.from_dict(summary) if isinstance(summary, dict) else None
        run = doc.get("run") or {}
        if not isinstance(run, dict) or not isinstance(run.get("runner") or {}, dict):
            raise TypeError("run must be an object")
        head = ResultSet(
            run=RunInfo.from_dict(run),
            metrics=tuple(Metric.from_dict(m) for m in _list(doc, "metrics")),
            attachments=tuple(Attachment.from_dict(a) for a in _list(doc, "attachments")),
            files=tuple(ReportFile.from_dict(f) for f in _list(doc, "files")),
            tool=_opt_str(doc.get("tool")),
            duration_s=None if declared is None else declared.duration_s,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportParseError(
            f"not a usable ci-fanout results.json: {type(exc).__name__}: {exc}"
        ) from None
    return ResultsHead(resultset=head, declared=declared, tests=builder.tests)


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"{key} must be an array of objects")
    return value


def _opt_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("tool must be a string")
    return value


def iter_tests(stream: BinaryIO) -> Iterator[TestCase]:
    """Pass two: the tests of a document ``read_head`` accepted."""
    try:
        for d in ijson.items(stream, "tests.item", use_float=True):
            line, retries, duration = d.get("line"), d.get("retries"), d.get("duration_s")
            yield new_case(
                d["id"],
                d["name"],
                _OUTCOMES[d["outcome"]],
                d.get("suite"),
                d.get("classname"),
                d.get("file"),
                line,
                float(duration or 0.0),
                d.get("message"),
                d.get("details"),
                d.get("stdout"),
                d.get("stderr"),
                retries or 0,
                bool(d.get("flaky")),
            )
    except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:  # changed under us
        raise ReportParseError(f"results.json is not valid JSON: {exc}") from None


# -- the ci-fanout report format (ci-app ingest) ------------------------------------------


def parse_resultset_json(stream: BinaryIO, ctx: ParseContext) -> Iterator[TestCase]:
    """Parse a ci-fanout ``results.json`` (streamed; see the module doc)."""
    source = stream if stream.seekable() else _spool(stream)
    start = source.tell()
    head = read_head(source)
    rs = head.resultset
    ctx.tool = rs.tool
    ctx.duration_s = rs.duration_s
    ctx.declared = head.declared
    for f in rs.files:
        if f.error:
            ctx.warn(f"{f.path}: could not be parsed when this file was written: {f.error}")
    source.seek(start)
    return _clipped(iter_tests(source), ctx)


def _clipped(tests: Iterator[TestCase], ctx: ParseContext) -> Iterator[TestCase]:
    builder = CaseBuilder(ctx)
    clip = ctx.clip
    for t in tests:
        yield replace(
            t,
            id=builder.unique_id(t.id),
            message=clip(t.message),
            details=clip(t.details),
            stdout=clip(t.stdout),
            stderr=clip(t.stderr),
        )


def _spool(stream: BinaryIO) -> BinaryIO:
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (returned)
    while chunk := stream.read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool  # type: ignore[return-value]


# -- results.json members of artifacts (collect job, CI report step) ----------------------


@dataclass(frozen=True, slots=True)
class ResultsMember:
    """One ``results.json`` found in an artifact: its head and a way to stream its tests,
    or the reason it cannot be used (``error``; ``head`` is then None)."""

    path: str
    head: ResultSet | None = None
    tests: int = 0
    error: str | None = None
    _open: Callable[[], BinaryIO] | None = None

    def cases(self) -> Iterator[TestCase]:
        """The member's tests, streamed (re-reads the member; bounded memory)."""
        if self._open is None:
            return
        with self._open() as stream:
            yield from iter_tests(stream)

    def batches(self, size: int = 50_000) -> Iterator[list[TestCase]]:
        batch: list[TestCase] = []
        for case in self.cases():
            batch.append(case)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def resultset(self) -> ResultSet:
        """The whole member in memory (small files, tests)."""
        if self.head is None:
            raise ReportParseError(self.error or "unusable results.json")
        return replace(self.head, tests=tuple(self.cases()))


def _member(path: str, opener: Callable[[], BinaryIO]) -> ResultsMember:
    try:
        with opener() as stream:
            head = read_head(stream)
    except ReportParseError as exc:
        return ResultsMember(path=path, error=str(exc))
    except RecursionError:
        return ResultsMember(path=path, error="results.json is nested too deeply; not read")
    except OSError as exc:
        return ResultsMember(path=path, error=f"cannot read: {exc}")
    return ResultsMember(path=path, head=head.resultset, tests=head.tests, _open=opener)


def _is_results(name: str) -> bool:
    return name.replace("\\", "/").rsplit("/", 1)[-1] == RESULTS_FILE


def iter_result_members(
    paths: Iterable[Path], limits: Limits = DEFAULT_LIMITS
) -> Iterator[ResultsMember]:
    """Every ``results.json`` in ``paths`` (artifact zips, or loose ``results.json``
    files), each read and checked on its own; see the module doc."""
    for path in paths:
        if zipfile.is_zipfile(path):
            yield from _zip_results(path, limits)
        elif _is_results(path.name):
            if not path.is_file():
                yield ResultsMember(path=str(path), error="not a regular file; refused")
                continue
            size = path.stat().st_size
            if size > limits.max_zip_member_bytes:
                yield ResultsMember(path=str(path), error=f"{size:,} bytes, over the cap")
                continue

            def opener(path: Path = path) -> BinaryIO:
                return io.BufferedReader(path.open("rb", buffering=0), buffer_size=1 << 20)

            yield _member(str(path), opener)


def _zip_results(path: Path, limits: Limits) -> Iterator[ResultsMember]:
    archive, why = open_zip(path)
    if archive is None:
        yield ResultsMember(path=str(path), error=why)
        return
    infos = [i for i in archive.infolist() if not is_dir_member(i) and _is_results(i.filename)]
    if len(infos) > limits.max_zip_members:
        yield ResultsMember(path=str(path), error="too many results.json members")
        return
    for info in infos:
        where = f"{path.name}!{info.filename}"
        problem = member_problem(info, limits)
        if problem is not None:
            yield ResultsMember(path=where, error=problem)
            continue

        def opener(info: zipfile.ZipInfo = info) -> BinaryIO:
            # pass one reads the member to its end, so zipfile checks its CRC there
            return open_member(archive, info, verify=False)

        yield _member(where, opener)
