"""Sharded workloads: one WebGPU compute job split over several browser contexts, gathered back.

The old system's "model sharding across browsers", made testable: a test gets N contexts
(``browser_workers``, spread over the pool's browsers) and a :class:`Coordinator` that starts a
piece of work in every context at once and gathers the pieces — e.g. row blocks of a matrix
multiply (:func:`matmul`), or layers of an MLP, each a WGSL compute shader. Every call is
bounded: a context that stops answering raises :class:`~ci_app.browser.errors.BrowserHungError`
(an infrastructure fault the plugin retries), a shader that fails raises
:class:`~ci_app.browser.pool.PageScriptError` (the test's own failure).

Buffers cross as bytes (base64 in the page), so results are bit-exact f32.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ci_app.browser.pool import Lease, start_job, wait_job

if TYPE_CHECKING:
    import numpy as np
    from playwright.sync_api import Page

BufferKind = Literal["read", "storage", "uniform"]


@dataclass(frozen=True, kw_only=True)
class Buffer:
    """One binding (``@group(0) @binding(i)``, in list order) of a compute job."""

    size: int  # bytes
    kind: BufferKind = "read"  # read: var<storage, read>; storage: read_write; uniform
    data: bytes | None = None
    output: bool = False  # read back after the dispatch

    def spec(self) -> dict[str, Any]:
        if self.size <= 0:
            raise ValueError("buffer size must be positive")
        if self.data is not None and len(self.data) > self.size:
            raise ValueError(f"{len(self.data)} bytes of data in a {self.size}-byte buffer")
        return {
            "size": self.size,
            "kind": self.kind,
            "data": None if self.data is None else base64.b64encode(self.data).decode("ascii"),
            "output": self.output,
        }


@dataclass(frozen=True, kw_only=True)
class ComputeJob:
    code: str  # WGSL
    buffers: Sequence[Buffer]
    workgroups: tuple[int, int, int]
    entry_point: str = "main"
    repeat: int = 1  # dispatches in one submission (for timing)

    def spec(self) -> dict[str, Any]:
        if any(w < 1 for w in self.workgroups):
            raise ValueError(f"workgroup counts must be at least 1: {self.workgroups}")
        return {
            "code": self.code,
            "entryPoint": self.entry_point,
            "buffers": [b.spec() for b in self.buffers],
            "workgroups": list(self.workgroups),
            "repeat": max(1, self.repeat),
        }


@dataclass(frozen=True, kw_only=True)
class ComputeResult:
    worker: int
    outputs: dict[int, bytes]  # binding -> bytes read back
    compile_ms: float  # shader module + pipeline (createComputePipelineAsync)
    run_ms: float  # dispatch, copy and map


@dataclass
class Coordinator:
    """N contexts, started together and gathered in order."""

    leases: Sequence[Lease]
    timeout_s: float = 60.0
    #: called with each job's pipeline compile time (ms): the plugin records the slowest
    on_compile: Callable[[float], None] | None = None
    results: list[ComputeResult] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.leases)

    @property
    def pages(self) -> list[Page]:
        return [lease.page for lease in self.leases]

    @property
    def adapter_classes(self) -> list[str]:
        return [lease.caps.adapter_class if lease.caps else "unknown" for lease in self.leases]

    def map(self, function: str, args: Sequence[Any]) -> list[Any]:
        """Run the async JS ``function`` in every context at once, ``args[i]`` to context i
        (fewer args use fewer contexts); returns the values in order."""
        if len(args) > len(self.leases):
            raise ValueError(f"{len(args)} pieces of work for {len(self.leases)} contexts")
        pages = self.pages[: len(args)]
        keys = [
            start_job(p, function, a, timeout_s=self.timeout_s)
            for p, a in zip(pages, args, strict=True)
        ]
        return [wait_job(p, k, timeout_s=self.timeout_s) for p, k in zip(pages, keys, strict=True)]

    def run(self, jobs: Sequence[ComputeJob]) -> list[ComputeResult]:
        """One compute job per context, concurrently; outputs gathered in order."""
        raw = self.map("(spec) => window.__ciFanout.runCompute(spec)", [j.spec() for j in jobs])
        out: list[ComputeResult] = []
        for i, r in enumerate(raw):
            outputs = {int(k): base64.b64decode(v) for k, v in (r.get("outputs") or {}).items()}
            res = ComputeResult(
                worker=i,
                outputs=outputs,
                compile_ms=float(r.get("compileMs") or 0.0),
                run_ms=float(r.get("runMs") or 0.0),
            )
            out.append(res)
            if self.on_compile is not None:
                self.on_compile(res.compile_ms)
        self.results.extend(out)
        return out


def split_rows(rows: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` row blocks, as even as possible; no empty block."""
    if rows < 0 or parts < 1:
        raise ValueError("rows must be >= 0 and parts >= 1")
    parts = min(parts, rows) or 1
    base, extra = divmod(rows, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        if stop > start:
            out.append((start, stop))
        start = stop
    return out


MATMUL_WGSL = """
struct Dims { m: u32, k: u32, n: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let row = id.y;
  let col = id.x;
  if (row >= dims.m || col >= dims.n) { return; }
  var acc = 0.0;
  for (var i = 0u; i < dims.k; i = i + 1u) {
    acc = acc + a[row * dims.k + i] * b[i * dims.n + col];
  }
  c[row * dims.n + col] = acc;
}
"""


@dataclass(frozen=True, kw_only=True)
class MatmulResult:
    c: np.ndarray
    blocks: list[tuple[int, int]]  # row block of each context
    compile_ms: float  # slowest context
    run_ms: float  # slowest context: the gathered result waits for it

    def gflops(self, m: int, k: int, n: int) -> float:
        return 2.0 * m * k * n / (max(self.run_ms, 1e-6) * 1e6)


def matmul(coordinator: Coordinator, a: np.ndarray, b: np.ndarray) -> MatmulResult:
    """``a @ b`` (float32) with the rows of ``a`` split over the coordinator's contexts."""
    import numpy as np

    a32 = np.ascontiguousarray(a, dtype=np.float32)
    b32 = np.ascontiguousarray(b, dtype=np.float32)
    if a32.ndim != 2 or b32.ndim != 2 or a32.shape[1] != b32.shape[0]:
        raise ValueError(f"cannot multiply shapes {a32.shape} and {b32.shape}")
    m, k = a32.shape
    n = b32.shape[1]
    blocks = split_rows(m, len(coordinator))
    jobs = []
    for start, stop in blocks:
        rows = stop - start
        jobs.append(
            ComputeJob(
                code=MATMUL_WGSL,
                buffers=[
                    Buffer(size=rows * k * 4, data=a32[start:stop].tobytes()),
                    Buffer(size=k * n * 4, data=b32.tobytes()),
                    Buffer(size=rows * n * 4, kind="storage", output=True),
                    Buffer(
                        size=16,
                        kind="uniform",
                        data=np.array([rows, k, n, 0], dtype=np.uint32).tobytes(),
                    ),
                ],
                workgroups=(math.ceil(n / 8), math.ceil(rows / 8), 1),
            )
        )
    results = coordinator.run(jobs)
    c = np.empty((m, n), dtype=np.float32)
    for (start, stop), res in zip(blocks, results, strict=True):
        c[start:stop] = np.frombuffer(res.outputs[2], dtype=np.float32).reshape(stop - start, n)
    return MatmulResult(
        c=c,
        blocks=blocks,
        compile_ms=max(r.compile_ms for r in results),
        run_ms=max(r.run_ms for r in results),
    )


__all__ = [
    "MATMUL_WGSL",
    "Buffer",
    "ComputeJob",
    "ComputeResult",
    "Coordinator",
    "MatmulResult",
    "matmul",
    "split_rows",
]
