"""Reconcile: adds at once, removes after N misses, never foreign labels, never on error."""

from __future__ import annotations

import dataclasses

import pytest

from ci_app.model.profile import Nvidia, Status
from ci_app.model.reconcile import reconcile, reconcile_profile
from tests.runner_probe.conftest import ProfileFactory

READ_ONLY = ["self-hosted", "Linux", "X64"]


def test_adds_missing_and_keeps_foreign() -> None:
    plan = reconcile(["gpu", "gpu-mem-ge-24g"], [*READ_ONLY, "team-ml", "gpu"], read_only=READ_ONLY)
    assert plan.add == ("gpu-mem-ge-24g",)
    assert plan.remove == ()
    assert set(plan.foreign) == {"self-hosted", "Linux", "X64", "team-ml"}
    assert plan.changed


def test_read_only_x64_is_never_removed() -> None:
    # GitHub's registration label X64 spells our arch label x64: only read_only protects it
    assert reconcile([], ["X64"], min_misses=1).remove == ("X64",)
    assert reconcile([], ["X64"], min_misses=1, read_only=["X64"]).remove == ()


def test_removal_waits_for_n_consecutive_misses() -> None:
    current = ["gpu", "gpu-mem-ge-80g", "hand-set"]
    desired = ["gpu"]
    misses: dict[str, int] = {}
    for round_ in (1, 2):
        plan = reconcile(desired, current, misses=misses)
        assert plan.remove == ()
        assert plan.pending == ("gpu-mem-ge-80g",)
        misses = dict(plan.misses)
        assert misses == {"gpu-mem-ge-80g": round_}
    plan = reconcile(desired, current, misses=misses)
    assert plan.remove == ("gpu-mem-ge-80g",)
    assert plan.misses == {}
    assert "hand-set" in plan.foreign


def test_a_hit_resets_the_counter() -> None:
    plan = reconcile(["gpu"], ["gpu", "cpus-ge-8"], misses={"cpus-ge-8": 2})
    assert plan.remove == ("cpus-ge-8",)
    plan = reconcile(["gpu", "cpus-ge-8"], ["gpu", "cpus-ge-8"], misses={"cpus-ge-8": 2})
    assert plan.misses == {} and plan.remove == () and plan.pending == ()


def test_error_source_freezes_labels() -> None:
    current = ["gpu", "gpu-nvidia", "sm-ge-80", "cpus-ge-8"]
    plan = reconcile(
        ["cpus-ge-8"], current, misses={"gpu": 2}, error_sources={"nvidia"}, min_misses=1
    )
    assert plan.remove == ()
    assert set(plan.frozen) == {"gpu", "gpu-nvidia", "sm-ge-80"}
    assert plan.misses == {"gpu": 2}  # neither counted nor forgotten


def test_case_insensitive_and_provider_spelling() -> None:
    plan = reconcile(["gpu-nvidia"], ["GPU-NVIDIA", "Webgpu-SW"], min_misses=1)
    assert plan.add == ()
    assert plan.remove == ("Webgpu-SW",)


def test_owned_as_explicit_set() -> None:
    plan = reconcile([], ["a", "b"], owned={"a"}, min_misses=1)
    assert plan.remove == ("a",)
    assert plan.foreign == ("b",)


def test_min_misses_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_misses"):
        reconcile([], [], min_misses=0)


def test_reconcile_profile_nvml_error_keeps_gpu_labels(profile_for: ProfileFactory) -> None:
    healthy = profile_for(nvml="h100x8")
    first = reconcile_profile(healthy, READ_ONLY, read_only=READ_ONLY)
    assert "gpu-mem-ge-80g" in first.add
    current = [*READ_ONLY, *first.add]
    broken = dataclasses.replace(
        healthy, gpus=(), nvidia=Nvidia(status=Status.ERROR, error="GPU is lost")
    )
    for _ in range(5):
        plan = reconcile_profile(broken, current, read_only=READ_ONLY)
        assert plan.remove == ()
        assert "gpu-mem-ge-80g" in plan.frozen
    # the driver is really gone (absent): removed after 3 probes
    gone = dataclasses.replace(healthy, gpus=(), nvidia=Nvidia(status=Status.ABSENT))
    misses: dict[str, int] = {}
    removed: tuple[str, ...] = ()
    for _ in range(3):
        plan = reconcile_profile(gone, current, misses=misses, read_only=READ_ONLY)
        misses = dict(plan.misses)
        removed = plan.remove
    assert "gpu-mem-ge-80g" in removed and "gpu" in removed
    assert not {"self-hosted", "Linux", "X64"} & set(removed)
