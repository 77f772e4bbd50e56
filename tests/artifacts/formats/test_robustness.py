"""Whatever the bytes, a parser either yields cases or raises ReportParseError: never another error."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.artifacts.base import ParseContext, ReportParseError
from ci_app.artifacts.formats import get_parser

from .util import REPORTS

FORMATS = [
    "nunit2",
    "nunit3",
    "xunit1",
    "xunit2",
    "trx",
    "mocha-json",
    "dart-json",
    "go-test-json",
    "rspec-json",
    "tap",
    "ctrf-json",
    "ci-fanout",
]
SEEDS = {
    "nunit3": REPORTS / "publish-unit-test-result-action/nunit/nunit3/jenkins/NUnit-issue50162.xml",
    "trx": REPORTS / "publish-unit-test-result-action/trx/mstest/pickles.trx",
    "xunit2": REPORTS / "publish-unit-test-result-action/xunit/mstest/fixie.xml",
    "mocha-json": REPORTS / "test-reporter/fixtures/mocha-json.json",
    "dart-json": REPORTS / "test-reporter/fixtures/dart-json.json",
    "go-test-json": REPORTS / "test-reporter/fixtures/golang-json.json",
    "rspec-json": REPORTS / "test-reporter/fixtures/rspec-json.json",
}


def _run(fmt: str, data: bytes) -> None:
    try:
        cases = list(get_parser(fmt)(io.BytesIO(data), ParseContext(path="fuzz")))
    except ReportParseError as exc:
        assert str(exc)
        return
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_random_bytes(fmt: str, data: bytes) -> None:
    _run(fmt, data)


@pytest.mark.parametrize(
    "fmt", ["mocha-json", "rspec-json", "ctrf-json", "ci-fanout", "dart-json", "go-test-json"]
)
@settings(max_examples=60, deadline=None)
@given(value=_json_values)
def test_random_json_shapes(fmt: str, value: object) -> None:
    _run(fmt, json.dumps(value).encode())
    if isinstance(value, dict):  # also as one event line of a stream
        _run(fmt, json.dumps({"type": "testStart", "Action": "run", **value}).encode())


KEYS = {
    "mocha-json": ["stats", "tests", "pending", "failures", "passes"],
    "rspec-json": ["examples", "summary", "messages"],
    "ctrf-json": ["results"],
}


@pytest.mark.parametrize("fmt", list(KEYS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_right_keys_wrong_values(fmt: str, data: st.DataObject) -> None:
    doc = {k: data.draw(_json_values) for k in KEYS[fmt]}
    if fmt == "ctrf-json":
        doc["results"] = {
            "tool": data.draw(_json_values),
            "tests": [data.draw(_json_values), {"name": "x", "status": data.draw(_json_values)}],
        }
    _run(fmt, json.dumps(doc).encode())


@pytest.mark.parametrize("fmt", list(SEEDS))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_truncated_and_corrupted_real_files(fmt: str, data: st.DataObject) -> None:
    raw = SEEDS[fmt].read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    _run(fmt, raw[:cut])
    pos = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    _run(fmt, raw[:pos] + junk + raw[pos + len(junk) :])


@pytest.mark.parametrize(
    "event",
    [
        {"type": "testStart", "test": None},
        {"type": "testStart", "test": {"id": 1, "metadata": "x"}},
        {"type": "testStart", "test": []},
    ],
)
def test_dart_event_with_a_test_of_the_wrong_shape(event: dict[str, object]) -> None:
    """Found by the fuzzer: ``{"test": null}`` crashed with AttributeError."""
    with pytest.raises(ReportParseError, match="malformed Dart JSON"):
        list(
            get_parser("dart-json")(io.BytesIO(json.dumps(event).encode()), ParseContext(path="f"))
        )
