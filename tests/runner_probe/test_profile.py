"""HardwareProfile v1: round trip, schema, fingerprint."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ci_app.model.labels import derive_labels
from ci_app.model.profile import SCHEMA_ID, Browser, Disk, HardwareProfile, Status
from runner_probe.cli import profile_json
from runner_probe.detect import DetectOptions, detect
from tests.model.test_labels import SWIFTSHADER
from tests.runner_probe.conftest import ProfileFactory


def schema() -> dict[str, Any]:
    text = resources.files("ci_app.model").joinpath("schemas/profile.v1.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"nvml": "h100x8", "browser": SWIFTSHADER},
        {"nvml": "a100-mig", "cgroup": "v2-nested"},
        {"cgroup": "v2-half-cpu", "cpuinfo": "aws-graviton3", "machine": "aarch64"},
    ],
)
def test_round_trip_and_schema(profile_for: ProfileFactory, kwargs: dict[str, Any]) -> None:
    p = profile_for(**kwargs)
    doc = json.loads(json.dumps(profile_json(p)))
    validate(doc)
    assert doc["$schema"] == SCHEMA_ID
    back = HardwareProfile.from_dict(doc)
    assert back == p
    assert back.fingerprint() == p.fingerprint()


def test_live_detect_validates() -> None:
    p = detect(DetectOptions())
    validate(json.loads(json.dumps(profile_json(p))))
    assert p.cpu.effective >= 1
    assert p.memory.effective_bytes > 0
    assert p.probe.timings_ms["total"] < 1000


def test_schema_rejects_bad_documents(profile_for: ProfileFactory) -> None:
    doc = profile_json(profile_for())
    bad_status = json.loads(json.dumps(doc))
    bad_status["nvidia"]["status"] = "broken"
    bad_label = json.loads(json.dumps(doc))
    bad_label["labels"] = ["GPU MEM>=24G"]
    missing = json.loads(json.dumps(doc))
    del missing["cpu"]["effective"]
    for bad in (bad_status, bad_label, missing):
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)


def test_from_dict_rejects_other_versions(profile_for: ProfileFactory) -> None:
    doc = profile_for().to_dict()
    doc["schema_version"] = 2
    with pytest.raises(ValueError, match="schema_version 2"):
        HardwareProfile.from_dict(doc)


def test_from_dict_type_errors(profile_for: ProfileFactory) -> None:
    doc = profile_for().to_dict()
    doc["cpu"]["effective"] = "two"
    with pytest.raises(TypeError):
        HardwareProfile.from_dict(doc)


def test_fingerprint_ignores_volatile_facts(profile_for: ProfileFactory) -> None:
    p = profile_for()
    moved = dataclasses.replace(
        p,
        disk=dataclasses.replace(p.disk, free_bytes=p.disk.free_bytes - 10**9),
        probe=dataclasses.replace(p.probe, collected_at="2030-01-01T00:00:00+00:00"),
    )
    assert moved.fingerprint() == p.fingerprint()
    other = dataclasses.replace(p, browser=Browser(status=Status.ERROR, error="x"))
    assert other.fingerprint() != p.fingerprint()
    assert dataclasses.replace(p, disk=Disk(status=Status.ERROR)).fingerprint() != p.fingerprint()


@pytest.mark.parametrize(
    ("name", "effective_cpus", "effective_bytes", "browser_label"),
    [
        # `runner-probe detect --json --browser` on the 2-vCPU Debian 12 VM of docs/probe.md
        ("debian12-vm-2vcpu", 2, 25276510208, "webgpu-sw"),
        # the same VM inside a real v1 cgroup: cfs 50000/100000, 512 MiB, cpuset 1
        ("debian12-vm-cgroup-half-cpu-512m", 1, 536870912, None),
    ],
)
def test_recorded_real_profiles(
    name: str, effective_cpus: int, effective_bytes: int, browser_label: str | None
) -> None:
    path = Path(__file__).resolve().parents[1] / "data" / "probe" / "profiles" / f"{name}.json"
    doc = json.loads(path.read_text())
    validate(doc)
    profile = HardwareProfile.from_dict(doc)
    assert profile.cpu.effective == effective_cpus
    assert profile.memory.effective_bytes == effective_bytes
    assert list(derive_labels(profile)) == doc["labels"]
    if browser_label:
        assert browser_label in doc["labels"]
    assert "webgpu" not in doc["labels"]
