"""Per-test duration history keyed by runner class, and estimates for a test inventory.

A *runner class* is the label set of the runners that produced a measurement (e.g.
``{"x64", "gpu-nvidia", "gpu-mem-ge-24g"}``); durations from another class are used only
through a learnt ratio (median of per-test ratios over the tests both classes ran), because a
plan made with a foreign class's durations costs 1.2-2x on real data (the conda per-OS files).
Tests with no history anywhere are estimated from their siblings (same test class, then file,
then directory median, then the global median) and flagged ``unknown`` so that queue mode can
run them early.

Pure: loaders take already-parsed JSON values, never paths.
"""

from __future__ import annotations

import math
import operator
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from ci_app.errors import InputError

__all__ = [
    "DEFAULT_UNKNOWN_S",
    "DurationHistory",
    "Estimates",
    "durations_from_json",
    "ema_merge",
    "id_parents",
]

RunnerClass = frozenset[str]

#: Weight of a test when no duration is known anywhere (pytest-split uses 1 as well).
DEFAULT_UNKNOWN_S = 1.0

_SKIPPED = {"skipped"}


def durations_from_json(doc: Any) -> dict[str, float]:
    """Durations ``{test id: seconds}`` from any supported JSON document.

    Accepts pytest-split ``.test_durations`` (``{id: seconds}``), the corpus format
    (``{"source": ..., "durations": {...}}``), a history (``{"versions": [...]}``: the newest
    version), a ResultSet v1 (``{"version": "ci-fanout/results/v1", "tests": [...]}``; skipped
    tests are left out, they measure nothing), or a list of ResultSets (summed per id).
    """
    if isinstance(doc, list):
        out: dict[str, float] = {}
        for part in doc:
            for k, v in durations_from_json(part).items():
                out[k] = out.get(k, 0.0) + v
        return out
    if not isinstance(doc, dict):
        raise InputError("durations must be a JSON object {test_id: seconds} or a ResultSet")
    if "tests" in doc and isinstance(doc.get("tests"), list):
        rs: dict[str, float] = {}
        for case in doc["tests"]:
            if not isinstance(case, dict) or "id" not in case:
                continue
            if case.get("outcome") in _SKIPPED:
                continue
            rs[str(case["id"])] = rs.get(str(case["id"]), 0.0) + float(
                case.get("duration_s") or 0.0
            )
        return rs
    if "versions" in doc and isinstance(doc["versions"], list):
        if not doc["versions"]:
            raise InputError("duration history has no versions")
        return durations_from_json(doc["versions"][-1])
    if "durations" in doc and isinstance(doc["durations"], dict):
        return durations_from_json(doc["durations"])
    values = doc.values()
    # The usual file holds only numbers >= 0 with a finite sum: checked in passes that run in
    # C (no bool: its type is not int), the loop below only runs to name the offending entry.
    kinds = set(map(type, values))
    if kinds <= {float, int} and (not doc or (min(values) >= 0 and math.isfinite(sum(values)))):
        if kinds == {float} and set(map(type, doc)) == {str}:
            return dict(doc)  # a copy of the table, 25 times faster than rebuilding it
        return dict(zip(map(str, doc), map(float, values), strict=True))
    out2: dict[str, float] = {}
    for k, v in doc.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(
                f"duration of {k!r} is {v!r}, not a number of seconds; "
                "expected pytest-split's .test_durations format {test_id: seconds}"
            )
        if not math.isfinite(v) or v < 0:
            raise InputError(f"duration of {k!r} is {v!r}; durations must be finite and >= 0")
        out2[str(k)] = float(v)
    return out2


def ema_merge(
    old: Mapping[str, float], new: Mapping[str, float], alpha: float = 0.3
) -> dict[str, float]:
    """Smooth a new measurement into the old: ``alpha * new + (1 - alpha) * old`` per test.

    Tests only in ``new`` take the new value; tests missing from ``new`` keep the old one.
    """
    out = dict(old)
    for k, v in new.items():
        prev = old.get(k)
        out[k] = v if prev is None else alpha * v + (1.0 - alpha) * prev
    return out


def id_parents(test_id: str) -> tuple[str, ...]:
    """Sibling scopes of a test id, narrowest first: test class, file, directory.

    ``tests/a/test_x.py::TestC::test_y[1]`` → (``tests/a/test_x.py::TestC``,
    ``tests/a/test_x.py``, ``tests/a``); an RSpec file id ``spec/m/x_spec.rb`` → (``spec/m``,).
    """
    parts = test_id.split("::")
    scopes: list[str] = []
    if len(parts) >= 3:
        scopes.append("::".join(parts[:-1]))
    path = parts[0]
    if len(parts) >= 2:
        scopes.append(path)
    directory = posixpath.dirname(path)
    if directory:
        scopes.append(directory + "/")
    return tuple(scopes)


@dataclass(frozen=True, slots=True)
class Estimates:
    """Per-test estimates for one runner class; ``unknown`` were never measured anywhere."""

    seconds: dict[str, float]
    unknown: frozenset[str]
    scaled: frozenset[str] = frozenset()  # taken from another runner class via a learnt ratio
    notes: tuple[str, ...] = ()

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


@dataclass(slots=True)
class DurationHistory:
    """Durations per runner class. The empty class ``frozenset()`` means "unknown hardware"."""

    by_class: dict[RunnerClass, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def single(
        cls, durations: Mapping[str, float], runner_class: Iterable[str] = ()
    ) -> DurationHistory:
        return cls({frozenset(runner_class): dict(durations)})

    def add(
        self,
        durations: Mapping[str, float],
        runner_class: Iterable[str] = (),
        *,
        alpha: float | None = None,
    ) -> None:
        """Record measurements; with ``alpha`` they are smoothed into what is there (EMA)."""
        key = frozenset(runner_class)
        old = self.by_class.get(key)
        if old is None:
            self.by_class[key] = dict(durations)
        elif alpha is None:
            old.update(durations)
        else:
            self.by_class[key] = ema_merge(old, durations, alpha)

    def test_ids(self) -> list[str]:
        """Every test measured in any runner class, sorted."""
        if len(self.by_class) == 1:  # no set: keys read from a sorted file sort in linear time
            return sorted(next(iter(self.by_class.values())))
        out: set[str] = set()
        for durations in self.by_class.values():
            out.update(durations)
        return sorted(out)

    def ratio(self, source: RunnerClass, target: RunnerClass) -> float | None:
        """Learnt speed ratio target/source: median of per-test ratios over common tests."""
        a = self.by_class.get(source, {})
        b = self.by_class.get(target, {})
        ratios = [b[t] / a[t] for t in a.keys() & b.keys() if a[t] > 1e-3 and b[t] > 1e-3]
        if len(ratios) < 3:
            return None
        from statistics import median  # here: most plans never need it

        return median(ratios)

    def estimate(self, tests: Sequence[str], runner_class: Iterable[str] = ()) -> Estimates:
        """Estimate every test for ``runner_class``; see the module docstring for the fallbacks."""
        target = frozenset(runner_class)
        own = self.by_class.get(target)
        if own is None and len(self.by_class) == 1 and not target:
            own = next(iter(self.by_class.values()))
        own = own or {}
        seconds, missing = _lookup(own, tests, None)
        notes: list[str] = []
        scaled: frozenset[str] = frozenset()
        if missing:
            # Other classes, most similar first (largest label overlap, then most data).
            others = sorted(
                (c for c in self.by_class if c != target),
                key=lambda c: (-len(c & target), -len(self.by_class[c]), sorted(c)),
            )
            for c in others:
                if not missing:
                    break
                data = self.by_class[c]
                r = self.ratio(c, target) if own else None
                factor = 1.0 if r is None else r
                found, missing = _lookup(data, missing, factor)
                if found:
                    scaled = scaled.union(found) if scaled else frozenset(found)
                    if seconds:
                        seconds.update(found)
                    else:  # all from this class (the usual case): no copy
                        seconds = found
                    label = ",".join(sorted(c)) or "unlabelled"
                    notes.append(
                        f"{len(found)} estimates from runner class [{label}] x {factor:.2f}"
                    )
        unknown = frozenset(missing)
        if missing:
            # siblings from everything measured for this class (not only the requested tests)
            pool: dict[str, float] = {}
            if not own:
                for data in self.by_class.values():
                    pool.update(data)
            pool.update(own)
            for t, v in _sibling_estimates(missing, pool).items():
                seconds[t] = v
            notes.append(f"{len(missing)} tests without history, estimated from siblings")
        return Estimates(seconds, unknown, scaled, tuple(notes))


def _lookup(
    data: Mapping[str, float], tests: Sequence[str], factor: float | None
) -> tuple[dict[str, float], list[str]]:
    """``(found, missing)``: what ``data`` measured of ``tests`` (times ``factor`` when given),
    and the tests it lacks, in order. One pass in C when it has them all (the usual
    case), a loop otherwise."""
    if not data:
        return {}, list(tests)
    if (factor is None or factor == 1.0) and len(data) == len(tests) and list(data) == tests:
        return dict(data), []  # exactly these tests in this order: a copy of the table
    try:
        values = map(data.__getitem__, tests)
        if factor is None or factor == 1.0:
            return dict(zip(tests, values, strict=True)), []
        return dict(zip(tests, map(operator.mul, values, repeat(factor)), strict=True)), []
    except KeyError:
        pass
    found: dict[str, float] = {}
    missing: list[str] = []
    for t in tests:
        v = data.get(t)
        if v is None:
            missing.append(t)
        else:
            found[t] = v if factor is None else v * factor
    return found, missing


def _sibling_estimates(missing: Sequence[str], known: Mapping[str, float]) -> dict[str, float]:
    """Median of the narrowest scope (class, file, directory) that has measured tests."""
    by_scope: dict[str, list[float]] = {}
    wanted = {s for t in missing for s in id_parents(t)}
    for t, v in known.items():
        for s in id_parents(t):
            if s in wanted:
                by_scope.setdefault(s, []).append(v)
    from statistics import median  # here: most plans never need it

    medians = {s: median(vs) for s, vs in by_scope.items()}
    fallback = median(known.values()) if known else DEFAULT_UNKNOWN_S
    out: dict[str, float] = {}
    for t in missing:
        for s in id_parents(t):
            m = medians.get(s)
            if m is not None:
                out[t] = m
                break
        else:
            out[t] = fallback
    return out
