"""Browser metric names: the structure downstream code reads back."""

from __future__ import annotations

import pytest

from ci_app.model.browser import (
    POOL_SCOPE,
    adapter_class,
    metric_name,
    parse_metric_name,
)


def test_names_round_trip_with_hostile_test_ids() -> None:
    test = "tests/a b/test_x.py::test_y[p/q::r|`@x`]"
    name = metric_name("google-swiftshader-fallback", "gflops", test)
    parsed = parse_metric_name(name)
    assert parsed is not None
    assert (parsed.adapter, parsed.metric, parsed.scope) == (
        "google-swiftshader-fallback",
        "gflops",
        test,
    )
    assert not parsed.describes_runner and not parsed.is_pool
    pool = parse_metric_name(metric_name("nvidia-ampere", "launch_ms", POOL_SCOPE))
    assert pool is not None and pool.is_pool and pool.describes_runner
    infra = parse_metric_name(metric_name("nvidia-ampere", "infra.renderer-crash", "t::x"))
    assert infra is not None and infra.infra_kind == "renderer-crash" and infra.describes_runner
    timing = parse_metric_name(metric_name("nvidia-ampere", "compile_ms", "t::x"))
    assert timing is not None and timing.is_timing and timing.describes_runner


@pytest.mark.parametrize(
    "name",
    [
        "gflops",
        "tests/x::y",
        "browser/",
        "browser/a/b",
        "browser/A B/m/t",
        "browser/a/m x/t",
        "browser/a/m/",
        "browser//m/t",
    ],
)
def test_other_names_are_not_browser_metrics(name: str) -> None:
    assert parse_metric_name(name) is None


def test_bad_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="bad metric name"):
        metric_name("a", "gfl ops", "t")
    with pytest.raises(ValueError, match="bad metric name"):
        metric_name("a", "x" * 81, "t")
    with pytest.raises(ValueError, match="adapter class"):
        metric_name("A/B", "m", "t")
    with pytest.raises(ValueError, match="scope"):
        metric_name("a", "m", "")


def test_adapter_class_slugs() -> None:
    assert adapter_class("Google", "SwiftShader", fallback=True) == "google-swiftshader-fallback"
    assert adapter_class("NVIDIA Corporation", "", fallback=False) == "nvidia-corporation"
    assert adapter_class(None, None, fallback=False) == "unknown"
    assert adapter_class("x", "y", fallback=False, present=False) == "no-webgpu"
    assert adapter_class("<script>", "a/b", fallback=False) == "script-a-b"
