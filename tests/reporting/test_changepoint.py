"""Change points and the PR-value check on small synthetic series."""

from __future__ import annotations

import numpy as np

from ci_app.reporting.changepoint import check_value, detect_change_points, noise_sigma


def _noisy(levels: list[tuple[int, float]], sigma: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.full(n, v) for n, v in levels])
    return x + rng.normal(0, sigma, len(x))


def test_finds_steps_with_size_and_location() -> None:
    x = _noisy([(80, 100.0), (60, 120.0), (70, 90.0)])
    cps = detect_change_points(x)
    assert [abs(c.index - t) <= 2 for c, t in zip(cps, [80, 140], strict=True)] == [True, True]
    assert abs(cps[0].change - 0.2) < 0.03 and cps[0].confidence > 0.999
    assert cps[1].after < cps[1].before


def test_flat_noise_outliers_and_drift_give_nothing() -> None:
    x = _noisy([(300, 50.0)], sigma=1.0, seed=3)
    x[[20, 100, 200]] *= 2.5  # outliers
    assert detect_change_points(x) == []
    drift = x * np.linspace(1.0, 1.15, len(x))
    assert detect_change_points(drift) == []


def test_small_step_below_magnitude_floor_ignored() -> None:
    x = _noisy([(100, 100.0), (100, 101.5)], sigma=0.1)  # 1.5 %: significant but tiny
    assert detect_change_points(x) == []
    assert len(detect_change_points(x, min_magnitude=0.01)) == 1


def test_short_and_constant_series() -> None:
    assert detect_change_points([1.0, 2.0]) == []
    assert detect_change_points([5.0] * 50) == []
    assert detect_change_points([5.0] * 40 + [9.0] * 40)[0].index == 40
    assert noise_sigma(np.array([])) == 0.0


def test_check_value_direction_aware() -> None:
    hist = _noisy([(60, 10.0), (40, 20.0)], sigma=0.3)
    slow = check_value(hist, 26.0, direction="lower")
    assert slow is not None and slow.significant and slow.worse
    assert slow.segment_start >= 55 and abs(slow.baseline - 20.0) < 0.5
    fast = check_value(hist, 14.0, direction="lower")
    assert fast is not None and fast.significant and not fast.worse
    thr = check_value(hist, 14.0, direction="higher")
    assert thr is not None and thr.worse
    same = check_value(hist, 20.2)
    assert same is not None and not same.significant
    assert check_value([1.0, 2.0], 3.0) is None


def test_strong_trend_is_not_a_step_but_step_on_trend_is() -> None:
    rng = np.random.default_rng(0)
    trend = np.linspace(100, 200, 300) + rng.normal(0, 1, 300)  # +100 % over the series
    assert detect_change_points(trend) == []
    stepped = trend.copy()
    stepped[150:] += 20
    assert [c.index for c in detect_change_points(stepped)] == [150]
