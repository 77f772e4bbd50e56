"""Plain data the store hands to the pure reporting code (no I/O here).

Row sets are columnar (parallel lists) because runs hold 100k+ tests and
history 10M+ rows: building one object per row would dominate report time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

FAILING = frozenset({"failed", "error"})


def runner_class_of(labels: Sequence[str], runner_name: str | None = None) -> str:
    """Canonical runner class: sorted labels joined by ``,``; else the runner name.

    Two shards with the same label set ran on interchangeable hardware, so
    flaky and hardware-specific verdicts are kept per class, not per machine.
    """
    cleaned = sorted({label.strip() for label in labels if label and label.strip()})
    if cleaned:
        return ",".join(cleaned)
    return runner_name or "default"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunMeta:
    run_id: str
    seq: int
    repo: str | None = None
    provider: str | None = None
    pipeline_id: str | None = None
    commit: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    pr: int | None = None
    started_at: str | None = None  # ISO 8601, naive UTC


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardMeta:
    run_id: str
    shard_id: str
    runner_class: str
    runner_name: str | None = None
    runner_labels: tuple[str, ...] = ()
    job_url: str | None = None
    duration_s: float = 0.0
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    #: the shard's own start to end when it recorded them (else ``duration_s``)
    wall_s: float = 0.0
    #: why the shard's test process ended abnormally (killed, its queue lease expired, it
    #: reported nothing): an infrastructure error even when its tests were all recovered
    interrupted: str | None = None

    @property
    def wall(self) -> float:
        return self.wall_s if self.wall_s > 0 else self.duration_s

    @property
    def infra_failure(self) -> bool:
        """Whole-shard infrastructure failure: nothing passed and most tests errored.

        Such shards never count against individual tests (a dead runner, a
        broken checkout or an OOM-killed job makes every test error).
        """
        ran = self.tests - self.skipped
        return ran > 0 and self.passed == 0 and self.errors >= max(1, ran // 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseRows:
    """Test results of one run (one entry per shard and test), columnar."""

    test_id: list[str] = field(default_factory=list)
    shard_id: list[str] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    duration_s: list[float] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    flaky: list[bool] = field(default_factory=list)
    file: list[str | None] = field(default_factory=list)
    line: list[int | None] = field(default_factory=list)
    message: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.test_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryRows:
    """Outcomes over many runs (oldest first by ``seq``), columnar.

    ``infra`` marks rows from shards that failed as a whole (see
    :attr:`ShardMeta.infra_failure`) and infrastructure errors (``infra:`` messages).
    """

    test_id: list[str] = field(default_factory=list)
    runner_class: list[str] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    run_id: list[str] = field(default_factory=list)
    commit: list[str | None] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    flaky: list[bool] = field(default_factory=list)
    infra: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.test_id)

    def rows(self) -> Iterator[tuple[str, str, int, str, str | None, str, bool, bool]]:
        return zip(
            self.test_id,
            self.runner_class,
            self.seq,
            self.run_id,
            self.commit,
            self.outcome,
            self.flaky,
            self.infra,
            strict=True,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class SeriesPoint:
    """One point of a trend: a run's value for a suite duration or a metric."""

    run_id: str
    commit: str | None
    value: float
    started_at: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunTotals:
    """Per-run totals for trend charts."""

    run_id: str
    commit: str | None
    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    duration_s: float  # sum of shard wall times (machine time)
    wall_s: float  # longest shard, from its own start and end (what the user waited)

    @property
    def pass_rate(self) -> float:
        ran = self.tests - self.skipped
        return self.passed / ran if ran else 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricValue:
    name: str
    value: float
    unit: str = ""
    direction: str = "lower"
    runner_class: str = "default"
