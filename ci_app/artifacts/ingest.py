"""Turn report files (paths, directories, globs, zips) into one ResultSet.

Two ways out: ``ingest_paths`` builds an in-memory ``ResultSet``;
``ingest_to_json`` streams cases straight into ``results.json`` so memory stays
bounded whatever the input size. A file that cannot be parsed becomes a
``ReportFile`` with ``error`` set; it never aborts the others.
"""

from __future__ import annotations

import dataclasses
import gc
import glob
import io
import json
import logging
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from ci_app.artifacts import native
from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.detect import HEAD_BYTES, detect_format
from ci_app.artifacts.formats import FORMATS, get_parser
from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.model.results import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    ReportFile,
    ResultSet,
    RunInfo,
    Summary,
    SummaryCounter,
    TestCase,
    case_to_json,
    strip_ansi,
)

log = logging.getLogger(__name__)

#: Prefix of an error that no rule foresaw (the fuzz test asserts it never appears).
UNEXPECTED = "unexpected error while reading this file"
NOT_REGULAR = (
    "not a regular file (a FIFO, device or socket); refused: pass report files, directories or zips"
)

_REPORT_SUFFIXES = (".xml", ".json", ".trx", ".tap", ".jsonl", ".ndjson", ".log", ".txt")


@dataclass(frozen=True, slots=True)
class InputFile:
    """One report to read: a display path and a way to open it as a binary stream."""

    path: str
    open: Callable[[], BinaryIO]
    size: int


#: Compression methods Python's zipfile reads (stored, deflate, bzip2, lzma).
SUPPORTED_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
#: What reading a damaged member can raise (bad CRC, name mismatch, truncated stream).
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # a method zipfile cannot decompress
    RuntimeError,  # an encrypted member
)


def open_zip(path: Path | str) -> tuple[zipfile.ZipFile | None, str | None]:
    """``(archive, None)``, or ``(None, why)`` when the central directory is unreadable."""
    try:
        return zipfile.ZipFile(path), None
    except ZIP_READ_ERRORS as exc:
        return None, f"unreadable zip archive: {exc}"


def is_dir_member(info: zipfile.ZipInfo) -> bool:
    """``ZipInfo.is_dir`` that a member without a name cannot crash."""
    return info.filename.endswith("/")


def member_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    """Why one member is not read (no name, encrypted, unknown method, over a cap), or None."""
    if not info.filename:
        return "member has no name; not read"
    if info.flag_bits & 0x1:
        return "member is encrypted; encrypted reports are not read"
    if info.compress_type not in SUPPORTED_ZIP_METHODS:
        return (
            f"member uses compression method {info.compress_type}, which is not supported "
            "(stored, deflate, bzip2 and lzma are)"
        )
    if info.file_size > limits.max_zip_member_bytes:
        return f"member is {info.file_size:,} bytes uncompressed, over the cap"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > 1024 * 1024 and ratio > limits.max_zip_ratio:
        return (
            f"compression ratio {ratio:.0f}:1 exceeds {limits.max_zip_ratio:.0f}:1 "
            "(possible zip bomb); not read"
        )
    return None


def open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, verify: bool) -> BinaryIO:
    """A buffered stream over one member, never extracted to disk (no zip slip).

    zipfile yields at most the declared size and checks the CRC and the local
    header's name as it reads. With ``verify`` the member is first read through
    once (bounded memory), so a damaged member fails here, before any of its
    cases is emitted, as a ``ReportParseError``.
    """
    try:
        if verify:
            with archive.open(info) as check:
                while check.read(1 << 20):
                    pass
        raw = archive.open(info)
    except ZIP_READ_ERRORS as exc:
        raise ReportParseError(f"damaged zip member: {exc}") from None
    reader = _CappedReader(raw, info.file_size)
    return cast(BinaryIO, io.BufferedReader(reader, buffer_size=1 << 20))


def _zip_members(path: Path, limits: Limits) -> Iterator[InputFile | ReportFile]:
    archive, why = open_zip(path)
    if archive is None:
        yield ReportFile(path=str(path), format="zip", error=why)
        return
    infos = [i for i in archive.infolist() if not is_dir_member(i)]
    if len(infos) > limits.max_zip_members:
        yield ReportFile(
            path=str(path),
            format="zip",
            error=f"zip has {len(infos):,} members, over the cap of {limits.max_zip_members:,}",
        )
        return
    total = 0
    for info in infos:
        display = f"{path}!{info.filename}"
        problem = member_problem(info, limits)
        if problem is not None:
            yield ReportFile(path=display, format="zip", error=problem)
            continue
        total += info.file_size
        if total > limits.max_zip_total_bytes:
            yield ReportFile(path=display, format="zip", error="zip total size cap reached")
            return

        def opener(info: zipfile.ZipInfo = info) -> BinaryIO:
            return open_member(archive, info, verify=True)

        yield InputFile(path=display, open=opener, size=info.file_size)


class _CappedReader(io.RawIOBase):
    """Guards against members whose header lies about their size."""

    def __init__(self, raw: IO[bytes], cap: int) -> None:
        super().__init__()
        self._raw = raw
        self._cap = cap
        self._left = cap

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._raw.seek(offset, whence)
        self._left = self._cap - pos
        return pos

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(b))
        except ZIP_READ_ERRORS as exc:
            raise ReportParseError(f"damaged zip member: {exc}") from None
        self._left -= len(data)
        if self._left < 0:
            raise ReportParseError("zip member is larger than it declared; not read")
        b[: len(data)] = data
        return len(data)


def expand_inputs(
    patterns: Iterable[str | Path], limits: Limits = DEFAULT_LIMITS
) -> Iterator[InputFile | ReportFile]:
    """Files, directories (recursively, report-like suffixes), globs and zip archives."""
    seen: set[str] = set()
    for pattern in patterns:
        text = str(pattern)
        matches = (
            sorted(glob.glob(text, recursive=True))  # noqa: PTH207 (absolute patterns too)
            if glob.has_magic(text)
            else [text]
        )
        if not matches:
            yield ReportFile(path=text, format="missing", error="no file matches this pattern")
            continue
        for match in matches:
            path = Path(match)
            if path.is_dir():
                files = sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in (*_REPORT_SUFFIXES, ".zip")
                )
            elif path.exists():
                files = [path]
                if not stat.S_ISREG(path.stat().st_mode):
                    yield ReportFile(path=text, format="unknown", error=NOT_REGULAR)
                    continue
            else:
                yield ReportFile(path=text, format="missing", error="file not found")
                continue
            for file in files:
                key = os.fspath(file.resolve())
                if key in seen:
                    continue
                seen.add(key)
                if file.suffix.lower() == ".zip" or zipfile.is_zipfile(file):
                    yield from _zip_members(file, limits)
                    continue
                size = file.stat().st_size
                if size > limits.max_file_bytes:
                    yield ReportFile(
                        path=str(file),
                        format="unknown",
                        error=f"file is {size:,} bytes, over the cap of {limits.max_file_bytes:,}",
                    )
                    continue

                def opener(file: Path = file) -> BinaryIO:
                    return file.open("rb")

                yield InputFile(path=str(file), open=opener, size=size)


def _read_head(stream: BinaryIO) -> bytes:
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    return head


def parse_input(
    item: InputFile, fmt: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> tuple[Iterator[TestCase], Callable[[Summary], list[ReportFile]]]:
    """Start parsing one input: (cases iterator, finish(summary) -> file entries).

    ``finish`` must be called after the iterator is exhausted (or failed); its
    first entry reports the format, warnings, declared counts and any error; one
    more entry follows for each part of the report that failed on its own (a Jest
    test file that failed to run: ``path!part``, with its error and no tests).
    """
    ctx = ParseContext(path=item.path, max_message_chars=limits.max_message_chars)
    state: dict[str, str | None] = {"format": fmt, "error": None}

    def cases() -> Iterator[TestCase]:
        # One input's failure never reaches the others: every way a hostile or
        # damaged file can fail ends as this file's error entry.
        try:
            with item.open() as stream:
                detected = fmt or detect_format(_read_head(stream))
                state["format"] = detected
                if detected not in FORMATS:
                    state["error"] = _unknown_message(detected)
                    return
                parser = get_parser(detected)
                if detected == "junit":  # both JUnit readers clean texts in ctx.clip
                    yield from parser(stream, ctx)
                else:
                    for case in parser(stream, ctx):
                        yield _without_escapes(case)
        except ReportParseError as exc:
            state["error"] = str(exc)
        except RecursionError:
            state["error"] = "input is nested too deeply to be a test report; not read"
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as exc:
            state["error"] = f"damaged zip member: {exc}"
        except OSError as exc:
            state["error"] = f"cannot read file: {exc}"
        except Exception as exc:  # last resort: keep the other inputs' results
            log.exception("unexpected error reading %s", item.path)
            state["error"] = f"{UNEXPECTED} ({type(exc).__name__}: {exc}); please report it"

    def finish(summary: Summary) -> list[ReportFile]:
        fmt_name = state["format"] or "unknown"
        entry = ReportFile(
            path=item.path,
            format=fmt_name,
            summary=summary,
            error=state["error"],
            warnings=tuple(ctx.warnings),
            declared=ctx.declared,
        )
        parts = [
            ReportFile(path=f"{item.path}!{part}", format=fmt_name, error=error)
            for part, error in ctx.part_errors
        ]
        return [entry, *parts]

    return cases(), finish


def _without_escapes(case: TestCase) -> TestCase:
    """The case with terminal escape sequences (colour codes) removed from its texts."""
    texts = (case.message, case.details, case.stdout, case.stderr)
    clean = tuple(strip_ansi(t) if t else t for t in texts)
    if all(a is b for a, b in zip(texts, clean, strict=True)):
        return case
    return dataclasses.replace(
        case, message=clean[0], details=clean[1], stdout=clean[2], stderr=clean[3]
    )


def _unknown_message(fmt: str) -> str:
    if fmt == "empty":
        return "empty file: no test report in it"
    if fmt.startswith("unknown-xml-root:"):
        root = fmt.split(":", 1)[1]
        return f"XML root <{root}> is not a known test report format"
    if fmt == "json-unknown":
        return "JSON document is not a known test report format"
    return "not a recognised test report (expected JUnit/NUnit/xUnit/TRX XML, JSON or TAP)"


@contextmanager
def relaxed_gc(threshold: int = 100_000) -> Iterator[None]:
    """Collect young objects less often while streaming millions of short-lived cases.

    Parsing creates many acyclic objects; the default gen-0 threshold (700) makes
    the cyclic collector run thousands of times for nothing. Restored afterwards.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(threshold, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def ingest_paths(
    paths: Iterable[str | Path],
    *,
    run: RunInfo | None = None,
    fmt: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ResultSet:
    """Parse every input into one in-memory ResultSet."""
    tests: list[TestCase] = []
    files: list[ReportFile] = []
    for item in expand_inputs(paths, limits):
        if isinstance(item, ReportFile):
            files.append(item)
            continue
        cases, finish = parse_input(item, fmt, limits)
        counter = SummaryCounter()
        for case in cases:
            counter.add(case)
            tests.append(case)
        files.extend(finish(counter.summary()))
    return ResultSet(
        run=run or RunInfo(),
        tests=tuple(tests),
        files=tuple(files),
    )


CasesSink = Callable[[list[TestCase]], None]


def _write_native(
    cases: Iterable[TestCase],
    counter: SummaryCounter,
    out: IO[str],
    first: bool,
    fast: native.Speedups,
    sink: CasesSink | None = None,
) -> bool:
    """Encode and count cases in batches with the native encoder; returns ``first``.

    The UTF-8 it makes goes straight to the file's byte buffer when ``out`` is a
    UTF-8 text file (flushed first, so the order of writes is kept).
    """
    raw: IO[bytes] | None = None
    if isinstance(out, io.TextIOWrapper) and out.encoding.lower().replace("_", "-") in (
        "utf-8",
        "utf8",
    ):
        out.flush()
        raw = out.buffer
    batch: list[TestCase] = []
    append = batch.append
    encode = fast.encode_cases
    for case in cases:
        append(case)
        if len(batch) >= 4096:
            data, skipped, passed, failed, errors, flaky, total = encode(batch, counter.duration_s)
            counter.add_counts(skipped, passed, failed, errors, flaky, total)
            _write_utf8(out, raw, b"\n" if first else b",\n")
            _write_utf8(out, raw, data)
            del data  # ~3 MB, not held while the sink stores the batch
            first = False
            if sink is not None:
                sink(batch)
            batch.clear()
    if batch:
        data, skipped, passed, failed, errors, flaky, total = encode(batch, counter.duration_s)
        counter.add_counts(skipped, passed, failed, errors, flaky, total)
        _write_utf8(out, raw, b"\n" if first else b",\n")
        _write_utf8(out, raw, data)
        del data
        first = False
        if sink is not None:
            sink(batch)
    return first


def _write_utf8(out: IO[str], raw: IO[bytes] | None, data: bytes) -> None:
    if raw is not None:
        raw.write(data)
    else:
        out.write(data.decode("utf-8"))


def ingest_to_json(
    paths: Iterable[str | Path],
    out: IO[str],
    *,
    run: RunInfo | None = None,
    fmt: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    sink: CasesSink | None = None,
) -> tuple[Summary, list[ReportFile]]:
    """Stream every input into a ResultSet v1 JSON document on ``out``.

    Memory stays bounded: cases are written as they are parsed; the summary and
    file list (small) come after the ``tests`` array. ``sink`` also receives
    every batch of cases (``ingest --db`` stores them as they come).
    """
    run = run or RunInfo()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out.write('{"$schema":' + dumps(SCHEMA_ID) + ',"version":' + dumps(SCHEMA_VERSION))
    out.write(',"tool":null,"run":' + dumps(run.to_dict()) + ',"tests":[')
    files: list[ReportFile] = []
    first = True
    with relaxed_gc():
        for item in expand_inputs(paths, limits):
            if isinstance(item, ReportFile):
                files.append(item)
                continue
            cases, finish = parse_input(item, fmt, limits)
            counter = SummaryCounter()
            fast = native.speedups()
            if fast is not None:
                first = _write_native(cases, counter, out, first, fast, sink)
            else:
                add = counter.add
                batch: list[str] = []
                kept: list[TestCase] = []
                for case in cases:
                    add(case)
                    batch.append(case_to_json(case))
                    if sink is not None:
                        kept.append(case)
                    if len(batch) >= 4096:
                        out.write(("\n" if first else ",\n") + ",\n".join(batch))
                        first = False
                        batch.clear()
                        if sink is not None:
                            sink(kept)
                            kept = []
                if batch:
                    out.write(("\n" if first else ",\n") + ",\n".join(batch))
                    first = False
                    if sink is not None:
                        sink(kept)
            files.extend(finish(counter.summary()))
    summary = sum((f.summary for f in files), Summary())
    write = out.write
    write('\n],"metrics":[],"attachments":[],"files":')
    write(dumps([f.to_dict() for f in files]))
    write(',"summary":' + dumps(summary.to_dict()) + "}\n")
    return summary, files
