"""CPU tests: run on any runner."""

import math


def test_sqrt() -> None:
    assert math.isqrt(144) == 12


def test_sum() -> None:
    assert sum(range(10)) == 45
