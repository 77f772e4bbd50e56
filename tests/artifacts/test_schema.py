"""results.json validates against the published ResultSet v1 JSON Schema."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ci_app.artifacts.ingest import ingest_paths, ingest_to_json
from ci_app.model.results import ResultSet

REPORTS = Path(__file__).parent.parent / "data" / "reports"


def _schema() -> dict[str, Any]:
    text = resources.files("ci_app.model").joinpath("schemas/results.v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_streamed_and_in_memory_results_validate_and_agree(
    validator: jsonschema.protocols.Validator,
) -> None:
    paths = [REPORTS / "publish-unit-test-result-action", REPORTS / "test-reporter" / "fixtures"]
    buf = io.StringIO()
    ingest_to_json(paths, buf)
    streamed = json.loads(buf.getvalue())
    validator.validate(streamed)
    in_memory = ingest_paths(paths).to_dict()
    validator.validate(in_memory)
    assert streamed["summary"] == in_memory["summary"]
    assert streamed["tests"] == in_memory["tests"]
    assert streamed["files"] == in_memory["files"]
    # ... and the document loads back into the model unchanged.
    assert ResultSet.from_dict(streamed).to_dict()["tests"] == streamed["tests"]


def test_schema_rejects_an_unknown_outcome(validator: jsonschema.protocols.Validator) -> None:
    doc = ingest_paths([]).to_dict()
    doc["tests"] = [{"id": "a", "name": "a", "outcome": "exploded"}]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)
