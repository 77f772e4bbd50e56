"""The optional native speedups (``_speedups``, C), configured once, or None.

``pip install`` builds the extension where a C compiler is at hand; elsewhere
(or with ``CI_FANOUT_PURE_PYTHON=1``) everything runs on the pure-Python
reference code, which gives the same results: the test suite runs the corpus
and generated reports through both and compares them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ci_app.artifacts._speedups import JUnitParser
    from ci_app.model.results import TestCase


class Speedups(Protocol):
    """What the native module offers (``_speedups.pyi`` has the details)."""

    @property
    def FallbackError(self) -> type[Exception]: ...  # noqa: N802 (the module's names)

    @property
    def JUnitParser(self) -> type[JUnitParser]: ...  # noqa: N802

    def encode_cases(
        self, cases: list[TestCase], duration: float, /
    ) -> tuple[bytes, int, int, int, int, int, float]: ...


class _State:
    loaded = False
    module: Speedups | None = None
    disabled = 0


def _load() -> Speedups | None:
    if os.environ.get("CI_FANOUT_PURE_PYTHON", "").strip() not in ("", "0"):
        return None
    try:
        from ci_app.artifacts import _speedups
    except ImportError:
        return None
    from ci_app.artifacts import junit_rules as rules
    from ci_app.model.results import Outcome, TestCase, case_to_json

    _speedups.configure(
        TestCase,
        (Outcome.SKIPPED, Outcome.PASSED, Outcome.FAILED, Outcome.ERROR),
        rules.RULES,
        rules.parse_line,
        rules.parse_duration,
        rules.pytest_node_prefix,
        rules.pytest_module_id,
        rules.merge_rerun,
        case_to_json,
    )
    return _speedups


def speedups() -> Speedups | None:
    """The configured ``_speedups`` module; None when not built or switched off."""
    if _State.disabled:
        return None
    if not _State.loaded:
        _State.module = _load()
        _State.loaded = True
    return _State.module


def available() -> bool:
    """Whether the native module is built and enabled here."""
    return speedups() is not None


@contextmanager
def disabled() -> Iterator[None]:
    """Run the pure-Python reference code inside the block (tests, benchmarks)."""
    _State.disabled += 1
    try:
        yield
    finally:
        _State.disabled -= 1
