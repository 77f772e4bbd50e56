"""Profile -> labels: snapshots of real-shaped boxes, the browser rules, ownership, the docs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ci_app.model.labels import (
    LABEL_TABLE,
    OWNED_LABEL_PATTERNS,
    derive_labels,
    gpu_model_labels,
    is_owned_label,
    is_valid_label,
    label_source,
    render_labels_markdown,
)
from ci_app.model.profile import Browser, Status, WebGpu, WebGpuAdapter, WebNn
from tests.runner_probe.conftest import PROBE_DATA, ProfileFactory

SNAPSHOTS = PROBE_DATA / "labels"
REPO = Path(__file__).resolve().parents[2]
UPDATE = os.environ.get("UPDATE_LABEL_SNAPSHOTS") == "1"

# As measured with Debian's Chromium 156 headless + --enable-unsafe-webgpu (docs/probe.md)
SWIFTSHADER = Browser(
    status=Status.OK,
    engine="chromium",
    version="156.0.8078.108",
    webgpu=WebGpu(
        api=True,
        adapter=WebGpuAdapter(
            vendor="google",
            architecture="swiftshader",
            device="0xc0de",
            description="SwiftShader Device (Subzero)",
            type="CPU",
            backend="vulkan",
            fallback=True,
        ),
    ),
    webnn=WebNn(
        api=True,
        cpu=False,
        gpu=False,
        npu=False,
        error="NotSupportedError: WebNN is not supported on this platform.",
    ),
)
HARDWARE = Browser(
    status=Status.OK,
    engine="chromium",
    version="156.0.8078.108",
    webgpu=WebGpu(
        api=True,
        adapter=WebGpuAdapter(
            vendor="nvidia", architecture="hopper", type="discrete GPU", fallback=False
        ),
    ),
    webnn=WebNn(api=True, cpu=True, gpu=True, npu=False),
)

CASES: dict[str, dict[str, object]] = {
    # the measured Debian 12 VM of docs/probe.md (x86-64-v3, 2 vCPU, 23.5 GiB)
    "vm-v3": {"cpuinfo": "amd-epyc-v3-vm", "browser": SWIFTSHADER},
    # + 8x H100 SXM, Sapphire Rapids, 2 TB, 224 threads
    "h100x8": {
        "cgroup": "v2-host",
        "cpuinfo": "intel-xeon-sapphire-rapids",
        "nvml": "h100x8",
        "affinity": 224,
        "mem_total_bytes": 2_063_000_000_000,
        "browser": SWIFTSHADER,
    },
    # the same box, runner pinned to two GPUs
    "h100x8-visible-2": {
        "cgroup": "v2-host",
        "cpuinfo": "intel-xeon-sapphire-rapids",
        "nvml": "h100x8",
        "affinity": 224,
        "mem_total_bytes": 2_063_000_000_000,
        "env": {"CUDA_VISIBLE_DEVICES": "0,1"},
    },
    # a Kubernetes pod (4 CPUs, 4 GiB) on a MIG-partitioned A100 box
    "a100-mig-pod": {"cgroup": "v2-nested", "nvml": "a100-mig", "affinity": 64},
    # Graviton3 in a 0.5-CPU / 512 MiB cgroup
    "graviton3-half-cpu": {
        "cgroup": "v2-half-cpu",
        "cpuinfo": "aws-graviton3",
        "machine": "aarch64",
        "affinity": 4,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_label_snapshot(case: str, profile_for: ProfileFactory) -> None:
    labels = derive_labels(profile_for(**CASES[case]))
    path = SNAPSHOTS / f"{case}.txt"
    if UPDATE:
        path.write_text("".join(f"{label}\n" for label in labels))
    expected = path.read_text().split()
    assert list(labels) == expected
    assert all(is_valid_label(label) and is_owned_label(label) for label in labels)


def test_vm_matches_the_measured_example(profile_for: ProfileFactory) -> None:
    """docs/probe.md §8.3 lists 11 labels for the VM; we add cumulative levels and cpus-ge-1."""
    labels = set(derive_labels(profile_for(**CASES["vm-v3"])))
    measured = {
        "cpu-avx2", "cpu-x86-64-v3", "cpus-ge-2", "disk-free-ge-10g", "disk-free-ge-50g",
        "mem-ge-4g", "mem-ge-8g", "mem-ge-16g", "mem-ge-24g", "webgpu-sw", "x64",
    }  # fmt: skip
    assert measured <= labels
    assert labels - measured == {"cpu-x86-64-v2", "cpus-ge-1"}


def test_h100_box_gpu_labels(profile_for: ProfileFactory) -> None:
    """The 27 GPU labels of docs/probe.md §8.3, plus the family token gpu-model-h100."""
    labels = set(derive_labels(profile_for(**CASES["h100x8"])))
    gpu = {
        "gpu", "gpu-nvidia", "gpus-ge-1", "gpus-ge-2", "gpus-ge-4", "gpus-ge-8",
        "gpu-mem-ge-8g", "gpu-mem-ge-12g", "gpu-mem-ge-16g", "gpu-mem-ge-24g", "gpu-mem-ge-32g",
        "gpu-mem-ge-40g", "gpu-mem-ge-48g", "gpu-mem-ge-80g", "sm_90", "sm-ge-70", "sm-ge-75",
        "sm-ge-80", "sm-ge-86", "sm-ge-89", "sm-ge-90", "gpu-arch-hopper",
        "gpu-model-h100-80gb-hbm3", "cuda-ge-11.8", "cuda-ge-12.0", "cuda-ge-12.2",
        "cuda-ge-12.4",
    }  # fmt: skip
    assert len(gpu) == 27
    assert gpu <= labels
    assert "gpu-mem-ge-96g" not in labels  # 85.52 GB
    assert "cuda-ge-12.6" not in labels
    assert "gpu-model-h100" in labels
    assert "webgpu" not in labels and "webgpu-sw" in labels
    assert {"cpu-amx", "cpu-avx512-fp16", "cpus-ge-128", "mem-ge-1024g"} <= labels


def test_mig_uses_mig_devices(profile_for: ProfileFactory) -> None:
    labels = set(derive_labels(profile_for(**CASES["a100-mig-pod"])))
    assert {"gpu-mig", "mig-3g.40gb", "mig-2g.20gb", "mig-1g.10gb"} <= labels
    # 4 MIG devices + 1 full GPU = 5 CUDA devices
    assert {"gpus-ge-4"} <= labels and "gpus-ge-8" not in labels
    # smallest CUDA device is a 1g.10gb slice (10.2 GB), not the 85.9 GB card
    assert "gpu-mem-ge-8g" in labels and "gpu-mem-ge-12g" not in labels
    # cgroup-effective: 4 CPUs and 4 GiB of a 64-CPU host
    assert "cpus-ge-4" in labels and "cpus-ge-8" not in labels
    assert "mem-ge-4g" in labels and "mem-ge-8g" not in labels


def test_half_cpu_cgroup_labels(profile_for: ProfileFactory) -> None:
    p = profile_for(**CASES["graviton3-half-cpu"])
    assert p.cpu.quota == 0.5 and p.cpu.effective == 1
    assert p.memory.effective_bytes == 512 * 2**20
    labels = derive_labels(p)
    assert "cpus-ge-1" in labels and "cpus-ge-2" not in labels
    assert not [label for label in labels if label.startswith("mem-ge-")]
    assert {"arm64", "cpu-neon", "cpu-sve"} <= set(labels)


def test_webgpu_rules(profile_for: ProfileFactory) -> None:
    hw = set(derive_labels(profile_for(browser=HARDWARE)))
    assert {"webgpu", "webgpu-nvidia", "webnn", "webnn-cpu", "webnn-gpu"} <= hw
    assert "webgpu-sw" not in hw and "webnn-npu" not in hw
    sw = set(derive_labels(profile_for(browser=SWIFTSHADER)))
    assert "webgpu-sw" in sw
    assert not {"webgpu", "webnn", "webnn-cpu"} & sw
    # a non-fallback adapter that says it is a CPU is still software
    cpu_type = Browser(
        status=Status.OK,
        webgpu=WebGpu(api=True, adapter=WebGpuAdapter(vendor="x", type="CPU", fallback=False)),
    )
    assert "webgpu" not in derive_labels(profile_for(browser=cpu_type))
    # no adapter at all (headless without flags): nothing
    none = Browser(status=Status.OK, webgpu=WebGpu(api=True, adapter=None))
    assert not [x for x in derive_labels(profile_for(browser=none)) if x.startswith("web")]
    # an erroring browser probe earns nothing
    err = Browser(status=Status.ERROR, error="TimeoutError")
    assert not [x for x in derive_labels(profile_for(browser=err)) if x.startswith("web")]


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("NVIDIA H100 80GB HBM3", ["gpu-model-h100-80gb-hbm3", "gpu-model-h100"]),
        ("NVIDIA A10G", ["gpu-model-a10g"]),
        ("NVIDIA L4", ["gpu-model-l4"]),
        ("NVIDIA A100-SXM4-80GB", ["gpu-model-a100-sxm4-80gb", "gpu-model-a100"]),
        ("NVIDIA GeForce RTX 4090", ["gpu-model-geforce-rtx-4090"]),
        ("Tesla T4", ["gpu-model-tesla-t4"]),
        (None, []),
    ],
)
def test_gpu_model_labels(name: str | None, labels: list[str]) -> None:
    assert gpu_model_labels(name) == labels


@pytest.mark.parametrize(
    ("label", "owned", "source"),
    [
        ("gpu-mem-ge-24g", True, "nvidia"),
        ("GPU-MEM-GE-24G", True, "nvidia"),
        ("cpus-ge-8", True, "cpu"),
        ("mem-ge-64g", True, "memory"),
        ("webgpu-sw", True, "browser"),
        ("cuda-ge-12.4", True, "nvidia"),
        ("mig-1g.10gb", True, "nvidia"),
        ("accel-npu", True, "accelerators"),
        ("self-hosted", False, None),
        ("linux", False, None),
        ("x64-big", False, None),
        ("gpu-mem-ge-23g", False, None),  # not a ladder step
        ("team-ml", False, None),
        ("cpu-heavy", False, None),
    ],
)
def test_ownership(label: str, owned: bool, source: str | None) -> None:
    assert is_owned_label(label) is owned
    assert label_source(label) == source


def test_every_rule_has_a_pattern_and_source() -> None:
    assert len(OWNED_LABEL_PATTERNS) == len(LABEL_TABLE)
    sources = {"cpu", "memory", "disk", "nvidia", "accelerators", "browser"}
    assert {rule.source for rule in LABEL_TABLE} <= sources


def test_docs_labels_md_is_generated() -> None:
    text = (REPO / "docs" / "labels.md").read_text()
    assert text == render_labels_markdown(), (
        "docs/labels.md is stale: regenerate it with "
        "python -c 'from ci_app.model.labels import render_labels_markdown as r; "
        'print(r(), end="")\' > docs/labels.md'
    )
