"""Fuzz the ingest entry points (issue 14): XML, JSON and zip bytes, 10k examples each
shape in all, never a crash and never an error no rule foresaw.

Inputs are mutations of real reports (so the parsers get deep, not just past the first
byte), random JSON nesting, and zips with damaged bytes. Each example goes through the
same path as ``ci-app ingest``: ``parse_input`` (detection, parser, isolation).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.artifacts.ingest import UNEXPECTED, InputFile, _zip_members, parse_input
from ci_app.artifacts.limits import Limits
from ci_app.artifacts.resultset import iter_result_members
from ci_app.model.results import ReportFile, SummaryCounter

from .hostile import GOOD_XML, results_json

DATA = Path(__file__).parent.parent / "data"
SEEDS = [
    GOOD_XML,
    (DATA / "junit" / "surefire-flaky.xml").read_bytes(),
    (DATA / "real-runners" / "gotestsum" / "gotestsum-rerun.xml").read_bytes(),
    (DATA / "real-runners" / "libtest" / "libtest-ignored.xml").read_bytes(),
    (DATA / "real-runners" / "pytest-ids" / "pytest-xunit1.xml").read_bytes(),
    (DATA / "real-runners" / "mocha" / "mocha-hook.json").read_bytes(),
    (DATA / "runners" / "jest.json").read_bytes(),
    results_json("r", "s", ["a", "b"]),
]
LIMITS = Limits(max_zip_member_bytes=1 << 20, max_message_chars=4096)


def _ingest_bytes(data: bytes, name: str = "report") -> list[ReportFile]:
    item = InputFile(path=name, open=lambda: io.BytesIO(data), size=len(data))
    cases, finish = parse_input(item, limits=LIMITS)
    counter = SummaryCounter()
    for case in cases:
        counter.add(case)
    return finish(counter.summary())


def _check(files: list[ReportFile]) -> None:
    for f in files:
        assert not (f.error or "").startswith(UNEXPECTED), f.error


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(seed) - 1)))
        if op == 0 and seed:
            seed[pos] = draw(st.integers(0, 255))
        elif op == 1:
            seed[pos:pos] = draw(st.sampled_from([b"<", b">", b"&", b'"', b"{", b"[", b"]]>", b"\x00", b"<testcase>", b"<testsuite>", b"\xff\xfe"]))  # fmt: skip
        elif op == 2:
            del seed[pos : pos + draw(st.integers(1, 64))]
        else:
            seed = seed[: pos + 1]
    return bytes(seed)


def _nested(depth: int, open_: bytes, close: bytes) -> bytes:
    return open_ * depth + close * depth


json_docs = st.one_of(
    st.builds(_nested, st.integers(1, 3000), st.just(b"["), st.just(b"]")),
    st.builds(
        lambda d: b'{"stats": {"passes": 1}, "passes": ' + _nested(d, b"[", b"]") + b"}",
        st.integers(1, 3000),
    ),
    st.builds(
        lambda d: (
            b'{"version": "ci-fanout/results/v1", "run": '
            + _nested(d, b'{"a":', b"}").replace(b"}", b"1}", 1)
            + b', "tests": []}'
        ),
        st.integers(1, 200),
    ),
)


@settings(max_examples=6000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_reports_never_crash(data: bytes) -> None:
    _check(_ingest_bytes(data))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(json_docs)
def test_deep_json_never_crashes(data: bytes) -> None:
    _check(_ingest_bytes(data, "report.json"))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
)
def test_damaged_zips_never_crash(
    tmp_path_factory: object, seed: bytes, edits: list[tuple[int, int]]
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/results.json", results_json("r", "s", ["x"]))
        zf.writestr("b/report.xml", seed)
    data = bytearray(buf.getvalue())
    for pos, value in edits:
        data[pos % len(data)] = value
    path = Path(str(tmp_path_factory.mktemp("z"))) / "artifact.zip"  # type: ignore[attr-defined]
    path.write_bytes(bytes(data))
    for item in _zip_members(path, LIMITS):
        if isinstance(item, ReportFile):
            continue
        cases, finish = parse_input(item, limits=LIMITS)
        for _ in cases:
            pass
        _check(finish(SummaryCounter().summary()))
    for member in iter_result_members([path], LIMITS):
        if member.error is None:
            list(member.cases())
