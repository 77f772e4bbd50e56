"""Change points in CI series (durations, benchmark metrics) and the PR-value check.

CI series are mostly flat levels with heavy-tailed noise, outliers and step
changes; slow drift is not a regression. The detector (numpy only) is in the
spirit of Apache Otava / Hunter (windowed split, then merge by significance and
magnitude) but uses robust pieces so that outliers and bimodal runners do not
create steps:

1. noise scale σ from the MAD of first differences (unaffected by steps and drift);
2. a windowed statistic: difference of the medians of the ``window`` points
   before and after each index, in units of its standard error;
3. candidates = local maxima above ``z_threshold``; each is refined to the
   split that best separates winsorised means within its neighbourhood;
4. merge: repeatedly drop the weakest change point whose neighbouring
   segments (at most ``window`` points each side) differ by less than
   ``z_threshold`` (Welch z on winsorised values) or by less than the
   magnitude floor (``min_magnitude`` relative and ``min_sigma`` σ), or that a
   straight line explains as well as a step (F < ``trend_f``: drift; smooth
   cycles may still be cut into steps).

Cost is O(n·window); 2,400 points take a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_MAD_TO_SIGMA = 1.4826
_MEDIAN_SE = 1.2533  # se(median) / se(mean) for normal data


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangePoint:
    index: int  # first point of the new regime
    before: float  # mean of the segment before (winsorised)
    after: float
    change: float  # relative change (after - before) / |before|
    z: float  # Welch statistic of the two neighbouring segments
    pvalue: float  # two-sided normal approximation

    @property
    def confidence(self) -> float:
        return 1.0 - self.pvalue


def noise_sigma(x: np.ndarray) -> float:
    """Robust noise scale: MAD of first differences / √2 (steps and drift barely move it)."""
    if len(x) < 3:
        return float(np.std(x)) if len(x) else 0.0
    d = np.diff(x)
    mad = float(np.median(np.abs(d - np.median(d))))
    sigma = _MAD_TO_SIGMA * mad / math.sqrt(2)
    if sigma <= 0:  # quantised series (e.g. integer counts): fall back to mean |diff|
        sigma = float(np.mean(np.abs(d))) / math.sqrt(2)
    return sigma


def _pvalue(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def _winsorise(x: np.ndarray, sigma: float, half: int = 5, k: float = 4.0) -> np.ndarray:
    n = len(x)
    if n < 2 * half + 1 or sigma <= 0:
        return x.copy()
    padded = np.pad(x, half, mode="edge")
    med = np.median(sliding_window_view(padded, 2 * half + 1), axis=1)
    clipped: np.ndarray = np.clip(x, med - k * sigma, med + k * sigma)
    return clipped


def _window_stat(x: np.ndarray, sigma: float, window: int, min_size: int) -> np.ndarray:
    """|median after - median before| / se, at each index (0 where undefined)."""
    n = len(x)
    stat = np.zeros(n)
    w = window
    if n >= 2 * w:
        med = np.median(sliding_window_view(x, w), axis=1)  # med[i] = median(x[i:i+w])
        idx = np.arange(w, n - w + 1)
        stat[idx] = np.abs(med[idx] - med[idx - w]) / (_MEDIAN_SE * sigma * math.sqrt(2 / w))
    # edges: shrinking windows down to min_size
    for t in range(min_size, n - min_size + 1):
        if w <= t <= n - w:
            continue
        k = min(w, t, n - t)
        left = float(np.median(x[t - k : t]))
        right = float(np.median(x[t : t + k]))
        stat[t] = abs(right - left) / (_MEDIAN_SE * sigma * math.sqrt(2 / k))
    return stat


def _welch(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    """Welch-style z for the mean difference, with variances floored at the noise σ²."""
    va = max(float(np.var(a, ddof=1)) if len(a) > 1 else 0.0, sigma * sigma)
    vb = max(float(np.var(b, ddof=1)) if len(b) > 1 else 0.0, sigma * sigma)
    se = math.sqrt(va / len(a) + vb / len(b))
    return (float(np.mean(b)) - float(np.mean(a))) / se if se > 0 else 0.0


def detect_change_points(
    values: Sequence[float] | np.ndarray,
    *,
    window: int = 30,
    min_size: int = 5,
    z_threshold: float = 6.0,
    min_magnitude: float = 0.03,
    min_sigma: float = 2.0,
    trend_f: float = 10.0,
) -> list[ChangePoint]:
    """Step changes in ``values`` (oldest first), each with its size and significance.

    A step is reported only if it is significant (``z_threshold``) *and* at
    least ``min_magnitude`` relative to the earlier level *and* ``min_sigma``
    noise σ: a slow drift or a 1 % wobble is not a regression worth a comment.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2 * min_size:
        return []
    sigma = noise_sigma(x)
    if sigma <= 0:
        sigma = max(1e-12, 1e-9 * float(np.max(np.abs(x))))
    xw = _winsorise(x, sigma)
    stat = _window_stat(xw, sigma, window, min_size)
    half = max(min_size, window // 2)
    cands: list[int] = []
    order = np.argsort(-stat, kind="stable")
    taken = np.zeros(n, dtype=bool)
    for t in order:
        if stat[t] < z_threshold:
            break
        if taken[t]:
            continue
        cands.append(int(t))
        taken[max(0, t - half) : t + half + 1] = True
    cands.sort()
    cands = [_refine(xw, t, cands, window, min_size) for t in cands]
    cands = sorted(set(cands))
    return _merge(
        xw, cands, sigma, window, min_size, z_threshold, min_magnitude, min_sigma, trend_f
    )


def _refine(x: np.ndarray, t: int, cands: list[int], window: int, min_size: int) -> int:
    """Best split (max weighted mean difference) within the candidate's neighbourhood."""
    i = cands.index(t)
    lo = max(cands[i - 1] if i > 0 else 0, t - window)
    hi = min(cands[i + 1] if i + 1 < len(cands) else len(x), t + window)
    seg = x[lo:hi]
    m = len(seg)
    if m < 2 * min_size:
        return t
    csum = np.cumsum(seg)
    k = np.arange(min_size, m - min_size + 1)
    left = csum[k - 1] / k
    right = (csum[-1] - csum[k - 1]) / (m - k)
    score = np.sqrt(k * (m - k) / m) * np.abs(right - left)
    # stay close to the median-based location (ties and plateaus)
    best = int(k[int(np.argmax(score))])
    return lo + best


def _step_over_trend(a: np.ndarray, b: np.ndarray) -> float:
    """F statistic of adding a step to a straight line through ``a`` then ``b``.

    A slow drift or a smooth cycle is fitted as well by the line alone (small
    F); a genuine level shift is not (large F), even on top of a trend.
    """
    y = np.concatenate([a, b])
    n = len(y)
    t = np.arange(n, dtype=float)
    ones = np.ones(n)
    step = (t >= len(a)).astype(float)
    line = np.column_stack([ones, t])
    full = np.column_stack([ones, t, step])
    sse_line = float(np.sum((y - line @ np.linalg.lstsq(line, y, rcond=None)[0]) ** 2))
    sse_full = float(np.sum((y - full @ np.linalg.lstsq(full, y, rcond=None)[0]) ** 2))
    if sse_full <= 0:
        return math.inf if sse_line > 0 else 0.0
    return (sse_line - sse_full) / (sse_full / max(1, n - 3))


def _merge(
    x: np.ndarray,
    cps: list[int],
    sigma: float,
    window: int,
    min_size: int,
    z_threshold: float,
    min_magnitude: float,
    min_sigma: float,
    trend_f: float,
) -> list[ChangePoint]:
    cps = [c for c in cps if min_size <= c <= len(x) - min_size]
    while True:
        scored: list[ChangePoint] = []
        weakest: tuple[float, int] | None = None
        bounds = [0, *cps, len(x)]
        for i, c in enumerate(cps):
            a = x[max(bounds[i], c - window) : c]
            b = x[c : min(bounds[i + 2], c + window)]
            if len(a) < 2 or len(b) < 2:
                z, before, after = 0.0, float(np.mean(x[:c])), float(np.mean(x[c:]))
            else:
                z = _welch(a, b, sigma)
                before, after = float(np.mean(a)), float(np.mean(b))
            diff = after - before
            rel = diff / abs(before) if before != 0 else math.copysign(math.inf, diff)
            ok = (
                abs(z) >= z_threshold
                and abs(rel) >= min_magnitude
                and abs(diff) >= min_sigma * sigma
            )
            strength = min(abs(z) / z_threshold, abs(rel) / max(min_magnitude, 1e-12))
            if ok and trend_f > 0 and len(a) >= 3 and len(b) >= 3:
                f = _step_over_trend(a, b)
                if f < trend_f:
                    ok = False
                    strength = min(strength, f / trend_f)
            if not ok and (weakest is None or strength < weakest[0]):
                weakest = (strength, i)
            scored.append(
                ChangePoint(index=c, before=before, after=after, change=rel, z=z, pvalue=_pvalue(z))
            )
        if weakest is None:
            return scored
        del cps[weakest[1]]


@dataclass(frozen=True, kw_only=True, slots=True)
class ValueCheck:
    """The new value against the noise of the latest segment of history."""

    baseline: float  # median of the latest segment
    value: float
    change: float  # relative
    z: float
    worse: bool  # direction-aware: True when the change is in the bad direction
    significant: bool
    segment_start: int  # index in history where the latest segment begins

    @property
    def confidence(self) -> float:
        return 1.0 - _pvalue(self.z)


def check_value(
    history: Sequence[float] | np.ndarray,
    value: float,
    *,
    direction: str = "lower",
    z_threshold: float = 4.0,
    min_magnitude: float = 0.05,
    min_points: int = 5,
    change_points: Sequence[ChangePoint] | None = None,
) -> ValueCheck | None:
    """Is ``value`` outside the noise of the latest segment (after the last change point)?

    ``direction`` is which way is *better* (``lower`` for durations). Returns None
    with fewer than ``min_points`` points in the latest segment.
    """
    x = np.asarray(history, dtype=float)
    cps = detect_change_points(x) if change_points is None else change_points
    start = cps[-1].index if cps else 0
    seg = x[start:]
    if len(seg) < min_points:
        return None
    base = float(np.median(seg))
    sigma = max(noise_sigma(seg), _MAD_TO_SIGMA * float(np.median(np.abs(seg - base))))
    if sigma <= 0:
        sigma = max(abs(base) * 1e-3, 1e-12)
    z = (value - base) / (sigma * math.sqrt(1 + 1 / len(seg)))
    rel = (value - base) / abs(base) if base != 0 else math.copysign(math.inf, value - base)
    worse = (value > base) if direction == "lower" else (value < base)
    significant = abs(z) >= z_threshold and abs(rel) >= min_magnitude
    return ValueCheck(
        baseline=base,
        value=float(value),
        change=rel,
        z=z,
        worse=worse,
        significant=significant,
        segment_start=start,
    )
